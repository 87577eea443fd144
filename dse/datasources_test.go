package dse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/dsetest"
)

func writeJSON(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func nodeIndex(c *dsetest.Cluster, id string) int {
	for i, n := range c.Nodes {
		if n.ID() == id {
			return i
		}
	}
	return -1
}

func TestDatasourcePlacementFailoverAndDelete(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "hosts.json")
	writeJSON(t, file, `{"hosts": [["web1", "up"]]}`)

	if _, err := c.Nodes[0].AddDatasource(ctx, dse.DatasourceSpec{Name: "inv", Driver: "nope"}); !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("unknown driver: got %v", err)
	}
	if _, err := c.Nodes[0].AddDatasource(ctx, dse.DatasourceSpec{Name: "inv", Driver: "file", Config: map[string]any{"format": "json"}}); !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("config without path: got %v", err)
	}
	ds, err := c.Nodes[1].AddDatasource(ctx, dse.DatasourceSpec{Name: "inv", Driver: "file", Enabled: true,
		Config: map[string]any{"path": file, "poll_interval": "50ms"}})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Type != "datasource" || ds.ID == "" || !ds.Enabled {
		t.Fatalf("added %+v", ds)
	}
	if _, err := c.Nodes[2].AddDatasource(ctx, dse.DatasourceSpec{Name: "inv", Driver: "file", Config: map[string]any{"path": file}}); !errors.Is(err, dse.ErrExists) {
		t.Fatalf("duplicate name: got %v", err)
	}
	// The subscriber lives on a node that does not run the datasource.
	var owner string
	dsetest.WaitFor(t, 10*time.Second, "datasource placed", func() bool {
		d, _ := c.Nodes[0].FSM().Datasource(ds.ID)
		owner = d.Node
		return owner != ""
	})
	subNode := c.Nodes[(nodeIndex(c, owner)+1)%3]
	var r recorder
	sub := register(t, subNode, "policy", r.hooks())
	if err := sub.Subscribe(ctx, "inv", "hosts"); err != nil {
		t.Fatal(err)
	}
	waitRows(t, sub, "inv", "hosts", []dse.Row{{"web1", "up"}})
	writeJSON(t, file, `{"hosts": [["web1", "down"], ["db1", "up"]]}`)
	waitRows(t, sub, "inv", "hosts", []dse.Row{{"web1", "down"}, {"db1", "up"}})

	// The node running it dies: it moves, with a new incarnation, and the
	// new owner's snapshot has a higher seqnum.
	before, _ := subNode.FSM().Datasource(ds.ID)
	c.Nodes[nodeIndex(c, owner)].Close()
	start := time.Now()
	dsetest.WaitFor(t, 15*time.Second, "datasource moved", func() bool {
		d, _ := subNode.FSM().Datasource(ds.ID)
		return d.Node != "" && d.Node != owner && d.Incarnation > before.Incarnation
	})
	writeJSON(t, file, `{"hosts": [["db1", "up"]]}`)
	waitRows(t, sub, "inv", "hosts", []dse.Row{{"db1", "up"}})
	t.Logf("data flowing again %s after the owner stopped", time.Since(start))
	r.increasing(t)

	st, err := subNode.DatasourceStatusOf(ctx, "inv")
	if err != nil || !st.Running || !st.Healthy || st.Node == owner {
		t.Fatalf("status %+v %v", st, err)
	}

	// Disable: it stops publishing; enable: it runs again.
	off := false
	if _, err := subNode.UpdateDatasource(ctx, "inv", nil, &off); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 10*time.Second, "disabled datasource unplaced", func() bool {
		d, _ := subNode.FSM().Datasource(ds.ID)
		_, svc := subNode.FSM().Service("inv")
		return d.Node == "" && !svc
	})
	// Delete: the subscription to its tables ends.
	if err := subNode.DeleteDatasource(ctx, ds.ID); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 10*time.Second, "subscription ended", func() bool {
		_, _, ok := sub.Cache().Rows(cache.TableID{Publisher: "inv", Table: "hosts"})
		return !ok && len(sub.SubscriptionList()) == 0
	})
	if _, err := subNode.GetDatasource("inv", true); !errors.Is(err, dse.ErrNotFound) {
		t.Fatalf("deleted datasource still there: %v", err)
	}
}

func TestDatasourceSecretsHidden(t *testing.T) {
	c := dsetest.New(t, 1)
	ctx := context.Background()
	ds, err := c.Nodes[0].AddDatasource(ctx, dse.DatasourceSpec{Name: "api", Driver: "http",
		Config: map[string]any{"url": "http://127.0.0.1:1/x", "username": "u", "password": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Config["password"] != dse.Hidden {
		t.Fatalf("add showed the secret: %v", ds.Config)
	}
	got, _ := c.Nodes[0].GetDatasource("api", true)
	if got.Config["password"] != dse.Hidden || got.Config["username"] != "u" {
		t.Fatalf("filtered get: %v", got.Config)
	}
	got, _ = c.Nodes[0].GetDatasource(ds.ID, false)
	if got.Config["password"] != "s3cret" {
		t.Fatalf("unfiltered get: %v", got.Config)
	}
	// Updating with "<hidden>" keeps the stored secret.
	if _, err := c.Nodes[0].UpdateDatasource(ctx, "api", map[string]any{"url": "http://127.0.0.1:2/y", "username": "u", "password": dse.Hidden}, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = c.Nodes[0].GetDatasource("api", false)
	if got.Config["password"] != "s3cret" || got.Config["url"] != "http://127.0.0.1:2/y" {
		t.Fatalf("after update: %v", got.Config)
	}
	for _, d := range c.Nodes[0].GetDatasources(true) {
		if d.Config["password"] != dse.Hidden {
			t.Fatalf("list showed the secret: %v", d.Config)
		}
	}
}

// TestRemovedNodeStopsItsDatasources: a node removed from the cluster while
// it runs a datasource (or cut off from it) stops running it once it has
// not heard from the leader for the liveness grace, as the cluster moves
// it to a live node; it went on polling beside the new owner.
func TestRemovedNodeStopsItsDatasources(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "hosts.json")
	writeJSON(t, file, `{"hosts": [["web1", "up"]]}`)
	ds, err := c.Nodes[0].AddDatasource(ctx, dse.DatasourceSpec{Name: "inv", Driver: "file", Enabled: true,
		Config: map[string]any{"path": file, "poll_interval": "50ms"}})
	if err != nil {
		t.Fatal(err)
	}
	var owner string
	dsetest.WaitFor(t, 10*time.Second, "datasource running", func() bool {
		d, _ := c.Nodes[0].FSM().Datasource(ds.ID)
		owner = d.Node
		if owner == "" {
			return false
		}
		st, err := c.Nodes[nodeIndex(c, owner)].DatasourceStatusOf(ctx, "inv")
		return err == nil && st.Running
	})
	removed := c.Nodes[nodeIndex(c, owner)]
	other := c.Nodes[(nodeIndex(c, owner)+1)%3]
	if err := other.Remove(ctx, owner, false); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 10*time.Second, "the removed node to stop the datasource", func() bool {
		st, err := removed.DatasourceStatusOf(ctx, "inv")
		return err == nil && !st.Running
	})
	dsetest.WaitFor(t, 10*time.Second, "the datasource running on a member", func() bool {
		st, err := other.DatasourceStatusOf(ctx, "inv")
		return err == nil && st.Running && st.Node != owner
	})
}

// stopWarnings counts a node's "stopping a datasource" warnings.
type stopWarnings struct {
	t *testing.T
	n *atomic.Int64
}

func (w stopWarnings) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "stopping a datasource") {
		w.n.Add(1)
	}
	w.t.Log(string(p))
	return len(p), nil
}

// TestLeaderFailureDoesNotStopDatasources: while a new leader is elected,
// the surviving nodes hear from none; their datasources keep running (each
// was stopped and started again, tables republished, at every failure).
func TestLeaderFailureDoesNotStopDatasources(t *testing.T) {
	var stops atomic.Int64
	c := dsetest.NewWith(t, 3, func(_ int, cfg *dse.Config, deps *dse.Deps) {
		// The defaults' timings (dsetest's are faster): a follower notices
		// the loss after 1-2 s, past the 1.5 s grace.
		d := dse.DefaultConfig()
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LivenessGrace = d.HeartbeatTimeout, d.ElectionTimeout, d.LivenessGrace
		deps.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.ID, Level: hclog.Warn, Output: stopWarnings{t, &stops}})
	})
	ctx := context.Background()
	l := c.WaitLeader()
	for k := range 6 {
		file := filepath.Join(t.TempDir(), "hosts.json")
		writeJSON(t, file, `{"hosts": [["web1", "up"]]}`)
		if _, err := c.Nodes[l].AddDatasource(ctx, dse.DatasourceSpec{Name: fmt.Sprint("inv", k), Driver: "file", Enabled: true,
			Config: map[string]any{"path": file, "poll_interval": "50ms"}}); err != nil {
			t.Fatal(err)
		}
	}
	survivor := c.Nodes[(l+1)%3]
	dsetest.WaitFor(t, 10*time.Second, "the datasources running", func() bool {
		for k := range 6 {
			if st, err := survivor.DatasourceStatusOf(ctx, fmt.Sprint("inv", k)); err != nil || !st.Running {
				return false
			}
		}
		return true
	})
	c.Nodes[l].Close()
	time.Sleep(4 * time.Second) // an election, and more
	c.WaitLeader()
	if n := stops.Load(); n > 0 {
		t.Fatalf("%d datasources stopped on surviving nodes while a leader was elected", n)
	}
}
