package errdefs

import (
	"errors"

	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

// The errors dse returns. Check them with errors.Is; they survive being
// forwarded between nodes and through the HTTP API. Package dse re-exports
// each under the same name.
var (
	// ErrNoLeader is returned when the cluster has no known leader.
	ErrNoLeader = errors.New("no cluster leader")
	// ErrNotLeader is returned by a leader-only operation run elsewhere.
	ErrNotLeader = errors.New("not the leader")
	// ErrMemberNotFound is returned for an id that is not a cluster member.
	ErrMemberNotFound = errors.New("member not found")
	// ErrQuorum is returned for a removal that would leave the cluster unable
	// to elect a leader.
	ErrQuorum = errors.New("would lose quorum")
	// ErrServiceNotFound is returned for an unknown service id.
	ErrServiceNotFound = errors.New("service not found")
	// ErrServiceExists is returned when a service id is already taken.
	ErrServiceExists = errors.New("service already exists")
	// ErrNoSuchMethod is returned by an RPC to an action the service lacks.
	ErrNoSuchMethod = errors.New("no such method")
	// ErrUnavailable is returned when a node or service cannot be reached in
	// time.
	ErrUnavailable = errors.New("unavailable")
	// ErrFenced is returned to a publisher that no longer owns its service.
	ErrFenced = errors.New("stale incarnation")
	// ErrInvalid is returned for malformed input; the message names what.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound is returned for a missing table, datasource or token.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned when a name is taken.
	ErrExists = errors.New("already exists")
	// ErrClosed is returned after the node has shut down.
	ErrClosed = errors.New("node closed")
	// ErrUnauthorized is returned for a request without a valid token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden is returned for a token whose role is too low.
	ErrForbidden = errors.New("forbidden")
	// ErrRemote is wrapped by the error an RPC returns when the remote
	// method itself failed; the message is the method's.
	ErrRemote = errors.New("remote error")
)

// errorCodes names each sentinel on the wire and in the HTTP API.
var errorCodes = map[string]error{
	"no_leader":         ErrNoLeader,
	"not_leader":        ErrNotLeader,
	"member_not_found":  ErrMemberNotFound,
	"quorum":            ErrQuorum,
	"service_not_found": ErrServiceNotFound,
	"service_exists":    ErrServiceExists,
	"no_such_method":    ErrNoSuchMethod,
	"unavailable":       ErrUnavailable,
	"fenced":            ErrFenced,
	"invalid":           ErrInvalid,
	"not_found":         ErrNotFound,
	"exists":            ErrExists,
	"closed":            ErrClosed,
	"unauthorized":      ErrUnauthorized,
	"forbidden":         ErrForbidden,
	"remote":            ErrRemote,
}

// fsmErrors maps the FSM's business errors to the node's.
var fsmErrors = []struct{ from, to error }{
	{fsm.ErrServiceNotFound, ErrServiceNotFound},
	{fsm.ErrServiceExists, ErrServiceExists},
	{fsm.ErrNodeNotFound, ErrMemberNotFound},
	{fsm.ErrFenced, ErrFenced},
	{fsm.ErrSeqnumTaken, ErrUnavailable},
	{fsm.ErrDatasourceNotFound, ErrNotFound},
	{fsm.ErrDatasourceExists, ErrExists},
	{fsm.ErrInvalid, ErrInvalid},
	{fsm.ErrTokenNotFound, ErrNotFound},
	{fsm.ErrAnswered, ErrUnavailable},
	{transport.ErrUnavailable, ErrUnavailable},
	{transport.ErrQueueFull, ErrUnavailable},
}

// CodedError is an error with a stable code, as carried between nodes and to
// HTTP clients. errors.Is matches it against the sentinel of its code.
type CodedError struct {
	Code string
	Msg  string
}

func (e *CodedError) Error() string { return e.Msg }

// Unwrap returns the sentinel the code names.
func (e *CodedError) Unwrap() error { return errorCodes[e.Code] }

// Code returns the stable code of err's sentinel, or "internal".
func Code(err error) string {
	var ce *CodedError
	if errors.As(err, &ce) && errorCodes[ce.Code] != nil {
		return ce.Code
	}
	for code, sentinel := range errorCodes {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	for _, m := range fsmErrors {
		if errors.Is(err, m.from) {
			return Code(m.to)
		}
	}
	return "internal"
}

// FromCode rebuilds an error from its code and message.
func FromCode(code, msg string) error {
	if code == "" {
		return nil
	}
	return &CodedError{Code: code, Msg: msg}
}
