package publish

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// The publish path in memory: the registry, the sequencer and the pusher
// are fakes, with no Raft and no network.

type fakeRegistry struct {
	mu    sync.Mutex
	owner map[string]string
	inc   map[string]uint64
}

func (r *fakeRegistry) Owner(svc string) (string, uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.owner[svc]
	return o, r.inc[svc], ok
}

// fakeSequencer grants seqnums as the FSM does, fenced by the registry's
// incarnation; fail, when set, fails the next entries with its error.
type fakeSequencer struct {
	reg     *fakeRegistry
	mu      sync.Mutex
	seqnums map[[2]string]uint64
	entries int
	reqs    []fsm.PublishRequest // every request, in order
	fail    []error
	// applied: a failed entry is applied all the same (its outcome was
	// unknown, and it committed).
	applied bool
	hold    chan struct{} // when set, each entry waits for a value
}

// gate makes each entry wait for a value on the channel returned (nil: no
// more waiting).
func (s *fakeSequencer) gate(on bool) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = nil
	if on {
		s.hold = make(chan struct{})
	}
	return s.hold
}

func (s *fakeSequencer) failNext(err error) {
	s.mu.Lock()
	s.fail = append(s.fail, err)
	s.mu.Unlock()
}

func (s *fakeSequencer) Sequence(ctx context.Context, cmd fsm.Publish) ([]fsm.PublishGrant, error) {
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries++
	s.reqs = append(s.reqs, cmd.Requests...)
	var err error
	if len(s.fail) > 0 {
		err = s.fail[0]
		s.fail = s.fail[1:]
		if !s.applied {
			return nil, err
		}
	}
	out := make([]fsm.PublishGrant, len(cmd.Requests))
	for i, r := range cmd.Requests {
		if _, inc, _ := s.reg.Owner(r.Service); inc != r.Incarnation {
			out[i].Err = fmt.Errorf("%w: incarnation %d", errdefs.ErrFenced, r.Incarnation)
			continue
		}
		// The FSM's rule (fsm.PublishRequest).
		k := [2]string{r.Service, r.Table}
		cur := s.seqnums[k]
		if r.First != 0 && r.First != cur+1 {
			out[i].Err = fmt.Errorf("%w: seqnum %d taken", errdefs.ErrUnavailable, r.First)
			continue
		}
		skip := r.Skip
		if cur == 0 && r.After == 0 {
			skip = 0
		}
		out[i].First = max(cur, r.After) + 1 + skip
		s.seqnums[k] = out[i].First + r.Count - 1
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

type fakePusher struct {
	mu   sync.Mutex
	pubs []*table.Publication
}

func (p *fakePusher) Push(pubs []*table.Publication) {
	p.mu.Lock()
	p.pubs = append(p.pubs, pubs...)
	p.mu.Unlock()
}

func (p *fakePusher) last() *table.Publication {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pubs[len(p.pubs)-1]
}

type fakePublisher struct {
	id     string
	busy   sync.WaitGroup
	healed chan string
}

func (p *fakePublisher) ID() string        { return p.id }
func (p *fakePublisher) Done()             { p.busy.Done() }
func (p *fakePublisher) Heal(table string) { p.healed <- table }

type rig struct {
	reg  *fakeRegistry
	seq  *fakeSequencer
	push *fakePusher
	b    *Batcher
	svc  *fakePublisher
}

func newRig(t *testing.T) *rig {
	r := &rig{reg: &fakeRegistry{owner: map[string]string{"p": "n1"}, inc: map[string]uint64{"p": 7}}, push: &fakePusher{}}
	r.seq = &fakeSequencer{reg: r.reg, seqnums: map[[2]string]uint64{}}
	r.b = NewBatcher(Config{Node: "n1", Registry: r.reg, Sequencer: r.seq, Pusher: r.push, ApplyTimeout: time.Second})
	r.b.healDelay = time.Millisecond
	r.svc = &fakePublisher{id: "p", healed: make(chan string, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	go r.b.Run(ctx)
	t.Cleanup(func() {
		cancel()
		<-r.b.stopped
	})
	return r
}

// publish queues a delta as package dse does: the service counted busy
// first.
func (r *rig) publish(t *Table, inc uint64, add, del []table.Row) (*Publishing, error) {
	r.svc.busy.Add(1)
	return r.b.Publish(r.svc, t, inc, func(set *table.Set) ([]table.Row, []table.Row, []table.Row) {
		a, d := set.Apply(add, del)
		return a, d, nil
	}, false)
}

func row(v int64) table.Row { return table.Row{v} }

func TestPublicationsInFlightAreNumberedInOrder(t *testing.T) {
	r := newRig(t)
	tb := NewTable("t", 100, nil)
	var ps []*Publishing
	for i := range 1000 {
		p, err := r.publish(tb, 7, []table.Row{row(int64(i))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	for i, p := range ps {
		seq, changed, err := p.Wait(context.Background())
		if err != nil || !changed || seq != uint64(i+1) {
			t.Fatalf("publication %d: seqnum %d, %v, %v", i, seq, changed, err)
		}
	}
	r.svc.busy.Wait() // every publication answered its Done
	r.seq.mu.Lock()
	entries := r.seq.entries
	r.seq.mu.Unlock()
	if entries >= 1000 {
		t.Fatalf("%d entries for 1000 publications: no group commit", entries)
	}
	r.push.mu.Lock()
	defer r.push.mu.Unlock()
	if !r.push.pubs[0].Snapshot || r.push.pubs[1].Snapshot || len(r.push.pubs) != 1000 {
		t.Fatalf("pushed %d, first a snapshot %v, second %v", len(r.push.pubs), r.push.pubs[0].Snapshot, r.push.pubs[1].Snapshot)
	}
	seq, rows, err := tb.Last()
	if err != nil || seq != 1000 || len(rows) != 1000 {
		t.Fatalf("last: %d, %d rows, %v", seq, len(rows), err)
	}
}

// TestAFailedEntryFailsWhatFollowsAndHeals: an entry of unknown outcome
// fails its publications and those queued behind it in the table; the table
// is not served under its last seqnum, heals, and its next publication is a
// snapshot.
func TestAFailedEntryFailsWhatFollowsAndHeals(t *testing.T) {
	r := newRig(t)
	tb := NewTable("t", 100, nil)
	p, _ := r.publish(tb, 7, []table.Row{row(1)}, nil)
	if _, _, err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	hold := r.seq.gate(true)
	r.seq.failNext(fmt.Errorf("%w: leadership lost", errdefs.ErrUnavailable))
	a, _ := r.publish(tb, 7, []table.Row{row(2)}, nil)
	time.Sleep(20 * time.Millisecond) // a is in flight, b queues behind it
	b, _ := r.publish(tb, 7, []table.Row{row(3)}, nil)
	hold <- struct{}{}
	if _, _, err := a.Wait(context.Background()); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("the failed entry's publication: %v", err)
	}
	// b, computed on a's content, fails without an entry of its own.
	if _, _, err := b.Wait(context.Background()); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("the publication queued behind it: %v", err)
	}
	r.seq.gate(false)
	if _, _, err := tb.Last(); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("a table holding a failed change served: %v", err)
	}
	select {
	case name := <-r.svc.healed:
		if name != "t" {
			t.Fatalf("healed %q", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heal")
	}
	c, _ := r.publish(tb, 7, []table.Row{row(4)}, nil)
	if seq, _, err := c.Wait(context.Background()); err != nil || seq != 2 { // the failed entry granted nothing here
		t.Fatalf("after the failure: %d %v", seq, err)
	}
	if last := r.push.last(); !last.Snapshot || len(last.Rows) != 4 {
		t.Fatalf("the publication after a failure: snapshot %v with %d rows", last.Snapshot, len(last.Rows))
	}
}

// TestAStaleOwnerIsFenced: a publication computed under an incarnation
// that no longer owns the service is refused, and the next owner's first
// publication is a snapshot.
func TestAStaleOwnerIsFenced(t *testing.T) {
	r := newRig(t)
	tb := NewTable("t", 100, nil)
	p, _ := r.publish(tb, 7, []table.Row{row(1)}, nil)
	p.Wait(context.Background())
	r.reg.mu.Lock()
	r.reg.inc["p"] = 9
	r.reg.mu.Unlock()
	p, _ = r.publish(tb, 7, []table.Row{row(2)}, nil)
	if _, _, err := p.Wait(context.Background()); !errors.Is(err, errdefs.ErrFenced) {
		t.Fatalf("stale incarnation: %v, want fenced", err)
	}
	p, _ = r.publish(tb, 9, []table.Row{row(3)}, nil)
	if _, _, err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last := r.push.last(); !last.Snapshot {
		t.Fatal("a new owner's first publication is not a snapshot")
	}
}

// TestNoChangeAnswersWithThePublicationInFlight: a publication that
// changes nothing while another of its table is in flight answers with
// that one's seqnum once it is sequenced, not the table's last.
func TestNoChangeAnswersWithThePublicationInFlight(t *testing.T) {
	r := newRig(t)
	tb := NewTable("t", 100, nil)
	p, _ := r.publish(tb, 7, []table.Row{row(1)}, nil)
	p.Wait(context.Background())
	hold := r.seq.gate(true)
	a, _ := r.publish(tb, 7, []table.Row{row(2)}, nil)
	same, _ := r.publish(tb, 7, []table.Row{row(2)}, nil) // no change
	hold <- struct{}{}
	seqA, _, _ := a.Wait(context.Background())
	seq, changed, err := same.Wait(context.Background())
	if err != nil || changed || seq != seqA {
		t.Fatalf("no change: %d %v %v, want %d, false", seq, changed, err, seqA)
	}
}

func TestHistoryNeedsAnUnbrokenRun(t *testing.T) {
	tb := NewTable("t", 1024, nil)
	for _, s := range []uint64{1, 2, 4, 5} { // 3 granted twice, never published
		tb.recordLocked(&table.Publication{Seqnum: s})
	}
	tb.seqnum = 5
	if got, ok := tb.sinceLocked(3); !ok || len(got) != 2 || got[0].Seqnum != 4 {
		t.Fatalf("after 3: got %v %v", got, ok)
	}
	if _, ok := tb.sinceLocked(2); ok {
		t.Fatal("history with a hole after 2 served as deltas")
	}
	if _, ok := tb.sinceLocked(0); ok {
		t.Fatal("history with a hole after 0 served as deltas")
	}
	if got, ok := tb.sinceLocked(5); !ok || len(got) != 0 {
		t.Fatalf("after 5: got %v %v", got, ok)
	}
}

func TestHistoryKeepsTheLastRun(t *testing.T) {
	tb := NewTable("t", 100, nil)
	for s := uint64(1); s <= 5000; s++ {
		tb.recordLocked(&table.Publication{Seqnum: s})
		if n := len(tb.history); n < min(int(s), 100) || n > 200 || tb.history[n-1].p.Seqnum != s {
			t.Fatalf("after %d: %d entries ending at %d", s, n, tb.history[n-1].p.Seqnum)
		}
	}
	tb.seqnum = 5000
	if got, ok := tb.sinceLocked(4900); !ok || len(got) != 100 || got[0].Seqnum != 4901 {
		t.Fatalf("after 4900: %d entries, %v", len(got), ok)
	}
	if _, ok := tb.sinceLocked(4000); ok {
		t.Fatal("served deltas from further back than the history holds")
	}
}

// TestBatcherTakesABoundedEntry: however long the queue, one entry takes at
// most maxEntryPubs publications, oldest first; the rest wait in order.
func TestBatcherTakesABoundedEntry(t *testing.T) {
	b := NewBatcher(Config{})
	n := maxEntryPubs + 10
	for i := range n {
		b.q = append(b.q, &request{epoch: uint64(i)})
	}
	b.waiting.Store(int64(n))
	first := b.take()
	rest := b.take()
	if len(first) != maxEntryPubs || len(rest) != 10 || first[0].epoch != 0 || rest[0].epoch != maxEntryPubs || len(b.take()) != 0 || b.Queued() != 0 {
		t.Fatalf("took %d then %d, %d left counted", len(first), len(rest), b.Queued())
	}
}

// TestPublishRefusedWhenTooManyWait: with MaxWaiting publications waiting
// for seqnums on the node, one more is refused before it changes its table.
func TestPublishRefusedWhenTooManyWait(t *testing.T) {
	r := newRig(t)
	tb := NewTable("t", 100, nil)
	p, _ := r.publish(tb, 7, []table.Row{row(1)}, nil)
	p.Wait(context.Background())
	r.b.waiting.Add(MaxWaiting) // as if that many waited
	if _, err := r.publish(tb, 7, []table.Row{row(2)}, nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("with the queue full: %v, want unavailable", err)
	}
	r.b.waiting.Add(-MaxWaiting)
	if seq, rows, err := tb.Last(); err != nil || seq != 1 || len(rows) != 1 {
		t.Fatalf("the refused publication changed the table: %d %v %v", seq, rows, err)
	}
	r.svc.busy.Wait() // the refused one answered its Done too
}
