// Package raftlog owns the Raft log stores a node keeps its log and stable
// state in, under its data dir: hashicorp/raft-wal (WAL, the default: one
// fsync per append) or hashicorp/raft-boltdb (BoltDB: two per commit).
//
// A data dir keeps the kind it was created with. The WAL is opened with two
// repairs that raft-wal v0.4.2 still needs (wal.go): a segment sealed
// without its index block, which raft-wal v0.4.0 (dse's log store until
// 2026-12) left behind after a tail truncation, is rewritten before the WAL
// opens; and a tail a crash left sealed on disk but open in the meta store
// has its rotation completed. Each has a test that fails without it, and the
// faults raft-wal has since fixed are pinned as fixed by tests against stock
// raft-wal, so a regression upstream shows.
//
// The package knows nothing of dse: it is a Raft log on disk.
package raftlog
