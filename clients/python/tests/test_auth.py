"""Tokens: Unauthorized and Forbidden, and serving needs a write token."""

import unittest

from cluster import Agent, wait_for

import dse

ADMIN = "py-admin-token-0123456789"


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("a1", ["--bootstrap", "--bootstrap-token", ADMIN])

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def test_roles(self):
        admin = dse.Client(self.agent.http, token=ADMIN)
        wait_for("the node ready, with its admin token", lambda: admin.status()["leader"] != "" and admin.tokens())
        admin.create_service("py-auth")
        read = dse.Client(self.agent.http, token=admin.create_token("read", "r")["token"])
        write = dse.Client(self.agent.http, token=admin.create_token("write", "w")["token"])

        with self.assertRaises(dse.Unauthorized):
            dse.Client(self.agent.http).services()
        with self.assertRaises(dse.Unauthorized):
            dse.Client(self.agent.http, token="not-a-token").services()
        self.assertEqual([s["service_id"] for s in read.services()], ["py-auth"])
        with self.assertRaises(dse.Forbidden):
            read.publish("py-auth", "t", [[1]])
        with self.assertRaises(dse.Forbidden):
            read.serve("py-auth", {"add": lambda a: 1}, block=False)
        with self.assertRaises(dse.Forbidden):
            write.create_token("read")

        self.assertEqual(write.publish("py-auth", "t", [[1]]), 1)
        self.assertEqual(read.get("py-auth", "t"), (1, [[1]]))
        srv = write.serve("py-auth", {"add": lambda a: a["a"] + a["b"]}, block=False)
        self.addCleanup(srv.stop)
        self.assertEqual(write.rpc("py-auth", "add", {"a": 2, "b": 2}), 4)
        with self.assertRaises(dse.Forbidden):
            read.rpc("py-auth", "add", {"a": 2, "b": 2})

        # A serve lasts as long as its token.
        tok = admin.create_token("write", "short-lived")
        doomed = dse.Client(self.agent.http, token=tok["token"]).serve("py-auth", {"mul": lambda a: 0}, block=False)
        admin.revoke_token(tok["id"])
        wait_for("the serve ended", lambda: doomed.stopped, timeout=10)
        self.assertIsInstance(doomed.error, dse.Unauthorized)
        self.assertIn("revoked", str(doomed.error))


if __name__ == "__main__":
    unittest.main()
