package dsetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
)

// Cluster is a set of in-process nodes.
type Cluster struct {
	t      testing.TB
	Nodes  []*dse.Node
	dirs   []string
	adjust func(i int, cfg *dse.Config, deps *dse.Deps)
}

// Config returns a fast test configuration for a node with id in dir, and
// its collaborators: a logger that writes warnings to the test's log.
func Config(t testing.TB, id, dir string) (dse.Config, dse.Deps) {
	cfg := dse.DefaultConfig()
	cfg.ID, cfg.DataDir = id, dir
	cfg.Bind, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 200*time.Millisecond, 200*time.Millisecond
	cfg.LivenessGrace = 400 * time.Millisecond
	cfg.ResubTimeout = 300 * time.Millisecond
	name := id
	if name == "" {
		name = "node"
	}
	return cfg, dse.Deps{Logger: hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, Output: testWriter{t}})}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// New starts an n-node cluster: node 0 bootstraps, the others join as
// voters. It waits until every node sees the same leader.
func New(t testing.TB, n int) *Cluster { return NewWith(t, n, nil) }

// NewWith is New with a hook that adjusts each node's config and
// collaborators (for instance its Faults) before it starts; the hook is
// used again by Restart and AddNode.
func NewWith(t testing.TB, n int, adjust func(i int, cfg *dse.Config, deps *dse.Deps)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, adjust: adjust}
	for i := range n {
		if i == 0 {
			c.start(i, true)
			c.WaitLeader()
			continue
		}
		c.AddNode(true)
	}
	c.WaitLeader()
	c.waitRegistered()
	return c
}

// start starts node i (the next one when i == len(c.Nodes)) in a new dir.
func (c *Cluster) start(i int, bootstrap bool) *dse.Node {
	c.t.Helper()
	dir := c.t.TempDir()
	cfg, deps := Config(c.t, fmt.Sprintf("n%d", i+1), dir)
	cfg.Bootstrap = bootstrap
	if c.adjust != nil {
		c.adjust(i, &cfg, &deps)
	}
	node, err := dse.New(cfg, deps)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { node.Close() })
	c.Nodes = append(c.Nodes, node)
	c.dirs = append(c.dirs, dir)
	return node
}

// AddNode starts one more node (id n<k>, in a new data dir) and joins it
// to the cluster, as a voter or not; it returns once every node's registry
// has it.
func (c *Cluster) AddNode(voter bool) *dse.Node {
	c.t.Helper()
	i := len(c.Nodes)
	node := c.start(i, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	via := c.Nodes[0]
	if l := c.Leader(); l >= 0 {
		via = c.Nodes[l]
	}
	if err := via.Join(ctx, dse.JoinRequest{ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr(), Voter: voter}); err != nil {
		c.t.Fatalf("join %s: %v", node.ID(), err)
	}
	c.waitRegistered()
	return node
}

// waitRegistered waits until every running node's registry holds every
// running node.
func (c *Cluster) waitRegistered() {
	c.t.Helper()
	WaitFor(c.t, 10*time.Second, "every node registered", func() bool {
		for _, nd := range c.Running() {
			for _, other := range c.Running() {
				if _, ok := nd.FSM().Node(other.ID()); !ok {
					return false
				}
			}
		}
		return true
	})
}

// Running returns the nodes that have not stopped.
func (c *Cluster) Running() []*dse.Node {
	var out []*dse.Node
	for _, n := range c.Nodes {
		select {
		case <-n.Done():
		default:
			out = append(out, n)
		}
	}
	return out
}

// Dir returns node i's data dir.
func (c *Cluster) Dir(i int) string { return c.dirs[i] }

// Stop closes node i, as a node whose process ended.
func (c *Cluster) Stop(i int) { c.Nodes[i].Close() }

// Restart closes node i (if running) and starts it again on its data dir,
// with a config like the first one but no id or bootstrap flag, binding
// its old address (so peers find it).
func (c *Cluster) Restart(i int) *dse.Node {
	c.t.Helper()
	old := c.Nodes[i]
	old.Close()
	cfg, deps := Config(c.t, old.ID(), c.dirs[i])
	if c.adjust != nil {
		c.adjust(i, &cfg, &deps)
	}
	cfg.ID = ""
	cfg.Bootstrap = false
	cfg.Bind = old.Addr()
	var node *dse.Node
	var err error
	// The old listener's port can take a moment to be free again.
	WaitFor(c.t, 5*time.Second, "restart "+old.ID(), func() bool {
		node, err = dse.New(cfg, deps)
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
		for _, n := range c.Running() {
			if id, _ := n.Leader(); id != want {
				return false
			}
		}
		return true
	})
	return idx
}

// WaitRows waits until subscriber s's copy of publisher's table holds
// exactly rows (in any order), failing the test after 10 s with what it
// holds.
func WaitRows(t testing.TB, s *dse.DataService, publisher, tbl string, rows []dse.Row) {
	t.Helper()
	id := cache.TableID{Publisher: publisher, Table: tbl}
	want := slices.Clone(rows)
	table.Sort(want)
	var got []dse.Row
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _, _ = s.Cache().Rows(id)
		if slices.EqualFunc(got, want, func(a, b dse.Row) bool { return table.Compare(a, b) == 0 }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s to hold %s/%s = %v; it holds %v", s.ID(), publisher, tbl, want, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
