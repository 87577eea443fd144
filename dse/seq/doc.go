// Package seq is the subscriber's sequencer: per (publisher, table) it turns
// publications that arrive in any order, duplicated or not at all into the
// ordered list to apply, and says when the subscriber must catch up.
//
// The rules (DESIGN.md, "Subscriber sequencing"): a snapshot with a seqnum
// above the last applied one replaces the table and drops older buffered
// deltas; a delta with seqnum last+1 is applied, then every buffered
// successor; a later delta is buffered (bounded); duplicates and older ones
// are dropped. The drain is a loop, not recursion (Congress recursed and
// crashed near 500 queued messages), and gap tracking restarts after every
// gap (Congress stopped tracking after the first). A gap that stays open, or
// a committed seqnum ahead of the applied one, for longer than the timeout
// calls for a catch-up.
//
// A Sequencer is not safe for concurrent use; its owner locks. It reads no
// clock: callers pass the time, so tests are exact.
package seq
