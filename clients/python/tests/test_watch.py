"""Client.watch: events, and a watch (and a serve) across a restart of the
node they go through."""

import json
import threading
import time
import unittest

from cluster import run_cli, shared, wait_for

import dse


def apply(table, ev):
    """The table after an event (keys: the rows' JSON, as dse tells rows
    apart)."""
    k = lambda r: json.dumps(r)
    if ev.snapshot:
        return {k(r): r for r in ev.rows}
    out = dict(table)
    for r in ev.delete:
        out.pop(k(r))
    for r in ev.add:
        out[k(r)] = r
    return out


class ResumeTest(unittest.TestCase):
    """What a watch yields from the lines of successive connections."""

    def lines(self, w, *lines):
        out = []
        for line in lines:
            if line == "reconnect":
                w._shadow, w._synced = None, False
                continue
            ev = w._apply(line)
            if ev is not None:
                out.append(ev)
        return out

    def snap(self, seq, rows):
        return {"seqnum": seq, "snapshot": True, "rows": rows}

    def delta(self, seq, add, delete):
        return {"seqnum": seq, "snapshot": False, "add": add, "del": delete}

    def test_resume(self):
        w = dse.Watch(None, "s", "t")
        got = self.lines(
            w,
            self.snap(3, [[1], [2]]),
            self.delta(4, [[3]], [[1]]),
            "reconnect",
            self.snap(7, [[2], [3], [4.0]]),  # one change while away
            self.delta(8, [[5]], []),
            "reconnect",
            self.snap(8, [[2], [3], [4.0], [5]]),  # none
            self.delta(9, [], [[5]]),
            "reconnect",
            self.snap(6, [[9]]),  # an older view: nothing until it is newer
            self.delta(9, [[2]], [[9]]),  # as new as what was yielded: still nothing
            self.delta(10, [[True]], []),
            self.delta(11, [[1]], []),
        )
        self.assertEqual(got, [
            dse.Event(3, True, rows=[[1], [2]]),
            dse.Event(4, False, add=[[3]], delete=[[1]]),
            dse.Event(7, False, add=[[4.0]], delete=[]),
            dse.Event(8, False, add=[[5]], delete=[]),
            dse.Event(9, False, add=[], delete=[[5]]),
            dse.Event(10, False, add=[[True]], delete=[[3], [4.0]]),
            dse.Event(11, False, add=[[1]], delete=[]),
        ])
        self.assertEqual(w.rows(), [[1], [2], [True]])
        # A delta before any snapshot on a connection is not applied.
        self.assertEqual(self.lines(w, "reconnect", self.delta(12, [[7]], [])), [])


class WatchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = shared()

    def test_events(self):
        self.cluster.create_service("py-watch")
        c1, c3 = self.cluster.client(0), self.cluster.client(2)
        c1.publish("py-watch", "t", [[1, "a"], [2, "b"]])
        with c3.watch("py-watch", "t") as w:
            ev = next(w)
            self.assertEqual(ev, dse.Event(1, True, rows=[[1, "a"], [2, "b"]]))
            c1.publish("py-watch", "t", [[1, "a"], [3, "c"]])
            ev = next(w)
            self.assertEqual((ev.seqnum, ev.snapshot, ev.add, ev.delete), (2, False, [[3, "c"]], [[2, "b"]]))
            self.assertEqual(w.rows(), [[1, "a"], [3, "c"]])
            self.assertIn("add=[[3, 'c']]", repr(ev))
        with self.assertRaises(StopIteration):
            next(w)
        with self.assertRaises(dse.NotFound):
            next(c3.watch("py-nope", "t"))

    def test_close_before_the_first_event(self):
        # A table never published: the node answers with the first event
        # only; closing from another thread ends the wait.
        self.cluster.create_service("py-quiet")
        w = self.cluster.client(1).watch("py-quiet", "never")
        got = []
        t = threading.Thread(target=lambda: got.append(list(w)))
        t.start()
        time.sleep(0.5)
        w.close()
        t.join(10)
        self.assertFalse(t.is_alive(), "the watch still waits 10 s after close")
        self.assertEqual(got, [[]])

    def test_watch_ends_when_its_publisher_is_deleted(self):
        self.cluster.create_service("py-gone")
        c = self.cluster.client(1)
        c.publish("py-gone", "t", [[1]])
        w = c.watch("py-gone", "t")
        self.assertTrue(next(w).snapshot)
        c.delete_service("py-gone")
        with self.assertRaises(dse.NotFound):
            next(w)

    def test_across_a_restart_of_its_node(self):
        """The watch and a serve go through n2; n2 is killed and restarted
        while n1 publishes: the watch loses and repeats nothing (the table
        it rebuilds equals get's, seqnums strictly increase), and the serve
        is reached by `dse rpc` again."""
        cl = self.cluster
        cl.create_service("py-restart")
        n2 = cl.agents[1]
        pub = cl.client(0)
        # Through n2, then n3.
        via_n2 = dse.Client([n2.http, cl.agents[2].http])
        pub.publish("py-restart", "t", [[0]])
        w = via_n2.watch("py-restart", "t")
        srv = via_n2.serve("py-restart", {"add": lambda a: a["a"] + a["b"]}, heartbeat=0.5, block=False)
        self.addCleanup(srv.stop)
        self.addCleanup(w.close)
        self.assertEqual(srv.node, "n2")

        events = []
        errors = []
        reading = threading.Event()  # cleared: the reader pauses
        reading.set()

        def follow():
            try:
                while True:
                    reading.wait()
                    events.append(next(w))
            except StopIteration:
                pass
            except dse.Error as e:
                errors.append(e)

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        wait_for("the snapshot", lambda: events)

        stop = threading.Event()
        published = []

        def publisher():
            i = 1
            while not stop.is_set():
                # Rows come and go: a lost or repeated change shows.
                rows = [[j] for j in range(i % 7, i % 7 + 3)] + [["n", i]]
                try:
                    published.append(pub.publish("py-restart", "t", rows))
                except dse.Unavailable:
                    pass  # the cluster is re-forming: the next one will do
                i += 1
                time.sleep(0.05)

        p = threading.Thread(target=publisher, daemon=True)
        p.start()
        wait_for("a few changes", lambda: len(events) > 5)
        # The reader pauses while n2 dies and n1 publishes on: the watch
        # reconnects only once it reads again, and must then yield what
        # changed meanwhile as one delta.
        reading.clear()
        time.sleep(0.2)
        n2.kill()
        done = len(published)
        wait_for("publications while the watch is cut off", lambda: len(published) >= done + 3, timeout=30)
        reading.set()
        wait_for("the watch back on n3", lambda: w.reconnects > 0 and len(events) > 15, timeout=30)
        wait_for("the serve back on n3", lambda: srv.attached.is_set() and srv.node == "n3", timeout=30)
        n2.start()
        time.sleep(1)
        stop.set()
        p.join()
        cl.wait_healthy()

        seq, rows = pub.get("py-restart", "t")
        wait_for("the watch caught up", lambda: events[-1].seqnum == seq, timeout=30)
        self.assertEqual(errors, [])
        gaps = [(a.seqnum, b.seqnum) for a, b in zip(events, events[1:]) if b.seqnum != a.seqnum + 1]
        self.assertTrue(gaps, "no change was folded into one delta: the reconnect was not exercised")
        seqs = [e.seqnum for e in events]
        self.assertEqual(seqs, sorted(set(seqs)), "seqnums not strictly increasing: %s" % seqs)
        self.assertTrue(events[0].snapshot)
        self.assertFalse(any(e.snapshot for e in events[1:]))
        table = {}
        for ev in events:
            table = apply(table, ev)  # raises on a delete of a row not there
        as_text = lambda rs: sorted(json.dumps(r) for r in rs)
        self.assertEqual(as_text(table.values()), as_text(rows))
        self.assertEqual(as_text(w.rows()), as_text(rows))

        # `dse rpc` from the restarted node reaches the serve on n3.
        wait_for("dse rpc reaches the serve", lambda: run_cli("--addr", n2.http, "rpc", "py-restart", "add", "--args", '{"a":2,"b":3}')[1].strip() == "5", timeout=30)


if __name__ == "__main__":
    unittest.main()
