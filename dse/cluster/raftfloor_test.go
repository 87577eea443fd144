package cluster

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"dse.dev/dse/dse/raftlog"
)

// nopFSM applies nothing: the floor measures Raft alone.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (nopFSM) Restore(io.ReadCloser) error         { return nil }

// BenchmarkRaftFloor is hashicorp/raft alone, under dse's own log store and
// settings: 3 nodes over TCP on loopback, one 100-byte Apply at a time on
// the leader. Its p50 is the floor under `dse bench publish --rate 1000`,
// whose every publication waits for one such commit.
func BenchmarkRaftFloor(b *testing.B) {
	for _, kind := range []string{raftlog.WAL, raftlog.BoltDB} {
		b.Run(kind, func(b *testing.B) {
			leader := raftAlone(b, kind)
			data := make([]byte, 100)
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				if err := leader.Apply(data, 10*time.Second).Error(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkRaftFloor64 is the same with 64 concurrent writers on the
// leader: the ceiling over `dse bench registry`'s 64 clients, which also
// pay for forwarding from followers and for the followers' own apply.
func BenchmarkRaftFloor64(b *testing.B) {
	leader := raftAlone(b, raftlog.WAL)
	data := make([]byte, 100)
	b.SetParallelism(32) // 64 writers on 2 cores
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := leader.Apply(data, 10*time.Second).Error(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "applies/s")
}

// raftAlone starts 3 hashicorp/raft nodes as startRaft configures them,
// with an FSM that does nothing, and returns the leader once every follower
// has caught up.
func raftAlone(b *testing.B, kind string) *raft.Raft {
	var nodes []*raft.Raft
	var servers []raft.Server
	for i := range 3 {
		store, _, err := raftlog.Open(b.TempDir(), kind, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { store.Close() })
		logs, err := raft.NewLogCache(logCacheSize, store)
		if err != nil {
			b.Fatal(err)
		}
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 2*time.Second, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Close() })
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(fmt.Sprint(i))
		rc.CommitTimeout, rc.BatchApplyCh, rc.MaxAppendEntries = 5*time.Millisecond, true, 256 // as startRaft
		rc.LogOutput = io.Discard
		r, err := raft.NewRaft(rc, nopFSM{}, logs, store, raft.NewInmemSnapshotStore(), tr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Shutdown().Error() })
		nodes = append(nodes, r)
		servers = append(servers, raft.Server{ID: rc.LocalID, Address: tr.LocalAddr()})
	}
	if err := nodes[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		b.Fatal(err)
	}
	for nodes[0].State() != raft.Leader {
		time.Sleep(10 * time.Millisecond)
	}
	if err := nodes[0].Barrier(10 * time.Second).Error(); err != nil {
		b.Fatal(err)
	}
	return nodes[0]
}
