// Package publish owns the publish path of a node: the tables its services
// publish (Table: the content, including publications still waiting for
// their seqnums, the last seqnum, the history of recent deltas for
// subscribers that catch up, and the rules that tie them together), and
// the group commit that numbers their publications (Batcher).
//
// A publication is computed against its table's content when it is made,
// applied to it at once, and queued; while one Raft entry is in flight,
// publications of every table of every local service queue up, and the
// next entry (fsm.Publish) assigns all their seqnums at once, fenced by the
// owner's incarnation. Publications of one table are numbered in the order
// they were made. When one fails, the table starts a new epoch: those
// queued behind it fail too (their deltas assumed it), and the table's next
// publication is a snapshot; when its outcome is unknown (the entry may
// still commit, its seqnums then unused), the table heals with a snapshot
// under a new seqnum. Until then the table is not served under its last
// seqnum (Last, Snapshot), which subscribers hold with other content.
//
// For a replicated service, the publications of an entry go to the
// replicas (Early) under the seqnums the registry will grant, while the
// entry is in Raft: the replicas' fsyncs overlap the registry's. Table.plan
// says when that is safe, and how grants skip past whatever was sent ahead
// of a grant that failed.
//
// The batcher reads the registry, commits entries and pushes what they
// granted through small interfaces declared here (Registry, Sequencer,
// Pusher, Durability, Early), so that it runs in memory in its tests;
// package dse plugs in the registry's FSM, package cluster, package push
// and package replica.
package publish
