"""Watching a table: a snapshot, then each change, across reconnects."""

import http.client
import json
import socket
import threading
import time

from .client import _quote
from .errors import Error, Unavailable


class Event:
    """One event of a watch: the table (``snapshot`` True, ``rows``) or a
    change (``add``, ``delete``), at ``seqnum``. Rows are lists."""

    __slots__ = ("seqnum", "snapshot", "rows", "add", "delete")

    def __init__(self, seqnum, snapshot, rows=None, add=None, delete=None):
        self.seqnum = seqnum
        self.snapshot = snapshot
        self.rows = rows if rows is not None else []
        self.add = add if add is not None else []
        self.delete = delete if delete is not None else []

    def __repr__(self):
        if self.snapshot:
            return "Event(seqnum=%d, snapshot, rows=%r)" % (self.seqnum, self.rows)
        return "Event(seqnum=%d, add=%r, delete=%r)" % (self.seqnum, self.add, self.delete)

    def __eq__(self, other):
        return isinstance(other, Event) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


def _key(row):
    """A row's identity: 1, 1.0 and True are different values in dse."""
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


# Errors that trying again will not change: the watch raises them.
_FINAL = ("not_found", "service_not_found", "unauthorized", "forbidden", "invalid")


class Watch:
    """An iterator of :class:`Event` (see Client.watch)."""

    def __init__(self, client, service, table):
        self._client = client
        self.service = service
        self.table = table
        self._path = "/v1/watch/%s/%s" % (_quote(service), _quote(table))
        self._lock = threading.Lock()
        self._conn = None
        self._resp = None
        self._next_addr = 0
        self.stopped = False
        # What the events so far add up to, and the last seqnum applied.
        self._table = None  # key -> row; None before the first event
        self.seqnum = 0
        # The current connection's view, until it catches up with _table.
        self._shadow = None
        self._shadow_seq = 0
        self._synced = False
        self.reconnects = 0

    def __iter__(self):
        return self

    def close(self):
        """End the watch (from any thread): iteration stops."""
        self.stop()

    def stop(self):
        with self._lock:
            self.stopped = True
            conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def rows(self):
        """The table as the events so far make it, as lists, sorted by
        their JSON text."""
        if self._table is None:
            return []
        return [self._table[k] for k in sorted(self._table)]

    def _drop(self):
        with self._lock:
            conn, self._conn, self._resp = self._conn, None, None
        if conn is not None:
            conn.close()

    def _connected(self, conn):
        with self._lock:
            self._conn = conn
            stopped = self.stopped
        if stopped:
            conn.close()

    def _connect(self):
        """Open the stream, trying the addresses in turn with backoff;
        raises what retrying will not change."""
        backoff = 0.1
        addrs = self._client.addrs
        while True:
            if self.stopped:
                raise StopIteration
            k = self._next_addr % len(addrs)
            order = addrs[k:] + addrs[:k]
            try:
                # Known before the request: the answer's headers come with
                # the first event, which a table not yet published makes
                # wait for, and stop() must end that wait.
                a, conn, resp = self._client._open("GET", self._path, timeout=None, addrs=order, stream=True, on_connect=self._connected)
            except Error as e:
                if self.stopped:
                    raise StopIteration from None
                if e.code in _FINAL:
                    raise
                self._next_addr += 1
                time.sleep(backoff)
                backoff = min(2 * backoff, 2.0)
                continue
            self._next_addr = addrs.index(a)
            with self._lock:
                if self.stopped:
                    conn.close()
                    raise StopIteration
                self._conn, self._resp = conn, resp
            return

    def __next__(self):
        while True:
            if self.stopped:
                self._drop()
                raise StopIteration
            if self._resp is None:
                self._connect()
                self._shadow, self._synced = None, False
            try:
                line = self._resp.readline()
            except (OSError, ValueError, http.client.HTTPException):
                line = b""
            if not line:
                # Dropped, or ended by the node: reconnect, to the next
                # address first.
                self._drop()
                if self.stopped:
                    raise StopIteration
                self._next_addr += 1
                self.reconnects += 1
                continue
            try:
                ev = json.loads(line.decode("utf-8"))
            except ValueError:
                self._drop()
                raise Unavailable("unavailable", "watch %s/%s: the node sent %r" % (self.service, self.table, line[:200])) from None
            out = self._apply(ev)
            if out is not None:
                return out

    def _apply(self, ev):
        """Apply one line of the current connection; return the event to
        yield, if any."""
        seq = ev["seqnum"]
        if ev["snapshot"]:
            self._shadow = {_key(r): r for r in ev["rows"]}
            self._shadow_seq = seq
            if self._table is None:
                self._table, self.seqnum, self._synced = self._shadow, seq, True
                return Event(seq, True, rows=list(ev["rows"]))
            self._synced = False
        else:
            if self._shadow is None:
                return None  # a stream must begin with a snapshot
            if self._synced:
                if seq <= self.seqnum:
                    return None
                for r in ev["del"]:
                    self._table.pop(_key(r), None)
                for r in ev["add"]:
                    self._table[_key(r)] = r
                self.seqnum = seq
                return Event(seq, False, add=list(ev["add"]), delete=list(ev["del"]))
            for r in ev["del"]:
                self._shadow.pop(_key(r), None)
            for r in ev["add"]:
                self._shadow[_key(r)] = r
            self._shadow_seq = seq
        # Not in step yet: once the connection's view is newer than what
        # was yielded, yield the difference, once.
        if self._shadow_seq <= self.seqnum:
            return None
        add = [self._shadow[k] for k in sorted(self._shadow.keys() - self._table.keys())]
        delete = [self._table[k] for k in sorted(self._table.keys() - self._shadow.keys())]
        self._table, self.seqnum, self._synced = self._shadow, self._shadow_seq, True
        if not add and not delete:
            return None
        return Event(self.seqnum, False, add=add, delete=delete)
