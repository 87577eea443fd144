package cache

import (
	"sort"
	"sync"

	"dse.dev/dse/dse/table"
)

// TableID names a subscribed table.
type TableID struct {
	Publisher string
	Table     string
}

// Change is what one publication did to a table.
type Change struct {
	TableID
	Seqnum uint64
	// Snapshot is true when the change came from a snapshot (as a diff).
	Snapshot bool
	// Added and Deleted may share their array with the publication, which
	// other subscribers read: a handler copies them before it reorders.
	Added   []table.Row
	Deleted []table.Row
	// Removed is true when the table left the cache (unsubscribed): Deleted
	// holds its last rows.
	Removed bool
}

// Empty reports whether the change changed nothing.
func (c Change) Empty() bool { return len(c.Added) == 0 && len(c.Deleted) == 0 }

// entry is one table of a cache: its rows, packed (table.Packed: a row
// costs its encoding and an index entry, not its decoded values), and its
// seqnum; or, for a cache sharing with its node's others, the shared
// table and how far this cache has followed it.
type entry struct {
	set    *table.Packed // nil when shared
	seqnum uint64
	shared *sharedTable
	sh     *Shared // shared's
	gen    uint64  // with shared: the applies of it this cache has heard of
	fresh  bool    // with shared: nothing applied for this cache yet
}

// Cache holds tables. The zero value is not usable; call New.
type Cache struct {
	mu       sync.RWMutex
	tables   map[TableID]*entry
	share    *Shared
	notifyMu sync.Mutex // keeps callbacks in apply order
	handlers []func(Change)
}

// New returns an empty cache.
func New() *Cache { return &Cache{tables: map[TableID]*entry{}} }

// ShareWith makes the tables this cache takes from now on shared with the
// other caches of sh (see Shared).
func (c *Cache) ShareWith(sh *Shared) {
	c.mu.Lock()
	c.share = sh
	c.mu.Unlock()
}

// Unshare gives every shared table of the cache a copy of its own, and
// shares no more: a cache whose subscriptions stop (its service stopped)
// keeps what it held, while the others go on.
func (c *Cache) Unshare() {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.tables {
		if e.shared != nil {
			c.tables[id] = c.privatise(id, e)
		}
	}
	c.share = nil
}

// privatise returns e as a private entry, holding the shared table's rows
// (c.mu held).
func (c *Cache) privatise(id TableID, e *entry) *entry {
	st := e.shared
	st.mu.RLock()
	own := &entry{set: st.set.Clone(), seqnum: st.seqnum}
	st.mu.RUnlock()
	e.sh.release(id, st)
	return own
}

// OnChange registers fn to be called, in order, after every change. fn must
// not call back into Apply.
func (c *Cache) OnChange(fn func(Change)) {
	c.notifyMu.Lock()
	c.handlers = append(c.handlers, fn)
	c.notifyMu.Unlock()
}

// Apply applies an ordered publication and returns the change it made.
func (c *Cache) Apply(p *table.Publication) Change {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	id := TableID{p.Publisher, p.Table}
	ch := Change{TableID: id, Seqnum: p.Seqnum, Snapshot: p.Snapshot}
	c.mu.Lock()
	e, ok := c.tables[id]
	if !ok {
		e = &entry{set: &table.Packed{}}
		if c.share != nil {
			e = &entry{shared: c.share.acquire(id), sh: c.share, fresh: true}
		}
		c.tables[id] = e
	}
	if e.shared != nil {
		var ok bool
		if ch.Added, ch.Deleted, ok = c.applyShared(e, p); !ok {
			// Out of step with the others (see applyShared): its own
			// copy from here on; empty, if it had taken nothing yet.
			if e.fresh {
				e.sh.release(id, e.shared)
				e = &entry{set: &table.Packed{}}
			} else {
				e = c.privatise(id, e)
			}
			c.tables[id] = e
		}
	}
	if e.set != nil {
		ch.Added, ch.Deleted = p.ApplyToPacked(e.set)
	}
	e.seqnum = p.Seqnum
	c.mu.Unlock()
	for _, h := range c.handlers {
		h(ch)
	}
	return ch
}

// Remove forgets a table (after unsubscribe); callbacks see its rows deleted.
func (c *Cache) Remove(id TableID) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	e, ok := c.tables[id]
	delete(c.tables, id)
	c.mu.Unlock()
	// Callbacks hear of the removal even if no data had arrived yet.
	ch := Change{TableID: id, Removed: true}
	if ok {
		ch.Seqnum, ch.Deleted = e.seqnum, e.unsorted()
		if e.shared != nil {
			e.sh.release(id, e.shared)
		}
	}
	for _, h := range c.handlers {
		h(ch)
	}
}

// Rows returns a table's rows, sorted, and the seqnum they reflect.
func (c *Cache) Rows(id TableID) ([]table.Row, uint64, bool) {
	rows, seqnum, ok := c.Unsorted(id)
	table.Sort(rows) // outside the lock
	return rows, seqnum, ok
}

// Unsorted returns a table's rows in no particular order (cheaper than
// Rows) and the seqnum they reflect.
func (c *Cache) Unsorted(id TableID) ([]table.Row, uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.tables[id]
	if !ok {
		return nil, 0, false
	}
	rows, seqnum := e.read()
	return rows, seqnum, true
}

// Has reports whether a table holds a row.
func (c *Cache) Has(id TableID, r table.Row) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.tables[id]
	return ok && e.has(r)
}

// Len returns a table's row count.
func (c *Cache) Len(id TableID) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.tables[id]; ok {
		return e.len()
	}
	return 0
}

// Seqnum returns the seqnum a table reflects (0 if absent).
func (c *Cache) Seqnum(id TableID) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.tables[id]; ok {
		return e.seq()
	}
	return 0
}

// Tables lists the cached tables, sorted.
func (c *Cache) Tables() []TableID {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]TableID, 0, len(c.tables))
	for id := range c.tables {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Publisher != out[j].Publisher {
			return out[i].Publisher < out[j].Publisher
		}
		return out[i].Table < out[j].Table
	})
	return out
}
