// Package cluster owns a node's membership in the Raft cluster: hashicorp/raft
// with its log store (package raftlog) and snapshots under the data dir, the
// replicated registry it applies (package fsm), and every way the node
// changes that registry.
//
// Writes go to the leader: a follower forwards each command over the
// cluster port (a wire.LeaderOp frame) under an id that makes a resend
// harmless (fsm.Once), and resends whenever the outcome is unknown; a write
// returns once this node's FSM has applied it, so a client reads its own
// writes on any node. Concurrent registry writes of a node go as one
// fsm.Batch entry (the registry's group commit, registry.go); a publish
// entry's seqnums are asked for through Sequence, which the leader answers
// from its own FSM without a round trip through the wire form. One
// function, applyLocal, submits every entry to the local Raft.
//
// Membership: Join (any member forwards to the leader; a member with the same
// id or address is replaced, as rqlite does), Remove (refused when the live
// voters left could not elect, unless forced), Leave, Promote and
// TransferLeadership. Liveness: the leader turns Raft's own heartbeat
// observations into registry entries (down after the liveness grace, up
// again when heard from), so every node shows the same reachability and a
// service owned by a dead node fails over to a standby instance.
//
// It knows nothing of services, tables or publications: the engine above
// (package dse) asks it to write, and reads the registry it keeps.
package cluster
