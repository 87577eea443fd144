"""The Client's calls against a real 3-node cluster."""

import json
import os
import tempfile
import unittest

from cluster import shared, wait_for

import dse

INFO_KEYS = ["node_id", "published_tables", "rpc_endpoints_info", "service_id", "subscribed_tables"]


class ErrorsTest(unittest.TestCase):
    def test_codes_map_to_classes(self):
        for code, cls in {
            "not_found": dse.NotFound,
            "service_not_found": dse.NotFound,
            "member_not_found": dse.NotFound,
            "no_such_method": dse.NoSuchMethod,
            "unavailable": dse.Unavailable,
            "no_leader": dse.Unavailable,
            "closed": dse.Unavailable,
            "fenced": dse.Unavailable,
            "remote": dse.RemoteError,
            "unauthorized": dse.Unauthorized,
            "forbidden": dse.Forbidden,
            "invalid": dse.Invalid,
            "exists": dse.Exists,
            "service_exists": dse.Exists,
            "quorum": dse.Quorum,
            "expired": dse.Expired,
        }.items():
            e = dse.error_from(code, "msg", 400)
            self.assertIs(type(e), cls, code)
            self.assertIsInstance(e, dse.Error)
            self.assertEqual((e.code, e.message, e.status, str(e)), (code, "msg", 400, "msg"))
        self.assertIs(type(dse.error_from("internal", "x")), dse.Error)

    def test_bad_addresses(self):
        for bad in ["nohost", "host:port", "ftp://x:1", ""]:
            with self.assertRaises(ValueError, msg=bad):
                dse.Client(bad)
        with self.assertRaises(ValueError):
            dse.Client([])

    def test_no_node_answers(self):
        # Port 1 on loopback: nothing listens there.
        with self.assertRaises(dse.Unavailable) as cm:
            dse.Client(["127.0.0.1:1", "127.0.0.1:2"]).services()
        self.assertIn("127.0.0.1:1, 127.0.0.1:2", str(cm.exception))


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = shared()
        cls.c1, cls.c2, cls.c3 = (cls.cluster.client(i) for i in range(3))

    def test_cluster_calls(self):
        self.assertEqual(len(self.c1.members()), 3)
        st = self.c2.status()
        self.assertEqual(st["id"], "n2")
        self.assertTrue(st["leader"])
        # A list of addresses: the first that takes a connection answers.
        self.assertEqual(len(dse.Client(["127.0.0.1:1"] + self.cluster.addrs).members()), 3)

    def test_services(self):
        info = self.c1.create_service("py-svc")
        self.assertEqual(sorted(info), INFO_KEYS)
        self.assertEqual(info["node_id"], "n1")
        with self.assertRaises(dse.Exists):
            self.c2.create_service("py-svc")
        with self.assertRaises(dse.Invalid):
            self.c1.create_service("bad id")
        wait_for("the service on n3", lambda: any(s["service_id"] == "py-svc" for s in self.c3.services()))
        got = self.c3.service("py-svc")
        self.assertEqual(sorted(got), INFO_KEYS)
        self.assertIn("ping", got["rpc_endpoints_info"])
        self.c2.delete_service("py-svc")
        with self.assertRaises(dse.NotFound):
            self.c1.delete_service("py-svc")
        with self.assertRaises(dse.NotFound):
            self.c1.service("py-svc")

    def test_publish_get(self):
        self.cluster.create_service("py-tables")
        rows = [["web1", 1, 1.5, True, None], ("db1", 2, 1.0, False, "x")]
        self.assertEqual(self.c2.publish("py-tables", "hosts", rows), 1)
        # The same content: no change, the same seqnum.
        self.assertEqual(self.c3.publish("py-tables", "hosts", {("db1", 2, 1.0, False, "x"), ("web1", 1, 1.5, True, None)}), 1)
        seq, got = self.c3.get("py-tables", "hosts")
        self.assertEqual(seq, 1)
        self.assertEqual(got, [["db1", 2, 1.0, False, "x"], ["web1", 1, 1.5, True, None]])
        # 1, 1.0 and True are different values: three rows.
        self.assertEqual(self.c1.publish("py-tables", "kinds", [[1], [1.0], [True]]), 1)
        seq, got = self.c1.get("py-tables", "kinds")
        self.assertEqual(len(got), 3)
        self.assertEqual(sorted(json.dumps(r) for r in got), ["[1.0]", "[1]", "[true]"])
        self.assertEqual(self.c1.publish("py-tables", "hosts", [["web1"]], snapshot=True), 2)

        # Bad rows are refused, before or at the node, and change nothing.
        for bad in [[[{"a": 1}]], [["x", [1]]], "rows", [1, 2], [[float("nan")]], [[2**70]], {"a": 1}]:
            with self.assertRaises(dse.Invalid, msg=repr(bad)):
                self.c1.publish("py-tables", "hosts", bad)
        self.assertEqual(self.c2.get("py-tables", "hosts"), (2, [["web1"]]))
        with self.assertRaises(dse.NotFound):
            self.c1.publish("py-nope", "hosts", [[1]])
        with self.assertRaises(dse.NotFound):
            self.c1.get("py-nope", "hosts")

    def test_rpc(self):
        self.cluster.create_service("py-rpc")
        self.assertEqual(self.c3.rpc("py-rpc", "ping", {"a": 1, "b": [1, "x", None]}), {"a": 1, "b": [1, "x", None]})
        self.assertEqual(self.c3.rpc("py-rpc", "ping"), {})
        self.assertEqual(self.c2.rpc("py-rpc", "ping", {"a": 1}, timeout=2, retry=1, idempotent=True), {"a": 1})
        with self.assertRaises(dse.NotFound):
            self.c2.rpc("py-nope", "ping")
        with self.assertRaises(dse.NoSuchMethod):
            self.c2.rpc("py-rpc", "frob")
        with self.assertRaises(dse.RemoteError) as cm:
            self.c2.rpc("py-rpc", "get_snapshot")
        self.assertIn('argument "table"', str(cm.exception))
        self.assertEqual(self.c1.rpc("py-rpc", "ping", {"a": 2}, local=True), {"a": 2})
        for kw in [{"args": [1]}, {"timeout": 0}, {"timeout": -1}, {"retry": -1}, {"args": {"x": object()}}]:
            with self.assertRaises(dse.Invalid, msg=repr(kw)):
                self.c1.rpc("py-rpc", "ping", **kw)

    def test_subscribers(self):
        self.cluster.create_service("py-subs")
        self.assertEqual(self.c2.subscribers("py-subs"), [])
        w = self.c3.watch("py-subs", "t")
        self.c1.publish("py-subs", "t", [[1]])
        self.assertTrue(next(w).snapshot)
        # Reads are local: n2's registry may apply the watch's subscribe
        # after n3 delivered the snapshot.
        wait_for("n2 listing the watch's subscription", lambda: len(self.c2.subscribers("py-subs")) == 1)
        subs = self.c2.subscribers("py-subs")
        self.assertEqual(len(subs), 1)
        self.assertEqual((subs[0]["publisher"], subs[0]["table"]), ("py-subs", "t"))
        self.assertTrue(subs[0]["subscriber"].startswith("watch."))
        w.close()
        with self.assertRaises(StopIteration):
            next(w)
        wait_for("the watch's subscriber gone", lambda: self.c2.subscribers("py-subs") == [])
        with self.assertRaises(dse.NotFound):
            self.c2.subscribers("py-nope")

    def test_datasources(self):
        ids = [d["id"] for d in self.c1.drivers()]
        self.assertIn("file", ids)
        self.assertIn("http", ids)
        self.assertIn("tables", self.c1.driver("file"))
        with self.assertRaises(dse.NotFound):
            self.c1.driver("nope")
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"hosts": [["web1", "up"]]}, f)
        self.addCleanup(os.unlink, path)
        ds = self.c1.add_datasource("py-files", "file", {"path": path, "poll_interval": "100ms"}, description="test")
        self.assertEqual(sorted(ds), ["config", "description", "driver", "enabled", "id", "name", "type"])
        with self.assertRaises(dse.Exists):
            self.c2.add_datasource("py-files", "file", {"path": path})
        with self.assertRaises(dse.Invalid):
            self.c2.add_datasource("py-bad", "nope")
        self.assertEqual(self.c2.datasource("py-files")["id"], ds["id"])
        self.assertIn("py-files", [d["name"] for d in self.c3.datasources()])
        wait_for("the file's table", lambda: self.c3.get("py-files", "hosts")[1] == [["web1", "up"]])
        wait_for("the datasource healthy", lambda: self.c2.datasource_status("py-files")["healthy"])
        self.assertFalse(self.c1.update_datasource("py-files", enabled=False)["enabled"])
        with self.assertRaises(dse.Invalid):
            self.c1.update_datasource("py-files")
        self.c1.delete_datasource("py-files")
        with self.assertRaises(dse.NotFound):
            self.c1.datasource("py-files")


if __name__ == "__main__":
    unittest.main()
