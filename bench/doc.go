// Package bench holds dse's load generators, run by `dse bench`: they start
// real nodes (real TCP on loopback, raft-boltdb with fsync) and measure the
// publish path, snapshots, registry writes and RPC end to end.
package bench
