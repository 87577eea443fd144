package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dse.dev/dse/dse"
)

// The ways external clients reach the service's nodes.
const (
	// ViaOwner sends every publication to the owner's node.
	ViaOwner = "owner"
	// ViaSpread sends client k's to node k mod nodes: two thirds of them
	// reach a node that forwards them to the owner.
	ViaSpread = "spread"
)

// ExternalConfig sets up `dse bench publish --external`.
type ExternalConfig struct {
	Dir      string
	LogStore string
	Nodes    int
	// Replicas is the external service's replication factor.
	Replicas int
	// Clients is how many HTTP clients publish at once, each with a
	// keep-alive connection of its own, each setting the full content of
	// a table of its own (one row that changes every time).
	Clients int
	// Via is ViaOwner (the default) or ViaSpread.
	Via      string
	RowBytes int
	// Subscribers, on the nodes other than the owner's, subscribe to every
	// client's table (0: none, as JetStream's publish bench has none).
	Subscribers int
	Duration    time.Duration
	Rate        int // publications per second, all clients together; 0: as fast as they can
	Progress    func(elapsed time.Duration, pubs uint64)
}

// Validate checks the configuration and fills in the defaults; its errors
// wrap ErrConfig.
func (c *ExternalConfig) Validate() error {
	if c.Via == "" {
		c.Via = ViaOwner
	}
	if c.Replicas == 0 {
		c.Replicas = dse.DefaultReplicas
	}
	switch {
	case c.Nodes < 1:
		return configErr("--nodes %d: want at least 1", c.Nodes)
	case c.Replicas < 1 || c.Replicas > c.Nodes:
		return configErr("--replicas %d: want 1 to --nodes (%d)", c.Replicas, c.Nodes)
	case c.Clients < 1:
		return configErr("--clients %d: want at least 1", c.Clients)
	case c.Via != ViaOwner && c.Via != ViaSpread:
		return configErr("--via %q: want %s or %s", c.Via, ViaOwner, ViaSpread)
	case c.RowBytes < 8:
		return configErr("--row-bytes %d: want at least 8", c.RowBytes)
	case c.Subscribers < 0:
		return configErr("--subscribers %d: want 0 or more", c.Subscribers)
	case c.Subscribers > 0 && c.Nodes < 2:
		return configErr("--subscribers %d: subscribers live on other nodes than the owner's; want --nodes 2 or more", c.Subscribers)
	case c.Duration <= 0:
		return configErr("--duration %s: want a positive duration", c.Duration)
	case c.Rate < 0:
		return configErr("--rate %d: want 0 (as fast as possible) or more", c.Rate)
	}
	return checkDir(c.Dir)
}

// ExternalResult is what `dse bench publish --external --json` prints.
type ExternalResult struct {
	Mode     string `json:"mode"` // "external"
	LogStore string `json:"log_store"`
	// Nodes run in this process, each with its HTTP API on a port of its
	// own.
	Nodes       int     `json:"nodes"`
	Replicas    int     `json:"replicas"`
	Clients     int     `json:"clients"`
	Via         string  `json:"via"`
	RowBytes    int     `json:"row_bytes"`
	Subscribers int     `json:"subscribers"`
	Rate        int     `json:"rate"`
	Seconds     float64 `json:"seconds"`
	// Publications are those acknowledged (200 OK: sequenced, and on the
	// disks of the in-sync replicas); Failed, those answered otherwise or
	// not at all.
	Publications     uint64  `json:"publications"`
	PubsPerSec       float64 `json:"pubs_per_sec"`
	Deliveries       uint64  `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Failed           uint64  `json:"failed"`
	FirstFailure     string  `json:"first_failure,omitempty"`
	// RaftCommits are the Raft entries that sequenced the owner's
	// publications (PubsPerCommit of them each, on average), as in the
	// in-process bench; CPUPerPub, the CPU of this whole process (nodes,
	// HTTP servers and clients) per acknowledged publication.
	RaftCommits     uint64  `json:"raft_commits"`
	PubsPerCommit   float64 `json:"pubs_per_commit"`
	CPUPerPub       float64 `json:"cpu_us_per_pub"`
	OrderViolations uint64  `json:"order_violations"`
	// Latency is from the request's start to its answer, at the client.
	Latency Latency `json:"latency_us"`
	// ByNode is the latency of the publications sent to each node (with
	// ViaSpread, the owner's own and those its other nodes forward).
	ByNode    []NodeLatency   `json:"by_node,omitempty"`
	Series    []uint64        `json:"-"`
	Latencies []time.Duration `json:"-"`
}

// extService is the external service the bench publishes to.
const extService = "bench-ext"

// External drives an external service with cfg.Replicas replicas over the
// HTTP API: cfg.Clients clients, each PUTting the full content of a table
// of its own (`dse publish`), each waiting for the answer before the next.
func External(ctx context.Context, cfg ExternalConfig) (_ *ExternalResult, err error) {
	defer func() { err = orInterrupted(ctx, err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := StartClusterWith(ctx, ClusterConfig{Dir: cfg.Dir, Nodes: cfg.Nodes, LogStore: cfg.LogStore, HTTP: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	owner := c.Nodes[0]
	if _, err := owner.CreateService(ctx, extService, cfg.Replicas); err != nil {
		return nil, err
	}
	tables := make([]string, cfg.Clients)
	for k := range tables {
		tables[k] = fmt.Sprintf("c%d", k)
	}
	subs := make([]*subscriber, cfg.Subscribers)
	for i := range subs {
		subs[i] = &subscriber{last: map[string]uint64{}}
		svc := dse.NewDataService(fmt.Sprintf("bench-sub%d", i), subs[i].hooks())
		if err := c.Nodes[1+i%(cfg.Nodes-1)].Register(ctx, svc); err != nil {
			return nil, err
		}
		if err := parallel(len(tables), setupConcurrency, func(k int) error { return svc.Subscribe(ctx, extService, tables[k]) }); err != nil {
			return nil, err
		}
	}
	pad := strings.Repeat("x", max(cfg.RowBytes-16, 1))
	body := func(k int, n int64) []byte {
		return fmt.Appendf(nil, `[[%d,%d,"%s"]]`, k, n, pad)
	}
	clients := make([]*extClient, cfg.Clients)
	for k := range clients {
		node := 0
		if cfg.Via == ViaSpread {
			node = k % len(c.Nodes)
		}
		clients[k] = newExtClient(c.Nodes[node].HTTPAddr(), tables[k], node)
	}
	// Each client's first publication (its table's snapshot) waits until
	// the replicas have started.
	if err := parallel(len(clients), setupConcurrency, func(k int) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := clients[k].put(ctx, body(k, 0))
			if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}); err != nil {
		return nil, fmt.Errorf("first publications: %w", err)
	}
	waitExtDelivered(subs, tables, 10*time.Second)
	beforeDeliveries := make([]uint64, len(subs))
	for i, s := range subs {
		s.mu.Lock()
		beforeDeliveries[i] = s.deliveries
		s.lat, s.chunks = s.lat[:0], nil
		s.mu.Unlock()
	}

	var published atomic.Uint64
	var failed failures
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	pace := newPacer(cfg.Rate, len(clients))
	before := owner.Stats()
	cpu0 := cpuTime()
	start := time.Now()
	series, stopSeries := recordSeries(runCtx, start, published.Load, cfg.Progress)
	var wg sync.WaitGroup
	for k, cl := range clients {
		wg.Go(func() {
			perm := permits{p: pace}
			for n := int64(1); runCtx.Err() == nil; n++ {
				if perm.take(runCtx) != nil {
					return
				}
				t0 := time.Now()
				// ctx, not runCtx: a publication started is waited for.
				if err := cl.put(ctx, body(k, n)); err != nil {
					if ctx.Err() == nil {
						failed.add(err)
					}
					pause(runCtx)
					continue
				}
				cl.lat = append(cl.lat, time.Since(t0))
				published.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	stopSeries()
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	waitExtDelivered(subs, tables, 10*time.Second)
	total := published.Load()
	res := &ExternalResult{Mode: "external", LogStore: owner.LogStore(), Nodes: cfg.Nodes, Replicas: cfg.Replicas, Clients: cfg.Clients, Via: cfg.Via,
		RowBytes: cfg.RowBytes, Subscribers: cfg.Subscribers, Rate: cfg.Rate, Seconds: elapsed.Seconds(), Publications: total,
		PubsPerSec: float64(total) / elapsed.Seconds(), Failed: failed.n.Load(), FirstFailure: failed.firstText(), Series: *series,
		RaftCommits: owner.Stats().SeqCommits - before.SeqCommits}
	if res.RaftCommits > 0 {
		res.PubsPerCommit = float64(total) / float64(res.RaftCommits)
	}
	if total > 0 {
		res.CPUPerPub = float64(cpu.Microseconds()) / float64(total)
	}
	byNode := make([][]time.Duration, len(c.Nodes))
	for _, cl := range clients {
		res.Latencies = append(res.Latencies, cl.lat...)
		byNode[cl.node] = append(byNode[cl.node], cl.lat...)
	}
	res.Latency = summarize(append([]time.Duration(nil), res.Latencies...))
	if cfg.Via == ViaSpread {
		for i, l := range byNode {
			res.ByNode = append(res.ByNode, NodeLatency{Node: c.Nodes[i].ID(), Leader: c.Nodes[i].IsLeader(), Ops: len(l), Latency: summarize(l)})
		}
	}
	for i, s := range subs {
		s.mu.Lock()
		res.Deliveries += s.deliveries - beforeDeliveries[i]
		res.OrderViolations += s.violations
		s.mu.Unlock()
	}
	res.DeliveriesPerSec = float64(res.Deliveries) / elapsed.Seconds()
	return res, nil
}

// recordSeries counts, every 100 ms until ctx ends, what count() added
// since the last tick, and calls progress (when set) every second; stop
// waits for it to end and the series is complete.
func recordSeries(ctx context.Context, start time.Time, count func() uint64, progress func(time.Duration, uint64)) (series *[]uint64, stop func()) {
	series = new([]uint64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var prev uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				p := count()
				*series = append(*series, p-prev)
				prev = p
				if progress != nil && len(*series)%10 == 0 {
					progress(time.Since(start), p)
				}
			}
		}
	}()
	return series, func() { <-done }
}

// waitExtDelivered waits, up to d, until every subscriber has had as many
// publications of each table as the others have: the external bench does
// not know the seqnums its clients got.
func waitExtDelivered(subs []*subscriber, tables []string, d time.Duration) {
	if len(subs) == 0 {
		return
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var want uint64
		ok := true
		for i, s := range subs {
			s.mu.Lock()
			var sum uint64
			for _, t := range tables {
				sum += s.last[extService+"/"+t]
			}
			s.mu.Unlock()
			if i == 0 {
				want = sum
			}
			if sum != want || sum < uint64(len(tables)) {
				ok = false
			}
		}
		if ok {
			time.Sleep(50 * time.Millisecond) // the last deltas in flight
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// extClient is one HTTP client of the external bench: a keep-alive
// connection of its own to one node.
type extClient struct {
	http *http.Client
	url  string
	node int
	lat  []time.Duration
}

func newExtClient(addr, tbl string, node int) *extClient {
	tr := &http.Transport{MaxIdleConns: 1, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, IdleConnTimeout: time.Minute}
	return &extClient{
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		url:  fmt.Sprintf("http://%s/v1/services/%s/tables/%s", addr, extService, tbl),
		node: node,
	}
}

// put sets the client's table to body (JSON rows) and checks the answer.
func (c *extClient) put(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %s: %s", c.url, resp.Status, bytes.TrimSpace(out))
	}
	var res dse.PublishResult
	if err := json.Unmarshal(out, &res); err != nil || res.Seqnum == 0 {
		return fmt.Errorf("PUT %s: answer %q: %v", c.url, out, err)
	}
	return nil
}
