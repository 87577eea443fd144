package dse

import "dse.dev/dse/dse/errdefs"

// The errors the node returns (package errdefs). Check them with errors.Is;
// they survive being forwarded between nodes and through the HTTP API.
var (
	// ErrNoLeader is returned when the cluster has no known leader.
	ErrNoLeader = errdefs.ErrNoLeader
	// ErrNotLeader is returned by a leader-only operation run elsewhere.
	ErrNotLeader = errdefs.ErrNotLeader
	// ErrMemberNotFound is returned for an id that is not a cluster member.
	ErrMemberNotFound = errdefs.ErrMemberNotFound
	// ErrQuorum is returned for a removal that would leave the cluster unable
	// to elect a leader.
	ErrQuorum = errdefs.ErrQuorum
	// ErrServiceNotFound is returned for an unknown service id.
	ErrServiceNotFound = errdefs.ErrServiceNotFound
	// ErrServiceExists is returned when a service id is already taken.
	ErrServiceExists = errdefs.ErrServiceExists
	// ErrNoSuchMethod is returned by an RPC to an action the service lacks.
	ErrNoSuchMethod = errdefs.ErrNoSuchMethod
	// ErrUnavailable is returned when a node or service cannot be reached in
	// time.
	ErrUnavailable = errdefs.ErrUnavailable
	// ErrFenced is returned to a publisher that no longer owns its service.
	ErrFenced = errdefs.ErrFenced
	// ErrInvalid is returned for malformed input; the message names what.
	ErrInvalid = errdefs.ErrInvalid
	// ErrNotFound is returned for a missing table, datasource or token.
	ErrNotFound = errdefs.ErrNotFound
	// ErrExists is returned when a name is taken.
	ErrExists = errdefs.ErrExists
	// ErrClosed is returned after the node has shut down.
	ErrClosed = errdefs.ErrClosed
	// ErrUnauthorized is returned for a request without a valid token.
	ErrUnauthorized = errdefs.ErrUnauthorized
	// ErrForbidden is returned for a token whose role is too low.
	ErrForbidden = errdefs.ErrForbidden
	// ErrRemote is wrapped by the error an RPC returns when the remote
	// method itself failed; the message is the method's.
	ErrRemote = errdefs.ErrRemote
)

// CodedError is an error with a stable code, as carried between nodes and to
// HTTP clients. errors.Is matches it against the sentinel of its code.
type CodedError = errdefs.CodedError

// ErrorCode returns the stable code of err's sentinel, or "internal".
func ErrorCode(err error) string { return errdefs.Code(err) }

// FromCode rebuilds an error from its code and message.
func FromCode(code, msg string) error { return errdefs.FromCode(code, msg) }
