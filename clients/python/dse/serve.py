"""Serving RPC actions of an external service from Python.

The protocol (dse/api/serve.go): ``POST /v1/serve/{service}`` with the
actions, the concurrency and the heartbeat opens a stream of JSON lines: a
hello naming the session and node, then one line per call (``id``,
``action``, ``args``, ``timeout_ms``), heartbeats, and a last error line if
the node ends the session. Each call is answered with ``POST
/v1/serve/{service}/{session}`` and ``{"id", "result"}`` or ``{"id",
"error"}``. Closing the stream detaches.
"""

import http.client
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .client import _dumps, _quote
from .errors import Error, Unavailable, error_from

log = logging.getLogger("dse")

# Session ends and attach failures that retrying will not change.
_FINAL = ("not_found", "service_not_found", "unauthorized", "forbidden", "invalid", "no_such_method")

MAX_CONCURRENCY = 1024


class Server:
    """A running attachment (see Client.serve): ``attached`` is set while a
    stream is open, ``session`` and ``node`` name it, ``calls`` counts the
    calls handled."""

    def __init__(self, client, service, handlers, concurrency=1, heartbeat=5.0):
        if not isinstance(handlers, dict) or not handlers:
            raise TypeError("handlers: want a dict of action name -> callable, with at least one")
        for name, fn in handlers.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError("handlers: %r -> %r is not an action name and a callable" % (name, fn))
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError("concurrency %r: want 1 to %d" % (concurrency, MAX_CONCURRENCY))
        if not isinstance(heartbeat, (int, float)) or not 0.1 <= heartbeat <= 60:
            raise ValueError("heartbeat %r: want 0.1 to 60 seconds" % (heartbeat,))
        self._client = client
        self.service = service
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.heartbeat = float(heartbeat)
        self.attached = threading.Event()
        self.session = None
        self.node = None
        self.addr = None
        self.stopped = False
        self.calls = 0
        self.error = None  # why it stopped, if not by stop()
        self._lock = threading.Lock()
        self._conn = None
        self._thread = None
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dse-serve-" + service)

    # -- running ----------------------------------------------------------

    def run(self):
        """Serve until stop() or KeyboardInterrupt (then return); raise
        when the first attach fails, or the cluster ends the session for
        good (the service deleted, the token revoked)."""
        try:
            self._loop(None)
        except KeyboardInterrupt:
            self.stop()
        if self.error is not None:
            raise self.error

    def start(self):
        """Serve in a background thread; return once attached (raise if the
        first attach fails)."""
        first = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(first,), name="dse-serve-" + self.service, daemon=True)
        self._thread.start()
        first.wait()
        if self.error is not None:
            raise self.error
        return self

    def stop(self):
        """Detach (from any thread, a handler's too): the stream closes, no
        more calls come, and the calls in flight send no reply (their
        callers get dse.Unavailable)."""
        with self._lock:
            self.stopped = True
            conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def wait(self, timeout=None):
        """Wait until the background thread has ended; False on timeout."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self, first):
        backoff = 0.1
        attached_once = False
        k = 0
        try:
            while not self.stopped:
                try:
                    conn, resp = self._attach(k)
                except Error as e:
                    if self.stopped:
                        return
                    if not attached_once or e.code in _FINAL:
                        self.error = e
                        return
                    k += 1
                    time.sleep(backoff)
                    backoff = min(2 * backoff, 5.0)
                    continue
                if conn is None:
                    return  # stopped meanwhile
                attached_once, backoff = True, 0.1
                if first is not None:
                    first.set()
                    first = None
                why = self._session(conn, resp)
                self.attached.clear()
                conn.close()
                if self.stopped:
                    return
                if why.code in _FINAL:
                    self.error = why
                    return
                k += 1
                log.warning("dse serve %s: lost the stream to %s (%s); reconnecting", self.service, self.addr, why)
        finally:
            self.stopped = True
            self.attached.clear()
            self._pool.shutdown(wait=False)
            if first is not None:
                first.set()

    def _connected(self, conn):
        with self._lock:
            self._conn = conn
            stopped = self.stopped
        if stopped:
            conn.close()

    def _attach(self, k):
        addrs = self._client.addrs
        k %= len(addrs)
        order = addrs[k:] + addrs[:k]
        body = _dumps({"actions": sorted(self.handlers), "concurrency": self.concurrency, "heartbeat_ms": int(self.heartbeat * 1000)}, "the attach request")
        a, conn, resp = self._client._open("POST", "/v1/serve/" + _quote(self.service), body, timeout=3 * self.heartbeat, addrs=order, stream=True, on_connect=self._connected)
        try:
            hello = json.loads(resp.readline().decode("utf-8"))
            session, node = hello["session"], hello["node"]
        except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as e:
            conn.close()
            raise Unavailable("unavailable", "serve %s via %s: no session in the stream's first line: %s" % (self.service, a, e)) from None
        with self._lock:
            if self.stopped:
                conn.close()
                return None, None
            self._conn = conn
            self.session, self.node, self.addr = session, node, a
        self.attached.set()
        return conn, resp

    def _session(self, conn, resp):
        """Hand the stream's calls to the pool until it ends; return why."""
        while True:
            try:
                line = resp.readline()
            except socket.timeout:
                return Unavailable("unavailable", "no heartbeat from node %s in %.1fs" % (self.node, 3 * self.heartbeat))
            except (OSError, ValueError, http.client.HTTPException) as e:
                return Unavailable("unavailable", "serve stream: %s" % e)
            if not line:
                return Unavailable("unavailable", "the node closed the serve stream")
            try:
                msg = json.loads(line.decode("utf-8"))
            except ValueError:
                return Unavailable("unavailable", "the serve stream sent %r" % line[:200])
            if msg.get("heartbeat"):
                continue
            if "error" in msg:
                e = msg["error"]
                return error_from(e.get("code", "internal"), e.get("message", ""))
            self._pool.submit(self._handle, self.addr, self.session, msg)

    def _handle(self, addr, session, call):
        action = call.get("action")
        reply = {"id": call.get("id")}
        try:
            fn = self.handlers[action]
            result = fn(call.get("args") or {})
            try:
                body = _dumps({"id": call.get("id"), "result": result}, "the result of %s" % action)
            except Error as e:
                reply["error"] = str(e)
                body = _dumps(reply, "the reply")
        except Exception as e:  # the handler's failure is the caller's remote error
            reply["error"] = str(e) or type(e).__name__
            body = _dumps(reply, "the reply")
        with self._lock:
            self.calls += 1
            if self.stopped:
                # Stopped detaches at once: the node fails the calls still
                # in flight as unavailable when it sees the stream end, and
                # a reply racing it there would make that depend on timing.
                return
        path = "/v1/serve/%s/%s" % (_quote(self.service), _quote(session))
        try:
            self._client._do("POST", path, body=body, addrs=[addr])
        except Error as e:
            # Expired or unknown: the caller gave up, or the session ended;
            # nobody is left to tell.
            if e.code not in ("not_found", "expired"):
                log.warning("dse serve %s: cannot reply to call %s: %s", self.service, call.get("id"), e)
