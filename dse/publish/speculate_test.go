package publish

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// fakeReplicas is the durability of a replicated service (every
// publication durable at once) and the early push to its replicas, which
// records each publication with the seqnum it was sent under.
type fakeReplicas struct {
	mu    sync.Mutex
	early []uint64
}

func (f *fakeReplicas) Needs(string) bool                            { return true }
func (f *fakeReplicas) Await(_ *table.Publication, done func(error)) { done(nil) }
func (f *fakeReplicas) PushReplicas(pubs []*table.Publication) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range pubs {
		f.early = append(f.early, p.Seqnum)
	}
}

func (f *fakeReplicas) PushSubscribers([]*table.Publication) {}

func (f *fakeReplicas) sent() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.early
	f.early = nil
	return out
}

// TestSpeculation: a replicated service's publications go to its replicas
// before their grant only under the seqnum the registry is sure to grant;
// after a failure, and under a new incarnation, the grant skips past
// every seqnum sent ahead, so none is ever granted to other content.
func TestSpeculation(t *testing.T) {
	r := newRig(t)
	rep := &fakeReplicas{}
	r.b.cfg.Durability, r.b.cfg.Early = rep, rep
	tb := NewTable("t", 100, nil)
	lastReq := func() fsm.PublishRequest {
		r.seq.mu.Lock()
		defer r.seq.mu.Unlock()
		return r.seq.reqs[len(r.seq.reqs)-1]
	}
	publish := func(inc uint64, v int64) (uint64, error) {
		t.Helper()
		p, err := r.publish(tb, inc, []table.Row{row(v)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		seq, _, err := p.Wait(context.Background())
		return seq, err
	}
	expect := func(what string, seq, want uint64, err error, req fsm.PublishRequest, first, after, skip uint64, early []uint64) {
		t.Helper()
		if err != nil || seq != want {
			t.Fatalf("%s: seqnum %d, %v; want %d", what, seq, err, want)
		}
		if req.First != first || req.After != after || req.Skip != skip {
			t.Fatalf("%s: request %+v, want first %d after %d skip %d", what, req, first, after, skip)
		}
		if got := rep.sent(); fmt.Sprint(got) != fmt.Sprint(early) {
			t.Fatalf("%s: sent ahead %v, want %v", what, got, early)
		}
	}

	// The first grant of an incarnation is not speculative (it skips, but
	// a table never granted has nothing to skip).
	seq, err := publish(7, 1)
	expect("first", seq, 1, err, lastReq(), 0, 0, MaxSpeculative, nil)
	seq, err = publish(7, 2)
	expect("second", seq, 2, err, lastReq(), 2, 0, 0, []uint64{2})

	// An entry of unknown outcome that committed: its publication went
	// ahead under 3; the next grant starts after it, not speculatively.
	r.seq.mu.Lock()
	r.seq.applied = true
	r.seq.mu.Unlock()
	r.seq.failNext(fmt.Errorf("%w: leadership lost", errdefs.ErrUnavailable))
	_, err = publish(7, 3)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "may or may not") {
		t.Fatalf("a speculative publication whose entry failed: %v", err)
	}
	if got := rep.sent(); fmt.Sprint(got) != "[3]" {
		t.Fatalf("sent ahead %v, want [3]", got)
	}
	r.seq.mu.Lock()
	r.seq.applied = false
	r.seq.mu.Unlock()
	select {
	case <-r.svc.healed:
	case <-time.After(5 * time.Second):
		t.Fatal("no heal")
	}
	seq, err = publish(7, 4)
	expect("after the failure", seq, 4, err, lastReq(), 0, 3, 0, nil)
	seq, err = publish(7, 5)
	expect("speculating again", seq, 5, err, lastReq(), 5, 0, 0, []uint64{5})

	// Refused by the registry (the seqnum expected was taken): unknown
	// outcome, since the replicas may hold it.
	r.seq.mu.Lock()
	r.seq.seqnums[[2]string{"p", "t"}] += 10 // 15
	r.seq.mu.Unlock()
	if _, err = publish(7, 6); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "may or may not") {
		t.Fatalf("a speculative publication refused: %v", err)
	}
	rep.sent()
	<-r.svc.healed
	seq, err = publish(7, 7)
	expect("after the refusal", seq, 16, err, lastReq(), 0, 6, 0, nil)

	// A new incarnation skips past what the last one may have sent.
	r.reg.mu.Lock()
	r.reg.inc["p"] = 8
	r.reg.mu.Unlock()
	seq, err = publish(8, 8)
	expect("new incarnation", seq, 16+1+MaxSpeculative, err, lastReq(), 0, 6, MaxSpeculative, nil)
	seq, err = publish(8, 9)
	expect("then speculating", seq, 16+2+MaxSpeculative, err, lastReq(), 16+2+MaxSpeculative, 0, 0, []uint64{16 + 2 + MaxSpeculative})
}
