package dse

import (
	"context"
	"errors"
	"testing"
	"time"
)

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
	n, err := New(cfg, Deps{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	if _, err := n.WaitLeader(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return n
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
