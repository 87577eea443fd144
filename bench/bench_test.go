package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestPublishSmoke runs the publish benchmark briefly, with the async
// publisher and with waiting writers: every publication must reach both
// subscribers, in order.
func TestPublishSmoke(t *testing.T) {
	for _, cfg := range []PublishConfig{{Window: 256}, {Writers: 16}} {
		cfg.Nodes, cfg.Subscribers, cfg.Tables, cfg.RowsPerDelta, cfg.RowBytes, cfg.Duration = 3, 2, 2, 2, 50, time.Second
		res, err := Publish(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Publications == 0 || res.OrderViolations != 0 || res.RaftCommits == 0 || res.Deliveries != 2*res.Publications {
			t.Fatalf("window %d, writers %d: %d publications, %d deliveries, %d commits, %d order violations", res.Window, res.Writers, res.Publications, res.Deliveries, res.RaftCommits, res.OrderViolations)
		}
		t.Logf("window %d, writers %d: %.0f publications/s, %.1f per commit, p50 %.0fµs", res.Window, res.Writers, res.PubsPerSec, res.PubsPerCommit, res.Latency.P50)
	}
}

// BenchmarkPublishPath measures the whole publish path (group commit, push,
// subscriber apply) on a 3-node cluster with the default async publisher;
// run with -benchtime=1x and a -cpuprofile to see where the time goes.
func BenchmarkPublishPath(b *testing.B) {
	for range b.N {
		res, err := Publish(context.Background(), PublishConfig{Nodes: 3, Subscribers: 2, Tables: 1, RowsPerDelta: 1, RowBytes: 100, Duration: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.PubsPerSec, "pubs/s")
		b.ReportMetric(res.Latency.P50, "p50-µs")
	}
}

// BenchmarkRegistryPath measures Raft-committed registry writes from 64
// clients on a 3-node cluster (`dse bench registry`); run with
// -benchtime=1x and a -cpuprofile to see where the time goes.
func BenchmarkRegistryPath(b *testing.B) {
	for range b.N {
		res, err := Registry(context.Background(), RegistryConfig{Nodes: 3, Clients: 64, Ops: 40000})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.OpsPerSec, "ops/s")
		b.ReportMetric(res.Latency.P50, "p50-µs")
	}
}

// TestMain lets this test binary be a bench node process for the
// multi-process snapshot test: it re-runs itself with DSE_BENCH_NODE set.
func TestMain(m *testing.M) {
	if os.Getenv("DSE_BENCH_NODE") == "1" {
		if err := RunSnapshotNode(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSnapshotSmoke takes a snapshot big enough for the bulk load, with
// both nodes in this process and with a process per node.
func TestSnapshotSmoke(t *testing.T) {
	self := func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "DSE_BENCH_NODE=1")
		return cmd
	}
	for _, spawn := range []Spawn{nil, self} {
		res, err := Snapshot(context.Background(), SnapshotConfig{Rows: 20_000, Columns: 4, Spawn: spawn})
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows != 20_000 || res.Bytes == 0 || res.Seconds <= 0 || res.BaselineSeconds <= 0 || res.RSSMB <= 0 {
			t.Fatalf("%s: got %+v", res.Mode, res)
		}
		if (spawn != nil) != (res.Mode == "multi-process") || (spawn != nil) != (len(res.NodeRSSMB) == 2) {
			t.Fatalf("mode %s with node RSS %v", res.Mode, res.NodeRSSMB)
		}
	}
}

// BenchmarkRaftFloor is hashicorp/raft alone (RaftGroup), one 100-byte
// Apply at a time on the leader: the floor under `dse bench publish --rate`,
// whose every publication waits for one such commit (dse/cluster's
// BenchmarkRaftFloor measures the same from inside the cluster package).
func BenchmarkRaftFloor(b *testing.B) {
	g, err := StartRaftGroup(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	data := make([]byte, 100)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := g.Leader.Apply(data, 10*time.Second).Error(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	l := summarize(lat)
	b.ReportMetric(l.P50, "p50-µs")
	b.ReportMetric(l.P99, "p99-µs")
}

// TestRaftFloor runs hashicorp/raft alone briefly, at a rate and one entry
// at a time.
func TestRaftFloor(t *testing.T) {
	for _, cfg := range []RaftFloorConfig{{Rate: 200, Duration: 500 * time.Millisecond}, {Writers: 1, Duration: 300 * time.Millisecond}} {
		res, err := RaftFloor(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Applies == 0 || res.Failed != 0 || res.Latency.P50 <= 0 {
			t.Fatalf("%+v: got %+v", cfg, res)
		}
	}
}
