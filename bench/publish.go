package bench

import (
	"context"
	"fmt"
	"path/filepath"
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
	Dir      string
	LogStore string // dse.LogStoreWAL (default) or dse.LogStoreBoltDB
	Nodes    int
	// Voters is how many of the nodes vote (0: all); the others are
	// non-voters.
	Voters int
	// Services is how many publisher services node 1 runs (0 means 1),
	// each publishing Tables tables.
	Services     int
	Subscribers  int
	Tables       int
	RowsPerDelta int
	RowBytes     int
	Duration     time.Duration
	Rate         int // publications per second, all tables together; 0: as fast as possible
	// Window is how many publications of each table are kept in flight
	// with PublishDeltaAsync (NATS's PublishAsync pattern), by one
	// goroutine for all the tables (asyncPublisher), unless Writers is
	// set.
	Window int
	// Writers, when set, replaces the async publisher with that many
	// goroutines per table, each calling PublishDelta and waiting.
	Writers int
	// Baseline also runs the same load on a new cluster whose publisher
	// node numbers publications from a local counter instead of Raft: the
	// same pushes to the same subscribers, dse's limit without Raft.
	Baseline bool
	// NoRaftFloor skips the run of hashicorp/raft alone that a run at a
	// fixed Rate adds (RaftFloor).
	NoRaftFloor bool
	Progress    func(elapsed time.Duration, pubs uint64)
	// onReady, when set, is called once the run's cluster is set up (its
	// tables published once and subscribed to), before the load starts.
	onReady func()
}

// PublishResult is what `dse bench publish --json` prints.
type PublishResult struct {
	Mode             string  `json:"mode"`
	LogStore         string  `json:"log_store"`
	Nodes            int     `json:"nodes"`
	Voters           int     `json:"voters"`
	Services         int     `json:"services"`
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
	// Failed counts the publications that failed (refused, or not
	// sequenced); the run goes on after one. FirstFailure is the first's
	// error.
	Failed        uint64  `json:"failed"`
	FirstFailure  string  `json:"first_failure,omitempty"`
	RaftCommits   uint64  `json:"raft_commits"`
	PubsPerCommit float64 `json:"pubs_per_commit"`
	// CPUPerPub is the CPU this process (every node, the publisher and
	// the subscribers) used in the run, per publication, in microseconds.
	CPUPerPub float64 `json:"cpu_us_per_pub"`
	Catchups  uint64  `json:"catchups"`
	// Cutoffs counts subscribers' hooks that fell past their queue's
	// bound: what they had queued was skipped (and is in no latency
	// figure) for a snapshot of their cache.
	Cutoffs         uint64  `json:"cutoffs"`
	OrderViolations uint64  `json:"order_violations"`
	Latency         Latency `json:"latency_us"`
	// BaselinePubsPerSec and BaselineLatency (--baseline) are the same
	// load's with seqnums from a local counter, no Raft; VsBaseline is
	// PubsPerSec over BaselinePubsPerSec.
	BaselinePubsPerSec float64  `json:"baseline_pubs_per_sec,omitempty"`
	BaselineLatency    *Latency `json:"baseline_latency_us,omitempty"`
	BaselineFailed     uint64   `json:"baseline_failed,omitempty"`
	VsBaseline         float64  `json:"vs_baseline,omitempty"`
	// RaftFloorP50 and RaftFloorP99 (a run at a fixed rate) are the commit
	// latency of hashicorp/raft alone (RaftGroup, on the same disk, after
	// the run) at the same rate; RaftFloorSerialP50 is its latency one
	// entry at a time.
	RaftFloorP50       float64 `json:"raft_floor_p50_us,omitempty"`
	RaftFloorP99       float64 `json:"raft_floor_p99_us,omitempty"`
	RaftFloorSerialP50 float64 `json:"raft_floor_serial_p50_us,omitempty"`
	// VsRaftFloor is the latency p50 over RaftFloorP50.
	VsRaftFloor float64 `json:"vs_raft_floor,omitempty"`
	// Series is publications per 100 ms, for plots.
	Series []uint64 `json:"-"`
	// Latencies are every delivery's latency, for plots.
	Latencies []time.Duration `json:"-"`
}

// Validate checks the configuration, and fills in the defaults; its
// errors wrap ErrConfig.
func (c *PublishConfig) Validate() error {
	switch {
	case c.Nodes < 2:
		return configErr("--nodes %d: want at least 2 (subscribers live on other nodes)", c.Nodes)
	case c.Voters < 0 || c.Voters > c.Nodes:
		return configErr("--voters %d: want 1 to --nodes (%d), or 0 for all", c.Voters, c.Nodes)
	case c.Services < 0:
		return configErr("--services %d: want at least 1", c.Services)
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
	c.Services = max(c.Services, 1)
	if c.Voters == 0 {
		c.Voters = c.Nodes
	}
	return checkDir(c.Dir)
}

// DefaultWindow is the publications per table the async publisher keeps in
// flight unless told otherwise.
const DefaultWindow = 4096

// subscriber checks order and records latency for one subscriber service.
type subscriber struct {
	mu         sync.Mutex
	last       map[string]uint64 // by "publisher/table"
	violations uint64
	deliveries uint64
	lat        []time.Duration   // the latest chunk
	chunks     [][]time.Duration // full ones before it
}

func (s *subscriber) hooks() dse.Hooks {
	return dse.Hooks{ReceiveDataSequenced: func(pub, tbl string, d dse.Data, seq uint64, receipt time.Time) {
		now := time.Now()
		key := pub + "/" + tbl
		s.mu.Lock()
		if seq <= s.last[key] {
			s.violations++
		}
		s.last[key] = seq
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

// failures counts failed publications and keeps the first one's error.
type failures struct {
	n     atomic.Uint64
	first atomic.Value
}

func (f *failures) add(err error) {
	f.n.Add(1)
	f.first.CompareAndSwap(nil, err.Error())
}

func (f *failures) firstText() string {
	s, _ := f.first.Load().(string)
	return s
}

// Publish runs the publish benchmark: publisher services on node 1 send
// deltas; subscribers on the other nodes check that every delivery comes in
// order and measure the latency from the publish call to their apply. With
// Baseline it runs the same load again without Raft; at a fixed Rate it
// then runs hashicorp/raft alone at that rate (RaftFloor).
func Publish(ctx context.Context, cfg PublishConfig) (_ *PublishResult, err error) {
	defer func() { err = orInterrupted(ctx, err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, cleanup, err := benchDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	res, err := publishRun(ctx, cfg, filepath.Join(dir, "dse"), false)
	if err != nil {
		return nil, err
	}
	if cfg.Baseline {
		base, err := publishRun(ctx, cfg, filepath.Join(dir, "baseline"), true)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		res.BaselinePubsPerSec, res.BaselineLatency, res.BaselineFailed = base.PubsPerSec, &base.Latency, base.Failed
		if base.PubsPerSec > 0 {
			res.VsBaseline = res.PubsPerSec / base.PubsPerSec
		}
	}
	if cfg.Rate > 0 && !cfg.NoRaftFloor {
		floor, serial, err := raftFloors(ctx, filepath.Join(dir, "raft"), cfg.LogStore, cfg.Rate, min(cfg.Duration, 5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("raft floor: %w", err)
		}
		res.RaftFloorP50, res.RaftFloorP99, res.RaftFloorSerialP50 = floor.Latency.P50, floor.Latency.P99, serial.Latency.P50
		if floor.Latency.P50 > 0 {
			res.VsRaftFloor = res.Latency.P50 / floor.Latency.P50
		}
	}
	return res, nil
}

// raftFloors runs hashicorp/raft alone at rate for d, then one entry at a
// time for up to 2 seconds, on one group.
func raftFloors(ctx context.Context, dir, logStore string, rate int, d time.Duration) (atRate, serial *RaftFloorResult, err error) {
	g, err := StartRaftGroup(dir, logStore)
	if err != nil {
		return nil, nil, err
	}
	defer g.Close()
	if atRate, err = g.Run(ctx, RaftFloorConfig{Rate: rate, Duration: d}); err != nil {
		return nil, nil, err
	}
	if serial, err = g.Run(ctx, RaftFloorConfig{Writers: 1, Duration: min(d, 2*time.Second)}); err != nil {
		return nil, nil, err
	}
	return atRate, serial, nil
}

// benchTable names one published table: its service and name.
type benchTable struct {
	svc  *dse.DataService
	name string
	idx  int // its rows' key prefix
}

// setupConcurrency bounds the registry writes a run's setup makes at once
// (subscriptions, first publications): thousands of tables set up one
// after another would take minutes.
const setupConcurrency = 64

// parallel runs f(0) through f(n-1), at most workers at a time, and returns
// the first error.
func parallel(n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return e.(error)
	}
	return nil
}

// publishRun is one run of the publish load on a new cluster under dir;
// baseline numbers the publisher node's publications locally.
func publishRun(ctx context.Context, cfg PublishConfig, dir string, baseline bool) (*PublishResult, error) {
	ccfg := ClusterConfig{Dir: dir, Nodes: cfg.Nodes, Voters: cfg.Voters, LogStore: cfg.LogStore}
	var local *localSequencer
	if baseline {
		local = newLocalSequencer()
		ccfg.Deps = func(i int) dse.Deps {
			if i == 0 {
				return dse.Deps{Sequencer: local}
			}
			return dse.Deps{}
		}
	}
	c, err := StartClusterWith(ctx, ccfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	pubNode := c.Nodes[0]
	if local != nil {
		local.registry = pubNode.FSM()
	}
	var tables []benchTable
	for s := range cfg.Services {
		id := "bench-pub"
		if cfg.Services > 1 {
			id = fmt.Sprintf("bench-pub%d", s)
		}
		svc := dse.NewDataService(id, dse.Hooks{})
		if err := pubNode.Register(ctx, svc); err != nil {
			return nil, err
		}
		for t := range cfg.Tables {
			tables = append(tables, benchTable{svc: svc, name: fmt.Sprintf("t%d", t), idx: len(tables)})
		}
	}
	subs := make([]*subscriber, cfg.Subscribers)
	subSvcs := make([]*dse.DataService, cfg.Subscribers)
	for i := range subs {
		subs[i] = &subscriber{last: map[string]uint64{}}
		subSvcs[i] = dse.NewDataService(fmt.Sprintf("bench-sub%d", i), subs[i].hooks())
		if err := c.Nodes[1+i%(cfg.Nodes-1)].Register(ctx, subSvcs[i]); err != nil {
			return nil, err
		}
	}
	if err := parallel(len(subs)*len(tables), setupConcurrency, func(k int) error {
		t := tables[k%len(tables)]
		return subSvcs[k/len(tables)].Subscribe(ctx, t.svc.ID(), t.name)
	}); err != nil {
		return nil, err
	}
	pad := strings.Repeat("x", cfg.RowBytes-8)
	// Each table starts with a snapshot, so deliveries from here on are
	// deltas.
	if err := parallel(len(tables), setupConcurrency, func(i int) error {
		_, _, err := tables[i].svc.Publish(ctx, tables[i].name, nil, true)
		return err
	}); err != nil {
		return nil, err
	}
	// Let every subscriber receive the initial snapshots.
	waitDelivered(subs, tables, 10*time.Second)
	if cfg.onReady != nil && !baseline {
		cfg.onReady()
	}
	before := pubNode.Stats()
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
	cpu0 := cpuTime()
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
	workers := 1 // the async publisher
	if cfg.Writers > 0 {
		workers = len(tables) * cfg.Writers
	}
	pace := newPacer(cfg.Rate, workers)
	// row is what slot k of table ti holds at its n-th publication: an
	// 8-digit counter then padding, row-bytes in all.
	row := func(ti, k int, n int64) dse.Row {
		b := make([]byte, 0, cfg.RowBytes)
		b = strconv.AppendInt(b, 100_000_000+n%100_000_000, 10)[1:]
		return dse.Row{int64(ti*100_000_000 + k), string(append(b, pad...))}
	}
	fail := func(err error) {
		if ctx.Err() == nil { // not the interruption's doing
			failed.add(err)
		}
	}
	var wg sync.WaitGroup
	if cfg.Writers == 0 {
		a := asyncPublisher{tables: tables, window: cfg.Window, rows: cfg.RowsPerDelta, row: row, published: &published, fail: fail}
		wg.Go(func() { a.run(ctx, runCtx, pace) })
	}
	// Or Writers goroutines a table, each replacing its own rows and
	// waiting.
	for _, t := range tables {
		for w := range cfg.Writers {
			wg.Go(func() {
				var prev []dse.Row
				perm := permits{p: pace}
				for n := int64(0); runCtx.Err() == nil; n++ {
					if perm.take(runCtx) != nil {
						return
					}
					add := make([]dse.Row, cfg.RowsPerDelta)
					for r := range add {
						add[r] = row(t.idx, w*cfg.RowsPerDelta+r, n)
					}
					// ctx, not runCtx: a publication started is waited for
					// and counted, as the async publisher's are.
					if _, _, err := t.svc.PublishDelta(ctx, t.name, add, prev); err != nil {
						fail(err)
						pause(runCtx)
						continue
					}
					published.Add(1)
					prev = add
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	<-seriesDone
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	total := published.Load()
	// Wait for the deliveries in flight.
	waitDelivered(subs, tables, 10*time.Second)
	after := pubNode.Stats()
	res := &PublishResult{
		Mode: "in-process", LogStore: pubNode.LogStore(), Nodes: cfg.Nodes, Voters: cfg.Voters, Services: cfg.Services, Subscribers: cfg.Subscribers, Tables: cfg.Tables,
		RowsPerDelta: cfg.RowsPerDelta, RowBytes: cfg.RowBytes, Rate: cfg.Rate, Window: cfg.Window, Writers: cfg.Writers,
		Seconds: elapsed.Seconds(), Publications: total, Series: series, Failed: failed.n.Load(), FirstFailure: failed.firstText(),
		RaftCommits: after.SeqCommits - before.SeqCommits,
	}
	var lat []time.Duration
	for _, n := range c.Nodes {
		res.Catchups += n.Stats().Catchups
		res.Cutoffs += n.Stats().Cutoffs
	}
	for i, s := range subs {
		s.mu.Lock()
		res.Deliveries += s.deliveries - beforeDeliveries[i]
		res.OrderViolations += s.violations
		for _, c := range s.chunks {
			lat = append(lat, c...)
		}
		lat = append(lat, s.lat...)
		s.mu.Unlock()
	}
	res.PubsPerSec = float64(total) / elapsed.Seconds()
	res.DeliveriesPerSec = float64(res.Deliveries) / elapsed.Seconds()
	if res.RaftCommits > 0 {
		res.PubsPerCommit = float64(total) / float64(res.RaftCommits)
	}
	if total > 0 {
		res.CPUPerPub = float64(cpu.Microseconds()) / float64(total)
	}
	res.Latency = summarize(lat)
	res.Latencies = lat
	return res, nil
}

// asyncPublisher keeps window publications of each table in flight with
// PublishDeltaAsync (NATS's PublishAsync pattern), each replacing the rows
// of one of the table's window slots: one goroutine publishes, another
// collects the outcomes in order. A slot is a token: the publisher takes
// a free one, publishes its next rows, and the collector frees it once
// the publication is waited for. So one table with 4,096 in flight and
// 4,096 tables with one each run the same two goroutines and differ only
// in what dse does. Before, each table had a pair of its own, and at
// 4,096 tables the two wake-ups of a goroutine each publication cost
// more than dse's own work (8 us of the 26 a publication).
type asyncPublisher struct {
	tables    []benchTable
	window    int
	rows      int // a delta's
	row       func(ti, k int, n int64) dse.Row
	published *atomic.Uint64
	fail      func(error)
}

// slot is one of a table's window slots: a publication in flight at most.
type slot struct {
	table, k int
}

// run publishes until runCtx ends, then waits (with ctx) for the
// publications in flight.
func (a *asyncPublisher) run(ctx, runCtx context.Context, pace *pacer) {
	n := len(a.tables) * a.window
	free := make(chan slot, n)
	// In turn over the tables, so that each has one in flight before any
	// has two.
	for k := range a.window {
		for ti := range a.tables {
			free <- slot{ti, k}
		}
	}
	type flight struct {
		p *dse.Publishing
		s slot
	}
	inFlight := make(chan flight, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range inFlight {
			_, _, err := f.p.Wait(ctx)
			free <- f.s
			if err != nil {
				a.fail(err)
				continue
			}
			a.published.Add(1)
		}
	}()
	defer func() {
		close(inFlight)
		<-done
	}()
	prev := make([][]dse.Row, n)
	perm := permits{p: pace}
	for gen := int64(0); runCtx.Err() == nil; gen++ {
		if perm.take(runCtx) != nil {
			return
		}
		var s slot
		select {
		case s = <-free:
		case <-runCtx.Done():
			return
		}
		t := a.tables[s.table]
		add := make([]dse.Row, a.rows)
		for r := range add {
			add[r] = a.row(t.idx, s.k*a.rows+r, gen)
		}
		i := s.table*a.window + s.k
		p, err := t.svc.PublishDeltaAsync(t.name, add, prev[i])
		if err != nil {
			// Refused before it changed the table (too many waiting,
			// not the owner): counted, and tried again after a pause
			// rather than in a spin.
			free <- s
			a.fail(err)
			pause(runCtx)
			continue
		}
		prev[i] = add
		inFlight <- flight{p, s} // never blocks: free holds n slots
	}
}

// pacer paces publications at a rate a second over some goroutines: each
// takes a share of a millisecond's worth of permits at a time (one at
// 1,000/s), and uses them without waiting. Waiting for each permit at tens
// of thousands a second made every publication sleep on a timer of a few
// microseconds, which takes far longer: 31,500/s asked gave 9,100/s, and
// bursts of a millisecond's worth taken one permit at a time 18,500/s.
//
// The bucket holds catchUp of permits: a publisher held up (by GC, or by
// the nodes' work on the same cores) for a few milliseconds catches up,
// so the load offered is the rate asked. With a millisecond's worth, what
// a stall did not use was lost: asked for 37,300/s, 64 subscribers' run
// offered 31,600.
type pacer struct {
	lim   *rate.Limiter
	chunk int
}

// newPacer returns a pacer of rate a second over workers goroutines; nil
// (no pacing) when rate is 0.
func newPacer(rate_, workers int) *pacer {
	if rate_ <= 0 {
		return nil
	}
	chunk := max(1, rate_/1000/max(1, workers))
	burst := max(chunk, int(float64(rate_)*catchUp.Seconds()))
	lim := rate.NewLimiter(rate.Limit(rate_), burst)
	lim.AllowN(time.Now(), burst) // it starts full: no burst at the start
	return &pacer{lim: lim, chunk: chunk}
}

// catchUp is how far behind its schedule a paced publisher may catch up.
const catchUp = 50 * time.Millisecond

// permits is one goroutine's share of a pacer.
type permits struct {
	p    *pacer
	left int
}

// take waits, if it must, for the goroutine's next permit; it fails once
// ctx ends.
func (m *permits) take(ctx context.Context) error {
	if m.p == nil {
		return ctx.Err()
	}
	if m.left == 0 {
		if err := m.p.lim.WaitN(ctx, m.p.chunk); err != nil {
			return err
		}
		m.left = m.p.chunk
	}
	m.left--
	return nil
}

// pause waits a little after a failed publication, so that a publisher
// refused at once does not spin.
func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Millisecond):
	}
}

// waitDelivered waits, up to d, until every subscriber has applied every
// table's last publication (its publisher's seqnum).
func waitDelivered(subs []*subscriber, tables []benchTable, d time.Duration) {
	want := make(map[string]uint64, len(tables))
	for _, t := range tables {
		if seq, _, err := t.svc.GetLastPublishedDataWithSeqnum(t.name); err == nil {
			want[t.svc.ID()+"/"+t.name] = seq
		}
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		behind := false
		for _, s := range subs {
			s.mu.Lock()
			for k, seq := range want {
				if s.last[k] < seq {
					behind = true
					break
				}
			}
			s.mu.Unlock()
			if behind {
				break
			}
		}
		if !behind {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
