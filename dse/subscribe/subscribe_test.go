package subscribe

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
)

// The subscriber engine in memory: a fake publisher (its content, its
// history of deltas, the registry's seqnum) answers catch-ups; no Raft and
// no network.

var tid = cache.TableID{Publisher: "p", Table: "t"}

type fakePublisher struct {
	mu      sync.Mutex
	content *table.Set
	seqnum  uint64
	history []*table.Publication // every delta, in order
	fetches int
}

func (p *fakePublisher) Seqnum(publisher, tbl string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seqnum
}

func (p *fakePublisher) Owner(string) (string, uint64, bool) { return "owner", 1, true }

// publish applies a delta and returns its publication.
func (p *fakePublisher) publish(add, del []table.Row) *table.Publication {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, d := p.content.Apply(add, del)
	p.seqnum++
	pub := &table.Publication{Publisher: "p", Table: "t", Seqnum: p.seqnum, Add: a, Del: d}
	p.history = append(p.history, pub)
	return pub
}

// Fetch answers a catch-up from the history, the way a publisher does;
// after, say, 100 deltas the history is "gone" and it sends a snapshot.
func (p *fakePublisher) Fetch(_ context.Context, owner string, req Request) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetches++
	var pubs []*table.Publication
	if req.After >= p.seqnum-min(p.seqnum, 100) && req.After > 0 {
		pubs = p.history[req.After:]
	} else {
		pubs = []*table.Publication{{Publisher: "p", Table: "t", Seqnum: p.seqnum, Snapshot: true, Rows: p.content.Rows()}}
	}
	return table.EncodeBatch(pubs)
}

type fakeSubscriber struct {
	id    string
	cache *cache.Cache
	hook  func(*table.Publication)
}

func newSubscriber(id string) *fakeSubscriber { return &fakeSubscriber{id: id, cache: cache.New()} }

func (s *fakeSubscriber) ID() string { return s.id }
func (s *fakeSubscriber) Deliver(p *table.Publication, _ time.Time) {
	s.cache.Apply(p)
	if s.hook != nil {
		s.hook(p)
	}
}
func (s *fakeSubscriber) Cached(id cache.TableID) ([]table.Row, uint64, bool) {
	return s.cache.Unsorted(id)
}

type rig struct {
	pub     *fakePublisher
	e       *Engine
	dropped prometheus.Counter
	wg      sync.WaitGroup
}

func newRig(t *testing.T, resub time.Duration) *rig {
	r := &rig{pub: &fakePublisher{content: table.NewSet(nil)}, dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})}
	ctx, cancel := context.WithCancel(context.Background())
	r.e = New(Config{
		Context: ctx, Registry: r.pub, Fetcher: r.pub, ResubTimeout: resub, Dropped: r.dropped,
		Go: func(f func()) {
			r.wg.Add(1)
			go func() { defer r.wg.Done(); f() }()
		},
	})
	r.e.cfg.Go(r.e.Run)
	t.Cleanup(func() {
		cancel()
		r.wg.Wait()
	})
	return r
}

func (r *rig) subscribe(s Subscriber) {
	if existed, _ := r.e.Attach(s, tid); !existed {
		r.e.CatchUp(tid)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (r *rig) converged(s *fakeSubscriber) bool {
	r.pub.mu.Lock()
	want, at := r.pub.content.Rows(), r.pub.seqnum
	r.pub.mu.Unlock()
	got, seq, _ := s.cache.Rows(tid)
	if seq != at || len(got) != len(want) {
		return false
	}
	for _, row := range want {
		if !s.cache.Has(tid, row) {
			return false
		}
	}
	return true
}

// TestConvergesThroughDropsDuplicatesAndReordering: pushes lost,
// repeated and reordered; the subscriber applies what is in order, catches
// up across the gaps, and ends with the publisher's table at its seqnum.
func TestConvergesThroughDropsDuplicatesAndReordering(t *testing.T) {
	r := newRig(t, 30*time.Millisecond)
	s := newSubscriber("s")
	r.subscribe(s)
	rng := rand.New(rand.NewPCG(1, 2))
	var held []*table.Publication
	for i := range 2000 {
		pub := r.pub.publish([]table.Row{{int64(i)}}, []table.Row{{int64(rng.IntN(i + 1))}})
		switch x := rng.Float64(); {
		case x < 0.2: // lost
		case x < 0.3: // held back: arrives later, out of order
			held = append(held, pub)
		case x < 0.4:
			r.e.Enqueue([]*table.Publication{pub, pub}, time.Now(), 10)
		default:
			r.e.Enqueue([]*table.Publication{pub}, time.Now(), 10)
		}
		if len(held) > 5 {
			r.e.Enqueue(held, time.Now(), 10)
			held = nil
		}
	}
	waitFor(t, "the publisher's content", func() bool { return r.converged(s) })
}

// TestANewcomerStartsFromAnotherSubscribersCopy: a second local subscriber
// of a table the node already has gets the table from the first one's
// copy, with no catch-up of its own.
func TestANewcomerStartsFromAnotherSubscribersCopy(t *testing.T) {
	r := newRig(t, time.Hour)
	for i := range 10 {
		r.pub.publish([]table.Row{{int64(i)}}, nil)
	}
	a := newSubscriber("a")
	r.subscribe(a)
	waitFor(t, "a's copy", func() bool { return r.converged(a) })
	r.pub.mu.Lock()
	fetches := r.pub.fetches
	r.pub.mu.Unlock()
	b := newSubscriber("b")
	r.subscribe(b)
	waitFor(t, "b's copy", func() bool { return r.converged(b) })
	r.e.Enqueue([]*table.Publication{r.pub.publish([]table.Row{{"more"}}, nil)}, time.Now(), 10)
	waitFor(t, "both at the new seqnum", func() bool { return r.converged(a) && r.converged(b) })
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	if r.pub.fetches != fetches {
		t.Fatalf("the newcomer fetched from the publisher (%d catch-ups, %d before)", r.pub.fetches, fetches)
	}
}

// TestDeliveryQueueBoundedByBytes: while a subscriber holds the delivery
// loop, pushed publications queue up to the byte bound and the rest are
// dropped; a catch-up reply queues whatever the bound, one at a time
// however long the loop is held; and the subscriber ends with the
// publisher's content once it lets go.
func TestDeliveryQueueBoundedByBytes(t *testing.T) {
	r := newRig(t, 50*time.Millisecond)
	r.e.SetMaxQueuedBytes(64 << 10)
	hold := make(chan struct{})
	var release sync.Once
	let := func() { release.Do(func() { close(hold) }) }
	t.Cleanup(let)
	held := make(chan struct{}, 1)
	s := newSubscriber("s")
	s.hook = func(p *table.Publication) {
		if !p.Snapshot {
			select {
			case held <- struct{}{}:
				<-hold
			default:
			}
		}
	}
	r.pub.publish([]table.Row{{"start"}}, nil)
	r.subscribe(s)
	waitFor(t, "the snapshot", func() bool { return r.converged(s) })
	big := strings.Repeat("x", 4<<10)
	r.e.Enqueue([]*table.Publication{r.pub.publish([]table.Row{{big, int64(0)}}, nil)}, time.Now(), 4<<10)
	<-held // the loop is held from here on
	const deltas = 200
	for i := 1; i <= deltas; i++ {
		r.e.Enqueue([]*table.Publication{r.pub.publish([]table.Row{{big, int64(i)}}, nil)}, time.Now(), 4<<10)
	}
	items, bytes, _ := r.queue()
	var m dto.Metric
	r.dropped.Write(&m)
	if dropped := m.GetCounter().GetValue(); dropped < deltas/2 || bytes > 64<<10 && items > 1 {
		t.Fatalf("with the loop held: %d bytes in %d deliveries queued, %v dropped; want at most 64 KiB, or one delivery, and the rest dropped", bytes, items, dropped)
	}
	time.Sleep(500 * time.Millisecond) // 10 resub timeouts
	if _, _, replies := r.queue(); replies != 1 {
		t.Fatalf("%d catch-up replies queued while the loop was held, want 1", replies)
	}
	let()
	waitFor(t, "the publisher's content", func() bool { return r.converged(s) })
}

// queue reports the pushed deliveries and their bytes, and the catch-up
// replies, in the delivery queue.
func (r *rig) queue() (items, bytes, replies int) {
	r.e.dqMu.Lock()
	defer r.e.dqMu.Unlock()
	for _, d := range r.e.dq {
		if d.catchup != nil {
			replies++
		} else {
			items, bytes = items+1, bytes+d.size
		}
	}
	return items, bytes, replies
}
