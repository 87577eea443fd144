package dse_test

import (
	"context"
	"errors"
	"testing"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
)

// TestPublishDeltaAsync keeps many publications in flight from one
// goroutine: they get consecutive seqnums in call order and reach a
// subscriber on another node in that order; a change that changes nothing
// is answered at once; bad input is refused before anything is queued.
func TestPublishDeltaAsync(t *testing.T) {
	c := dsetest.New(t, 2)
	ctx := context.Background()
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	var r recorder
	sub := register(t, c.Nodes[1], "sub", r.hooks())
	if err := sub.Subscribe(ctx, "pub", "t"); err != nil {
		t.Fatal(err)
	}
	first, _, err := pub.Publish(ctx, "t", rows(0), false)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var inFlight []*dse.Publishing
	for i := int64(1); i <= n; i++ {
		p, err := pub.PublishDeltaAsync("t", rows(i), rows(i-1))
		if err != nil {
			t.Fatalf("publication %d: %v", i, err)
		}
		inFlight = append(inFlight, p)
	}
	for i, p := range inFlight {
		seq, changed, err := p.Wait(ctx)
		if err != nil || !changed || seq != first+uint64(i)+1 {
			t.Fatalf("publication %d: seqnum %d changed %v err %v, want seqnum %d", i+1, seq, changed, err, first+uint64(i)+1)
		}
		if again, _, _ := p.Wait(ctx); again != seq {
			t.Fatalf("a second Wait said %d, the first %d", again, seq)
		}
	}
	waitRows(t, sub, "pub", "t", rows(n))
	r.increasing(t)
	// Deleting a row that is not there changes nothing: no seqnum.
	p, err := pub.PublishDeltaAsync("t", nil, rows(-5))
	if err != nil {
		t.Fatal(err)
	}
	if seq, changed, err := p.Wait(ctx); err != nil || changed || seq != first+n {
		t.Fatalf("no change: seqnum %d changed %v err %v", seq, changed, err)
	}
	if _, err := pub.PublishDeltaAsync("t", []dse.Row{{struct{}{}}}, nil); !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("a row of a struct: %v", err)
	}
	if _, err := pub.PublishDeltaAsync("bad table!", rows(1), nil); !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("a bad table name: %v", err)
	}
	if got := c.Nodes[0].FSM().Seqnum("pub", "t"); got != first+n {
		t.Fatalf("registry seqnum %d after refused input, want %d", got, first+n)
	}
	// A stopped service queues nothing.
	if err := pub.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.PublishDeltaAsync("t", rows(1), nil); !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("after Stop: %v", err)
	}
}
