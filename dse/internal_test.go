package dse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
)

func TestHistoryNeedsAnUnbrokenRun(t *testing.T) {
	tb := newPubTable("t", 1024)
	for _, s := range []uint64{1, 2, 4, 5} { // 3 granted twice, never published
		tb.recordLocked(&table.Publication{Seqnum: s})
	}
	tb.seqnum = 5
	if got, ok := tb.sinceLocked(3); !ok || len(got) != 2 || got[0].Seqnum != 4 {
		t.Fatalf("after 3: got %v %v", got, ok)
	}
	if _, ok := tb.sinceLocked(2); ok {
		t.Fatal("history with a hole after 2 served as deltas")
	}
	if _, ok := tb.sinceLocked(0); ok {
		t.Fatal("history with a hole after 0 served as deltas")
	}
	if got, ok := tb.sinceLocked(5); !ok || len(got) != 0 {
		t.Fatalf("after 5: got %v %v", got, ok)
	}
}

func TestHistoryKeepsTheLastRun(t *testing.T) {
	tb := newPubTable("t", 100)
	for s := uint64(1); s <= 5000; s++ {
		tb.recordLocked(&table.Publication{Seqnum: s})
		if n := len(tb.history); n < min(int(s), 100) || n > 200 || tb.history[n-1].Seqnum != s {
			t.Fatalf("after %d: %d entries ending at %d", s, n, tb.history[n-1].Seqnum)
		}
	}
	tb.seqnum = 5000
	if got, ok := tb.sinceLocked(4900); !ok || len(got) != 100 || got[0].Seqnum != 4901 {
		t.Fatalf("after 4900: %d entries, %v", len(got), ok)
	}
	if _, ok := tb.sinceLocked(4000); ok {
		t.Fatal("served deltas from further back than the history holds")
	}
}

// singleNode starts a one-node cluster on loopback and waits for it to
// lead; the test's cleanup closes it.
func singleNode(tb testing.TB) *Node { return singleNodeWith(tb, nil) }

// singleNodeWith is singleNode with adjust applied to its config.
func singleNodeWith(tb testing.TB, adjust func(*Config)) *Node {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Bind, cfg.HTTPAddr, cfg.Bootstrap = "n1", tb.TempDir(), "127.0.0.1:0", "127.0.0.1:0", true
	if adjust != nil {
		adjust(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	if _, err := n.WaitLeader(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestPushSkipsAPublicationThatDoesNotEncode: a bad publication after a good
// one in the same push is logged and left out; the good one still goes.
func TestPushSkipsAPublicationThatDoesNotEncode(t *testing.T) {
	ctx := context.Background()
	var nodes []*Node
	for i := range 2 {
		cfg := DefaultConfig()
		cfg.ID, cfg.DataDir, cfg.Bind, cfg.HTTPAddr, cfg.Bootstrap = fmt.Sprintf("n%d", i+1), t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", i == 0
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	if _, err := nodes[0].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Join(ctx, JoinRequest{ID: "n2", Addr: nodes[1].Addr(), HTTPAddr: nodes[1].HTTPAddr(), Voter: true}); err != nil {
		t.Fatal(err)
	}
	got := make(chan Data, 4)
	sub := NewDataService("sub", Hooks{ReceiveData: func(_, _ string, d Data) { got <- d }})
	if err := nodes[1].Register(ctx, sub); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe(ctx, "p", "t"); err != nil {
		t.Fatal(err)
	}
	for len(nodes[0].fsm.SubscriberNodes("p", "t")) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	good := &table.Publication{Publisher: "p", Table: "t", Seqnum: 1, Snapshot: true, Rows: []table.Row{{int64(1)}}}
	bad := &table.Publication{Publisher: "p", Table: "t", Seqnum: 2, Add: []table.Row{{int(2)}}} // int is not canonical
	nodes[0].svcs.push([]*table.Publication{good, bad})
	select {
	case d := <-got:
		if !d.Snapshot || len(d.Rows) != 1 {
			t.Fatalf("got %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the good publication never arrived")
	}
}

// TestBatcherTakesABoundedEntry: however long the queue, one entry takes at
// most maxEntryPubs publications, oldest first; the rest wait in order.
func TestBatcherTakesABoundedEntry(t *testing.T) {
	b := newBatcher(nil)
	n := maxEntryPubs + 10
	for i := range n {
		b.q = append(b.q, &pubReq{epoch: uint64(i)})
	}
	b.waiting.Store(int64(n))
	first := b.take()
	rest := b.take()
	if len(first) != maxEntryPubs || len(rest) != 10 || first[0].epoch != 0 || rest[0].epoch != maxEntryPubs || len(b.take()) != 0 || b.queued() != 0 {
		t.Fatalf("took %d then %d, %d left counted", len(first), len(rest), b.queued())
	}
}

// TestPublishRefusedWhenTooManyWait: with maxWaitingPubs publications
// waiting for seqnums on the node, one more is refused before it changes
// its table.
func TestPublishRefusedWhenTooManyWait(t *testing.T) {
	n := singleNode(t)
	ctx := context.Background()
	s := NewDataService("p", Hooks{})
	if err := n.Register(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Publish(ctx, "t", []Row{{int64(1)}}, false); err != nil {
		t.Fatal(err)
	}
	n.svcs.batcher.waiting.Add(maxWaitingPubs) // as if that many waited
	if _, err := s.PublishDeltaAsync("t", []Row{{int64(2)}}, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with the queue full: %v, want unavailable", err)
	}
	n.svcs.batcher.waiting.Add(-maxWaitingPubs)
	if seq, rows, err := s.GetLastPublishedDataWithSeqnum("t"); err != nil || seq != 1 || len(rows) != 1 {
		t.Fatalf("the refused publication changed the table: %d %v %v", seq, rows, err)
	}
	if _, _, err := s.PublishDelta(ctx, "t", []Row{{int64(2)}}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestDeliveryQueueBoundedByBytes: while a subscriber's hook holds the
// delivery loop, publications queue up to the byte bound; the rest are
// dropped, and the subscriber still ends with the publisher's content
// (through the gap rule's catch-up) once the hook lets go.
func TestDeliveryQueueBoundedByBytes(t *testing.T) {
	n := singleNodeWith(t, func(cfg *Config) { cfg.ResubTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	n.svcs.dqMu.Lock()
	n.svcs.maxQueuedBytes = 64 << 10
	n.svcs.dqMu.Unlock()
	pub := NewDataService("p", Hooks{})
	if err := n.Register(ctx, pub); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pub.Publish(ctx, "t", []Row{{"start"}}, false); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	var release sync.Once
	let := func() { release.Do(func() { close(hold) }) }
	t.Cleanup(let) // before the node closes, which waits for its hooks
	held := make(chan struct{}, 1)
	sub := NewDataService("s", Hooks{ReceiveData: func(_, _ string, d Data) {
		if !d.Snapshot {
			select {
			case held <- struct{}{}:
				<-hold
			default:
			}
		}
	}})
	if err := n.Register(ctx, sub); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe(ctx, "p", "t"); err != nil {
		t.Fatal(err)
	}
	id := cache.TableID{Publisher: "p", Table: "t"}
	waitFor(t, "the snapshot", func() bool { return sub.Cache().Len(id) == 1 })
	big := strings.Repeat("x", 4<<10)
	if _, _, err := pub.PublishDelta(ctx, "t", []Row{{big, int64(0)}}, nil); err != nil {
		t.Fatal(err)
	}
	<-held             // the loop is held from here on
	const deltas = 200 // 800 KB, over 12 times the bound
	for i := 1; i <= deltas; i++ {
		// One at a time: each its own entry, and its own delivery.
		if _, _, err := pub.PublishDelta(ctx, "t", []Row{{big, int64(i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := pub.PublishDelta(ctx, "t", nil, []Row{{"start"}}); err != nil {
		t.Fatal(err)
	}
	// Pushed deliveries only: a catch-up reply (the subscription already
	// behind) is taken whatever the bound.
	n.svcs.dqMu.Lock()
	items, queued, bytes := 0, 0, 0
	for _, d := range n.svcs.dq {
		if d.catchup == nil {
			items, queued, bytes = items+1, queued+len(d.pubs), bytes+d.size
		}
	}
	n.svcs.dqMu.Unlock()
	// One delivery (one entry's publications) is taken whatever its size.
	if dropped := n.Stats().Dropped; dropped < deltas/2 || bytes > 64<<10 && items > 1 {
		t.Fatalf("with the loop held: %d publications (%d bytes, %d deliveries) queued, %d dropped; want at most 64 KiB queued, or one delivery, and the rest dropped", queued, bytes, items, dropped)
	}
	// The subscription is behind the registry: it catches up, and the reply
	// queues whatever the bound (it repairs the drops), but one at a time,
	// however many resub timeouts the hook holds out.
	time.Sleep(2 * time.Second) // 10 resub timeouts
	n.svcs.dqMu.Lock()
	replies := 0
	for _, d := range n.svcs.dq {
		if d.catchup != nil {
			replies++
		}
	}
	n.svcs.dqMu.Unlock()
	if replies != 1 {
		t.Fatalf("%d catch-up replies queued while the hook held the loop, want 1", replies)
	}
	let()
	seq, rows, err := pub.GetLastPublishedDataWithSeqnum("t")
	if err != nil || len(rows) != deltas+1 {
		t.Fatalf("publisher: %d rows, %v", len(rows), err)
	}
	waitFor(t, "the publisher's content", func() bool {
		got, at, _ := sub.Cache().Rows(id)
		return at == seq && len(got) == deltas+1
	})
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRPCToAServiceNotRunningYet: a service the registry has but whose
// instance does not run (its node restarting) is unavailable, which callers
// retry, not "not found", which tells them it is gone.
func TestRPCToAServiceNotRunningYet(t *testing.T) {
	n := singleNode(t)
	ctx := context.Background()
	s := NewDataService("x", Hooks{})
	if err := n.Register(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.stopLocal() // as after a restart, before the service starts again
	_, err := n.RPC(ctx, "x", "ping", nil, RPCOptions{Timeout: time.Second, Retry: 1})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrServiceNotFound) {
		t.Fatalf("got %v, want unavailable", err)
	}
	deep := map[string]any{}
	for v, i := any(int64(1)), 0; i < 100; i++ {
		v = map[string]any{"a": v}
		deep["a"] = v
	}
	if _, err := n.RPC(ctx, "x", "ping", deep, RPCOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("arguments nested 100 deep: %v, want invalid", err)
	}
	if _, err := n.RPC(ctx, "nope", "ping", nil, RPCOptions{}); !errors.Is(err, ErrServiceNotFound) {
		t.Fatalf("an unknown service: %v, want not found", err)
	}
}
