package dse_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
)

// TestRPCRunsAMethodAtMostOnce: a call that timed out may have run its
// method (here it is still running), so it is sent neither to the other
// instance nor again, whatever Retry says; one that could not reach the
// owner's node goes on to the live standby.
func TestRPCRunsAMethodAtMostOnce(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	var runs atomic.Int32
	release := make(chan struct{})
	acct := func() *dse.DataService {
		s := dse.NewDataService("acct", dse.Hooks{})
		s.AddRPCEndpoint(dse.Endpoint{
			"debit": func(context.Context, map[string]any) (any, error) {
				runs.Add(1)
				select { // heeds no ctx, as much real work does not
				case <-release:
				case <-time.After(5 * time.Second):
				}
				return "ok", nil
			},
			"balance": func(context.Context, map[string]any) (any, error) { return int64(7), nil },
		})
		return s
	}
	if err := c.Nodes[1].Register(ctx, acct()); err != nil {
		t.Fatal(err)
	}
	if err := c.Nodes[2].Register(ctx, acct()); err != nil {
		t.Fatal(err)
	}
	caller := register(t, c.Nodes[0], "caller", dse.Hooks{})
	for _, retry := range []int{0, 2} {
		runs.Store(0)
		_, err := caller.RPC(ctx, "acct", "debit", nil, dse.RPCOptions{Timeout: 100 * time.Millisecond, Retry: retry})
		if !errors.Is(err, dse.ErrUnavailable) {
			t.Fatalf("retry %d: got %v, want unavailable", retry, err)
		}
		if n := runs.Load(); n != 1 {
			t.Fatalf("retry %d: debit ran %d times for one call", retry, n)
		}
	}
	close(release)

	// The owner's node goes away; until the registry says so, its
	// instance is tried first, cannot be reached, and the standby answers.
	c.Nodes[1].Close()
	time.Sleep(200 * time.Millisecond) // the caller's node sees the connection close
	got, err := caller.RPC(ctx, "acct", "balance", nil, dse.RPCOptions{Timeout: 2 * time.Second})
	if err != nil || got != int64(7) {
		t.Fatalf("with the owner's node gone: %v %v", got, err)
	}
}

// TestIdempotentRPCFailsOverOnTimeout: a call the caller marks idempotent
// that times out on the owner (its host hanging) takes its next attempt on
// the standby, and the attempts go round the instances; without Retry
// left, or without Idempotent, it is not sent again.
func TestIdempotentRPCFailsOverOnTimeout(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	var runs [3]atomic.Int32
	var hangs [3]atomic.Bool
	release := make(chan struct{})
	defer close(release)
	instance := func(i int) *dse.DataService {
		s := dse.NewDataService("inv", dse.Hooks{})
		s.AddRPCEndpoint(dse.Endpoint{
			"lookup": func(context.Context, map[string]any) (any, error) {
				runs[i].Add(1)
				if hangs[i].Load() {
					select { // heeds no ctx
					case <-release:
					case <-time.After(5 * time.Second):
					}
				}
				return int64(i), nil
			},
		})
		return s
	}
	// Node 1's instance registers first: it owns the service.
	for _, i := range []int{1, 2} {
		if err := c.Nodes[i].Register(ctx, instance(i)); err != nil {
			t.Fatal(err)
		}
	}
	caller := register(t, c.Nodes[0], "caller", dse.Hooks{})
	call := func(opts dse.RPCOptions) (any, error) {
		for i := range runs {
			runs[i].Store(0)
		}
		opts.Timeout = 400 * time.Millisecond // the standby answers well within it, even under -race on a busy machine
		return caller.RPC(ctx, "inv", "lookup", nil, opts)
	}
	wantRuns := func(what string, owner, standby int32) {
		t.Helper()
		if g1, g2 := runs[1].Load(), runs[2].Load(); g1 != owner || g2 != standby {
			t.Fatalf("%s: ran %d times on the owner and %d on the standby, want %d and %d", what, g1, g2, owner, standby)
		}
	}

	hangs[1].Store(true)
	if _, err := call(dse.RPCOptions{Retry: 1}); !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("not idempotent: got %v, want unavailable", err)
	}
	wantRuns("not idempotent", 1, 0)
	if _, err := call(dse.RPCOptions{Idempotent: true}); !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("idempotent, no retry: got %v, want unavailable", err)
	}
	wantRuns("idempotent, no retry", 1, 0)
	got, err := call(dse.RPCOptions{Idempotent: true, Retry: 1})
	if err != nil || got != int64(2) {
		t.Fatalf("idempotent, retry 1: got %v %v, want the standby's 2", got, err)
	}
	wantRuns("idempotent, retry 1", 1, 1)

	// Both hang: owner, standby, then the owner again.
	hangs[2].Store(true)
	if _, err := call(dse.RPCOptions{Idempotent: true, Retry: 2}); !errors.Is(err, dse.ErrUnavailable) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("idempotent, both hanging: got %v, want timed out", err)
	}
	wantRuns("idempotent, both hanging, retry 2", 2, 1)
}

// TestLocalRPCKeepsItsDeadline: a call served on the caller's own node
// returns at its deadline even when the method does not heed its ctx.
func TestLocalRPCKeepsItsDeadline(t *testing.T) {
	c := dsetest.New(t, 1)
	ctx := context.Background()
	release := make(chan struct{})
	defer close(release)
	s := register(t, c.Nodes[0], "svc", dse.Hooks{})
	s.AddRPCEndpoint(dse.Endpoint{
		"hang": func(context.Context, map[string]any) (any, error) {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			return "late", nil
		},
	})
	for _, local := range []bool{true, false} {
		// It returns while the method still hangs: its deadline ended it.
		if _, err := s.RPC(ctx, "svc", "hang", nil, dse.RPCOptions{Timeout: 100 * time.Millisecond, Local: local}); !errors.Is(err, dse.ErrUnavailable) {
			t.Fatalf("local %v: got %v, want unavailable (timed out)", local, err)
		}
	}
}

// TestRPCResultOverTheFrameLimitRunsOnce: a result too big to send back is
// the method's failure, reported as such; the method ran, so the call goes
// to no other instance.
func TestRPCResultOverTheFrameLimitRunsOnce(t *testing.T) {
	c := dsetest.NewWith(t, 3, func(_ int, cfg *dse.Config, deps *dse.Deps) { cfg.MaxFrameSize = 64 << 10 })
	ctx := context.Background()
	var runs atomic.Int32
	for _, i := range []int{1, 2} {
		s := dse.NewDataService("big", dse.Hooks{})
		s.AddRPCEndpoint(dse.Endpoint{"dump": func(context.Context, map[string]any) (any, error) {
			runs.Add(1)
			return strings.Repeat("x", 100<<10), nil
		}})
		if err := c.Nodes[i].Register(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	caller := register(t, c.Nodes[0], "caller", dse.Hooks{})
	_, err := caller.RPC(ctx, "big", "dump", nil, dse.RPCOptions{Retry: 1})
	if !errors.Is(err, dse.ErrRemote) || !strings.Contains(err.Error(), "frame limit") {
		t.Fatalf("got %v, want the method's failure naming the frame limit", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("dump ran %d times for one call", n)
	}
}

// TestConcurrentCreatesOfOneService: two `services create` of one id on two
// nodes at once: one creates it, the other is refused as existing (both
// passed their node's own check, and both made an instance).
func TestConcurrentCreatesOfOneService(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	for _, id := range []string{".", ".."} { // URL paths clean them away
		if _, err := c.Nodes[0].CreateService(ctx, id, 0); !errors.Is(err, dse.ErrInvalid) {
			t.Fatalf("service id %q: %v, want invalid", id, err)
		}
	}
	for i := range 10 {
		id := fmt.Sprint("dup", i)
		errs := make(chan error, 2)
		for _, n := range c.Nodes[1:] {
			go func() {
				_, err := n.CreateService(ctx, id, 0)
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) || !errors.Is(e1, dse.ErrServiceExists) && !errors.Is(e2, dse.ErrServiceExists) {
			t.Fatalf("%s: creates answered %v and %v, want one success and one exists", id, e1, e2)
		}
		if svc, ok := c.Nodes[0].FSM().Service(id); !ok || len(svc.Replicas) != 3 || svc.Replicas[0] != svc.Owner {
			t.Fatalf("%s: registry holds %+v, want one service of 3 replicas, its creator owning it", id, svc)
		}
	}
}
