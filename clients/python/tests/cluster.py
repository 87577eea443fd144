"""Real `dse agent` processes for the tests: a shared 3-node cluster, and
fresh ones where a test needs its own.

The binary is $DSE_BIN, or built from the repository once per run.
"""

import atexit
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import dse  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
_STARTED = re.compile(r"^dse agent (\S+): cluster (\S+), http (\S+)$")
_tmp = tempfile.mkdtemp(prefix="dse-py-")
atexit.register(shutil.rmtree, _tmp, True)
_bin = None


def dse_bin():
    """The dse binary: $DSE_BIN, or one built from the repository."""
    global _bin
    if _bin is None:
        _bin = os.environ.get("DSE_BIN")
        if not _bin:
            _bin = os.path.join(_tmp, "dse")
            subprocess.run(["go", "build", "-o", _bin, "."], cwd=REPO, check=True)
    return _bin


def free_addr():
    """A free loopback port below the kernel's ephemeral range, which an
    agent finds free again when it restarts (a port bound and released at
    random can be taken meanwhile by any outbound connection)."""
    import socket

    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(1000):
        port = random.randrange(10000, max(low, 10001))
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return "127.0.0.1:%d" % port
    raise RuntimeError("no free port")


def run_cli(*args, timeout=60):
    """Run the dse CLI: (exit code, stdout, stderr)."""
    p = subprocess.run([dse_bin(), *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def wait_for(what, cond, timeout=30.0, every=0.05):
    """Poll cond() until it is true; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except dse.Error as e:
            last = e
        time.sleep(every)
    raise AssertionError("timed out after %.0fs waiting for %s (last error: %s)" % (timeout, what, last))


class Agent:
    """One `dse agent` process."""

    def __init__(self, node_id, extra=()):
        self.id = node_id
        self.dir = tempfile.mkdtemp(prefix=node_id + "-", dir=_tmp)
        self.bind = free_addr()
        self.http = free_addr()
        self.log = os.path.join(self.dir, "agent.log")
        self.proc = None
        self.start(["--id", node_id, *extra])

    def start(self, extra=()):
        args = [dse_bin(), "agent", "--data-dir", os.path.join(self.dir, "data"), "--bind", self.bind, "--http", self.http, "--resub-timeout", "500ms", *extra]
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=logf, text=True)
        logf.close()
        started = threading.Event()
        proc = self.proc

        def read():
            with proc.stdout:
                for line in proc.stdout:
                    if _STARTED.match(line.strip()):
                        started.set()
            started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(60) or self.proc.poll() is not None:
            raise RuntimeError("agent %s did not start; log %s:\n%s" % (self.id, self.log, self.tail()))

    def tail(self, n=30):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def kill(self):
        """SIGKILL: no goodbye."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self):
        """Start again on the same data dir and ports."""
        self.kill()
        self.start()


class Cluster:
    """n agents: the first bootstraps, the others join it."""

    def __init__(self, n=3, bootstrap_extra=(), join_extra=()):
        self.agents = [Agent("n1", ["--bootstrap", *bootstrap_extra])]
        try:
            for i in range(2, n + 1):
                self.agents.append(Agent("n%d" % i, ["--join", self.agents[0].http, *join_extra]))
            if not bootstrap_extra:
                self.wait_healthy()
        except BaseException:
            self.close()
            raise

    @property
    def addrs(self):
        return [a.http for a in self.agents]

    def client(self, i=0, **kw):
        return dse.Client(self.agents[i].http, **kw)

    def wait_healthy(self, timeout=40):
        """Every member up and reachable, as every node sees it."""
        n = len(self.agents)

        def healthy():
            for a in self.agents:
                ms = dse.Client(a.http, timeout=3).members()
                if len(ms) != n or not all(m["reachable"] and m["state"] in ("leader", "follower") for m in ms):
                    return False
            return True

        wait_for("a healthy cluster", healthy, timeout=timeout, every=0.1)

    def create_service(self, service_id, i=0):
        """Create an external service through node i, and wait until every
        node knows it (a node reads its own registry copy: one that has not
        applied the create yet answers not found)."""
        info = self.client(i).create_service(service_id)
        self.wait_known(service_id)
        return info

    def wait_known(self, service_id):
        def known():
            for a in self.agents:
                if not any(s["service_id"] == service_id for s in dse.Client(a.http, timeout=3).services()):
                    return False
            return True

        wait_for("every node knows %s" % service_id, known)

    def close(self):
        for a in self.agents:
            a.stop()


_shared = None


def shared():
    """The 3-node cluster the tests share (each uses service names of its
    own)."""
    global _shared
    if _shared is None:
        _shared = Cluster(3)
        atexit.register(_shared.close)
    return _shared
