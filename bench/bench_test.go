package bench

import (
	"context"
	"testing"
	"time"
)

// TestPublishSmoke runs the publish benchmark briefly: every publication
// must reach both subscribers in order.
func TestPublishSmoke(t *testing.T) {
	res, err := Publish(context.Background(), PublishConfig{Nodes: 3, Subscribers: 2, Tables: 2, RowsPerDelta: 2, RowBytes: 50, Duration: time.Second, Writers: 16})
	if err != nil {
		t.Fatal(err)
	}
	if res.Publications == 0 || res.OrderViolations != 0 || res.RaftCommits == 0 {
		t.Fatalf("got %+v", res)
	}
	t.Logf("%.0f publications/s, %.1f per commit, p50 %.0fµs", res.PubsPerSec, res.PubsPerCommit, res.Latency.P50)
}

// BenchmarkPublishPath measures the whole publish path (group commit, push,
// subscriber apply) on a 3-node cluster; run with -benchtime=1x and a
// -cpuprofile to see where the time goes.
func BenchmarkPublishPath(b *testing.B) {
	for range b.N {
		res, err := Publish(context.Background(), PublishConfig{Nodes: 3, Subscribers: 2, Tables: 1, RowsPerDelta: 1, RowBytes: 100, Duration: 5 * time.Second, Writers: 1024})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.PubsPerSec, "pubs/s")
		b.ReportMetric(res.Latency.P50, "p50-µs")
	}
}
