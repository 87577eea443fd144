package dse_test

import (
	"context"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
	"dse.dev/dse/dse/table"
)

// A subscriber whose hook stalls holds up nobody: the other subscriber on
// its node gets every publication meanwhile; the stalled one is cut off
// and, once its hook returns, resumes from its cache as one snapshot, then
// the deltas after it.
func TestSlowSubscriberIsCutOff(t *testing.T) {
	c := dsetest.NewWith(t, 2, func(_ int, cfg *dse.Config, _ *dse.Deps) { cfg.MaxHookQueue = 8 })
	ctx := context.Background()
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	var fast, slow recorder
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	slowHooks := slow.hooks()
	record := slowHooks.ReceiveDataSequenced
	slowHooks.ReceiveDataSequenced = func(p, tbl string, d dse.Data, seq uint64, at time.Time) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
		record(p, tbl, d, seq, at)
	}
	fastSvc := register(t, c.Nodes[1], "fast", fast.hooks())
	slowSvc := register(t, c.Nodes[1], "slow", slowHooks)
	for _, s := range []*dse.DataService{fastSvc, slowSvc} {
		if err := s.Subscribe(ctx, "pub", "t"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := pub.Publish(ctx, "t", rows(0), false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered: // the slow hook holds its first publication
	case <-time.After(10 * time.Second):
		t.Fatal("the slow subscriber's hook never ran")
	}
	const n = 100
	for i := int64(1); i <= n; i++ {
		if _, _, err := pub.PublishDelta(ctx, "t", rows(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	last := func(r *recorder) uint64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.seqs) == 0 {
			return 0
		}
		return r.seqs[len(r.seqs)-1]
	}
	final, _, err := pub.GetLastPublishedDataWithSeqnum("t")
	if err != nil {
		t.Fatal(err)
	}
	// The fast one is not held up by the stalled one.
	dsetest.WaitFor(t, 10*time.Second, "the fast subscriber's hooks at the last seqnum", func() bool { return last(&fast) == final })
	if got := last(&slow); got != 0 {
		t.Fatalf("the stalled hook recorded seqnum %d", got)
	}
	if cuts := c.Nodes[1].Stats().Cutoffs; cuts != 1 {
		t.Fatalf("cut-offs on the subscribers' node: %d, want 1", cuts)
	}
	close(gate)
	dsetest.WaitFor(t, 10*time.Second, "the slow subscriber's hooks at the last seqnum", func() bool { return last(&slow) == final })
	fast.increasing(t)
	slow.increasing(t)
	// What the slow hooks saw adds up to the table: its first snapshot,
	// then a snapshot after the cut-off holding every row, and few deltas.
	slow.mu.Lock()
	defer slow.mu.Unlock()
	content := table.NewSet(nil)
	for _, d := range slow.events {
		if d.Snapshot {
			content.Replace(d.Rows)
		} else {
			content.Apply(d.Add, d.Del)
		}
	}
	if content.Len() != n+1 {
		t.Fatalf("the slow hooks' events add up to %d rows, want %d", content.Len(), n+1)
	}
	if slow.snaps != 2 || len(slow.events) > 2+8 {
		t.Fatalf("the slow hooks saw %d events, %d snapshots: want the first, one after the cut-off, and at most 8 queued deltas", len(slow.events), slow.snaps)
	}
}
