package subscribe

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
)

// hookLog records what a subscriber's hooks saw, and holds them up while
// gate is closed.
type hookLog struct {
	mu      sync.Mutex
	entered chan struct{}
	gate    chan struct{}
	seen    []*table.Publication
	got     chan struct{}
}

func (h *hookLog) run(p *table.Publication, _ time.Time) {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.gate
	h.mu.Lock()
	h.seen = append(h.seen, p)
	h.mu.Unlock()
	select {
	case h.got <- struct{}{}:
	default:
	}
}

func (h *hookLog) snapshot() []*table.Publication {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen)
}

func row(i int) table.Row { return table.Row{fmt.Sprintf("r%03d", i)} }

// A subscriber whose hooks fall behind is cut off: what it queued goes, the
// table reaches its hooks as one snapshot of its cache, then the deltas
// after it; the delivery side never waits for it.
func TestHookQueueCutsOffASlowSubscriber(t *testing.T) {
	c := cache.New()
	h := &hookLog{entered: make(chan struct{}, 1), gate: make(chan struct{}), got: make(chan struct{}, 1)}
	cuts := 0
	q := NewHookQueue(h.run, c.Unsorted, 4, 0, func() { cuts++ })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)

	other := cache.TableID{Publisher: "p", Table: "other"}
	seq := map[cache.TableID]uint64{}
	publish := func(id cache.TableID, add ...table.Row) {
		seq[id]++
		p := &table.Publication{Publisher: id.Publisher, Table: id.Table, Seqnum: seq[id], Add: add}
		if seq[id] == 1 {
			p = &table.Publication{Publisher: id.Publisher, Table: id.Table, Seqnum: 1, Snapshot: true, Rows: add}
		}
		c.Apply(p) // the delivery loop applies, then pushes
		start := time.Now()
		q.Push(p, start)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Push waited %s for a held-up hook", d)
		}
	}
	publish(tid, row(0))
	<-h.entered // the hook holds the first publication
	publish(other, row(900))
	// The queue fills up behind it, and overflows.
	for i := 1; i <= 20; i++ {
		publish(tid, row(i))
	}
	if cuts != 1 || q.Cutoffs() != 1 {
		t.Fatalf("cut off %d times (Cutoffs %d), want once", cuts, q.Cutoffs())
	}
	// Taken after the cut-off: only its own publications, after the
	// snapshot.
	publish(tid, row(21))
	publish(other, row(901))
	close(h.gate)
	deadline := time.After(10 * time.Second)
	reached := func() bool {
		at := map[cache.TableID]uint64{}
		for _, p := range h.snapshot() {
			at[cache.TableID{Publisher: p.Publisher, Table: p.Table}] = p.Seqnum
		}
		return at[tid] == seq[tid] && at[other] == seq[other]
	}
	for !reached() {
		select {
		case <-h.got:
		case <-deadline:
			t.Fatalf("hooks never got to %v: %v", seq, describe(h.snapshot()))
		}
	}
	seen := h.snapshot()
	// Per table: seqnums strictly increase, and applying what the hooks saw
	// gives the cache's content.
	for _, id := range []cache.TableID{tid, other} {
		var last uint64
		content := table.NewSet(nil)
		snapshots := 0
		for _, p := range seen {
			if p.Publisher != id.Publisher || p.Table != id.Table {
				continue
			}
			if p.Seqnum <= last {
				t.Fatalf("%v: seqnum %d after %d: %v", id, p.Seqnum, last, describe(seen))
			}
			last = p.Seqnum
			if p.Snapshot {
				snapshots++
			}
			p.ApplyTo(content)
		}
		rows, at, _ := c.Unsorted(id)
		if last != at || content.Len() != len(rows) {
			t.Fatalf("%v: hooks ended at seqnum %d with %d rows; the cache has %d rows at %d", id, last, content.Len(), len(rows), at)
		}
		for _, r := range rows {
			if !content.Has(r) {
				t.Fatalf("%v: hooks never saw %v", id, r)
			}
		}
		// tid: its first, and the one after the cut-off; other: the one
		// after the cut-off (its first was dropped, queued).
		if want := map[cache.TableID]int{tid: 2, other: 1}[id]; snapshots != want {
			t.Errorf("%v: %d snapshots, want %d: %v", id, snapshots, want, describe(seen))
		}
	}
	if len(seen) != 3 {
		t.Errorf("the hooks ran %d times, want 3 (tid#1, then the two snapshots): %v", len(seen), describe(seen))
	}
}

// A table dropped (unsubscribed), even from inside one of its hooks, has
// no more hooks run for what was queued or taken; the others' run.
func TestHookQueueDrop(t *testing.T) {
	c := cache.New()
	other := cache.TableID{Publisher: "p", Table: "other"}
	var q *HookQueue
	var mu sync.Mutex
	var seen []string
	release := make(chan struct{})
	q = NewHookQueue(func(p *table.Publication, _ time.Time) {
		if p.Table == tid.Table && p.Seqnum == 1 {
			<-release
			q.Drop(tid) // as a hook that unsubscribes
		}
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s#%d", p.Table, p.Seqnum))
		mu.Unlock()
	}, c.Unsorted, 0, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)
	for i := uint64(1); i <= 3; i++ {
		for _, id := range []cache.TableID{tid, other} {
			p := &table.Publication{Publisher: id.Publisher, Table: id.Table, Seqnum: i, Add: []table.Row{row(int(i))}}
			c.Apply(p)
			q.Push(p, time.Now())
		}
	}
	close(release)
	dsetestWait(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1] == "other#3"
	})
	mu.Lock()
	defer mu.Unlock()
	if want := "[t#1 other#1 other#2 other#3]"; fmt.Sprint(seen) != want {
		t.Fatalf("hooks ran for %v, want %s", seen, want)
	}
}

func dsetestWait(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// Closed, the queue runs no more hooks and takes nothing.
func TestHookQueueClose(t *testing.T) {
	c := cache.New()
	h := &hookLog{entered: make(chan struct{}, 1), gate: make(chan struct{}), got: make(chan struct{}, 1)}
	close(h.gate)
	q := NewHookQueue(h.run, c.Unsorted, 0, 0, nil)
	done := make(chan struct{})
	go func() { q.Run(context.Background()); close(done) }()
	p := &table.Publication{Publisher: "p", Table: "t", Seqnum: 1, Snapshot: true, Rows: []table.Row{row(1)}}
	c.Apply(p)
	q.Push(p, time.Now())
	<-h.got
	q.Close()
	<-done
	q.Push(&table.Publication{Publisher: "p", Table: "t", Seqnum: 2, Add: []table.Row{row(2)}}, time.Now())
	if n := len(h.snapshot()); n != 1 {
		t.Fatalf("hooks ran %d times, want 1", n)
	}
}

func describe(pubs []*table.Publication) string {
	var out []string
	for _, p := range pubs {
		kind := "delta"
		if p.Snapshot {
			kind = "snapshot"
		}
		out = append(out, fmt.Sprintf("%s#%d %s", p.Table, p.Seqnum, kind))
	}
	return fmt.Sprint(out)
}
