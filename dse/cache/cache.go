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

// entry is one table: its rows packed (table.Packed: a row costs its
// encoding and an index entry, not its decoded values), and its seqnum.
type entry struct {
	set    *table.Packed
	seqnum uint64
}

// Cache holds tables. The zero value is not usable; call New.
type Cache struct {
	mu       sync.RWMutex
	tables   map[TableID]*entry
	notifyMu sync.Mutex // keeps callbacks in apply order
	handlers []func(Change)
}

// New returns an empty cache.
func New() *Cache { return &Cache{tables: map[TableID]*entry{}} }

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
		c.tables[id] = e
	}
	ch.Added, ch.Deleted = p.ApplyToPacked(e.set)
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
		ch.Seqnum, ch.Deleted = e.seqnum, e.set.Unsorted()
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
	return e.set.Unsorted(), e.seqnum, true
}

// Has reports whether a table holds a row.
func (c *Cache) Has(id TableID, r table.Row) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.tables[id]
	return ok && e.set.Has(r)
}

// Len returns a table's row count.
func (c *Cache) Len(id TableID) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.tables[id]; ok {
		return e.set.Len()
	}
	return 0
}

// Seqnum returns the seqnum a table reflects (0 if absent).
func (c *Cache) Seqnum(id TableID) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.tables[id]; ok {
		return e.seqnum
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
