// Package bench holds dse's load generators, run by `dse bench`: they start
// real nodes (real TCP on loopback, a Raft log with fsync) and measure the
// publish path, snapshots, registry writes and RPC end to end. The nodes run
// in one process, except in the snapshot benchmark, whose nodes are each a
// process of their own by default (RunSnapshotNode), so that each node's
// peak RSS is its own.
package bench
