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

// getTable reads a table through node as `dse get` does.
func getTable(ctx context.Context, node *dse.Node, svc, tbl string) (uint64, int, error) {
	res, err := node.RPC(ctx, svc, "get_last_published_data_with_seqnum", map[string]any{"table": tbl}, dse.RPCOptions{Timeout: time.Second, Retry: 2, Idempotent: true})
	if err != nil {
		return 0, 0, err
	}
	m := res.(map[string]any)
	return uint64(m["seqnum"].(int64)), len(m["rows"].([]any)), nil
}

func inSync(t *testing.T, node *dse.Node, svc string) []string {
	t.Helper()
	d, err := node.ServiceDetail(svc)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range d.Replicas {
		if r.InSync {
			out = append(out, r.NodeID)
		}
	}
	return out
}

// TestReplicatedServiceOutlivesItsOwner: an external service kept on three
// nodes: a publish is acknowledged once the in-sync replicas hold it; the
// owner's node stops, a replica takes the service over under a new
// incarnation with the acknowledged content, get and publish go on through
// any node, a watch started before sees the new content, and the old owner
// back catches up and is in sync again.
func TestReplicatedServiceOutlivesItsOwner(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	if _, err := c.Nodes[0].CreateService(ctx, "inv", 3); err != nil {
		t.Fatal(err)
	}
	rows := func(n int) []dse.Row {
		var out []dse.Row
		for i := range n {
			out = append(out, dse.Row{"host", int64(i)})
		}
		return out
	}
	var last dse.PublishResult
	for i := 1; i <= 20; i++ {
		res, err := c.Nodes[1+i%2].Publish(ctx, "inv", "hosts", rows(i), false)
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		last = res
	}
	if got := inSync(t, c.Nodes[0], "inv"); len(got) != 3 {
		t.Fatalf("in sync %v, want all three", got)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan dse.WatchEvent, 64)
	go c.Nodes[2].Watch(wctx, "inv", "hosts", events)
	if ev := <-events; !ev.Snapshot || len(ev.Rows) != 20 {
		t.Fatalf("the watch began with %+v", ev)
	}
	old, _ := c.Nodes[1].FSM().Service("inv")
	c.Stop(0) // the owner's node goes
	// Reads go on at once, from a replica.
	dsetest.WaitFor(t, 10*time.Second, "get on a surviving node", func() bool {
		seq, n, err := getTable(ctx, c.Nodes[1], "inv", "hosts")
		return err == nil && seq >= last.Seqnum && n == 20
	})
	dsetest.WaitFor(t, 15*time.Second, "a new owner", func() bool {
		svc, _ := c.Nodes[1].FSM().Service("inv")
		return svc.Owner != "" && svc.Owner != "n1" && svc.Incarnation > old.Incarnation
	})
	res, err := c.Nodes[2].Publish(ctx, "inv", "hosts", rows(25), false)
	if err != nil || res.Seqnum <= last.Seqnum || !res.Changed {
		t.Fatalf("the first publish after the failover: %+v %v", res, err)
	}
	for deadline := time.After(10 * time.Second); ; {
		select {
		case ev := <-events:
			if ev.Seqnum == res.Seqnum {
				goto watched
			}
		case <-deadline:
			t.Fatal("the watch never saw the new owner's publication")
		}
	}
watched:
	if seq, n, err := getTable(ctx, c.Nodes[1], "inv", "hosts"); err != nil || seq != res.Seqnum || n != 25 {
		t.Fatalf("get after: %d, %d rows, %v", seq, n, err)
	}
	c.Restart(0)
	dsetest.WaitFor(t, 20*time.Second, "the old owner in sync again", func() bool {
		return len(inSync(t, c.Nodes[1], "inv")) == 3
	})
	if _, err := c.Nodes[0].Publish(ctx, "inv", "hosts", rows(3), false); err != nil {
		t.Fatal(err)
	}
}

// TestReplicatedPublishWaitsForInSyncReplicas: with a replica's node down,
// the replica leaves the in-sync set and publishes go on with the
// majority; below it, a publish in flight fails with its outcome unknown,
// and the next is refused before it changes anything.
func TestReplicatedPublishWaitsForInSyncReplicas(t *testing.T) {
	c := dsetest.NewWith(t, 3, func(_ int, cfg *dse.Config, _ *dse.Deps) { cfg.ApplyTimeout = 3 * time.Second })
	ctx := context.Background()
	if _, err := c.Nodes[0].CreateService(ctx, "s3", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes[0].CreateService(ctx, "s2", 2); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"s2", "s3"} {
		if _, err := c.Nodes[0].Publish(ctx, svc, "t", []dse.Row{{int64(1)}}, false); err != nil {
			t.Fatal(err)
		}
	}
	// Every node holds s3 on disk: each timed its store's commits.
	for _, n := range c.Nodes {
		if got := counter(t, n, "dse_replica_store_commit_seconds"); got < 1 {
			t.Fatalf("%s: dse_replica_store_commit_seconds counted %v commits", n.ID(), got)
		}
	}
	d, _ := c.Nodes[0].ServiceDetail("s2")
	var other int // s2's replica besides n1
	for i, n := range c.Nodes {
		if n.ID() != "n1" && slices.ContainsFunc(d.Replicas, func(r dse.ReplicaDetail) bool { return r.NodeID == n.ID() }) {
			other = i
		}
	}
	c.Stop(other)
	start := time.Now()
	if _, err := c.Nodes[0].Publish(ctx, "s3", "t", []dse.Row{{int64(2)}}, false); err != nil {
		t.Fatalf("s3, a publish with one of three replicas down: %v", err)
	}
	t.Logf("a publish with a replica just gone took %s", time.Since(start))
	dsetest.WaitFor(t, 10*time.Second, "the replica out of sync", func() bool {
		t.Log(inSync(t, c.Nodes[0], "s2"), other)
		return len(inSync(t, c.Nodes[0], "s2")) == 1
	})
	_, err := c.Nodes[0].Publish(ctx, "s2", "t", []dse.Row{{int64(2)}}, false)
	if !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("s2, a publish with 1 of 2 in sync: %v, want unavailable", err)
	}
	if seq, n, err := getTable(ctx, c.Nodes[0], "s2", "t"); err != nil || seq != 1 || n != 1 {
		t.Fatalf("the refused publish changed s2: seqnum %d, %d rows, %v", seq, n, err)
	}
}
