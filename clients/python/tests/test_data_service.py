"""dse.DataService end to end: Congress's names, on a real cluster."""

import queue
import threading
import unittest

from cluster import run_cli, shared, wait_for

import dse


class Endpoints:
    """An oslo.messaging-style endpoint: public methods, (context, **args)."""

    def __init__(self, service):
        self.service = service

    def double(self, context, x):
        return 2 * x

    def whoami(self, context):
        return [context["service"], context["action"]]

    def _private(self, context):
        raise AssertionError("not an action")


class Inventory(dse.DataService):
    """A publisher that computes its snapshot (Congress drivers do)."""

    def __init__(self, client):
        super().__init__("py-inventory", client)
        self.add_rpc_endpoint(Endpoints(self))
        self.add_rpc_endpoint({"echo": lambda args: args})

    def get_snapshot(self, table):
        return {("computed", table)}


class Engine(dse.DataService):
    """A subscriber that records what it receives."""

    def __init__(self, client):
        super().__init__("py-engine", client)
        self.received = queue.Queue()
        self.sequenced = []
        self.lock = threading.Lock()

    def receive_data_sequenced(self, publisher, table, data, seqnum, is_snapshot=False, receipt_time=None):
        with self.lock:
            self.sequenced.append((seqnum, is_snapshot, receipt_time is not None))
        super().receive_data_sequenced(publisher, table, data, seqnum, is_snapshot, receipt_time)

    def receive_data(self, publisher, table, data, is_snapshot=True):
        self.received.put((publisher, table, data, is_snapshot))


class DataServiceTest(unittest.TestCase):
    def test_publish_subscribe_rpc(self):
        cluster = shared()
        inv = Inventory(cluster.client(0))
        eng = Engine(cluster.client(2))
        self.assertEqual(inv.status, "created")
        inv.start()
        self.addCleanup(inv.stop)
        eng.start()
        self.addCleanup(eng.stop)
        self.assertEqual(inv.status, "running")
        cluster.wait_known("py-inventory")
        cluster.wait_known("py-engine")

        self.assertEqual(inv.publish("hosts", {("web1", "up"), ("db1", "up")}), 1)
        eng.subscribe("py-inventory", "hosts")
        self.assertEqual(eng.subscription_list(), [("py-inventory", "hosts")])
        pub, table, data, snap = eng.received.get(timeout=20)
        self.assertEqual((pub, table, snap), ("py-inventory", "hosts", True))
        self.assertEqual(sorted(data), [("db1", "up"), ("web1", "up")])

        self.assertEqual(inv.publish("hosts", [("web1", "up"), ("db1", "down")], use_snapshot=False), 2)
        pub, table, data, snap = eng.received.get(timeout=20)
        self.assertFalse(snap)
        self.assertEqual(data, [[("db1", "down")], [("db1", "up")]])  # [added, deleted]
        with eng.lock:
            self.assertEqual(eng.sequenced, [(1, True, True), (2, False, True)])
        self.assertEqual(inv.get_last_published_data_with_seqnum("hosts"), (2, [("db1", "down"), ("web1", "up")]))

        # RPC between the two, Congress's rpc signature.
        self.assertEqual(eng.rpc("py-inventory", "double", {"x": 21}), 42)
        self.assertEqual(eng.rpc("py-inventory", "whoami"), ["py-inventory", "whoami"])
        self.assertEqual(eng.rpc("py-inventory", "echo", {"k": "v"}, timeout=5, retry=1), {"k": "v"})
        self.assertEqual(eng.rpc("py-inventory", "get_snapshot", {"table": "hosts"}), [["computed", "hosts"]])
        with self.assertRaises(dse.NoSuchMethod):
            eng.rpc("py-inventory", "_private")
        code, out, err = run_cli("--addr", cluster.agents[1].http, "rpc", "py-inventory", "double", "--args", '{"x":5}')
        self.assertEqual((code, out.strip()), (0, "10"), err)

        info = inv.info
        self.assertEqual(info["service_id"], "py-inventory")
        self.assertEqual(info["published_tables"], ["hosts"])
        for action in ["double", "echo", "get_snapshot", "whoami", "ping", "publish"]:
            self.assertIn(action, info["rpc_endpoints_info"])
        subs = inv.subscriber_list()
        self.assertEqual([(s["publisher"], s["table"]) for s in subs], [("py-inventory", "hosts")])
        self.assertTrue(inv.is_valid_service("py-engine"))
        self.assertFalse(inv.is_valid_service("py-nope"))
        self.assertIn("file", [d["id"] for d in inv.get_drivers_info()])
        self.assertTrue(inv.get_driver_schema("file") is not None)
        self.assertEqual(len(inv.rpc_endpoints()), 2)

        # Restarted (a new process, say): the service exists, start goes on.
        inv.stop()
        self.assertEqual(inv.status, "stopped")
        inv.wait(10)
        with self.assertRaises(dse.Unavailable):
            eng.rpc("py-inventory", "double", {"x": 1})
        again = Inventory(cluster.client(1))
        again.start()
        self.addCleanup(again.stop)
        # Attached through another node than eng's: the registry reaches
        # eng's a moment later, and until then the action is unavailable,
        # which a retry rides out.
        self.assertEqual(eng.rpc("py-inventory", "double", {"x": 4}, retry=5), 8)

        eng.unsubscribe("py-inventory", "hosts")
        eng.unsubscribe("py-inventory", "hosts")  # no error, as Congress's
        self.assertEqual(eng.subscription_list(), [])
        eng.stop()
        eng.wait(10)
        wait_for("the engine's subscription gone", lambda: again.subscriber_list() == [])

    def test_start_refused(self):
        cluster = shared()
        name = "py-ds-svc"
        cluster.client(0).add_datasource(name, "http", {"url": "http://127.0.0.1:1/x", "columns": ["a"], "poll_interval": "1h"})
        self.addCleanup(cluster.client(0).delete_datasource, name)
        wait_for("the datasource's service", lambda: any(s["service_id"] == name for s in cluster.client(0).services()))
        svc = dse.DataService(name, cluster.client(0))
        svc.add_rpc_endpoint({"x": lambda a: 1})
        with self.assertRaises(dse.Invalid):
            svc.start()
        self.assertEqual(svc.status, "created")


if __name__ == "__main__":
    unittest.main()
