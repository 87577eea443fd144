package subscribe

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
)

// A local subscriber's hooks run on its own goroutine, fed by a bounded
// queue, so that a slow hook holds up its own subscriber only: the node's
// delivery loop applies a publication to the subscriber's cache and moves
// on. A subscriber whose queue outgrows its bounds is cut off, as NATS
// cuts off a slow consumer, but then catches up on its own: what it had
// queued is dropped, and each table it dropped publications of reaches its
// hooks next as one snapshot, read from its cache (which the delivery
// loop kept current), at the cache's seqnum. The hooks see what they
// always see after a gap: a snapshot, then the deltas after it, in
// seqnum order.

// The bounds of a subscriber's hook queue, as NATS's default pending
// limits for a subscription (65,536 messages, 64 MB): publications, and
// their rows (added, deleted, or a snapshot's). A queue holding none takes
// anything.
const (
	DefaultMaxHookPubs = 1 << 16
	DefaultMaxHookRows = 1 << 20
)

// HookQueue is one subscriber's queue of publications for its hooks, and
// the goroutine that runs them (Run).
type HookQueue struct {
	run      func(p *table.Publication, receipt time.Time)
	cached   func(id cache.TableID) ([]table.Row, uint64, bool)
	maxPubs  int
	maxRows  int
	onCutoff func()

	mu     sync.Mutex
	items  []hookItem
	spare  []hookItem // the last batch's array, for items to grow into again
	rows   int
	resync map[cache.TableID]bool // cut off: a snapshot from the cache is due
	due    []cache.TableID        // resync's keys, in the order they were cut off
	closed bool
	ended  atomic.Bool // closed, read without the lock
	// dropped: tables unsubscribed (Drop) since the goroutine took its
	// batch, whose publications in it it skips; drops counts Drop calls,
	// so that it looks only when there was one.
	dropped map[cache.TableID]bool
	drops   atomic.Uint64
	signal  chan struct{}
	done    chan struct{}
	cuts    uint64

	// skip, the goroutine's own: per table resynced, the seqnum of the
	// snapshot its hooks got, which covers what is queued up to it.
	skip map[cache.TableID]uint64
}

type hookItem struct {
	p       *table.Publication
	receipt time.Time
}

// NewHookQueue returns the hook queue of one subscriber: run calls its
// hooks; cached reads its cache (what a cut-off table resumes from);
// onCutoff, if set, is called once each time it is cut off. maxPubs and
// maxRows at 0 are the defaults.
func NewHookQueue(run func(*table.Publication, time.Time), cached func(cache.TableID) ([]table.Row, uint64, bool), maxPubs, maxRows int, onCutoff func()) *HookQueue {
	if maxPubs <= 0 {
		maxPubs = DefaultMaxHookPubs
	}
	if maxRows <= 0 {
		maxRows = DefaultMaxHookRows
	}
	return &HookQueue{
		run: run, cached: cached, maxPubs: maxPubs, maxRows: maxRows, onCutoff: onCutoff,
		resync: map[cache.TableID]bool{}, skip: map[cache.TableID]uint64{}, dropped: map[cache.TableID]bool{},
		signal: make(chan struct{}, 1), done: make(chan struct{}),
	}
}

func weight(p *table.Publication) int { return len(p.Rows) + len(p.Add) + len(p.Del) }

// Push queues p (already applied to the subscriber's cache) for the hooks,
// without blocking; past the bounds it cuts the subscriber off.
func (q *HookQueue) Push(p *table.Publication, receipt time.Time) {
	id := cache.TableID{Publisher: p.Publisher, Table: p.Table}
	w := weight(p)
	q.mu.Lock()
	if q.closed || q.resync[id] {
		// A snapshot is due for the table: it will hold p, applied to
		// the cache before this call.
		q.mu.Unlock()
		return
	}
	if len(q.items) > 0 && (len(q.items) >= q.maxPubs || q.rows+w > q.maxRows) {
		for _, it := range q.items {
			q.dueLocked(cache.TableID{Publisher: it.p.Publisher, Table: it.p.Table})
		}
		q.dueLocked(id)
		clear(q.items)
		q.items, q.rows = q.items[:0], 0
		q.cuts++
		q.mu.Unlock()
		if q.onCutoff != nil {
			q.onCutoff()
		}
		q.wake()
		return
	}
	q.items = append(q.items, hookItem{p, receipt})
	q.rows += w
	q.mu.Unlock()
	q.wake()
}

func (q *HookQueue) dueLocked(id cache.TableID) {
	if !q.resync[id] {
		q.resync[id] = true
		q.due = append(q.due, id)
	}
}

func (q *HookQueue) wake() {
	select {
	case q.signal <- struct{}{}:
	default: // one pending covers this one too
	}
}

// Drop forgets table id, unsubscribed: its hooks run no more for what
// was queued, even from inside one of them.
func (q *HookQueue) Drop(id cache.TableID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.items[:0]
	q.rows = 0
	for _, it := range q.items {
		if it.p.Publisher != id.Publisher || it.p.Table != id.Table {
			kept = append(kept, it)
			q.rows += weight(it.p)
		}
	}
	clear(q.items[len(kept):])
	q.items = kept
	if q.resync[id] {
		delete(q.resync, id)
		q.due = slices.DeleteFunc(q.due, func(d cache.TableID) bool { return d == id })
	}
	q.dropped[id] = true
	q.drops.Add(1)
}

// Cutoffs returns how many times the subscriber was cut off.
func (q *HookQueue) Cutoffs() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cuts
}

// Close drops what is queued and ends Run once the hook running returns.
func (q *HookQueue) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		q.ended.Store(true)
		q.items, q.due = nil, nil
		close(q.done)
	}
	q.mu.Unlock()
}

// Run runs the hooks until Close, or ctx ends.
func (q *HookQueue) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			q.Close()
			return
		case <-q.done:
			return
		case <-q.signal:
		}
		for {
			q.mu.Lock()
			if q.closed {
				q.mu.Unlock()
				return
			}
			items, due := q.items, q.due
			q.items, q.due, q.rows = q.spare[:0], nil, 0
			q.spare = nil
			// What was dropped is out of this batch already.
			for id := range q.dropped {
				delete(q.skip, id)
			}
			clear(q.dropped)
			drops := q.drops.Load()
			var dropped map[cache.TableID]bool
			q.mu.Unlock()
			if len(items) == 0 && len(due) == 0 {
				break
			}
			// What was cut off first: nothing of those tables is among
			// items (Push takes none while a snapshot is due).
			for _, id := range due {
				if !q.resume(id) {
					return
				}
			}
			for i, it := range items {
				if q.ended.Load() {
					return
				}
				if n := q.drops.Load(); n != drops {
					// A hook unsubscribed: skip what this batch holds of it.
					q.mu.Lock()
					drops, dropped = n, maps.Clone(q.dropped)
					q.mu.Unlock()
				}
				id := cache.TableID{Publisher: it.p.Publisher, Table: it.p.Table}
				if dropped[id] {
					delete(q.skip, id)
					continue
				}
				if at, ok := q.skip[id]; ok {
					if it.p.Seqnum <= at {
						continue // the snapshot had it
					}
					delete(q.skip, id)
				}
				q.run(it.p, it.receipt)
				items[i] = hookItem{} // its rows go as soon as its hooks ran
			}
			clear(items) // what was skipped, too
			q.mu.Lock()
			if !q.closed && cap(items) <= 2*q.maxPubs {
				q.spare = items[:0]
			}
			q.mu.Unlock()
		}
	}
}

// resume hands the hooks table id, cut off, as a snapshot from the cache;
// false once closed.
func (q *HookQueue) resume(id cache.TableID) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	// From here Push queues the table's publications again; the cache,
	// read next, holds every one it did not take.
	delete(q.resync, id)
	dropped := q.dropped[id]
	q.mu.Unlock()
	if dropped {
		return true
	}
	rows, seq, ok := q.cached(id)
	if !ok {
		return true // unsubscribed meanwhile
	}
	q.skip[id] = seq
	q.run(&table.Publication{Publisher: id.Publisher, Table: id.Table, Seqnum: seq, Snapshot: true, Rows: rows}, time.Now())
	return true
}
