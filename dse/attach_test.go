package dse_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
)

// process stands for a program outside Go attached through a node: it
// answers each call of its session with handle, in a goroutine per call.
type process struct {
	s     *dse.ServeSession
	calls atomic.Int32
	wg    sync.WaitGroup
}

func attachProcess(t *testing.T, n *dse.Node, service string, opts dse.AttachOptions, handle func(dse.ServeRequest) (any, error)) *process {
	t.Helper()
	s, err := n.Attach(context.Background(), service, opts)
	if err != nil {
		t.Fatalf("attach to %s through %s: %v", service, n.ID(), err)
	}
	p := &process{s: s}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-s.Done():
				return
			case req := <-s.Requests():
				p.calls.Add(1)
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					res, err := handle(req)
					if err != nil {
						s.Fail(req.ID, err.Error())
						return
					}
					s.Reply(req.ID, res)
				}()
			}
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
		p.wg.Wait()
	})
	return p
}

func add(req dse.ServeRequest) (any, error) {
	a, _ := req.Args["a"].(int64)
	b, _ := req.Args["b"].(int64)
	return a + b, nil
}

// externalCluster is a 3-node cluster with the external service calc on
// node 0.
func externalCluster(t *testing.T) *dsetest.Cluster {
	t.Helper()
	c := dsetest.New(t, 3)
	if _, err := c.Nodes[0].CreateService(context.Background(), "calc", 0); err != nil {
		t.Fatal(err)
	}
	return c
}

func endpointsOn(n *dse.Node, service string) []string {
	info, err := n.ServiceInfo(service)
	if err != nil {
		return nil
	}
	return info.RPCEndpointsInfo
}

// TestAttachedRPC: an action served through one node is listed on every
// node and reached from any; the handler's error is a remote error with its
// message; an action never served is no such method; once the process
// detaches, its action is unavailable and no longer listed.
func TestAttachedRPC(t *testing.T) {
	c := externalCluster(t)
	ctx := context.Background()
	p := attachProcess(t, c.Nodes[1], "calc", dse.AttachOptions{Actions: []string{"add", "fail"}}, func(req dse.ServeRequest) (any, error) {
		if req.Action == "fail" {
			return nil, errors.New("division by zero")
		}
		if req.Timeout <= 0 || req.Timeout > 2*time.Second {
			return nil, fmt.Errorf("timeout %s, want the caller's 2s at most", req.Timeout)
		}
		return add(req)
	})
	for _, n := range c.Nodes {
		dsetest.WaitFor(t, 5*time.Second, "add listed on "+n.ID(), func() bool {
			return slices.Equal(endpointsOn(n, "calc"), []string{"add", "fail", "get_last_published_data_with_seqnum", "get_snapshot", "ping", "publish"})
		})
	}
	for _, n := range c.Nodes {
		got, err := n.RPC(ctx, "calc", "add", map[string]any{"a": int64(1), "b": int64(2)}, dse.RPCOptions{Timeout: 2 * time.Second})
		if err != nil || got != int64(3) {
			t.Fatalf("add from %s: got %v %v, want 3", n.ID(), got, err)
		}
	}
	if n := p.calls.Load(); n != 3 {
		t.Fatalf("the process got %d calls, want 3", n)
	}
	_, err := c.Nodes[2].RPC(ctx, "calc", "fail", nil, dse.RPCOptions{})
	if !errors.Is(err, dse.ErrRemote) || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("fail: got %v, want a remote error with the handler's message", err)
	}
	if _, err := c.Nodes[2].RPC(ctx, "calc", "mul", nil, dse.RPCOptions{}); !errors.Is(err, dse.ErrNoSuchMethod) {
		t.Fatalf("mul: got %v, want no such method", err)
	}
	// The built-in actions still answer.
	if got, err := c.Nodes[2].RPC(ctx, "calc", "ping", map[string]any{"x": "y"}, dse.RPCOptions{}); err != nil || fmt.Sprint(got) != "map[x:y]" {
		t.Fatalf("ping: %v %v", got, err)
	}

	if err := p.s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		dsetest.WaitFor(t, 5*time.Second, "add unlisted on "+n.ID(), func() bool { return !slices.Contains(endpointsOn(n, "calc"), "add") })
	}
	_, err = c.Nodes[2].RPC(ctx, "calc", "add", nil, dse.RPCOptions{Retry: 1})
	if !errors.Is(err, dse.ErrUnavailable) || !strings.Contains(err.Error(), "no process serves calc.add") {
		t.Fatalf("add after detach: got %v, want unavailable (no process serves it)", err)
	}
}

// TestAttachRefusals: bad attaches are refused with the error naming why,
// and leave nothing in the registry.
func TestAttachRefusals(t *testing.T) {
	c := externalCluster(t)
	ctx := context.Background()
	gosvc := dse.NewDataService("gosvc", dse.Hooks{})
	if err := c.Nodes[1].Register(ctx, gosvc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		service string
		opts    dse.AttachOptions
		want    error
		msg     string
	}{
		{"nope", dse.AttachOptions{Actions: []string{"add"}}, dse.ErrServiceNotFound, `"nope"`},
		{"gosvc", dse.AttachOptions{Actions: []string{"add"}}, dse.ErrInvalid, "only external services"},
		{"calc", dse.AttachOptions{}, dse.ErrInvalid, "1 to 64 actions"},
		{"calc", dse.AttachOptions{Actions: []string{"a b"}}, dse.ErrInvalid, `action "a b"`},
		{"calc", dse.AttachOptions{Actions: []string{"ping"}}, dse.ErrInvalid, "built into every service"},
		{"calc", dse.AttachOptions{Actions: []string{"publish"}}, dse.ErrInvalid, "built into every service"},
		{"calc", dse.AttachOptions{Actions: []string{"add"}, Concurrency: -1}, dse.ErrInvalid, "concurrency -1"},
		{"calc", dse.AttachOptions{Actions: []string{"add"}, Concurrency: dse.MaxAttachConcurrency + 1}, dse.ErrInvalid, "concurrency"},
	} {
		_, err := c.Nodes[2].Attach(ctx, tc.service, tc.opts)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("attach %s %+v: got %v, want %v mentioning %q", tc.service, tc.opts, err, tc.want, tc.msg)
		}
	}
	if m := c.Nodes[0].FSM().Attachments(); len(m) != 0 {
		t.Fatalf("refused attaches left %v", m)
	}
}

// TestAttachedCallsSpread: calls spread over the nodes holding sessions and,
// on a node, over its sessions; a session never has more calls in flight
// than its concurrency, and a call waits for a free slot.
func TestAttachedCallsSpread(t *testing.T) {
	c := externalCluster(t)
	ctx := context.Background()
	var inflight, most atomic.Int32
	slow := func(req dse.ServeRequest) (any, error) {
		now := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		return add(req)
	}
	p1 := attachProcess(t, c.Nodes[1], "calc", dse.AttachOptions{Actions: []string{"add"}}, slow)
	p2a := attachProcess(t, c.Nodes[2], "calc", dse.AttachOptions{Actions: []string{"add"}}, slow)
	p2b := attachProcess(t, c.Nodes[2], "calc", dse.AttachOptions{Actions: []string{"add"}}, slow)
	dsetest.WaitFor(t, 5*time.Second, "three attachments on node 0", func() bool { return len(c.Nodes[0].FSM().Attachments()["calc"]) == 3 })

	// One at a time: the nodes take turns.
	for range 10 {
		if _, err := c.Nodes[0].RPC(ctx, "calc", "add", nil, dse.RPCOptions{Timeout: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	if n1, n2 := p1.calls.Load(), p2a.calls.Load()+p2b.calls.Load(); n1 != 5 || n2 != 5 {
		t.Fatalf("sequential calls: node 1 got %d, node 2 %d, want 5 each", n1, n2)
	}
	// Twelve at once on three slots: each session runs one at a time,
	// and every call is answered (those without a slot waited for one).
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Nodes[0].RPC(ctx, "calc", "add", nil, dse.RPCOptions{Timeout: 10 * time.Second})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if m := most.Load(); m > 3 {
		t.Fatalf("%d calls ran at once on three sessions of concurrency 1", m)
	}
	if p2a.calls.Load() == 0 || p2b.calls.Load() == 0 {
		t.Fatalf("node 2's sessions got %d and %d calls: want both used", p2a.calls.Load(), p2b.calls.Load())
	}
}

// TestAttachedSessionLost: a session that goes away with a call in flight
// fails that call as unavailable, and it is not sent again (it may have
// run); the next calls go to the session left.
func TestAttachedSessionLost(t *testing.T) {
	c := externalCluster(t)
	ctx := context.Background()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	hang := attachProcess(t, c.Nodes[1], "calc", dse.AttachOptions{Actions: []string{"add"}}, func(dse.ServeRequest) (any, error) {
		started <- struct{}{}
		<-release
		return nil, errors.New("too late")
	})
	dsetest.WaitFor(t, 5*time.Second, "the attachment on node 2", func() bool { return len(c.Nodes[2].FSM().Attachments()["calc"]) == 1 })
	errc := make(chan error, 1)
	go func() {
		_, err := c.Nodes[2].RPC(ctx, "calc", "add", nil, dse.RPCOptions{Timeout: 10 * time.Second, Retry: 3})
		errc <- err
	}()
	<-started
	ok := attachProcess(t, c.Nodes[2], "calc", dse.AttachOptions{Actions: []string{"add"}}, add)
	dsetest.WaitFor(t, 5*time.Second, "two attachments", func() bool { return len(c.Nodes[2].FSM().Attachments()["calc"]) == 2 })
	hang.s.Close(ctx)
	select {
	case err := <-errc:
		if !errors.Is(err, dse.ErrUnavailable) || !strings.Contains(err.Error(), "went away") {
			t.Fatalf("the call in flight: got %v, want unavailable (the process went away)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call in flight is still waiting 5 s after its session ended")
	}
	if n := ok.calls.Load(); n != 0 {
		t.Fatalf("the lost call was sent again (%d calls to the other session)", n)
	}
	for range 4 {
		if got, err := c.Nodes[0].RPC(ctx, "calc", "add", map[string]any{"a": int64(2), "b": int64(2)}, dse.RPCOptions{}); err != nil || got != int64(4) {
			t.Fatalf("after the loss: %v %v", got, err)
		}
	}
	if hang.calls.Load() != 1 || ok.calls.Load() != 4 {
		t.Fatalf("calls: %d to the lost session, %d to the other; want 1 and 4", hang.calls.Load(), ok.calls.Load())
	}
}

// TestAttachedTimeout: a call the process does not answer in time is
// unavailable (timed out) and not sent elsewhere; its late reply is
// refused as expired; with Idempotent and Retry it goes to the next node.
func TestAttachedTimeout(t *testing.T) {
	c := externalCluster(t)
	ctx := context.Background()
	late := make(chan dse.ServeRequest, 4)
	s, err := c.Nodes[1].Attach(ctx, "calc", dse.AttachOptions{Actions: []string{"add"}, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	go func() {
		for {
			select {
			case req := <-s.Requests():
				late <- req
			case <-s.Done():
				return
			}
		}
	}()
	dsetest.WaitFor(t, 5*time.Second, "the attachment on node 0", func() bool { return len(c.Nodes[0].FSM().Attachments()["calc"]) == 1 })
	start := time.Now()
	_, err = c.Nodes[0].RPC(ctx, "calc", "add", nil, dse.RPCOptions{Timeout: 300 * time.Millisecond, Retry: 2})
	if !errors.Is(err, dse.ErrUnavailable) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("got %v, want unavailable (timed out)", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the call took %s: it was retried", d)
	}
	req := <-late
	dsetest.WaitFor(t, 5*time.Second, "the call expired on the serving node", func() bool {
		err := s.Reply(req.ID, int64(1))
		return errors.Is(err, dse.ErrExpired) || errors.Is(err, dse.ErrNotFound)
	})
	if err := s.Reply(req.ID, int64(1)); !errors.Is(err, dse.ErrNotFound) {
		t.Fatalf("a second reply: got %v, want not found", err)
	}
	if err := s.Reply("nope", int64(1)); !errors.Is(err, dse.ErrNotFound) {
		t.Fatalf("a reply to an unknown call: got %v, want not found", err)
	}
	if len(late) != 0 {
		t.Fatal("the timed-out call was sent again")
	}

	// Idempotent: the next attempt goes to the next node holding a session.
	attachProcess(t, c.Nodes[2], "calc", dse.AttachOptions{Actions: []string{"add"}}, add)
	dsetest.WaitFor(t, 5*time.Second, "two attachments", func() bool { return len(c.Nodes[0].FSM().Attachments()["calc"]) == 2 })
	for range 2 { // whichever node the rotation starts at
		if got, err := c.Nodes[0].RPC(ctx, "calc", "add", map[string]any{"a": int64(1)}, dse.RPCOptions{Timeout: 300 * time.Millisecond, Retry: 1, Idempotent: true}); err != nil || got != int64(1) {
			t.Fatalf("idempotent: %v %v", got, err)
		}
	}
}

// TestAttachedGetSnapshotShadowsTheBuiltIn: an attached get_snapshot
// answers instead of the built-in one while it is attached.
func TestAttachedGetSnapshotShadowsTheBuiltIn(t *testing.T) {
	c := externalCluster(t)
	ctx := context.Background()
	if _, err := c.Nodes[0].Publish(ctx, "calc", "t", []dse.Row{{int64(1)}}, false); err != nil {
		t.Fatal(err)
	}
	p := attachProcess(t, c.Nodes[1], "calc", dse.AttachOptions{Actions: []string{"get_snapshot"}}, func(req dse.ServeRequest) (any, error) {
		return []any{[]any{"from", req.Args["table"]}}, nil
	})
	dsetest.WaitFor(t, 5*time.Second, "the attachment on node 2", func() bool { return len(c.Nodes[2].FSM().Attachments()["calc"]) == 1 })
	got, err := c.Nodes[2].RPC(ctx, "calc", "get_snapshot", map[string]any{"table": "t"}, dse.RPCOptions{})
	if err != nil || fmt.Sprint(got) != "[[from t]]" {
		t.Fatalf("attached get_snapshot: %v %v", got, err)
	}
	p.s.Close(ctx)
	dsetest.WaitFor(t, 5*time.Second, "the detach on node 2", func() bool { return len(c.Nodes[2].FSM().Attachments()["calc"]) == 0 })
	got, err = c.Nodes[2].RPC(ctx, "calc", "get_snapshot", map[string]any{"table": "t"}, dse.RPCOptions{})
	if err != nil || fmt.Sprint(got) != "[[1]]" {
		t.Fatalf("built-in get_snapshot after the detach: %v %v", got, err)
	}
}

// TestAttachmentsCleanedUp: a node's sessions end with its process, and the
// restarted node removes the attachments they left; deleting the service
// ends its sessions; a local call reaches only this node's sessions.
func TestAttachmentsCleanedUp(t *testing.T) {
	c := externalCluster(t)
	ctx := context.Background()
	s, err := c.Nodes[2].Attach(ctx, "calc", dse.AttachOptions{Actions: []string{"add"}})
	if err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 5*time.Second, "the attachment on node 0", func() bool { return len(c.Nodes[0].FSM().Attachments()["calc"]) == 1 })
	if _, err := c.Nodes[0].RPC(ctx, "calc", "add", nil, dse.RPCOptions{Local: true}); !errors.Is(err, dse.ErrUnavailable) || !strings.Contains(err.Error(), `through node "n1"`) {
		t.Fatalf("a local call on a node without sessions: got %v, want unavailable", err)
	}
	c.Restart(2)
	select {
	case <-s.Done():
		if !errors.Is(s.Err(), dse.ErrClosed) {
			t.Fatalf("session ended with %v, want closed", s.Err())
		}
	default:
		t.Fatal("the session outlived its node")
	}
	dsetest.WaitFor(t, 15*time.Second, "the restarted node removed its stale attachment", func() bool {
		return len(c.Nodes[0].FSM().Attachments()["calc"]) == 0
	})

	p := attachProcess(t, c.Nodes[1], "calc", dse.AttachOptions{Actions: []string{"add"}}, add)
	if got, err := c.Nodes[1].RPC(ctx, "calc", "add", map[string]any{"a": int64(5)}, dse.RPCOptions{Local: true}); err != nil || got != int64(5) {
		t.Fatalf("a local call: %v %v", got, err)
	}
	if err := c.Nodes[0].DeleteService(ctx, "calc"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.s.Done():
		if !errors.Is(p.s.Err(), dse.ErrServiceNotFound) {
			t.Fatalf("session ended with %v, want service not found", p.s.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session outlived its service")
	}
}

// TestAttachmentsOfDownNodesSkipped: once the registry has a node down,
// its attachments are neither listed nor tried.
func TestAttachmentsOfDownNodesSkipped(t *testing.T) {
	c := externalCluster(t)
	ctx := context.Background()
	if _, err := c.Nodes[2].Attach(ctx, "calc", dse.AttachOptions{Actions: []string{"add"}}); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 5*time.Second, "add listed on node 0", func() bool { return slices.Contains(endpointsOn(c.Nodes[0], "calc"), "add") })
	c.Nodes[2].Close() // its session ends, unannounced: the registry keeps it
	dsetest.WaitFor(t, 15*time.Second, "node 3 down and add unlisted", func() bool {
		rec, _ := c.Nodes[0].FSM().Node("n3")
		return !rec.Up && !slices.Contains(endpointsOn(c.Nodes[0], "calc"), "add")
	})
	if n := len(c.Nodes[0].FSM().Attachments()["calc"]); n != 1 {
		t.Fatalf("the registry holds %d attachments, want the down node's one", n)
	}
	start := time.Now()
	_, err := c.Nodes[0].RPC(ctx, "calc", "add", nil, dse.RPCOptions{Timeout: 5 * time.Second})
	if !errors.Is(err, dse.ErrUnavailable) || !strings.Contains(err.Error(), "no process serves") || time.Since(start) > time.Second {
		t.Fatalf("got %v after %s, want unavailable at once (no process serves it)", err, time.Since(start))
	}
}
