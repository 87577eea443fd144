// Package dsetest starts real dse clusters inside a test: real loopback TCP
// on port 0, real Raft storage in t.TempDir(), fast timeouts. A user's own
// tests use it as dse's do: New or NewWith (each node's config and
// collaborators adjustable, its Faults among them, whose rules may change
// while the cluster runs), AddNode, Stop and Restart, WaitLeader, WaitRows
// (a subscriber holding given rows) and WaitFor.
package dsetest
