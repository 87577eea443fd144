package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"dse.dev/dse/dse"
)

// RegistryConfig sets up `dse bench registry`.
type RegistryConfig struct {
	Dir      string
	LogStore string // dse.LogStoreWAL (default) or dse.LogStoreBoltDB
	Nodes    int
	// Voters is how many of the nodes vote (0: all).
	Voters  int
	Clients int
	Ops     int
	// Load, when not empty, is written into the registry before the run
	// (RegistryLoad): the writes then go to a big registry.
	Load RegistryLoad
	// Progress, when set, is called about once a second with the writes
	// done so far.
	Progress func(elapsed time.Duration, ops uint64)
}

// Validate checks the configuration; its errors wrap ErrConfig.
func (c *RegistryConfig) Validate() error {
	switch {
	case c.Nodes < 1:
		return configErr("--nodes %d: want at least 1", c.Nodes)
	case c.Clients < 1:
		return configErr("--clients %d: want at least 1", c.Clients)
	case c.Ops < 4:
		return configErr("--ops %d: want at least 4 (one round of register, subscribe, unsubscribe, unregister)", c.Ops)
	}
	if err := c.Load.validate(); err != nil {
		return err
	}
	return checkDir(c.Dir)
}

// RegistryResult is what `dse bench registry --json` prints.
type RegistryResult struct {
	Mode      string  `json:"mode"`
	LogStore  string  `json:"log_store"`
	Nodes     int     `json:"nodes"`
	Clients   int     `json:"clients"`
	Ops       int     `json:"ops"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// CPUPerOp is the CPU this process (every node, and the clients) used
	// in the run, per write, in microseconds.
	CPUPerOp float64 `json:"cpu_us_per_op"`
	// Failed counts the writes that failed; the run goes on after one.
	Failed       int    `json:"failed"`
	FirstFailure string `json:"first_failure,omitempty"`
	// Load is what the registry held before the run, LoadSeconds how long
	// writing it took.
	Load        *RegistryLoad `json:"load,omitempty"`
	LoadSeconds float64       `json:"load_seconds,omitempty"`
	// RaftEntries is how many Raft log entries the run took (node 1's last
	// index, before and after: it includes the few entries the cluster
	// writes itself), and OpsPerEntry the writes per entry: the nodes'
	// group commit puts several writes in one.
	RaftEntries uint64  `json:"raft_entries"`
	OpsPerEntry float64 `json:"ops_per_entry"`
	Latency     Latency `json:"latency_us"`
	// ByNode is the latency of the writes made on each node (the leader's
	// own, and those its followers forward).
	ByNode []NodeLatency `json:"by_node"`
}

// NodeLatency is the latency of one node's writes.
type NodeLatency struct {
	Node    string  `json:"node"`
	Leader  bool    `json:"leader"`
	Ops     int     `json:"ops"`
	Latency Latency `json:"latency_us"`
}

// Registry measures concurrent Raft-committed registry writes: clients on
// every node register a service, subscribe, unsubscribe and unregister, in a
// loop (four writes a round).
func Registry(ctx context.Context, cfg RegistryConfig) (_ *RegistryResult, err error) {
	defer func() { err = orInterrupted(ctx, err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := StartClusterWith(ctx, ClusterConfig{Dir: cfg.Dir, Nodes: cfg.Nodes, Voters: cfg.Voters, LogStore: cfg.LogStore})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var loadSeconds float64
	if !cfg.Load.Empty() {
		ids := make([]string, len(c.Nodes))
		for i, n := range c.Nodes {
			ids[i] = n.ID()
		}
		start := time.Now()
		if err := loadRegistry(ctx, c.Nodes[0], ids, cfg.Load); err != nil {
			return nil, fmt.Errorf("loading the registry: %w", err)
		}
		loadSeconds = time.Since(start).Seconds()
	}
	var left, done atomic.Int64
	left.Store(int64(cfg.Ops))
	lats := make([][]time.Duration, cfg.Clients)
	// Each client's last counted write ends at ends[k]: the run ends with
	// the last of them, before the clients' uncounted clean-up.
	ends := make([]time.Time, cfg.Clients)
	var failed failures
	var wg sync.WaitGroup
	firstIndex := c.Nodes[0].Status().LastIndex
	cpu0 := cpuTime()
	start := time.Now()
	for k := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := c.Nodes[k%len(c.Nodes)]
			op := func(f func() error) bool {
				if left.Add(-1) < 0 {
					return false
				}
				t0 := time.Now()
				if err := f(); err != nil {
					if ctx.Err() == nil {
						failed.add(err)
					}
					// The round starts again with a new service.
					return false
				}
				ends[k] = time.Now()
				lats[k] = append(lats[k], ends[k].Sub(t0))
				done.Add(1)
				return true
			}
			for round := 0; left.Load() > 0 && ctx.Err() == nil; round++ {
				svc := dse.NewDataService(fmt.Sprintf("bench-reg-%d-%d", k, round), dse.Hooks{})
				if !op(func() error { return node.Register(ctx, svc) }) ||
					!op(func() error { return svc.Subscribe(ctx, "bench-nobody", "t") }) ||
					!op(func() error { return svc.Unsubscribe(ctx, "bench-nobody", "t") }) ||
					!op(func() error { return svc.Stop(ctx) }) {
					if svc.Status() == "running" {
						svc.Stop(ctx)
					}
				}
			}
		}()
	}
	stopProgress := reportProgress(cfg.Progress, start, func() uint64 { return uint64(done.Load()) })
	wg.Wait()
	cpu := cpuTime() - cpu0
	stopProgress()
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	var end time.Time
	for _, t := range ends {
		if t.After(end) {
			end = t
		}
	}
	if end.IsZero() { // every write failed
		end = time.Now()
	}
	elapsed := end.Sub(start)
	entries := c.Nodes[0].Status().LastIndex - firstIndex
	var all []time.Duration
	byNode := make([][]time.Duration, len(c.Nodes))
	for k, l := range lats {
		all = append(all, l...)
		byNode[k%len(c.Nodes)] = append(byNode[k%len(c.Nodes)], l...)
	}
	res := &RegistryResult{Mode: "in-process", LogStore: c.Nodes[0].LogStore(), Nodes: cfg.Nodes, Clients: cfg.Clients, Ops: len(all), Seconds: elapsed.Seconds(),
		OpsPerSec: float64(len(all)) / elapsed.Seconds(), RaftEntries: entries, Latency: summarize(all),
		Failed: int(failed.n.Load()), FirstFailure: failed.firstText(), LoadSeconds: loadSeconds}
	if !cfg.Load.Empty() {
		res.Load = &cfg.Load
	}
	if entries > 0 {
		res.OpsPerEntry = float64(len(all)) / float64(entries)
	}
	if len(all) > 0 {
		res.CPUPerOp = float64(cpu.Microseconds()) / float64(len(all))
	}
	for i, n := range c.Nodes {
		res.ByNode = append(res.ByNode, NodeLatency{Node: n.ID(), Leader: n.IsLeader(), Ops: len(byNode[i]), Latency: summarize(byNode[i])})
	}
	return res, nil
}
