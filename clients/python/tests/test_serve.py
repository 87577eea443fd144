"""Client.serve: Python functions as RPC actions, reached from any node and
from `dse rpc`."""

import json
import threading
import time
import unittest

from cluster import run_cli, shared, wait_for

import dse


def add(args):
    return args["a"] + args["b"]


class ServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = shared()
        cls.c1, cls.c2, cls.c3 = (cls.cluster.client(i) for i in range(3))

    def endpoints(self, client, service):
        return client.service(service)["rpc_endpoints_info"]

    def test_serve_reached_from_every_node_and_dse_rpc(self):
        self.cluster.create_service("py-calc")

        def fail(args):
            raise ValueError("cannot divide %s by zero" % args.get("a"))

        srv = self.c2.serve("py-calc", {"add": add, "fail": fail, "nothing": lambda a: None}, block=False)
        self.addCleanup(srv.stop)
        self.assertTrue(srv.attached.is_set())
        self.assertEqual(srv.node, "n2")
        for c in (self.c1, self.c2, self.c3):
            wait_for("add listed", lambda: "add" in self.endpoints(c, "py-calc"))
        self.assertEqual(self.c3.rpc("py-calc", "add", {"a": 1, "b": 2}), 3)
        self.assertEqual(self.c1.rpc("py-calc", "add", {"a": 0.5, "b": 2}), 2.5)
        self.assertIsNone(self.c1.rpc("py-calc", "nothing"))
        with self.assertRaises(dse.RemoteError) as cm:
            self.c1.rpc("py-calc", "fail", {"a": 7})
        self.assertEqual(str(cm.exception), "cannot divide 7 by zero")
        with self.assertRaises(dse.RemoteError) as cm:
            self.c1.rpc("py-calc", "add", {"a": 1})  # a KeyError in the handler
        self.assertIn("b", str(cm.exception))
        with self.assertRaises(dse.NoSuchMethod):
            self.c1.rpc("py-calc", "mul")

        # `dse rpc` from another node.
        code, out, err = run_cli("--addr", self.cluster.agents[2].http, "rpc", "py-calc", "add", "--args", '{"a":40,"b":2}')
        self.assertEqual((code, out.strip()), (0, "42"), err)
        code, out, err = run_cli("--addr", self.cluster.agents[0].http, "rpc", "py-calc", "fail", "--args", '{"a":1}')
        self.assertEqual(code, 1)
        self.assertIn("cannot divide 1 by zero", err)

        # local: only the addressed node's sessions.
        self.assertEqual(self.c2.rpc("py-calc", "add", {"a": 1, "b": 1}, local=True), 2)
        with self.assertRaises(dse.Unavailable):
            self.c1.rpc("py-calc", "add", {"a": 1, "b": 1}, local=True)

        srv.stop()
        self.assertTrue(srv.wait(10))
        wait_for("add unlisted", lambda: "add" not in self.endpoints(self.c3, "py-calc"))
        with self.assertRaises(dse.Unavailable):
            self.c3.rpc("py-calc", "add", {"a": 1, "b": 2})
        self.assertGreaterEqual(srv.calls, 6)

    def test_calls_spread_and_concurrency(self):
        self.cluster.create_service("py-spread")
        running, most = [0], [0]
        lock = threading.Lock()

        def slow(args):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.2)
            with lock:
                running[0] -= 1
            return args["i"]

        a = self.c1.serve("py-spread", {"slow": slow}, concurrency=2, block=False)
        b = self.c3.serve("py-spread", {"slow": slow}, concurrency=2, block=False)
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        # Calls through n2 go to n1 and n3 in turn, once n2 knows both.
        wait_for("calls reaching both", lambda: self.c2.rpc("py-spread", "slow", {"i": 0}) == 0 and a.calls > 0 and b.calls > 0)
        before = a.calls + b.calls
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, self.c2.rpc("py-spread", "slow", {"i": i}, timeout=10))) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, {i: i for i in range(12)})
        self.assertEqual(a.calls + b.calls - before, 12)
        self.assertLessEqual(most[0], 4)  # two sessions of concurrency 2

    def test_blocking_serve_stops(self):
        self.cluster.create_service("py-block")
        holder = {}

        def stop(args):
            holder["srv"].stop()
            return "bye"

        result = {}

        def caller():
            wait_for("the serve attached", lambda: "srv" in holder and holder["srv"].attached.is_set())
            wait_for("stop listed", lambda: "stop" in self.endpoints(self.c1, "py-block"))
            try:
                result["v"] = self.c1.rpc("py-block", "stop")
            except dse.Error as e:
                result["v"] = e

        t = threading.Thread(target=caller)
        t.start()
        srv = dse.Server(self.c2, "py-block", {"stop": stop})
        holder["srv"] = srv
        srv.run()  # returns once its handler stopped it
        t.join(10)
        # Stopping detaches at once: the call in flight, its own, is lost
        # (it ran, but its reply has no session to go to).
        self.assertIsInstance(result.get("v"), dse.Unavailable)
        self.assertIn("went away", str(result["v"]))
        self.assertTrue(srv.stopped)

    def test_client_stop_ends_its_watches_and_serves(self):
        self.cluster.create_service("py-stop")
        c = self.cluster.client(1)
        c.publish("py-stop", "t", [[1]])
        w = c.watch("py-stop", "t")
        self.assertTrue(next(w).snapshot)
        srv = c.serve("py-stop", {"x": lambda a: 1}, block=False)
        c.stop()
        with self.assertRaises(StopIteration):
            next(w)
        self.assertTrue(srv.wait(10))
        self.assertTrue(srv.stopped)
        self.assertIsNone(srv.error)

    def test_refusals(self):
        self.cluster.create_service("py-refuse")
        with self.assertRaises(dse.NotFound):
            self.c1.serve("py-nope", {"add": add}, block=False)
        with self.assertRaises(dse.Invalid) as cm:
            self.c1.serve("py-refuse", {"ping": add}, block=False)
        self.assertIn("built into every service", str(cm.exception))
        with self.assertRaises(dse.Invalid):
            self.c1.serve("py-refuse", {"bad name": add}, block=False)
        for bad in [{}, {"add": 1}, [add]]:
            with self.assertRaises(TypeError):
                self.c1.serve("py-refuse", bad, block=False)
        with self.assertRaises(ValueError):
            self.c1.serve("py-refuse", {"add": add}, concurrency=0, block=False)
        # A datasource's (or any non-external) service cannot be served.
        ds = "py-ds-refuse"
        self.c1.add_datasource(ds, "http", {"url": "http://127.0.0.1:1/x", "columns": ["a"], "poll_interval": "1h"})
        self.addCleanup(self.c1.delete_datasource, ds)
        wait_for("the datasource's service", lambda: any(s["service_id"] == ds for s in self.c1.services()))
        with self.assertRaises(dse.Invalid) as cm:
            self.c1.serve(ds, {"add": add}, block=False)
        self.assertIn("only external services", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
