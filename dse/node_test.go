package dse_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
)

func members(t *testing.T, n *dse.Node) []dse.Member {
	t.Helper()
	ms, err := n.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestClusterFormsAndAgrees(t *testing.T) {
	c := dsetest.New(t, 3)
	for _, n := range c.Nodes {
		ms := members(t, n)
		if len(ms) != 3 {
			t.Fatalf("%s sees %d members, want 3", n.ID(), len(ms))
		}
		leaders := 0
		for _, m := range ms {
			if !m.Voter || !m.Reachable || m.HTTP == "" {
				t.Errorf("%s: member %+v, want a reachable voter with an HTTP address", n.ID(), m)
			}
			if m.Leader {
				leaders++
			}
		}
		if leaders != 1 {
			t.Fatalf("%s sees %d leaders, want 1", n.ID(), leaders)
		}
	}
}

func TestLeaderFailureAndRestart(t *testing.T) {
	c := dsetest.New(t, 3)
	old := c.WaitLeader()
	oldID := c.Nodes[old].ID()
	c.Nodes[old].Close()
	start := time.Now()
	idx := -1
	dsetest.WaitFor(t, 10*time.Second, "a new leader", func() bool {
		idx = c.Leader()
		return idx >= 0 && idx != old
	})
	t.Logf("new leader after %s", time.Since(start))
	nl := c.Nodes[idx]
	dsetest.WaitFor(t, 10*time.Second, "old leader recorded down on every live node", func() bool {
		for i, n := range c.Nodes {
			if i == old {
				continue
			}
			if rec, ok := n.FSM().Node(oldID); !ok || rec.Up {
				return false
			}
		}
		return true
	})
	for _, m := range members(t, nl) {
		if m.ID == oldID && (m.Reachable || m.State != "down") {
			t.Fatalf("dead member shows %+v", m)
		}
	}
	// Back on its data dir, with no flags: same identity, state, and up again.
	idxBefore := nl.FSM().Index()
	re := c.Restart(old)
	if re.ID() != oldID {
		t.Fatalf("restarted as %q, want %q", re.ID(), oldID)
	}
	dsetest.WaitFor(t, 10*time.Second, "restarted node up and caught up", func() bool {
		rec, ok := nl.FSM().Node(oldID)
		return ok && rec.Up && re.FSM().Index() >= idxBefore
	})
}

func TestRemoveQuorumCheck(t *testing.T) {
	c := dsetest.New(t, 3)
	l := c.WaitLeader()
	// Stop one follower and wait until the leader records it down.
	f1 := (l + 1) % 3
	f2 := (l + 2) % 3
	deadID := c.Nodes[f1].ID()
	c.Nodes[f1].Close()
	dsetest.WaitFor(t, 10*time.Second, "follower down", func() bool {
		rec, _ := c.Nodes[l].FSM().Node(deadID)
		return !rec.Up
	})
	ctx := context.Background()
	// Removing the live follower would leave 1 live of 2 voters.
	err := c.Nodes[f2].Remove(ctx, c.Nodes[f2].ID(), false)
	if !errors.Is(err, dse.ErrQuorum) {
		t.Fatalf("got %v, want ErrQuorum", err)
	}
	if err := c.Nodes[l].Remove(ctx, "nope", false); !errors.Is(err, dse.ErrMemberNotFound) {
		t.Fatalf("got %v, want ErrMemberNotFound", err)
	}
	// Removing the dead one is fine, through a follower.
	if err := c.Nodes[f2].Remove(ctx, deadID, false); err != nil {
		t.Fatal(err)
	}
	if got := len(members(t, c.Nodes[f2])); got != 2 {
		t.Fatalf("got %d members, want 2", got)
	}
	if _, ok := c.Nodes[f2].FSM().Node(deadID); ok {
		t.Fatal("removed node still in the registry")
	}
}

func TestNonvoterPromoteTransferLeave(t *testing.T) {
	c := dsetest.New(t, 3)
	cfg, deps := dsetest.Config(t, "n4", t.TempDir())
	n4, err := dse.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer n4.Close()
	ctx := context.Background()
	// Join through a follower: it forwards to the leader.
	l := c.WaitLeader()
	f := c.Nodes[(l+1)%3]
	if err := f.Join(ctx, dse.JoinRequest{ID: "n4", Addr: n4.Addr(), HTTPAddr: n4.HTTPAddr()}); err != nil {
		t.Fatal(err)
	}
	voter := func(id string) bool {
		for _, m := range members(t, f) {
			if m.ID == id {
				return m.Voter
			}
		}
		t.Fatalf("%s not a member", id)
		return false
	}
	if voter("n4") {
		t.Fatal("n4 joined as a voter")
	}
	if err := f.Promote(ctx, "n4"); err != nil {
		t.Fatal(err)
	}
	if !voter("n4") {
		t.Fatal("n4 not a voter after promote")
	}
	if err := f.Promote(ctx, "n4"); !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("second promote: got %v, want ErrInvalid", err)
	}
	newLeader, err := f.TransferLeadership(ctx, "n4")
	if err != nil || newLeader != "n4" {
		t.Fatalf("transfer: got %q, %v; want n4", newLeader, err)
	}
	if !n4.IsLeader() {
		t.Fatal("n4 does not lead after the transfer returned")
	}
	// The leader leaves: leadership moves first, then it is removed.
	if err := n4.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	<-n4.Done()
	dsetest.WaitFor(t, 10*time.Second, "n4 gone from the membership", func() bool {
		return len(members(t, f)) == 3 && c.Leader() >= 0
	})
}

func TestRejoinAfterWipe(t *testing.T) {
	c := dsetest.New(t, 3)
	l := c.WaitLeader()
	fi := (l + 1) % 3
	old := c.Nodes[fi]
	id, addr := old.ID(), old.Addr()
	ctx := context.Background()
	if err := c.Nodes[l].Remove(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	old.Close()
	// Same id and address, empty data dir: it joins again.
	cfg, deps := dsetest.Config(t, id, t.TempDir())
	cfg.Bind = addr
	var n *dse.Node
	var err error
	dsetest.WaitFor(t, 5*time.Second, "port free", func() bool {
		n, err = dse.New(cfg, deps)
		return err == nil
	})
	defer n.Close()
	if err := c.Nodes[l].Join(ctx, dse.JoinRequest{ID: id, Addr: n.Addr(), HTTPAddr: n.HTTPAddr(), Voter: true}); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 10*time.Second, "rejoined node caught up", func() bool {
		rec, ok := n.FSM().Node(id)
		return ok && rec.Up && len(n.FSM().Nodes()) == 3
	})
}

// TestRefusedJoinChangesNothing: a join under a new id at a live member's
// address is refused (the address answers as that member), and the member
// keeps its place; it was removed before the new node was checked.
func TestRefusedJoinChangesNothing(t *testing.T) {
	c := dsetest.New(t, 3)
	l := c.Nodes[c.Leader()]
	victim := c.Nodes[(c.Leader()+1)%3]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := l.Join(ctx, dse.JoinRequest{ID: "ghost", Addr: victim.Addr(), HTTPAddr: "127.0.0.1:9", Voter: true})
	if !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("join of ghost at %s's address: %v, want invalid", victim.ID(), err)
	}
	time.Sleep(500 * time.Millisecond)
	ms := members(t, l)
	if len(ms) != 3 || !slices.ContainsFunc(ms, func(m dse.Member) bool { return m.ID == victim.ID() }) {
		t.Fatalf("after a refused join: members %+v, want the 3 as before", ms)
	}
}

// TestRemoveQuorumCheckBeforeTheGrace: a voter that just died counts as
// dead at once, before the registry marks it down (after the liveness
// grace): removing a live voter then would lose quorum, and is refused; a
// leader's leave, refused likewise, keeps its leadership.
func TestRemoveQuorumCheckBeforeTheGrace(t *testing.T) {
	c := dsetest.NewWith(t, 3, func(_ int, cfg *dse.Config, deps *dse.Deps) { cfg.LivenessGrace = time.Minute })
	l := c.WaitLeader()
	f1, f2 := (l+1)%3, (l+2)%3
	deadID := c.Nodes[f1].ID()
	c.Nodes[f1].Close()
	ctx := context.Background()
	if rec, _ := c.Nodes[l].FSM().Node(deadID); !rec.Up {
		t.Fatal("the registry marked the node down already: the test needs the grace to run")
	}
	if err := c.Nodes[l].Remove(ctx, c.Nodes[f2].ID(), false); !errors.Is(err, dse.ErrQuorum) {
		t.Fatalf("removing a live voter with another just dead: %v, want ErrQuorum", err)
	}
	if err := c.Nodes[l].Leave(ctx); !errors.Is(err, dse.ErrQuorum) {
		t.Fatalf("the leader leaving with a voter just dead: %v, want ErrQuorum", err)
	}
	if !c.Nodes[l].IsLeader() {
		t.Fatal("a refused leave moved leadership")
	}
	ms := members(t, c.Nodes[l])
	if len(ms) != 3 {
		t.Fatalf("got %d members after refusals, want 3", len(ms))
	}
	// Listed as it is now, though the registry still has it up.
	for _, m := range ms {
		if m.ID == deadID && (m.Reachable || m.State != "down") {
			t.Fatalf("the dead member listed as %+v, want down and unreachable", m)
		}
	}
}

// TestTransferToTheLeaderReturnsAtOnce: a transfer to the node that already
// leads has nothing to wait for (it waited out the whole timeout).
func TestTransferToTheLeaderReturnsAtOnce(t *testing.T) {
	c := dsetest.New(t, 3)
	l := c.Nodes[c.WaitLeader()]
	from := c.Nodes[(c.WaitLeader()+1)%3]
	start := time.Now()
	got, err := from.TransferLeadership(context.Background(), l.ID())
	if err != nil || got != l.ID() || time.Since(start) > 2*time.Second {
		t.Fatalf("transfer to the leader %s: %q %v after %s", l.ID(), got, err, time.Since(start))
	}
}
