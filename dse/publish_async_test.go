package dse_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/cache"
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

// TestPublishAfterCloseIsAnswered: a publication started after its node
// closed is refused at once, and the service is not left busy with it.
func TestPublishAfterCloseIsAnswered(t *testing.T) {
	c := dsetest.New(t, 1)
	ctx := context.Background()
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	if _, _, err := pub.Publish(ctx, "t", rows(1), false); err != nil {
		t.Fatal(err)
	}
	c.Nodes[0].Close()
	if _, _, err := pub.PublishDelta(ctx, "t", rows(2), nil); !errors.Is(err, dse.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if _, err := pub.PublishDeltaAsync("t", rows(3), nil); !errors.Is(err, dse.ErrClosed) {
		t.Fatalf("async publish after close: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pub.Wait(wctx); err != nil {
		t.Fatalf("the service is still busy with publications nobody will answer: %v", err)
	}
}

// TestSnapshotRowsAreShared: two subscribers on one node are handed the
// same decoded snapshot (no copy per hook); each hook reads it whole while
// the other's cache indexes it, and both, and both caches, see every row.
// Under -race, anything that wrote to the shared rows would fail it.
func TestSnapshotRowsAreShared(t *testing.T) {
	c := dsetest.New(t, 2)
	ctx := context.Background()
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	// Big enough for the hooks to run while the caches index.
	const n = 70_000
	var big []dse.Row
	for i := range int64(n) {
		big = append(big, dse.Row{n - i})
	}
	if _, _, err := pub.Publish(ctx, "t", big, false); err != nil {
		t.Fatal(err)
	}
	sums := make(chan int64, 2)
	hook := func(_, _ string, d dse.Data) {
		if d.Snapshot {
			var sum int64
			for _, r := range d.Rows {
				sum += r[0].(int64)
			}
			sums <- sum
		}
	}
	subs := []*dse.DataService{
		register(t, c.Nodes[1], "sub1", dse.Hooks{ReceiveData: hook}),
		register(t, c.Nodes[1], "sub2", dse.Hooks{ReceiveData: hook}),
	}
	for _, sub := range subs {
		if err := sub.Subscribe(ctx, "pub", "t"); err != nil {
			t.Fatal(err)
		}
	}
	for range subs {
		select {
		case sum := <-sums:
			if want := int64(n) * (n + 1) / 2; sum != want {
				t.Fatalf("a hook's snapshot sums to %d, want %d", sum, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no snapshot")
		}
	}
	id := cache.TableID{Publisher: "pub", Table: "t"}
	for _, sub := range subs {
		for i := range int64(n) {
			if !sub.Cache().Has(id, dse.Row{i + 1}) {
				t.Fatalf("%s's cache lacks row %d", sub.ID(), i+1)
			}
		}
	}
}

// TestNoChangeAnswersWithThePublicationItRepeats: a delta that changes
// nothing, made while publications are in flight, answers with the seqnum
// of the last one queued before it (whose content it repeats), not with
// the table's seqnum when it asked (content not sequenced yet) nor with a
// later one's (content it never had).
func TestNoChangeAnswersWithThePublicationItRepeats(t *testing.T) {
	c := dsetest.New(t, 1)
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	ctx := context.Background()
	if _, _, err := pub.Publish(ctx, "t", rows(0), false); err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 50; i++ {
		a, err := pub.PublishDeltaAsync("t", rows(1000+i), nil)
		if err != nil {
			t.Fatal(err)
		}
		same, err := pub.PublishDeltaAsync("t", rows(1000+i), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pub.PublishDeltaAsync("t", rows(2000+i), nil)
		if err != nil {
			t.Fatal(err)
		}
		seqA, changedA, errA := a.Wait(ctx)
		seqSame, changedSame, errSame := same.Wait(ctx)
		seqB, _, errB := b.Wait(ctx)
		if errA != nil || errSame != nil || errB != nil || !changedA || changedSame {
			t.Fatalf("round %d: %v %v %v, changed %v %v", i, errA, errSame, errB, changedA, changedSame)
		}
		if seqSame != seqA || seqB <= seqA {
			t.Fatalf("round %d: the repeat answered seqnum %d; its content is the one sequenced at %d (the next publication got %d)", i, seqSame, seqA, seqB)
		}
	}
}
