// Package dse is the distributed services engine: a node of a dse cluster.
//
// A Node owns one cluster port (package transport) on which it runs
// hashicorp/raft, with raft-boltdb as log and stable store and a file snapshot
// store under its data dir, and the replicated registry (package fsm). Every
// node reads the registry from its own FSM copy; writes go to the leader,
// forwarded over the cluster port by followers (leaderDo), and return once
// the local FSM has applied them, so a client reads its own writes on any
// node.
//
// Membership: Join (any member forwards to the leader; a member with the same
// id or address is replaced, as rqlite does), Remove (refused when the live
// voters left could not elect, unless forced), Leave, Promote and
// TransferLeadership. Liveness: the leader turns Raft's own heartbeat
// observations into registry entries (down after Config.LivenessGrace, up
// again when heard from), so every node shows the same reachability and
// services can fail over.
//
// Sub-packages: api (the HTTP API and the Go client the CLI uses).
package dse
