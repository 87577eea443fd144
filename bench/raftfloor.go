package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/time/rate"

	"dse.dev/dse/dse/raftlog"
)

// RaftGroup is hashicorp/raft alone: 3 nodes over TCP on loopback, under
// dse's own log store and settings (those dse/cluster's startRaft gives
// it), applying to an FSM that does nothing. Its commit latency is the
// floor under every dse write: a publication's seqnum, a registry write.
type RaftGroup struct {
	// Leader is the node that applies.
	Leader  *raft.Raft
	closers []func() error
}

// raftLogCache is dse/cluster's logCacheSize: the recent entries a node
// keeps in memory.
const raftLogCache = 512

// nopFSM applies nothing: the floor measures Raft alone.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (nopFSM) Restore(io.ReadCloser) error         { return nil }

// StartRaftGroup starts a RaftGroup with its logs under dir (logStore:
// dse.LogStoreWAL or dse.LogStoreBoltDB) and returns once its leader is
// elected and every follower has caught up.
func StartRaftGroup(dir, logStore string) (_ *RaftGroup, err error) {
	g := &RaftGroup{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	var nodes []*raft.Raft
	var servers []raft.Server
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprintf("raft%d", i+1))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		store, _, err := raftlog.Open(d, logStore, nil)
		if err != nil {
			return nil, err
		}
		g.closers = append(g.closers, store.Close)
		logs, err := raft.NewLogCache(raftLogCache, store)
		if err != nil {
			return nil, err
		}
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 2*time.Second, io.Discard)
		if err != nil {
			return nil, err
		}
		g.closers = append(g.closers, tr.Close)
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(fmt.Sprint(i))
		rc.CommitTimeout, rc.BatchApplyCh, rc.MaxAppendEntries = 5*time.Millisecond, true, 256 // as startRaft
		rc.LogOutput = io.Discard
		r, err := raft.NewRaft(rc, nopFSM{}, logs, store, raft.NewInmemSnapshotStore(), tr)
		if err != nil {
			return nil, err
		}
		g.closers = append(g.closers, func() error { return r.Shutdown().Error() })
		nodes = append(nodes, r)
		servers = append(servers, raft.Server{ID: rc.LocalID, Address: tr.LocalAddr()})
	}
	if err := nodes[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for nodes[0].State() != raft.Leader {
		if time.Now().After(deadline) {
			return nil, errors.New("raft floor: no leader in 15s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := nodes[0].Barrier(10 * time.Second).Error(); err != nil {
		return nil, err
	}
	g.Leader = nodes[0]
	return g, nil
}

// Close stops the group's nodes, then their transports and stores.
func (g *RaftGroup) Close() error {
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i]())
	}
	g.closers = nil
	return errors.Join(errs...)
}

// RaftFloorConfig sets up a run of a RaftGroup.
type RaftFloorConfig struct {
	Dir      string
	LogStore string
	Duration time.Duration
	// Rate, when set, applies that many entries a second, each from a
	// goroutine of its own (arrivals that do not wait for each other, as
	// `dse bench publish --rate` makes them); otherwise Writers goroutines
	// apply one entry at a time each (1: the bare commit latency).
	Rate    int
	Writers int
	// Bytes is each entry's size (default 100).
	Bytes int
}

// RaftFloorResult is what a run of a RaftGroup measured.
type RaftFloorResult struct {
	Applies       int     `json:"applies"`
	Failed        int     `json:"failed"`
	Seconds       float64 `json:"seconds"`
	AppliesPerSec float64 `json:"applies_per_sec"`
	Latency       Latency `json:"latency_us"`
}

// RaftFloor starts a RaftGroup under cfg.Dir (a temporary folder when
// empty), applies entries to it for cfg.Duration and measures each one's
// commit on the leader.
func RaftFloor(ctx context.Context, cfg RaftFloorConfig) (*RaftFloorResult, error) {
	dir, cleanup, err := benchDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	g, err := StartRaftGroup(dir, cfg.LogStore)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	return g.Run(ctx, cfg)
}

// Run applies entries to the group's leader as cfg says (its Dir and
// LogStore unused) and measures each one's commit.
func (g *RaftGroup) Run(ctx context.Context, cfg RaftFloorConfig) (*RaftFloorResult, error) {
	if cfg.Bytes <= 0 {
		cfg.Bytes = 100
	}
	data := make([]byte, cfg.Bytes)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	apply := func() {
		t0 := time.Now()
		err := g.Leader.Apply(data, 10*time.Second).Error()
		d := time.Since(t0)
		mu.Lock()
		if err != nil {
			failed++
		} else {
			lat = append(lat, d)
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	start := time.Now()
	if cfg.Rate > 0 {
		lim := rate.NewLimiter(rate.Limit(cfg.Rate), 1)
		for lim.Wait(runCtx) == nil {
			wg.Go(apply)
		}
	} else {
		for range max(cfg.Writers, 1) {
			wg.Go(func() {
				for runCtx.Err() == nil {
					apply()
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	return &RaftFloorResult{Applies: len(lat), Failed: failed, Seconds: elapsed.Seconds(),
		AppliesPerSec: float64(len(lat)) / elapsed.Seconds(), Latency: summarize(lat)}, nil
}
