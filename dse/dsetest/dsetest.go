package dsetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"dse.dev/dse/dse"
)

// Cluster is a set of in-process nodes.
type Cluster struct {
	t      testing.TB
	Nodes  []*dse.Node
	dirs   []string
	adjust func(i int, cfg *dse.Config)
}

// Config returns a fast test configuration for a node with id in dir.
func Config(t testing.TB, id, dir string) dse.Config {
	cfg := dse.DefaultConfig()
	cfg.ID, cfg.DataDir = id, dir
	cfg.Bind, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 200*time.Millisecond, 200*time.Millisecond
	cfg.LivenessGrace = 400 * time.Millisecond
	cfg.ResubTimeout = 300 * time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{t}})
	return cfg
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// New starts an n-node cluster: node 0 bootstraps, the others join as
// voters. It waits until every node sees the same leader.
func New(t testing.TB, n int) *Cluster { return NewWith(t, n, nil) }

// NewWith is New with a hook that adjusts each node's config.
func NewWith(t testing.TB, n int, adjust func(i int, cfg *dse.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, adjust: adjust}
	for i := range n {
		dir := t.TempDir()
		cfg := Config(t, fmt.Sprintf("n%d", i+1), dir)
		cfg.Bootstrap = i == 0
		if adjust != nil {
			adjust(i, &cfg)
		}
		node, err := dse.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, node)
		c.dirs = append(c.dirs, dir)
		t.Cleanup(func() { node.Close() })
		if i == 0 {
			c.WaitLeader()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.Nodes[0].Join(ctx, dse.JoinRequest{ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr(), Voter: true})
		cancel()
		if err != nil {
			t.Fatalf("join %s: %v", node.ID(), err)
		}
	}
	c.WaitLeader()
	WaitFor(t, 10*time.Second, "every node registered", func() bool {
		for _, nd := range c.Nodes {
			if len(nd.FSM().Nodes()) != n {
				return false
			}
		}
		return true
	})
	return c
}

// Dir returns node i's data dir.
func (c *Cluster) Dir(i int) string { return c.dirs[i] }

// Restart closes node i (if running) and starts it again on its data dir,
// with a config like the first one but no id or bootstrap flag, binding
// addr (its old address, so peers find it).
func (c *Cluster) Restart(i int) *dse.Node {
	c.t.Helper()
	old := c.Nodes[i]
	old.Close()
	cfg := Config(c.t, old.ID(), c.dirs[i])
	if c.adjust != nil {
		c.adjust(i, &cfg)
	}
	cfg.ID = ""
	cfg.Bootstrap = false
	cfg.Bind = old.Addr()
	var node *dse.Node
	var err error
	// The old listener's port can take a moment to be free again.
	WaitFor(c.t, 5*time.Second, "restart "+old.ID(), func() bool {
		node, err = dse.New(cfg)
		return err == nil
	})
	c.Nodes[i] = node
	c.t.Cleanup(func() { node.Close() })
	return node
}

// Leader returns the index of the node that leads, or -1.
func (c *Cluster) Leader() int {
	for i, n := range c.Nodes {
		select {
		case <-n.Done():
			continue
		default:
		}
		if n.IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until every running node agrees on one leader, and
// returns its index.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	idx := -1
	WaitFor(c.t, 15*time.Second, "a leader all nodes agree on", func() bool {
		idx = c.Leader()
		if idx < 0 {
			return false
		}
		want := c.Nodes[idx].ID()
		for _, n := range c.Nodes {
			select {
			case <-n.Done():
				continue
			default:
			}
			if id, _ := n.Leader(); id != want {
				return false
			}
		}
		return true
	})
	return idx
}

// WaitFor polls cond every few milliseconds until it holds, failing the test
// after d (nats-server's checkFor).
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
