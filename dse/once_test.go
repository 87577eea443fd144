package dse_test

import (
	"context"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
	"dse.dev/dse/transport"
)

// TestLostRepliesApplyOnce: the leader loses half of its replies with their
// connections, so a follower cannot know whether what it forwarded was
// committed and sends it again. Every command still takes effect once: each
// of a follower's publications gets exactly one seqnum (a resent publish
// entry granted again would burn the first grant's), and deleting a
// service from a follower succeeds (a resent delete would find it gone).
func TestLostRepliesApplyOnce(t *testing.T) {
	faults := make([]*transport.Faults, 3)
	c := dsetest.NewWith(t, 3, func(i int, cfg *dse.Config) {
		faults[i] = transport.NewFaults(uint64(i+1), 0, 0, 0, 0)
		cfg.Faults = faults[i]
	})
	leader := c.WaitLeader()
	follower := c.Nodes[(leader+1)%3]
	pub := register(t, follower, "pub", dse.Hooks{})
	register(t, follower, "doomed", dse.Hooks{})
	faults[leader].SetLoseReply(0.5)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 40
	for i := range int64(n) {
		if _, _, err := pub.PublishDelta(ctx, "t", rows(i), nil); err != nil {
			t.Fatalf("publication %d: %v", i, err)
		}
	}
	if err := follower.DeleteService(ctx, "doomed"); err != nil {
		t.Fatalf("delete from a follower: %v", err)
	}
	faults[leader].SetLoseReply(0)
	if got := c.Nodes[leader].FSM().Seqnum("pub", "t"); got != n {
		t.Fatalf("%d publications took seqnums up to %d: some were granted twice", n, got)
	}
	if _, ok := c.Nodes[leader].FSM().Service("doomed"); ok {
		t.Fatal("the deleted service is still registered")
	}
}
