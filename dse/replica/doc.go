// Package replica owns the replicas of external services: their tables
// kept on several nodes, on disk and in memory, peer to peer, never through
// Raft, while the registry (package fsm) holds the replica set, which
// replicas are in sync, the owner and every seqnum, as Kafka keeps a
// partition on in-sync replicas with its metadata in a quorum.
//
// A replica node takes the publications its service's owner pushes (in
// wire.ReplicaPush frames, which the owner sends as it asks the registry
// for their seqnums, see package publish; else in the frames subscribers
// get), applies each table's in seqnum order, writes them to its store (a
// Pebble database, in a group commit: one batch, one fdatasync, for
// everything queued while the last was written; a table is its last
// snapshot and the deltas after it, compacted into a new snapshot as they
// grow), and acknowledges to the owner what it holds on disk of the tables
// each commit moved. A table that lags its registry seqnum is caught up
// from the owner (deltas from its history, or a snapshot). A replica that
// starts behind (restarted, or its data dir gone) leaves the in-sync set
// itself.
//
// The owner answers a publication once every in-sync replica holds it on
// disk and a majority of the replica set does (fsm.MinInSync); it takes a
// replica that holds up its oldest publication for the lag timeout out of
// the in-sync set, and adds back one that caught up with what it
// acknowledged. Any live in-sync replica thus holds every acknowledged
// publication, so the leader fails the service over to one from its own
// registry copy, with a new incarnation; package dse then republishes the
// new owner's copy as snapshots under new seqnums.
//
// It reads the registry, writes to it, sends acknowledgements and fetches
// catch-ups through small interfaces declared here (Registry, Writer,
// Sender, Fetcher), so that it runs in memory in its tests.
package replica
