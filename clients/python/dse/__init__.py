"""dse: a Python client of the dse distributed services engine.

Talks to a cluster's HTTP API with the standard library only::

    import dse

    c = dse.Client("127.0.0.1:7401")
    c.create_service("inventory")
    seq = c.publish("inventory", "hosts", [["web1", "up"], ["db1", "up"]])
    seq, rows = c.get("inventory", "hosts")
    for ev in c.watch("inventory", "hosts"):   # a snapshot, then each change
        print(ev)
    c.rpc("inventory", "ping", {"a": 1})       # {'a': 1}
    c.serve("calc", {"add": lambda a: a["a"] + a["b"]})   # until Ctrl-C

``dse.DataService`` mirrors Congress's congress.dse2.data_service.DataService.
Errors are ``dse.Error`` subclasses named after the API's codes.
"""

from .client import DEFAULT_ADDR, Client
from .data_service import DataService
from .errors import (
    Error,
    Exists,
    Expired,
    Forbidden,
    Invalid,
    NoSuchMethod,
    NotFound,
    Quorum,
    RemoteError,
    Unauthorized,
    Unavailable,
    error_from,
)
from .serve import Server
from .watch import Event, Watch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ADDR",
    "Client",
    "DataService",
    "Error",
    "Event",
    "Exists",
    "Expired",
    "Forbidden",
    "Invalid",
    "NoSuchMethod",
    "NotFound",
    "Quorum",
    "RemoteError",
    "Server",
    "Unauthorized",
    "Unavailable",
    "Watch",
    "error_from",
]
