"""The dse HTTP API client."""

import http.client
import json
import math
import ssl
import threading
import urllib.parse

from .errors import Error, Invalid, Unavailable, error_from

DEFAULT_ADDR = "127.0.0.1:7401"

_SCALARS = (str, int, float, bool, type(None))


class _Addr:
    """One node's HTTP address."""

    def __init__(self, text, tls):
        self.text = text
        if "://" in text:
            u = urllib.parse.urlsplit(text)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ValueError("address %r: want HOST:PORT or http(s)://HOST:PORT" % text)
            self.https = u.scheme == "https"
            self.host = u.hostname
            self.port = u.port or (443 if self.https else 80)
        else:
            host, sep, port = text.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("address %r: want HOST:PORT or http(s)://HOST:PORT" % text)
            self.https = tls
            self.host = host.strip("[]")
            self.port = int(port)

    def __str__(self):
        return self.text


def _quote(name):
    return urllib.parse.quote(str(name), safe="")


def _duration(seconds, what):
    """Go's duration syntax for a positive number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0 or math.isinf(seconds):
        raise Invalid("invalid", "%s %r: want a positive number of seconds" % (what, seconds))
    return "%dus" % max(1, round(seconds * 1e6))


def rows_value(rows, what="rows"):
    """Rows (any iterable of lists or tuples of scalars) as JSON-ready lists.

    Raises Invalid naming the first bad row or value.
    """
    if isinstance(rows, (str, bytes, dict)):
        raise Invalid("invalid", "%s: want a list of rows, got %s" % (what, type(rows).__name__))
    try:
        it = list(rows)
    except TypeError:
        raise Invalid("invalid", "%s: want a list of rows, got %s" % (what, type(rows).__name__)) from None
    out = []
    for i, row in enumerate(it):
        if not isinstance(row, (list, tuple)):
            raise Invalid("invalid", "%s: row %d is a %s, not a list of scalars" % (what, i, type(row).__name__))
        for j, v in enumerate(row):
            if not isinstance(v, _SCALARS):
                raise Invalid("invalid", "%s: row %d, column %d is a %s, not a scalar (string, number, bool, None)" % (what, i, j, type(v).__name__))
            if isinstance(v, float) and not math.isfinite(v):
                raise Invalid("invalid", "%s: row %d, column %d is %r: JSON has no such number" % (what, i, j, v))
        out.append(list(row))
    return out


def _dumps(obj, what):
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise Invalid("invalid", "%s is not JSON: %s" % (what, e)) from None


def _api_error(status, raw):
    try:
        body = json.loads(raw.decode("utf-8"))
        e = body["error"]
        return error_from(e["code"], e["message"], status)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        text = raw.decode("utf-8", "replace").strip()
        return Error("internal", "HTTP %d: %s" % (status, text), status)


class Client:
    """A client of a dse cluster's HTTP API.

    ``addr`` is a node's HTTP address (``HOST:PORT`` or a URL), or a list of
    them: a request goes to the first that accepts a connection (a request
    that reached a node is never sent to another: it may have run), and
    watches and serves move on to the next when their node goes away.
    ``token`` is sent as a bearer token; ``ca`` (a CA certificate file) makes
    the client speak HTTPS and verify the nodes with it. ``timeout`` bounds
    each plain request, in seconds.
    """

    def __init__(self, addr=DEFAULT_ADDR, token=None, ca=None, timeout=30.0):
        texts = [addr] if isinstance(addr, str) else list(addr)
        if not texts:
            raise ValueError("addr: want at least one address")
        self.token = token
        self.ca = ca
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=ca) if ca else None
        self.addrs = [_Addr(a, ca is not None) for a in texts]
        self._lock = threading.Lock()
        self._running = []  # watches and servers, stopped by stop()

    # -- plumbing ---------------------------------------------------------

    def _connection(self, addr, timeout):
        if addr.https:
            return http.client.HTTPSConnection(addr.host, addr.port, timeout=timeout, context=self._ssl or ssl.create_default_context())
        return http.client.HTTPConnection(addr.host, addr.port, timeout=timeout)

    def _headers(self, body):
        h = {"Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        return h

    def _open(self, method, path, body=None, timeout=None, addrs=None, stream=False, on_connect=None):
        """Send a request to the first address that takes a connection.

        Returns (addr, connection, response) for a 2xx answer; raises the
        API's error otherwise, and Unavailable when no node answers. A
        ``stream`` waits for its answer and reads it with ``timeout`` (None:
        for ever); connecting is bounded by the client's timeout anyway.
        ``on_connect(conn)`` is called once connected, before the request
        (a stream's owner keeps the connection, to end it from elsewhere).
        """
        order = addrs or self.addrs
        last = None
        for a in order:
            conn = self._connection(a, self.timeout if stream or timeout is None else timeout)
            try:
                conn.connect()
            except OSError as e:
                # Not sent: the next address may take it.
                last = e
                conn.close()
                continue
            if stream:
                conn.sock.settimeout(timeout)
            if on_connect is not None:
                on_connect(conn)
            try:
                conn.request(method, path, body=body, headers=self._headers(body))
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise Unavailable("unavailable", "%s %s via %s: %s" % (method, path, a, e)) from None
            if resp.status // 100 != 2:
                try:
                    raw = resp.read(1 << 20)
                except (OSError, http.client.HTTPException):
                    raw = b""
                conn.close()
                raise _api_error(resp.status, raw)
            return a, conn, resp
        raise Unavailable("unavailable", "no node answered at %s: %s" % (", ".join(map(str, order)), last))

    def _do(self, method, path, obj=None, body=None, timeout=None, addrs=None):
        if obj is not None:
            body = _dumps(obj, "the request")
        a, conn, resp = self._open(method, path, body, timeout, addrs)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise Unavailable("unavailable", "%s %s via %s: %s" % (method, path, a, e)) from None
        finally:
            conn.close()
        if not data:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as e:
            raise Error("internal", "%s %s via %s: the answer is not JSON: %s" % (method, path, a, e)) from None

    def _track(self, thing):
        with self._lock:
            self._running = [x for x in self._running if not x.stopped]
            self._running.append(thing)

    def stop(self):
        """Stop every watch and serve this client started."""
        with self._lock:
            running, self._running = self._running, []
        for x in running:
            x.stop()

    # -- the cluster ------------------------------------------------------

    def status(self):
        """The addressed node's Raft status (a dict)."""
        return self._do("GET", "/v1/status")

    def members(self):
        """The cluster's members (a list of dicts)."""
        return self._do("GET", "/v1/members")

    # -- services, tables, RPC --------------------------------------------

    def services(self):
        """Every service's DataServiceInfo: dicts with service_id, node_id,
        published_tables, subscribed_tables and rpc_endpoints_info."""
        return self._do("GET", "/v1/services")

    def service(self, service_id):
        """One service's DataServiceInfo; NotFound if the cluster has none."""
        for info in self.services():
            if info["service_id"] == service_id:
                return info
        raise error_from("service_not_found", "service not found: %r" % service_id)

    def create_service(self, service_id):
        """Create, on the addressed node, an external service: its tables are
        set by publish, its RPC actions served by serve. Exists if taken."""
        return self._do("POST", "/v1/services", {"id": service_id})

    def delete_service(self, service_id):
        """Delete a service wherever it runs."""
        self._do("DELETE", "/v1/services/" + _quote(service_id))

    def publish(self, service, table, rows, snapshot=False):
        """Set a table's full content (the node computes the delta) and
        return its seqnum: the new one, or the current one when nothing
        changed. ``snapshot`` sends subscribers the whole table."""
        body = _dumps(rows_value(rows), "the rows")
        path = "/v1/services/%s/tables/%s?snapshot=%s" % (_quote(service), _quote(table), "true" if snapshot else "false")
        return self._do("PUT", path, body=body)["seqnum"]

    def get(self, service, table):
        """The publisher's current table: (seqnum, rows), rows sorted, each a
        list."""
        out = self._do("GET", "/v1/services/%s/tables/%s" % (_quote(service), _quote(table)))
        return out["seqnum"], out["rows"]

    def watch(self, service, table):
        """Subscribe to a table through the client's node: an iterator of
        :class:`dse.Event`, the table first (a snapshot), then each change.

        When the connection drops it reconnects (to the same node, or the
        next address) and yields, from the new snapshot, only what changed
        since its last event, as one delta under the new seqnum (nothing
        when nothing changed): no change is lost or repeated, and seqnums
        strictly increase. It raises what will not change by retrying
        (NotFound when the publisher is deleted, Unauthorized, Forbidden).
        Close it (or Client.stop) to end it.
        """
        from .watch import Watch

        w = Watch(self, service, table)
        self._track(w)
        return w

    def rpc(self, service, action, args=None, timeout=None, retry=None, local=False, idempotent=False):
        """Call a service's RPC action with ``args`` (a dict) and return its
        result. ``timeout`` bounds each attempt, in seconds (default 10);
        ``retry`` more attempts follow one that could not reach the service
        (and, with ``idempotent``, one that timed out). Raises NotFound,
        NoSuchMethod, Unavailable, or RemoteError with the method's message.
        """
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise Invalid("invalid", "args: want a dict, got %s" % type(args).__name__)
        req = {"args": args}
        per = 10.0
        if timeout is not None:
            req["timeout"] = _duration(timeout, "timeout")
            per = float(timeout)
        if retry:
            if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
                raise Invalid("invalid", "retry %r: want a count of more attempts, 0 or more" % (retry,))
            req["retry"] = retry
        if local:
            req["local"] = True
        if idempotent:
            req["idempotent"] = True
        # The request lasts as long as its attempts and the pauses between
        # them may.
        total = (per + 1.0) * ((retry or 0) + 1) + 5.0
        return self._do("POST", "/v1/rpc/%s/%s" % (_quote(service), _quote(action)), req, timeout=max(total, self.timeout))

    def serve(self, service, handlers, concurrency=1, block=True, heartbeat=5.0):
        """Serve RPC actions of an external service: ``handlers`` maps each
        action name to a function called as ``handler(args)`` in a thread of
        its own (at most ``concurrency`` at once); what it returns (JSON) is
        the result, what it raises a remote error with its message.

        With ``block`` it runs until :meth:`Server.stop` (or Client.stop, or
        KeyboardInterrupt) and returns None; else it returns the running
        :class:`dse.Server` once attached. When the stream to the node drops
        it reconnects, to the next address if there are several. The first
        attach failing raises (NotFound, Invalid, Unavailable...).
        """
        from .serve import Server

        s = Server(self, service, handlers, concurrency=concurrency, heartbeat=heartbeat)
        self._track(s)
        if block:
            s.run()
            return None
        s.start()
        return s

    def subscribers(self, service):
        """Who subscribes to a service's tables, cluster-wide: dicts with
        subscriber, publisher and table."""
        return self._do("GET", "/v1/services/%s/subscribers" % _quote(service))

    # -- datasources ------------------------------------------------------

    def drivers(self):
        """The drivers: dicts with id and description."""
        return self._do("GET", "/v1/drivers")

    def driver(self, driver_id):
        """One driver's info: its config fields and table schema."""
        return self._do("GET", "/v1/drivers/" + _quote(driver_id))

    def datasources(self, show_secrets=False):
        """Every datasource; secret config fields read "<hidden>" unless
        ``show_secrets`` (an admin token's privilege)."""
        return self._do("GET", "/v1/datasources?show_secrets=%s" % ("true" if show_secrets else "false"))

    def datasource(self, id_or_name, show_secrets=False):
        """One datasource, by id or name."""
        return self._do("GET", "/v1/datasources/%s?show_secrets=%s" % (_quote(id_or_name), "true" if show_secrets else "false"))

    def datasource_status(self, id_or_name):
        """Where a datasource runs and how its source is."""
        return self._do("GET", "/v1/datasources/%s/status" % _quote(id_or_name))

    def add_datasource(self, name, driver, config=None, description="", enabled=True):
        """Add a datasource: it publishes its tables as the service ``name``."""
        req = {"name": name, "driver": driver, "description": description, "config": config or {}, "enabled": bool(enabled)}
        return self._do("POST", "/v1/datasources", req)

    def update_datasource(self, id_or_name, config=None, enabled=None):
        """Change a datasource's config and/or enabled flag."""
        req = {}
        if config is not None:
            req["config"] = config
        if enabled is not None:
            req["enabled"] = bool(enabled)
        return self._do("PATCH", "/v1/datasources/" + _quote(id_or_name), req)

    def delete_datasource(self, id_or_name):
        """Delete a datasource (and its service)."""
        self._do("DELETE", "/v1/datasources/" + _quote(id_or_name))

    # -- tokens -----------------------------------------------------------

    def create_token(self, role, name=""):
        """Create a token (read, write or admin): a dict whose "token" is the
        secret, shown only here."""
        return self._do("POST", "/v1/tokens", {"role": role, "name": name})

    def tokens(self):
        """The tokens (no secrets)."""
        return self._do("GET", "/v1/tokens")

    def revoke_token(self, token_id):
        """Revoke a token."""
        self._do("DELETE", "/v1/tokens/" + _quote(token_id))
