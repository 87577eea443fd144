package dse_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
)

// The parts of the Go API a Congress service author relies on.

// seqLog records what a subscriber's hook received, in order.
type seqLog struct {
	mu   sync.Mutex
	seqs []uint64
	snap []bool
}

func (l *seqLog) hooks() dse.Hooks {
	return dse.Hooks{ReceiveDataSequenced: func(_, _ string, d dse.Data, seq uint64, _ time.Time) {
		l.mu.Lock()
		l.seqs, l.snap = append(l.seqs, seq), append(l.snap, d.Snapshot)
		l.mu.Unlock()
	}}
}

func (l *seqLog) get() ([]uint64, []bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seqs), slices.Clone(l.snap)
}

// TestGetSnapshotSeedsSubscribers: a subscriber of a table its publisher
// never published holds what the publisher's GetSnapshot hook returns,
// under seqnum 0, through every path: a subscribe, a subscribe made before
// the publisher exists, a second local subscriber joining, a watch, get;
// the publisher's first publication then continues from there in order.
func TestGetSnapshotSeedsSubscribers(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	seed := []dse.Row{{"web1", "up"}, {"db1", "up"}}
	// A subscriber that comes before its publisher.
	var early seqLog
	first := register(t, c.Nodes[2], "early", early.hooks())
	if err := first.Subscribe(ctx, "engine", "hosts"); err != nil {
		t.Fatal(err)
	}
	register(t, c.Nodes[0], "engine", dse.Hooks{GetSnapshot: func(table string) ([]dse.Row, error) {
		if table != "hosts" {
			return nil, nil
		}
		return seed, nil
	}})
	var log seqLog
	sub := register(t, c.Nodes[1], "policy", log.hooks())
	if err := sub.Subscribe(ctx, "engine", "hosts"); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitRows(t, sub, "engine", "hosts", seed)
	dsetest.WaitRows(t, first, "engine", "hosts", seed)
	// A second local subscriber joins the node's subscription.
	second := register(t, c.Nodes[1], "audit", dse.Hooks{})
	if err := second.Subscribe(ctx, "engine", "hosts"); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitRows(t, second, "engine", "hosts", seed)
	// get (the get_last_published_data_with_seqnum RPC, from another node).
	res, err := c.Nodes[2].RPC(ctx, "engine", "get_last_published_data_with_seqnum", map[string]any{"table": "hosts"}, dse.RPCOptions{})
	if m, _ := res.(map[string]any); err != nil || m["seqnum"] != int64(0) || len(m["rows"].([]any)) != 2 {
		t.Fatalf("get: %v %v, want seqnum 0 and the hook's 2 rows", res, err)
	}
	// A watch starts with the seed.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan dse.WatchEvent, 16)
	go c.Nodes[2].Watch(wctx, "engine", "hosts", events)
	select {
	case ev := <-events:
		if !ev.Snapshot || ev.Seqnum != 0 || len(ev.Rows) != 2 {
			t.Fatalf("the watch's first event: %+v, want the seed at seqnum 0", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch got no seed")
	}
	// The first publication continues from there.
	pub, _ := c.Nodes[0].Service("engine")
	next := []dse.Row{{"web1", "up"}, {"db1", "down"}}
	if seq, _, err := pub.Publish(ctx, "hosts", next, false); err != nil || seq != 1 {
		t.Fatalf("first publication: %d %v", seq, err)
	}
	dsetest.WaitRows(t, sub, "engine", "hosts", next)
	dsetest.WaitRows(t, second, "engine", "hosts", next)
	select {
	case ev := <-events:
		if ev.Seqnum != 1 || len(ev.Add) != 1 || len(ev.Del) != 1 {
			t.Fatalf("the watch after the first publication: %+v, want seqnum 1 with db1 changed", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch got no change")
	}
	if seqs, snaps := log.get(); !slices.Equal(seqs, []uint64{0, 1}) || !snaps[0] {
		t.Fatalf("the subscriber's hook saw seqnums %v (snapshots %v), want the seed 0 then 1", seqs, snaps)
	}
}

// TestOwnershipSignal: each instance of a service hears where it stands,
// in order: the owner and a standby at start, then the standby becomes the
// owner under a new incarnation when the owner stops, and IsOwner agrees.
func TestOwnershipSignal(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	type change struct {
		node string
		o    dse.Ownership
	}
	changes := make(chan change, 16)
	instance := func(i int) *dse.DataService {
		node := c.Nodes[i].ID()
		return register(t, c.Nodes[i], "engine", dse.Hooks{OwnershipChanged: func(o dse.Ownership) { changes <- change{node, o} }})
	}
	next := func() change {
		t.Helper()
		select {
		case ch := <-changes:
			return ch
		case <-time.After(10 * time.Second):
			t.Fatal("no ownership change")
		}
		return change{}
	}
	owner := instance(0)
	if ch := next(); ch.node != "n1" || !ch.o.Owner || ch.o.Node != "n1" || ch.o.Incarnation == 0 {
		t.Fatalf("the first instance: %+v, want owner", ch)
	}
	standby := instance(1)
	ch := next()
	if ch.node != "n2" || ch.o.Owner || ch.o.Node != "n1" {
		t.Fatalf("the second instance: %+v, want standby, n1 owning", ch)
	}
	if !owner.IsOwner() || standby.IsOwner() {
		t.Fatal("IsOwner disagrees")
	}
	inc := ch.o.Incarnation
	if err := owner.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]dse.Ownership{}
	for len(got) < 2 {
		ch := next()
		got[ch.node] = ch.o
	}
	if o := got["n1"]; o.Owner {
		t.Fatalf("the stopped instance: %+v, want not owner", o)
	}
	if o := got["n2"]; !o.Owner || o.Node != "n2" || o.Incarnation <= inc {
		t.Fatalf("the standby: %+v, want owner under an incarnation above %d", o, inc)
	}
	if !standby.IsOwner() || owner.IsOwner() {
		t.Fatal("IsOwner disagrees after the takeover")
	}
	if _, _, err := standby.Publish(ctx, "t", []dse.Row{{int64(1)}}, false); err != nil {
		t.Fatalf("the new owner publishes: %v", err)
	}
}

// TestNoCatchupWhileSubscribersKeepUp: under steady load, with nothing
// dropped, a subscriber that is always some publications behind the
// registry, but applies more at every check, never catches up (it did,
// every resubscribe timeout). The subscriber is on the leader, whose
// registry learns of each seqnum before the publication reaches it from
// the publisher's node.
func TestNoCatchupWhileSubscribersKeepUp(t *testing.T) {
	c := dsetest.New(t, 2)
	ctx := context.Background()
	leader := c.WaitLeader()
	pub := register(t, c.Nodes[1-leader], "pub", dse.Hooks{})
	sub := register(t, c.Nodes[leader], "sub", dse.Hooks{})
	if _, _, err := pub.Publish(ctx, "t", []dse.Row{{int64(0)}}, false); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe(ctx, "pub", "t"); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitRows(t, sub, "pub", "t", []dse.Row{{int64(0)}})
	before := c.Nodes[leader].Stats().Catchups
	// 2 s of publications, 64 in flight: about 7 resubscribe timeouts
	// (300 ms) of always being behind.
	var inflight []*dse.Publishing
	deadline := time.Now().Add(2 * time.Second)
	for i := int64(1); time.Now().Before(deadline); i++ {
		p, err := pub.PublishDeltaAsync("t", []dse.Row{{i}}, []dse.Row{{i - 1}})
		if err != nil {
			t.Fatal(err)
		}
		if inflight = append(inflight, p); len(inflight) == 64 {
			if _, _, err := inflight[0].Wait(ctx); err != nil {
				t.Fatal(err)
			}
			inflight = inflight[1:]
		}
	}
	for _, p := range inflight {
		if _, _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dropped := c.Nodes[0].Stats().Dropped + c.Nodes[1].Stats().Dropped
	if got := c.Nodes[leader].Stats().Catchups - before; got > 0 && dropped == 0 {
		t.Fatalf("%d catch-ups while the subscriber kept up and nothing was dropped", got)
	}
	t.Logf("dropped %d", dropped)
}
