package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"dse.dev/dse/dse"
)

// PublishConfig sets up `dse bench publish`.
type PublishConfig struct {
	Dir          string
	LogStore     string // dse.LogStoreWAL (default) or dse.LogStoreBoltDB
	Nodes        int
	Subscribers  int
	Tables       int
	RowsPerDelta int
	RowBytes     int
	Duration     time.Duration
	Rate         int // publications per second; 0: as fast as possible
	// Window is how many publications of a table one goroutine keeps in
	// flight with PublishDeltaAsync (NATS's PublishAsync pattern), unless
	// Writers is set.
	Window int
	// Writers, when set, replaces the async publisher with that many
	// goroutines per table, each calling PublishDelta and waiting.
	Writers  int
	Progress func(elapsed time.Duration, pubs uint64)
}

// PublishResult is what `dse bench publish --json` prints.
type PublishResult struct {
	Mode             string  `json:"mode"`
	LogStore         string  `json:"log_store"`
	Nodes            int     `json:"nodes"`
	Subscribers      int     `json:"subscribers"`
	Tables           int     `json:"tables"`
	RowsPerDelta     int     `json:"rows_per_delta"`
	RowBytes         int     `json:"row_bytes"`
	Rate             int     `json:"rate"`
	Window           int     `json:"window,omitempty"`
	Writers          int     `json:"writers,omitempty"`
	Seconds          float64 `json:"seconds"`
	Publications     uint64  `json:"publications"`
	PubsPerSec       float64 `json:"pubs_per_sec"`
	Deliveries       uint64  `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	RaftCommits      uint64  `json:"raft_commits"`
	PubsPerCommit    float64 `json:"pubs_per_commit"`
	Catchups         uint64  `json:"catchups"`
	OrderViolations  uint64  `json:"order_violations"`
	Latency          Latency `json:"latency_us"`
	// Series is publications per 100 ms, for plots.
	Series []uint64 `json:"-"`
	// Latencies are every delivery's latency, for plots.
	Latencies []time.Duration `json:"-"`
}

// Validate checks the configuration, and fills in the default window; its
// errors wrap ErrConfig.
func (c *PublishConfig) Validate() error {
	switch {
	case c.Nodes < 2:
		return configErr("--nodes %d: want at least 2 (subscribers live on other nodes)", c.Nodes)
	case c.Subscribers < 1:
		return configErr("--subscribers %d: want at least 1", c.Subscribers)
	case c.Tables < 1:
		return configErr("--tables %d: want at least 1", c.Tables)
	case c.RowsPerDelta < 1:
		return configErr("--rows-per-delta %d: want at least 1", c.RowsPerDelta)
	case c.RowBytes < 8:
		return configErr("--row-bytes %d: want at least 8", c.RowBytes)
	case c.Duration <= 0:
		return configErr("--duration %s: want a positive duration", c.Duration)
	case c.Rate < 0:
		return configErr("--rate %d: want 0 (as fast as possible) or more", c.Rate)
	case c.Window < 0 || c.Writers < 0:
		return configErr("--window %d, --writers %d: want 0 (the default) or more", c.Window, c.Writers)
	case c.Window > 0 && c.Writers > 0:
		return configErr("--window and --writers are exclusive: one async publisher per table, or that many waiting ones")
	}
	if c.Window == 0 && c.Writers == 0 {
		c.Window = DefaultWindow
	}
	return checkDir(c.Dir)
}

// DefaultWindow is the publications per table the async publisher keeps in
// flight unless told otherwise.
const DefaultWindow = 4096

// subscriber checks order and records latency for one subscriber service.
type subscriber struct {
	mu         sync.Mutex
	last       map[string]uint64
	violations uint64
	deliveries uint64
	lat        []time.Duration   // the latest chunk
	chunks     [][]time.Duration // full ones before it
}

func (s *subscriber) hooks() dse.Hooks {
	return dse.Hooks{ReceiveDataSequenced: func(_, tbl string, d dse.Data, seq uint64, receipt time.Time) {
		now := time.Now()
		s.mu.Lock()
		if seq <= s.last[tbl] {
			s.violations++
		}
		s.last[tbl] = seq
		s.deliveries++
		if !d.Published.IsZero() {
			if len(s.lat) == cap(s.lat) {
				// Chunks, not one growing slice: no copy of what is there.
				s.chunks = append(s.chunks, s.lat)
				s.lat = make([]time.Duration, 0, 1<<16)
			}
			s.lat = append(s.lat, now.Sub(d.Published))
		}
		s.mu.Unlock()
	}}
}

// Publish runs the publish benchmark: one publisher service on node 1 sends
// deltas; subscribers on the other nodes check that every delivery comes in
// order and measure the latency from the publish call to their apply.
func Publish(ctx context.Context, cfg PublishConfig) (_ *PublishResult, err error) {
	defer func() { err = orInterrupted(ctx, err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := StartCluster(ctx, cfg.Dir, cfg.Nodes, cfg.LogStore, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	pubNode := c.Nodes[0]
	pub := dse.NewDataService("bench-pub", dse.Hooks{})
	if err := pubNode.Register(ctx, pub); err != nil {
		return nil, err
	}
	tables := make([]string, cfg.Tables)
	for i := range tables {
		tables[i] = fmt.Sprintf("t%d", i)
	}
	subs := make([]*subscriber, cfg.Subscribers)
	for i := range subs {
		subs[i] = &subscriber{last: map[string]uint64{}}
		node := c.Nodes[1+i%(cfg.Nodes-1)]
		svc := dse.NewDataService(fmt.Sprintf("bench-sub%d", i), subs[i].hooks())
		if err := node.Register(ctx, svc); err != nil {
			return nil, err
		}
		for _, t := range tables {
			if err := svc.Subscribe(ctx, "bench-pub", t); err != nil {
				return nil, err
			}
		}
	}
	pad := strings.Repeat("x", cfg.RowBytes-8)
	// Each table starts with a snapshot, so deliveries from here on are
	// deltas.
	for _, t := range tables {
		if _, _, err := pub.Publish(ctx, t, nil, true); err != nil {
			return nil, err
		}
	}
	// Let every subscriber receive the initial snapshots.
	time.Sleep(200 * time.Millisecond)
	before := pubNode.Stats()
	var published atomic.Uint64
	var firstErr atomic.Value
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var series []uint64
	seriesDone := make(chan struct{})
	go func() {
		defer close(seriesDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var prev uint64
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
				p := published.Load()
				series = append(series, p-prev)
				prev = p
				if cfg.Progress != nil && len(series)%10 == 0 {
					cfg.Progress(time.Since(start), p)
				}
			}
		}
	}()
	var lim *rate.Limiter
	if cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	// row is what slot k of table ti holds at its n-th publication: an
	// 8-digit counter then padding, row-bytes in all.
	row := func(ti, k int, n int64) dse.Row {
		b := make([]byte, 0, cfg.RowBytes)
		b = strconv.AppendInt(b, 100_000_000+n%100_000_000, 10)[1:]
		return dse.Row{int64(ti*100_000_000 + k), string(append(b, pad...))}
	}
	fail := func(err error) {
		if runCtx.Err() == nil {
			firstErr.CompareAndSwap(nil, err)
		}
	}
	var wg sync.WaitGroup
	for ti, t := range tables {
		if cfg.Writers > 0 {
			// Writers goroutines, each replacing its own rows and waiting.
			for w := range cfg.Writers {
				wg.Go(func() {
					var prev []dse.Row
					for n := int64(0); runCtx.Err() == nil; n++ {
						if lim != nil && lim.Wait(runCtx) != nil {
							return
						}
						add := make([]dse.Row, cfg.RowsPerDelta)
						for r := range add {
							add[r] = row(ti, w*cfg.RowsPerDelta+r, n)
						}
						// ctx, not runCtx: a publication started is waited for
						// and counted, as the async publisher's are.
						if _, _, err := pub.PublishDelta(ctx, t, add, prev); err != nil {
							fail(err)
							return
						}
						published.Add(1)
						prev = add
					}
				})
			}
			continue
		}
		// One goroutine keeps Window publications in flight, each replacing
		// the rows of one of Window slots; another collects their outcomes
		// in order.
		inFlight := make(chan *dse.Publishing, cfg.Window)
		wg.Go(func() {
			for p := range inFlight {
				if _, _, err := p.Wait(ctx); err != nil {
					fail(err)
					continue
				}
				published.Add(1)
			}
		})
		wg.Go(func() {
			defer close(inFlight)
			prev := make([][]dse.Row, cfg.Window)
			for n := int64(0); runCtx.Err() == nil && firstErr.Load() == nil; n++ {
				if lim != nil && lim.Wait(runCtx) != nil {
					return
				}
				slot := int(n % int64(cfg.Window))
				add := make([]dse.Row, cfg.RowsPerDelta)
				for r := range add {
					add[r] = row(ti, slot*cfg.RowsPerDelta+r, n)
				}
				p, err := pub.PublishDeltaAsync(t, add, prev[slot])
				if err != nil {
					fail(err)
					return
				}
				prev[slot] = add
				select {
				case inFlight <- p:
				case <-runCtx.Done():
					inFlight <- p // room comes as the collector goes on
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	<-seriesDone
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	if e := firstErr.Load(); e != nil {
		return nil, fmt.Errorf("publish failed: %w", e.(error))
	}
	// Wait for the deliveries in flight.
	total := published.Load()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, s := range subs {
			s.mu.Lock()
			var max uint64
			for _, v := range s.last {
				max += v
			}
			s.mu.Unlock()
			if max < total+uint64(cfg.Tables) {
				ok = false
			}
		}
		if ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := pubNode.Stats()
	res := &PublishResult{
		Mode: "in-process", LogStore: c.Nodes[0].LogStore(), Nodes: cfg.Nodes, Subscribers: cfg.Subscribers, Tables: cfg.Tables,
		RowsPerDelta: cfg.RowsPerDelta, RowBytes: cfg.RowBytes, Rate: cfg.Rate, Window: cfg.Window, Writers: cfg.Writers,
		Seconds: elapsed.Seconds(), Publications: total, Series: series,
		RaftCommits: after.SeqCommits - before.SeqCommits,
	}
	var lat []time.Duration
	for _, n := range c.Nodes {
		res.Catchups += n.Stats().Catchups
	}
	for _, s := range subs {
		s.mu.Lock()
		res.Deliveries += s.deliveries
		res.OrderViolations += s.violations
		for _, c := range s.chunks {
			lat = append(lat, c...)
		}
		lat = append(lat, s.lat...)
		s.mu.Unlock()
	}
	res.Deliveries -= uint64(cfg.Tables * cfg.Subscribers) // the initial snapshots
	res.PubsPerSec = float64(total) / elapsed.Seconds()
	res.DeliveriesPerSec = float64(res.Deliveries) / elapsed.Seconds()
	if res.RaftCommits > 0 {
		res.PubsPerCommit = float64(total) / float64(res.RaftCommits)
	}
	res.Latency = summarize(lat)
	res.Latencies = lat
	return res, nil
}
