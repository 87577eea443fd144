package cache

import (
	"sync"

	"dse.dev/dse/dse/table"
)

// Shared holds tables once for several caches: a node's subscribers of
// one table each had a copy of their own, so a node with 32 of them
// applied each delta 32 times (29% of the CPU with 64 subscribers over
// two nodes). Every local subscriber of a table hears the same
// publications in the same order, from the node's one delivery loop: the
// first cache to get one applies it to the shared table, and the others
// take the change it made.
//
// A cache that joins a table others already hold gets it as a snapshot
// of what they hold (the subscriber engine copies it from one of them),
// at the shared seqnum: it then shares without applying anything, and its
// callbacks hear of every row as added. A cache found out of step (none
// is, by the delivery loop's order; the check costs nothing) gets a copy
// of its own.
//
// A shared table's reads show the latest publication applied on the node,
// which a cache whose turn has not come yet in the loop has not yet told
// its callbacks of (for microseconds); its rows and seqnum always agree.
type Shared struct {
	mu     sync.Mutex
	tables map[TableID]*sharedTable
}

// NewShared returns an empty Shared.
func NewShared() *Shared { return &Shared{tables: map[TableID]*sharedTable{}} }

type sharedTable struct {
	mu     sync.RWMutex
	set    table.Packed
	seqnum uint64
	gen    uint64 // publications applied
	refs   int    // caches sharing it
	// The change of the last publication applied, for the caches that
	// have not taken it yet (waiting of them); dropped once all have, so
	// that a snapshot's rows are not kept alive by it.
	added, deleted []table.Row
	waiting        int
}

// acquire returns the shared table id, with one more cache sharing it.
func (sh *Shared) acquire(id TableID) *sharedTable {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, ok := sh.tables[id]
	if !ok {
		st = &sharedTable{}
		sh.tables[id] = st
	}
	st.mu.Lock()
	st.refs++
	st.mu.Unlock()
	return st
}

// release drops one cache's share of st, and st with the last.
func (sh *Shared) release(id TableID, st *sharedTable) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st.mu.Lock()
	st.refs--
	st.waiting = max(0, min(st.waiting, st.refs))
	if st.waiting == 0 {
		st.added, st.deleted = nil, nil
	}
	last := st.refs == 0
	st.mu.Unlock()
	if last && sh.tables[id] == st {
		delete(sh.tables, id)
	}
}

// Len returns the number of tables held (metrics, tests).
func (sh *Shared) Len() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.tables)
}

// applyShared applies p for a cache whose entry e shares its table, and
// returns the change; ok false when e is out of step and must have a copy
// of its own (the change is then not made).
func (c *Cache) applyShared(e *entry, p *table.Publication) (added, deleted []table.Row, ok bool) {
	st := e.shared
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case !e.fresh && e.gen == st.gen,
		e.fresh && st.gen == 0,
		e.fresh && st.waiting == 0 && p.Snapshot && p.Seqnum > st.seqnum:
		// This cache is the first to get p: apply it for all. (A fresh
		// one with a newer snapshot: a catch-up that reaches it before
		// the others.)
		st.added, st.deleted = p.ApplyToPacked(&st.set)
		st.seqnum = p.Seqnum
		st.gen++
		st.waiting = st.refs - 1
		if st.waiting == 0 {
			defer func() { st.added, st.deleted = nil, nil }()
		}
		added, deleted = st.added, st.deleted
		if e.fresh {
			added, deleted = st.allRows(p), nil // it held nothing
		}
	case !e.fresh && e.gen+1 == st.gen && p.Seqnum == st.seqnum && st.waiting > 0:
		// Another cache applied p moments ago: take its change.
		added, deleted = st.added, st.deleted
		if st.waiting--; st.waiting == 0 {
			st.added, st.deleted = nil, nil
		}
	case e.fresh && p.Snapshot && p.Seqnum == st.seqnum:
		// Joining: p is what the others hold (taken from one of them), or
		// the publication one of them just applied: every row is new to
		// this cache.
		if e.gen+1 == st.gen && st.waiting > 0 {
			if st.waiting--; st.waiting == 0 {
				st.added, st.deleted = nil, nil
			}
		}
		added = st.allRows(p)
	default:
		return nil, nil, false
	}
	e.gen, e.fresh = st.gen, false
	return added, deleted, true
}

// allRows returns the rows of st, which holds the snapshot p: p's own,
// unless p repeated some (st.mu held).
func (st *sharedTable) allRows(p *table.Publication) []table.Row {
	if st.set.Len() != len(p.Rows) {
		return st.set.Unsorted()
	}
	return p.Rows
}

// The reads of an entry, private or shared.

func (e *entry) unsorted() []table.Row {
	if st := e.shared; st != nil {
		st.mu.RLock()
		defer st.mu.RUnlock()
		return st.set.Unsorted()
	}
	return e.set.Unsorted()
}

// read returns the rows and the seqnum they reflect.
func (e *entry) read() ([]table.Row, uint64) {
	if st := e.shared; st != nil {
		st.mu.RLock()
		defer st.mu.RUnlock()
		return st.set.Unsorted(), st.seqnum
	}
	return e.set.Unsorted(), e.seqnum
}

func (e *entry) has(r table.Row) bool {
	if st := e.shared; st != nil {
		st.mu.RLock()
		defer st.mu.RUnlock()
		return st.set.Has(r)
	}
	return e.set.Has(r)
}

func (e *entry) len() int {
	if st := e.shared; st != nil {
		st.mu.RLock()
		defer st.mu.RUnlock()
		return st.set.Len()
	}
	return e.set.Len()
}

func (e *entry) seq() uint64 {
	if st := e.shared; st != nil {
		st.mu.RLock()
		defer st.mu.RUnlock()
		return st.seqnum
	}
	return e.seqnum
}
