// Package subscribe owns the subscriber side of a node: one subscription
// state per (publisher, table) for all the node's local subscribers (a
// sequencer, package seq, fanned out to each of them), the node's one
// delivery loop, and catching up.
//
// Publications pushed by peers, made by local publishers and fetched by
// catch-ups, and local subscribers joining, all go through one bounded
// queue and one goroutine, the only code that sequences and delivers:
// subscribers' Deliver runs outside every lock, in order per table. Beyond
// the queue's bounds arriving publications are dropped; the gap they leave
// is repaired by the catch-up it triggers. Deliver only applies to the
// subscriber's cache: its hooks run on its own goroutine (HookQueue), from
// a bounded queue, so that a slow hook holds up its own subscriber only;
// one that falls past the bound is cut off and resumes from its cache, as
// a snapshot. Hooks may publish, subscribe or call RPCs without deadlock.
//
// A subscription whose gap, or whose registry seqnum ahead of the one it
// applied, lasts the resubscribe timeout catches up (as etcd watches and
// Kubernetes informers resume): it asks the publisher's owner for the
// deltas after its last seqnum, from the publisher's history, and gets a
// snapshot only when they are gone. The node keeps no copy of a table of
// its own: a new local subscriber starts from another's copy.
//
// The engine reads the registry and fetches catch-ups through two small
// interfaces declared here (Registry, Fetcher), and hands publications to
// Subscribers, so that it runs in memory in its tests.
package subscribe
