package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"dse.dev/dse/dse"
)

// RPCConfig sets up `dse bench rpc`.
type RPCConfig struct {
	Dir      string
	LogStore string // dse.LogStoreWAL (default) or dse.LogStoreBoltDB
	Callers  int
	Duration time.Duration
	// Progress, when set, is called about once a second with the calls
	// made so far.
	Progress func(elapsed time.Duration, calls uint64)
}

// Validate checks the configuration; its errors wrap ErrConfig.
func (c *RPCConfig) Validate() error {
	switch {
	case c.Callers < 1:
		return configErr("--callers %d: want at least 1", c.Callers)
	case c.Duration <= 0:
		return configErr("--duration %s: want a positive duration", c.Duration)
	}
	return checkDir(c.Dir)
}

// RPCResult is what `dse bench rpc --json` prints.
type RPCResult struct {
	Mode        string          `json:"mode"`
	LogStore    string          `json:"log_store"`
	Callers     int             `json:"callers"`
	Seconds     float64         `json:"seconds"`
	Calls       int             `json:"calls"`
	CallsPerSec float64         `json:"calls_per_sec"`
	Latency     Latency         `json:"latency_us"`
	Series      []uint64        `json:"-"`
	Latencies   []time.Duration `json:"-"`
}

// RPC measures an echo RPC from node 1 to a service on node 2.
func RPC(ctx context.Context, cfg RPCConfig) (_ *RPCResult, err error) {
	defer func() { err = orInterrupted(ctx, err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := StartCluster(ctx, cfg.Dir, 2, cfg.LogStore, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	echo := dse.NewDataService("bench-echo", dse.Hooks{})
	if err := c.Nodes[1].Register(ctx, echo); err != nil {
		return nil, err
	}
	caller := dse.NewDataService("bench-caller", dse.Hooks{})
	if err := c.Nodes[0].Register(ctx, caller); err != nil {
		return nil, err
	}
	args := map[string]any{"x": int64(1)}
	// Warm the connection.
	if _, err := caller.RPC(ctx, "bench-echo", "ping", args, dse.RPCOptions{}); err != nil {
		return nil, err
	}
	lats := make([][]time.Duration, cfg.Callers)
	stamps := make([][]time.Time, cfg.Callers)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	var calls atomic.Uint64
	start := time.Now()
	for k := range cfg.Callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				t0 := time.Now()
				if _, err := caller.RPC(ctx, "bench-echo", "ping", args, dse.RPCOptions{}); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				now := time.Now()
				lats[k] = append(lats[k], now.Sub(t0))
				stamps[k] = append(stamps[k], now)
				calls.Add(1)
			}
		}()
	}
	stopProgress := reportProgress(cfg.Progress, start, calls.Load)
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	res := &RPCResult{Mode: "in-process", LogStore: c.Nodes[0].LogStore(), Callers: cfg.Callers, Seconds: elapsed.Seconds()}
	buckets := int(elapsed/(100*time.Millisecond)) + 1
	res.Series = make([]uint64, buckets)
	for k := range lats {
		res.Latencies = append(res.Latencies, lats[k]...)
		for _, s := range stamps[k] {
			res.Series[int(s.Sub(start)/(100*time.Millisecond))]++
		}
	}
	res.Calls = len(res.Latencies)
	res.CallsPerSec = float64(res.Calls) / elapsed.Seconds()
	res.Latency = summarize(append([]time.Duration(nil), res.Latencies...))
	return res, nil
}
