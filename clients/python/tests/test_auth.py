"""A secured node (HTTPS, tokens): the client's ca and token; Unauthorized
and Forbidden; serving needs a write token, `dse serve` honours --ca and
--token."""

import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from cluster import Agent, dse_bin, run_cli, wait_for

import dse

ADMIN = "py-admin-token-0123456789"


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="dse-py-pki-")
        for args in (["tls", "init", "--dir", cls.pki], ["tls", "cert", "--dir", cls.pki, "--id", "a1"]):
            code, out, err = run_cli(*args)
            if code != 0:
                raise RuntimeError("dse %s: %s" % (" ".join(args), err))
        cls.ca = os.path.join(cls.pki, "ca.pem")
        tls = ["--tls-cert", os.path.join(cls.pki, "a1.pem"), "--tls-key", os.path.join(cls.pki, "a1-key.pem"), "--tls-ca", cls.ca]
        cls.agent = Agent("a1", ["--bootstrap", "--bootstrap-token", ADMIN, *tls])

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        shutil.rmtree(cls.pki, True)

    def client(self, token=None):
        return dse.Client(self.agent.http, token=token, ca=self.ca)

    def test_roles(self):
        with self.assertRaises(dse.Error) as cm:
            dse.Client(self.agent.http, token=ADMIN).status()  # plain HTTP to an HTTPS node
        self.assertIn("HTTPS", str(cm.exception))
        with self.assertRaises(dse.Unavailable):
            dse.Client("https://" + self.agent.http, token=ADMIN).status()  # not the cluster's CA
        admin = self.client(ADMIN)
        wait_for("the node ready, with its admin token", lambda: admin.status()["leader"] != "" and admin.tokens())
        admin.create_service("py-auth")
        read = self.client(admin.create_token("read", "r")["token"])
        write = self.client(admin.create_token("write", "w")["token"])

        with self.assertRaises(dse.Unauthorized):
            self.client().services()
        with self.assertRaises(dse.Unauthorized):
            self.client("not-a-token").services()
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
        doomed = self.client(tok["token"]).serve("py-auth", {"mul": lambda a: 0}, block=False)
        admin.revoke_token(tok["id"])
        wait_for("the serve ended", lambda: doomed.stopped, timeout=10)
        self.assertIsInstance(doomed.error, dse.Unauthorized)
        self.assertIn("revoked", str(doomed.error))

        # dse serve over HTTPS with a token, reached from Python.
        cmd = [dse_bin(), "--addr", self.agent.http, "--ca", self.ca, "--token", write.token, "serve", "py-auth", "div", "--", "python3", "-c", "import json,sys; a=json.load(sys.stdin); print(a['a'] // a['b'])"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.kill)
        self.assertIn("serving py-auth: div", proc.stdout.readline())
        self.assertEqual(write.rpc("py-auth", "div", {"a": 7, "b": 2}), 3)
        with self.assertRaises(dse.RemoteError) as cm:
            write.rpc("py-auth", "div", {"a": 7, "b": 0})
        self.assertIn("ZeroDivisionError", str(cm.exception))
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(15), 0)
        proc.stdout.close()
        proc.stderr.close()
        code, out, err = run_cli("--addr", self.agent.http, "--ca", self.ca, "serve", "py-auth", "div", "--", "true")
        self.assertEqual(code, 1)
        self.assertIn("unauthorized", err)


if __name__ == "__main__":
    unittest.main()
