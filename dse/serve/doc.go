// Package serve holds a node's sessions of processes that serve RPC
// actions from outside Go (`dse serve`, the Python client): the calls a
// session has in flight, a slot each up to its concurrency, the least
// busy session picked for each call, the outcome handed back to the
// caller, and the comparison with the registry's attachments that finds
// stale ones.
//
// It owns no registry state: package dse validates an attach, records it
// in the registry (fsm.ServiceAttach) and routes calls to the nodes that
// hold sessions; this package is what one node does with them. It
// imports only dse/errdefs, so its rules are tested without a cluster.
//
// One mutex (Sessions.mu) guards every session of a node; it is never
// held while sending to a caller that could block (each call's reply
// channel has room for its one outcome, and each session's request
// channel a line per slot).
package serve
