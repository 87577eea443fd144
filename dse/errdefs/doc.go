// Package errdefs owns the errors every dse package returns: the sentinels
// (ErrUnavailable, ErrFenced, ...), checked with errors.Is, and the stable
// code each has on the wire between nodes and in the HTTP API
// (CodedError, Code, FromCode), with the FSM's and the transport's own
// errors mapped onto them.
//
// It is a package of its own so that the engine's sub-packages (publish,
// subscribe, ...) and package dse, which re-exports every sentinel under the
// same name, share one set; it imports only fsm and transport, for their
// errors.
package errdefs
