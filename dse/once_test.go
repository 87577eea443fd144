package dse_test

import (
	"context"
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
	c := dsetest.NewWith(t, 3, func(i int, cfg *dse.Config) {
		faults[i] = transport.NewFaults(uint64(i+1), 0, 0, 0, 0)
		cfg.Faults = faults[i]
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
