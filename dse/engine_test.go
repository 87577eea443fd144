package dse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/dsetest"
	"dse.dev/dse/dse/table"
)

func register(t *testing.T, n *dse.Node, id string, hooks dse.Hooks) *dse.DataService {
	t.Helper()
	s := dse.NewDataService(id, hooks)
	if err := n.Register(context.Background(), s); err != nil {
		t.Fatalf("register %s on %s: %v", id, n.ID(), err)
	}
	return s
}

func rows(vals ...int64) []dse.Row {
	out := make([]dse.Row, len(vals))
	for i, v := range vals {
		out[i] = dse.Row{v, fmt.Sprintf("v%d", v)}
	}
	return out
}

// recorder collects what a subscriber receives, in order.
type recorder struct {
	mu     sync.Mutex
	seqs   []uint64
	snaps  int
	events []dse.Data
}

func (r *recorder) hooks() dse.Hooks {
	return dse.Hooks{ReceiveDataSequenced: func(_, _ string, d dse.Data, seq uint64, _ time.Time) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.seqs = append(r.seqs, seq)
		r.events = append(r.events, d)
		if d.Snapshot {
			r.snaps++
		}
	}}
}

func (r *recorder) increasing(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i < len(r.seqs); i++ {
		if r.seqs[i] <= r.seqs[i-1] {
			t.Fatalf("seqnums not increasing: %v", r.seqs)
		}
	}
}

func waitRows(t *testing.T, s *dse.DataService, pub, tbl string, want []dse.Row) {
	t.Helper()
	table.Sort(want)
	id := cache.TableID{Publisher: pub, Table: tbl}
	dsetest.WaitFor(t, 10*time.Second, fmt.Sprintf("%s sees %s/%s = %v", s.ID(), pub, tbl, want), func() bool {
		got, _, ok := s.Cache().Rows(id)
		if !ok {
			return false
		}
		if len(got) == 0 && len(want) == 0 {
			return true
		}
		return reflect.DeepEqual(got, want)
	})
}

func TestPublishSubscribeAcrossNodes(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	var r2, r3 recorder
	sub2 := register(t, c.Nodes[1], "sub2", r2.hooks())
	sub3 := register(t, c.Nodes[2], "sub3", r3.hooks())
	// Subscribing before the table exists works.
	for _, s := range []*dse.DataService{sub2, sub3} {
		if err := s.Subscribe(ctx, "pub", "t"); err != nil {
			t.Fatal(err)
		}
	}
	seq, changed, err := pub.Publish(ctx, "t", rows(1, 2, 3), false)
	if err != nil || !changed || seq != 1 {
		t.Fatalf("first publish: seq %d changed %v err %v", seq, changed, err)
	}
	waitRows(t, sub2, "pub", "t", rows(1, 2, 3))
	waitRows(t, sub3, "pub", "t", rows(1, 2, 3))
	// No change: no seqnum used.
	if seq, changed, err := pub.Publish(ctx, "t", rows(3, 2, 1), false); err != nil || changed || seq != 1 {
		t.Fatalf("unchanged publish: seq %d changed %v err %v", seq, changed, err)
	}
	for i := int64(4); i <= 50; i++ {
		if _, _, err := pub.Publish(ctx, "t", rows(i-2, i-1, i), false); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := pub.PublishDelta(ctx, "t", rows(100), rows(48)); err != nil {
		t.Fatal(err)
	}
	waitRows(t, sub2, "pub", "t", rows(49, 50, 100))
	waitRows(t, sub3, "pub", "t", rows(49, 50, 100))
	r2.increasing(t)
	r3.increasing(t)
	// The follower's registry copy learns the commit on Raft's next round.
	dsetest.WaitFor(t, 5*time.Second, "registry seqnum 49 on a follower", func() bool {
		return c.Nodes[1].FSM().Seqnum("pub", "t") == 49
	})
	seqnum, data, err := pub.GetLastPublishedDataWithSeqnum("t")
	if err != nil || seqnum != 49 || len(data) != 3 {
		t.Fatalf("last published: %d %v %v", seqnum, data, err)
	}
	// Unsubscribe stops that table only.
	if err := sub2.Subscribe(ctx, "pub", "u"); err != nil {
		t.Fatal(err)
	}
	if err := sub2.Unsubscribe(ctx, "pub", "t"); err != nil {
		t.Fatal(err)
	}
	pub.Publish(ctx, "t", rows(7), false)
	pub.Publish(ctx, "u", rows(8), false)
	waitRows(t, sub2, "pub", "u", rows(8))
	waitRows(t, sub3, "pub", "t", rows(7))
	if _, _, ok := sub2.Cache().Rows(cache.TableID{Publisher: "pub", Table: "t"}); ok {
		t.Fatal("unsubscribed table still cached")
	}
	// Info and the cluster-wide lists.
	// subscribed_tables is Congress's: the service's own tables that have
	// subscribers, cluster-wide; what it subscribes to is its
	// SubscriptionList.
	info, err := sub2.Info()
	if err != nil || info.NodeID != c.Nodes[1].ID() || len(info.SubscribedTables) != 0 {
		t.Fatalf("subscriber's info %+v %v: want no subscribed tables (nobody subscribes to its tables)", info, err)
	}
	if got, want := sub2.SubscriptionList(), []dse.Subscription{{Subscriber: "sub2", Publisher: "pub", Table: "u"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("sub2's subscriptions %v, want %v", got, want)
	}
	pubInfo, err := pub.Info()
	if err != nil || !reflect.DeepEqual(pubInfo.SubscribedTables, []string{"t", "u"}) {
		t.Fatalf("publisher's info %+v %v: want subscribed tables t and u", pubInfo, err)
	}
	if got, want := pub.SubscriberList(), []dse.Subscription{{Subscriber: "sub3", Publisher: "pub", Table: "t"}, {Subscriber: "sub2", Publisher: "pub", Table: "u"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("subscriber list %v, want %v", got, want)
	}
	if !sub3.IsValidService("pub") || sub3.IsValidService("nope") {
		t.Fatal("IsValidService wrong")
	}
}

func TestLateSubscriberGetsSnapshot(t *testing.T) {
	c := dsetest.New(t, 2)
	ctx := context.Background()
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	for i := int64(1); i <= 20; i++ {
		pub.Publish(ctx, "t", rows(i), false)
	}
	var r recorder
	sub := register(t, c.Nodes[1], "sub", r.hooks())
	if err := sub.Subscribe(ctx, "pub", "t"); err != nil {
		t.Fatal(err)
	}
	waitRows(t, sub, "pub", "t", rows(20))
	pub.Publish(ctx, "t", rows(21), false)
	waitRows(t, sub, "pub", "t", rows(21))
	// A second subscriber on the same node starts from the node's copy.
	sub2 := register(t, c.Nodes[1], "sub2", dse.Hooks{})
	if err := sub2.Subscribe(ctx, "pub", "t"); err != nil {
		t.Fatal(err)
	}
	waitRows(t, sub2, "pub", "t", rows(21))
	r.increasing(t)
}

func TestRPC(t *testing.T) {
	c := dsetest.New(t, 2)
	ctx := context.Background()
	svc := dse.NewDataService("calc", dse.Hooks{})
	svc.AddRPCEndpoint(dse.Endpoint{
		"add": func(_ context.Context, args map[string]any) (any, error) {
			a, _ := args["a"].(int64)
			b, _ := args["b"].(int64)
			return a + b, nil
		},
		"fail": func(context.Context, map[string]any) (any, error) { return nil, errors.New("it broke") },
		"slow": func(ctx context.Context, _ map[string]any) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	if err := c.Nodes[0].Register(ctx, svc); err != nil {
		t.Fatal(err)
	}
	caller := register(t, c.Nodes[1], "caller", dse.Hooks{})
	got, err := caller.RPC(ctx, "calc", "add", map[string]any{"a": 2, "b": 40}, dse.RPCOptions{})
	if err != nil || got != int64(42) {
		t.Fatalf("add: %v %v", got, err)
	}
	got, err = caller.RPC(ctx, "calc", "ping", map[string]any{"a": 1, "s": "x"}, dse.RPCOptions{})
	if err != nil || !reflect.DeepEqual(got, map[string]any{"a": int64(1), "s": "x"}) {
		t.Fatalf("ping: %#v %v", got, err)
	}
	for name, c := range map[string]struct {
		svc, action string
		opts        dse.RPCOptions
		want        error
	}{
		"no service":  {"nope", "ping", dse.RPCOptions{}, dse.ErrServiceNotFound},
		"no method":   {"calc", "nope", dse.RPCOptions{}, dse.ErrNoSuchMethod},
		"remote fail": {"calc", "fail", dse.RPCOptions{}, dse.ErrRemote},
		"timeout":     {"calc", "slow", dse.RPCOptions{Timeout: 100 * time.Millisecond}, dse.ErrUnavailable},
		"not local":   {"calc", "ping", dse.RPCOptions{Local: true}, dse.ErrServiceNotFound},
	} {
		_, err := caller.RPC(ctx, c.svc, c.action, nil, c.opts)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
	if _, err := caller.RPC(ctx, "calc", "fail", nil, dse.RPCOptions{}); err == nil || err.Error() != "it broke" {
		t.Fatalf("remote message lost: %v", err)
	}
	svc.Publish(ctx, "t", rows(5), false)
	got, err = caller.RPC(ctx, "calc", "get_last_published_data_with_seqnum", map[string]any{"table": "t"}, dse.RPCOptions{})
	m, _ := got.(map[string]any)
	if err != nil || m["seqnum"] != int64(1) {
		t.Fatalf("get_last_published_data_with_seqnum: %#v %v", got, err)
	}
}

func TestFencingAndFailover(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	a := register(t, c.Nodes[1], "ha", dse.Hooks{})
	b := register(t, c.Nodes[2], "ha", dse.Hooks{})
	sub := register(t, c.Nodes[0], "sub", dse.Hooks{})
	if err := sub.Subscribe(ctx, "ha", "t"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Publish(ctx, "t", rows(1), false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Publish(ctx, "t", rows(2), false); !errors.Is(err, dse.ErrFenced) {
		t.Fatalf("standby publish: got %v, want ErrFenced", err)
	}
	waitRows(t, sub, "ha", "t", rows(1))
	// The owner's node dies: the standby takes over; its first publication
	// is a snapshot with a higher seqnum.
	c.Nodes[1].Close()
	dsetest.WaitFor(t, 10*time.Second, "standby owns the service", func() bool {
		s, ok := c.Nodes[2].FSM().Service("ha")
		return ok && s.Owner == c.Nodes[2].ID()
	})
	seq, _, err := b.Publish(ctx, "t", rows(2), false)
	if err != nil || seq != 2 {
		t.Fatalf("new owner publish: %d %v", seq, err)
	}
	waitRows(t, sub, "ha", "t", rows(2))
}

func TestDataServiceLifecycle(t *testing.T) {
	c := dsetest.New(t, 1)
	ctx := context.Background()
	s := dse.NewDataService("svc", dse.Hooks{})
	if s.Status() != "created" {
		t.Fatalf("status %s", s.Status())
	}
	if err := s.Start(ctx, c.Nodes[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Nodes[0].Register(ctx, dse.NewDataService("svc", dse.Hooks{})); !errors.Is(err, dse.ErrServiceExists) {
		t.Fatalf("duplicate on one node: got %v", err)
	}
	if err := c.Nodes[0].Register(ctx, dse.NewDataService("bad id!", dse.Hooks{})); !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("bad id: got %v", err)
	}
	if _, _, err := s.Publish(ctx, "t", []dse.Row{{map[string]any{}}}, false); !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("bad row: got %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Publish(ctx, "t", rows(1), false); !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("publish after stop: got %v", err)
	}
	if _, ok := c.Nodes[0].FSM().Service("svc"); ok {
		t.Fatal("stopped service still registered")
	}
}

func TestSubscriberHooksAndInfoDict(t *testing.T) {
	c := dsetest.New(t, 1)
	ctx := context.Background()
	var mu sync.Mutex
	var events []string
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{
		OnFirstSubscriber:  func(tbl string) { mu.Lock(); events = append(events, "+"+tbl); mu.Unlock() },
		OnLastUnsubscriber: func(tbl string) { mu.Lock(); events = append(events, "-"+tbl); mu.Unlock() },
	})
	sub := register(t, c.Nodes[0], "sub", dse.Hooks{})
	sub.Subscribe(ctx, "pub", "t")
	dsetest.WaitFor(t, 5*time.Second, "first-subscriber hook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) == 1 && events[0] == "+t"
	})
	sub.Unsubscribe(ctx, "pub", "t")
	dsetest.WaitFor(t, 5*time.Second, "last-unsubscriber hook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) == 2 && events[1] == "-t"
	})
	info, err := pub.Info()
	if err != nil {
		t.Fatal(err)
	}
	back, err := dse.InfoFromDict(info.ToDict())
	if err != nil || !reflect.DeepEqual(back, info) {
		t.Fatalf("dict round trip: %+v %v", back, err)
	}
	js, _ := info.ToJSON()
	if back, err = dse.InfoFromJSON(js); err != nil || !reflect.DeepEqual(back, info) {
		t.Fatalf("json round trip: %+v %v", back, err)
	}
	d := info.ToDict()
	delete(d, "node_id")
	d["extra"] = 1
	if _, err := dse.InfoFromDict(d); !errors.Is(err, dse.ErrInvalid) || !containsAll(err.Error(), "node_id", "extra") {
		t.Fatalf("bad dict: %v", err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// A subscriber hook that publishes a derived table on the publisher's own
// node (the usual pattern) must not deadlock the publish path, and may
// unsubscribe from inside a hook.
func TestHooksMayPublishAndUnsubscribe(t *testing.T) {
	c := dsetest.New(t, 1)
	ctx := context.Background()
	n := c.Nodes[0]
	src := register(t, n, "src", dse.Hooks{})
	var derived *dse.DataService
	derived = dse.NewDataService("derived", dse.Hooks{ReceiveData: func(_, _ string, d dse.Data) {
		rows, _, _ := derived.Cache().Rows(cache.TableID{Publisher: "src", Table: "t"})
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, _, err := derived.Publish(hctx, "count", []dse.Row{{int64(len(rows))}}, false); err != nil {
			t.Errorf("publish from a hook: %v", err)
		}
		if _, _, err := src.GetLastPublishedDataWithSeqnum("t"); err != nil {
			t.Errorf("read from a hook: %v", err)
		}
		if len(rows) == 3 {
			if err := derived.Unsubscribe(hctx, "src", "t"); err != nil {
				t.Errorf("unsubscribe from a hook: %v", err)
			}
		}
	}})
	if err := n.Register(ctx, derived); err != nil {
		t.Fatal(err)
	}
	watcher := register(t, n, "watcher", dse.Hooks{})
	watcher.Subscribe(ctx, "derived", "count")
	derived.Subscribe(ctx, "src", "t")
	for i := int64(1); i <= 3; i++ {
		if _, _, err := src.Publish(ctx, "t", rows(seqRange(i)...), false); err != nil {
			t.Fatal(err)
		}
	}
	waitRows(t, watcher, "derived", "count", []dse.Row{{int64(3)}})
	dsetest.WaitFor(t, 5*time.Second, "unsubscribed from inside the hook", func() bool { return len(derived.SubscriptionList()) == 0 })
}

func seqRange(n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// TestPublishAcrossLeadershipTransfers: a publisher on the leader keeps
// publishing while leadership moves away and back; its entries in flight
// are forwarded or fail cleanly, and the subscriber ends with exactly the
// publisher's table, in seqnum order.
func TestPublishAcrossLeadershipTransfers(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	li := c.WaitLeader()
	leader := c.Nodes[li]
	pub := register(t, leader, "pub", dse.Hooks{})
	if _, _, err := pub.Publish(ctx, "t", nil, true); err != nil {
		t.Fatal(err)
	}
	var r recorder
	sub := register(t, c.Nodes[(li+1)%3], "sub", r.hooks())
	if err := sub.Subscribe(ctx, "pub", "t"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan int)
	var mu sync.Mutex
	var ok []int64
	for w := range 8 {
		go func() {
			failed := 0
			for i := int64(w); ; i += 8 {
				select {
				case <-stop:
					done <- failed
					return
				default:
				}
				pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, _, err := pub.PublishDelta(pctx, "t", rows(i), nil)
				cancel()
				if err != nil {
					failed++
					continue
				}
				mu.Lock()
				ok = append(ok, i)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	for _, to := range []string{c.Nodes[(li+2)%3].ID(), leader.ID()} {
		if _, err := leader.TransferLeadership(ctx, to); err != nil {
			t.Fatalf("transfer to %s: %v", to, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	close(stop)
	failed := 0
	for range 8 {
		select {
		case f := <-done:
			failed += f
		case <-time.After(30 * time.Second):
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
			t.Fatal("a publisher is still stuck 30 s after the transfers (goroutines above)")
		}
	}
	// What the publisher holds now is what the subscriber must converge to
	// (once every publication in flight is settled).
	var want []dse.Row
	got := make(chan error, 1)
	go func() {
		var err error
		_, want, err = pub.GetLastPublishedDataWithSeqnum("t")
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		t.Fatal("the publisher's table never settled (goroutines above)")
	}
	table.Sort(want)
	waitRows(t, sub, "pub", "t", want)
	r.increasing(t)
	mu.Lock()
	t.Logf("%d publications acknowledged, %d failed, %d rows", len(ok), failed, len(want))
	mu.Unlock()
	if len(want) < len(ok) {
		t.Fatalf("the publisher holds %d rows but %d publications were acknowledged", len(want), len(ok))
	}
}
