"""Errors of the dse HTTP API, one class per family of Go sentinel errors.

Every failure the API reports carries a stable code (see ``errorCodes`` in
dse/errors.go); :func:`error_from` turns it into the matching class, so
callers write ``except dse.NotFound`` instead of comparing messages.
"""


class Error(Exception):
    """A dse error: ``code`` is the API's stable code, ``message`` its text.

    ``status`` is the HTTP status it came with (None for errors raised by
    the client itself, such as a node that cannot be reached).
    """

    def __init__(self, code, message, status=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self):
        return self.message

    def __repr__(self):
        return "%s(%r, %r)" % (type(self).__name__, self.code, self.message)


class NotFound(Error):
    """No such service, table, member, datasource, token or session."""


class NoSuchMethod(Error):
    """The service has no such RPC action."""


class Unavailable(Error):
    """The cluster, a node or a service could not answer in time (no leader,
    a node shutting down, an RPC that timed out or whose server went away).
    Trying again later may succeed."""


class RemoteError(Error):
    """The RPC method itself failed; the message is its own."""


class Unauthorized(Error):
    """No token, or a token the cluster does not know."""


class Forbidden(Error):
    """The token's role is too low for the request."""


class Invalid(Error):
    """Bad input: the message names what is wrong. Nothing was changed."""


class Exists(Error):
    """The id or name is taken."""


class Quorum(Error):
    """The change would leave the cluster unable to elect a leader."""


class Expired(Error):
    """A reply to an RPC call whose caller had stopped waiting."""


_CODES = {
    "not_found": NotFound,
    "service_not_found": NotFound,
    "member_not_found": NotFound,
    "no_such_method": NoSuchMethod,
    "unavailable": Unavailable,
    "no_leader": Unavailable,
    "not_leader": Unavailable,
    "closed": Unavailable,
    "fenced": Unavailable,
    "timeout": Unavailable,
    "remote": RemoteError,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "invalid": Invalid,
    "exists": Exists,
    "service_exists": Exists,
    "quorum": Quorum,
    "expired": Expired,
}


def error_from(code, message, status=None):
    """Return the exception for an API error code (Error for unknown ones)."""
    return _CODES.get(code, Error)(code, message, status)
