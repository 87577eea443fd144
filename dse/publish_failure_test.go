package dse_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
)

// TestFailedPublicationIsNotServedUnderTheLastSeqnum: a publication that
// could not be sequenced (no quorum) leaves its change in the table, which
// was never published under any seqnum; until the table is republished as
// a snapshot under a new one, its content is not handed out paired with
// the last seqnum.
func TestFailedPublicationIsNotServedUnderTheLastSeqnum(t *testing.T) {
	// Raft applies wait up to 3 s: a heal stays in flight that long.
	c := dsetest.NewWith(t, 3, func(_ int, cfg *dse.Config, deps *dse.Deps) { cfg.ApplyTimeout = 3 * time.Second })
	ctx := context.Background()
	l := c.WaitLeader()
	p := register(t, c.Nodes[l], "p", dse.Hooks{})
	if seq, _, err := p.Publish(ctx, "t", rows(1), false); err != nil || seq != 1 {
		t.Fatal(seq, err)
	}
	var down []int
	for i := range c.Nodes {
		if i != l {
			c.Nodes[i].Close()
			down = append(down, i)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, _, err := p.PublishDelta(cctx, "t", rows(2), nil)
	cancel()
	if err == nil {
		t.Fatal("a publication without quorum was sequenced")
	}
	if seq, got, err := p.GetLastPublishedDataWithSeqnum("t"); !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("after the failure: seqnum %d with %v (%v), want unavailable", seq, got, err)
	}
	// Publishing the same content again changes nothing, but that content
	// has no seqnum yet (its heal is in flight, and cannot commit): no
	// success under the last seqnum (a datasource polling it read healthy).
	for range 5 {
		time.Sleep(150 * time.Millisecond)
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		seq, changed, err := p.Publish(cctx, "t", rows(1, 2), false)
		cancel()
		if err == nil {
			t.Fatalf("the unsequenced content published again: seqnum %d, changed %v, no error", seq, changed)
		}
	}
	for _, i := range down {
		c.Restart(i)
	}
	// The heal republishes the content as a snapshot under a new seqnum.
	dsetest.WaitFor(t, 20*time.Second, "the table healed", func() bool {
		seq, got, err := p.GetLastPublishedDataWithSeqnum("t")
		return err == nil && seq > 1 && len(got) == 2
	})
}
