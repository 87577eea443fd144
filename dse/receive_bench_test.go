package dse

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
)

// BenchmarkSubscriberApply is a subscriber node's whole apply of pushed
// publications: a batch frame as the transport hands it over is decoded,
// sequenced, applied to the subscriber's cache and given to its hook, the
// path every delivery of `dse bench publish` takes. Each batch holds 64
// deltas of one 100-byte row (one in, one out).
func BenchmarkSubscriberApply(b *testing.B) {
	ctx := context.Background()
	n := singleNode(b)
	pub := NewDataService("p", Hooks{})
	if err := n.Register(ctx, pub); err != nil {
		b.Fatal(err)
	}
	if _, _, err := pub.Publish(ctx, "t", []Row{{int64(0), "first"}}, true); err != nil {
		b.Fatal(err)
	}
	var applied atomic.Uint64
	sub := NewDataService("s", Hooks{ReceiveDataSequenced: func(_, _ string, _ Data, seq uint64, _ time.Time) { applied.Store(seq) }})
	if err := n.Register(ctx, sub); err != nil {
		b.Fatal(err)
	}
	if err := sub.Subscribe(ctx, "p", "t"); err != nil {
		b.Fatal(err)
	}
	first := uint64(0)
	for first == 0 {
		first = applied.Load()
		time.Sleep(time.Millisecond)
	}
	pad := fmt.Sprintf("%092d", 0)
	row := func(k uint64) Row { return Row{int64(k), pad} }
	const perBatch = 64
	seq := first
	var prev []table.Row // the row the last delta added
	frame := func() []byte {
		out := table.AppendBatch(nil, perBatch)
		for range perBatch {
			seq++
			p := &table.Publication{Publisher: "p", Table: "t", Seqnum: seq, Add: []table.Row{row(seq)}, Del: prev}
			prev = p.Add
			var err error
			if out, err = p.AppendTo(out); err != nil {
				b.Fatal(err)
			}
		}
		return out
	}
	frames := make([][]byte, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for i := range frames {
			frames[i] = frame()
		}
		b.StartTimer()
		for _, f := range frames {
			n.subs.HandleFrame("bench", f)
		}
		for applied.Load() != seq {
			time.Sleep(20 * time.Microsecond)
		}
	}
	b.ReportMetric(float64(b.N*len(frames)*perBatch)/b.Elapsed().Seconds(), "pubs/s")
	// The snapshot's row, and the last delta's.
	if got := sub.cache.Len(cache.TableID{Publisher: "p", Table: "t"}); got != 2 {
		b.Fatalf("the subscriber's cache holds %d rows, want 2", got)
	}
}
