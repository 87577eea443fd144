package dse_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
	"dse.dev/dse/transport"
)

// TestLostRepliesApplyOnce: the leader loses the first reply to each request
// a follower forwards, with its connection, so the follower cannot know
// whether the leader carried it out and sends it again. Every change still
// takes effect once: each of a follower's publications gets exactly one
// seqnum (a resent publish entry granted again would burn the first
// grant's), and deleting a service or removing a member from a follower
// succeeds (a resent delete would find the service gone, a resent removal
// the member).
func TestLostRepliesApplyOnce(t *testing.T) {
	faults := make([]*transport.Faults, 3)
	c := dsetest.NewWith(t, 3, func(i int, cfg *dse.Config, deps *dse.Deps) {
		faults[i] = transport.NewFaults(uint64(i + 1))
		deps.Faults = faults[i]
	})
	leader := c.WaitLeader()
	follower := c.Nodes[(leader+1)%3]
	other := c.Nodes[(leader+2)%3]
	pub := register(t, follower, "pub", dse.Hooks{})
	register(t, follower, "doomed", dse.Hooks{})
	lose := faults[leader].LoseReplies

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 20
	for i := range int64(n) {
		lose(1)
		if _, _, err := pub.PublishDelta(ctx, "t", rows(i), nil); err != nil {
			t.Fatalf("publication %d: %v", i, err)
		}
	}
	if got := c.Nodes[leader].FSM().Seqnum("pub", "t"); got != n {
		t.Fatalf("%d publications took seqnums up to %d: some were granted twice", n, got)
	}
	lose(1)
	if err := follower.DeleteService(ctx, "doomed"); err != nil {
		t.Fatalf("delete from a follower: %v", err)
	}
	if _, ok := c.Nodes[leader].FSM().Service("doomed"); ok {
		t.Fatal("the deleted service is still registered")
	}
	lose(1)
	if err := follower.Remove(ctx, other.ID(), false); err != nil {
		t.Fatalf("remove a member from a follower: %v", err)
	}
	// Each lost reply was counted where it was lost.
	if got := counter(t, follower, "dse_leader_outcome_unknown_total"); got < n+2 {
		t.Fatalf("dse_leader_outcome_unknown_total = %v, want at least %d", got, n+2)
	}
	members, err := c.Nodes[leader].Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.ID == other.ID() {
			t.Fatalf("%s is still a member", other.ID())
		}
	}
}

// counter reads a counter or gauge from a node's metrics (of a histogram,
// its count).
func counter(t *testing.T, n *dse.Node, name string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		total := 0.0
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
		return total
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestWatchLimitAndGauge: a node opens at most MaxWatches watches, counts
// them in dse_watches_open, and frees a place when one ends.
func TestWatchLimitAndGauge(t *testing.T) {
	c := dsetest.NewWith(t, 1, func(_ int, cfg *dse.Config, deps *dse.Deps) { cfg.MaxWatches = 2 })
	n := c.Nodes[0]
	pub := register(t, n, "pub", dse.Hooks{})
	ctx := context.Background()
	if _, _, err := pub.Publish(ctx, "t", rows(1), false); err != nil {
		t.Fatal(err)
	}
	var cancels []context.CancelFunc
	for range 2 {
		wctx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		events := make(chan dse.WatchEvent, 16)
		go n.Watch(wctx, "pub", "t", events)
		select {
		case <-events:
		case <-time.After(10 * time.Second):
			t.Fatal("a watch under the limit got no snapshot")
		}
	}
	if got := counter(t, n, "dse_watches_open"); got != 2 {
		t.Fatalf("dse_watches_open = %v, want 2", got)
	}
	if err := n.Watch(ctx, "pub", "t", make(chan dse.WatchEvent, 1)); !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("a third watch: %v, want ErrUnavailable", err)
	}
	if err := n.Watch(ctx, "nope", "t", make(chan dse.WatchEvent, 1)); !errors.Is(err, dse.ErrServiceNotFound) {
		t.Fatalf("a watch of no service: %v, want ErrServiceNotFound", err)
	}
	cancels[0]()
	dsetest.WaitFor(t, 10*time.Second, "the ended watch's place freed", func() bool {
		return counter(t, n, "dse_watches_open") == 1
	})
	cancels[1]()
}
