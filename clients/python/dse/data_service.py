"""DataService: Congress's congress.dse2.data_service.DataService over dse.

A Congress datasource driver or policy engine subclasses it as it did
Congress's: the same method names and arguments, with a :class:`dse.Client`
underneath instead of a DseNode. The service is an external service of the
cluster (``dse services create``): its tables are set by publish, its RPC
endpoints are served from this process while it runs.
"""

import inspect
import logging
import threading
import time

from .client import Client, rows_value
from .errors import Error, Exists, NotFound

log = logging.getLogger("dse")


def _tuples(rows):
    return [tuple(r) for r in rows]


class DataService:
    """A unit of data and business logic on a dse cluster.

    ``service_id`` names it; ``client`` (default: a Client of the local
    node) is how it reaches the cluster; ``concurrency`` bounds the RPC calls
    it handles at once.
    """

    def __init__(self, service_id, client=None, concurrency=4):
        self.service_id = service_id
        self.client = client if client is not None else Client()
        self.concurrency = concurrency
        self._endpoints = []
        self._subscriptions = {}  # (publisher, table) -> Watch
        self._threads = []
        self._server = None
        self._status = "created"
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------

    @property
    def status(self):
        """created, running or stopped."""
        return self._status

    def start(self):
        """Start the service: create it in the cluster if it does not exist
        yet, and serve its RPC endpoints (add_rpc_endpoint, and get_snapshot
        when overridden) until stop(). Returns once they are served."""
        if self._status == "running":
            return
        try:
            self.client.create_service(self.service_id)
        except Exists:
            pass  # created before (a restart): serving it checks its kind
        actions = self._actions()
        if actions:
            self._server = self.client.serve(self.service_id, actions, concurrency=self.concurrency, block=False)
        self._status = "running"

    def stop(self):
        """Stop serving RPCs and end the subscriptions. The service and its
        tables stay in the cluster (Client.delete_service removes them)."""
        with self._lock:
            subs, self._subscriptions = self._subscriptions, {}
        for w in subs.values():
            w.close()
        if self._server is not None:
            self._server.stop()
        self._status = "stopped"

    def wait(self, timeout=None):
        """Wait until the work stop() ended has finished (the subscription
        threads and the RPC server)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        left = lambda: None if deadline is None else max(0.0, deadline - time.monotonic())
        for t in list(self._threads):
            t.join(left())
        if self._server is not None:
            self._server.wait(left())

    # -- RPC --------------------------------------------------------------

    def add_rpc_endpoint(self, endpt):
        """Expose an endpoint's actions: an object's public methods, called
        as oslo.messaging calls them, ``method(context, **args)``; or a dict
        of action name -> callable, called as ``fn(args)``. Later endpoints
        shadow earlier ones of the same name. Call it before start()."""
        self._endpoints.append(endpt)

    def rpc_endpoints(self):
        """The endpoints added with add_rpc_endpoint."""
        return list(self._endpoints)

    def _actions(self):
        actions = {}
        for ep in self._endpoints:
            if isinstance(ep, dict):
                actions.update(ep)
                continue
            for name, fn in inspect.getmembers(ep, callable):
                if not name.startswith("_"):
                    actions[name] = self._oslo_call(name, fn)
        if type(self).get_snapshot is not DataService.get_snapshot:
            actions["get_snapshot"] = lambda args: rows_value(self.get_snapshot(args.get("table")), "get_snapshot's rows")
        return actions

    def _oslo_call(self, name, fn):
        def call(args):
            context = {"service": self.service_id, "action": name}
            return fn(context, **args)

        return call

    def rpc(self, service, action, kwargs=None, timeout=None, local=False, retry=None):
        """Call another service's RPC action (Congress's rpc)."""
        return self.client.rpc(service, action, kwargs, timeout=timeout, retry=retry, local=local)

    # -- publishing -------------------------------------------------------

    def publish(self, table, data, use_snapshot=True):
        """Set one of the service's tables to data (rows: tuples or lists of
        scalars); subscribers get the change, or the whole table with
        use_snapshot. Returns the seqnum."""
        return self.client.publish(self.service_id, table, data, snapshot=use_snapshot)

    def get_snapshot(self, table):
        """The current rows of one of the service's tables, as tuples.
        Override it to compute them (it is then served as the service's
        get_snapshot action)."""
        return _tuples(self.client.get(self.service_id, table)[1])

    def get_last_published_data_with_seqnum(self, table):
        """(seqnum, rows as tuples) of one of the service's tables."""
        seq, rows = self.client.get(self.service_id, table)
        return seq, _tuples(rows)

    # -- subscribing ------------------------------------------------------

    def subscribe(self, service, table):
        """Subscribe to another service's table: receive_data_sequenced (and
        so receive_data) is called for its snapshot, then each change, in
        order, from a thread of the subscription's own."""
        key = (service, table)
        with self._lock:
            if key in self._subscriptions:
                return
            w = self.client.watch(service, table)
            self._subscriptions[key] = w
        t = threading.Thread(target=self._follow, args=(w,), name="dse-subscription-%s-%s" % key, daemon=True)
        self._threads.append(t)
        t.start()

    def unsubscribe(self, service, table):
        """End a subscription (no error if there is none)."""
        with self._lock:
            w = self._subscriptions.pop((service, table), None)
        if w is not None:
            w.close()

    def _follow(self, w):
        try:
            for ev in w:
                if ev.snapshot:
                    data = _tuples(ev.rows)
                else:
                    data = [_tuples(ev.add), _tuples(ev.delete)]
                try:
                    self.receive_data_sequenced(w.service, w.table, data, ev.seqnum, is_snapshot=ev.snapshot, receipt_time=time.time())
                except Exception:
                    log.exception("%s: receive_data for %s/%s failed", self.service_id, w.service, w.table)
        except Error as e:
            log.error("%s: the subscription to %s/%s ended: %s", self.service_id, w.service, w.table, e)
            with self._lock:
                if self._subscriptions.get((w.service, w.table)) is w:
                    del self._subscriptions[(w.service, w.table)]

    def receive_data_sequenced(self, publisher, table, data, seqnum, is_snapshot=False, receipt_time=None):
        """Called for each publication of a subscribed table, in seqnum
        order: data is the rows (a snapshot) or [rows added, rows deleted].
        By default it calls receive_data."""
        self.receive_data(publisher, table, data, is_snapshot)

    def receive_data(self, publisher, table, data, is_snapshot=True):
        """Override to handle publications of subscribed tables."""

    def check_resub_all(self):
        """Nothing to do: a subscription catches up by itself (its watch
        reconnects and resumes without losing or repeating a change)."""

    def subscription_list(self):
        """The (service_id, table) pairs this service subscribes to."""
        with self._lock:
            return sorted(self._subscriptions)

    def subscriber_list(self):
        """Who subscribes to this service's tables, cluster-wide: dicts with
        subscriber, publisher and table."""
        return self.client.subscribers(self.service_id)

    # -- the registry -----------------------------------------------------

    @property
    def info(self):
        """The service's DataServiceInfo dict, as `dse services list` shows
        it (service_id, node_id, published_tables, subscribed_tables,
        rpc_endpoints_info)."""
        return self.client.service(self.service_id)

    def is_valid_service(self, service_id):
        """Whether the cluster has a service with that id."""
        try:
            self.client.service(service_id)
            return True
        except NotFound:
            return False

    # -- datasources ------------------------------------------------------

    def get_datasources(self, filter_secret=False):
        return self.client.datasources(show_secrets=not filter_secret)

    def get_datasource(self, datasource_id):
        return self.client.datasource(datasource_id)

    def get_drivers_info(self, *args):
        return self.client.drivers()

    def get_driver_info(self, driver):
        return self.client.driver(driver)

    def get_driver_schema(self, driver):
        return self.client.driver(driver).get("tables", [])
