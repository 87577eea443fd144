package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"time"
)

// The dimensions `dse bench scale` sweeps, one at a time.
const (
	DimTables      = "tables"      // tables per publisher
	DimServices    = "services"    // publisher services on a node
	DimSubscribers = "subscribers" // subscribers of one table, over the nodes
	DimNodes       = "nodes"       // cluster size, voters and non-voters
	DimRows        = "rows"        // rows of a table a new subscriber takes
	DimRegistry    = "registry"    // services (and tables, subscriptions, datasources) in the registry
)

// ScaleDims lists the dimensions in the order `make bench-scale` draws
// them.
var ScaleDims = []string{DimTables, DimServices, DimSubscribers, DimNodes, DimRows, DimRegistry}

// DefaultScalePoints are each dimension's points unless told otherwise:
// as far as each goes on this 2-core, 24 GiB machine in a few minutes.
var DefaultScalePoints = map[string][]int{
	DimTables:      {1, 16, 256, 4096, 16384},
	DimServices:    {1, 10, 100, 1000},
	DimSubscribers: {1, 4, 16, 64, 256},
	DimNodes:       {3, 5, 7, 9},
	DimRows:        {1000, 10_000, 100_000, 1_000_000, 10_000_000},
	DimRegistry:    {1, 1000, 10_000, 100_000},
}

// ScaleConfig sets up `dse bench scale`.
type ScaleConfig struct {
	Dim    string
	Points []int // nil: DefaultScalePoints[Dim]
	// Duration is each publish run's (default 3 s).
	Duration time.Duration
	Dir      string
	LogStore string
	// Spawn runs nodes as processes of their own: the rows dimension's
	// (without it, in this process), and a variant of the nodes
	// dimension's (skipped without it).
	Spawn Spawn
	// Emit, when set, gets each point as soon as it is measured.
	Emit     func(ScalePoint)
	Progress func(stage string)
}

// Validate checks the configuration and fills in the defaults; its errors
// wrap ErrConfig.
func (c *ScaleConfig) Validate() error {
	def, ok := DefaultScalePoints[c.Dim]
	if !ok {
		return configErr("--dim %q: want one of %v", c.Dim, ScaleDims)
	}
	if len(c.Points) == 0 {
		c.Points = def
	}
	if c.Duration == 0 {
		c.Duration = 3 * time.Second
	}
	if c.Duration < 0 {
		return configErr("--duration %s: want a positive duration", c.Duration)
	}
	least := 1
	if c.Dim == DimNodes {
		least = 2 // a publisher's node and a subscriber's
	}
	for _, p := range c.Points {
		if p < least {
			return configErr("--points: %d is below %d, the least %s takes", p, least, c.Dim)
		}
	}
	return checkDir(c.Dir)
}

func (c *ScaleConfig) stage(format string, a ...any) {
	if c.Progress != nil {
		c.Progress(fmt.Sprintf(format, a...))
	}
}

// ScalePoint is one measured point of a curve: dimension Dim at X, in one
// Variant of the measurement, with the figures plotted (Metrics) and the
// benchmark's whole result. Its JSON has dim, x, variant, each metric at
// the top level, and result.
type ScalePoint struct {
	Dim     string
	X       int
	Variant string
	Metrics map[string]float64
	Result  any
}

// MarshalJSON flattens the metrics into the point's object.
func (p ScalePoint) MarshalJSON() ([]byte, error) {
	m := map[string]any{"dim": p.Dim, "x": p.X, "variant": p.Variant, "result": p.Result}
	for k, v := range p.Metrics {
		m[k] = v
	}
	return json.Marshal(m)
}

// Scale measures cfg.Dim at each of cfg.Points, one point after another,
// and returns the points (also given to cfg.Emit as they come).
func Scale(ctx context.Context, cfg ScaleConfig) (_ []ScalePoint, err error) {
	defer func() { err = orInterrupted(ctx, err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, cleanup, err := benchDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	s := &scaler{cfg: cfg, dir: dir}
	run := map[string]func(context.Context, int) error{
		DimTables: s.tables, DimServices: s.services, DimSubscribers: s.subscribers,
		DimNodes: s.nodes, DimRows: s.rows, DimRegistry: s.registry,
	}[cfg.Dim]
	for _, x := range cfg.Points {
		if err := run(ctx, x); err != nil {
			return s.points, fmt.Errorf("%s %d: %w", cfg.Dim, x, err)
		}
	}
	return s.points, nil
}

// scaler measures the points of one ScaleConfig.
type scaler struct {
	cfg    ScaleConfig
	dir    string
	runs   int
	points []ScalePoint
}

// runDir is a new folder under the scale run's for each benchmark run.
func (s *scaler) runDir() string {
	s.runs++
	return filepath.Join(s.dir, fmt.Sprintf("run%03d", s.runs))
}

func (s *scaler) emit(x int, variant string, metrics map[string]float64, result any) {
	p := ScalePoint{Dim: s.cfg.Dim, X: x, Variant: variant, Metrics: metrics, Result: result}
	s.points = append(s.points, p)
	if s.cfg.Emit != nil {
		s.cfg.Emit(p)
	}
}

// publish runs the publish benchmark and returns its figures.
func (s *scaler) publish(ctx context.Context, cfg PublishConfig) (*PublishResult, map[string]float64, error) {
	cfg.Dir, cfg.LogStore, cfg.Duration, cfg.NoRaftFloor = s.runDir(), s.cfg.LogStore, s.cfg.Duration, true
	if cfg.RowsPerDelta == 0 {
		cfg.RowsPerDelta, cfg.RowBytes = 1, 100
	}
	res, err := Publish(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return res, map[string]float64{
		"pubs_per_sec": res.PubsPerSec, "deliveries_per_sec": res.DeliveriesPerSec, "p50_us": res.Latency.P50, "p99_us": res.Latency.P99,
		"failed": float64(res.Failed), "pubs_per_commit": res.PubsPerCommit,
	}, nil
}

// The tables dimension's variants.
const (
	variantTables   = "x tables, 1 in flight each"
	variantInFlight = "1 table, x in flight"
)

// tables: x tables of one publisher, one publication in flight each;
// against one table with x in flight (the same concurrency).
func (s *scaler) tables(ctx context.Context, x int) error {
	s.cfg.stage("%d tables, one publication in flight each", x)
	var empty, ready int64
	cfg := PublishConfig{Nodes: 3, Subscribers: 2, Tables: x, Window: 1}
	cfg.onReady = func() { ready = int64(heapAfterGC().HeapInuse) }
	empty = int64(heapAfterGC().HeapInuse)
	res, m, err := s.publish(ctx, cfg)
	if err != nil {
		return err
	}
	// Every node's heap: the publisher's tables, two subscribers' caches,
	// the registry three times over.
	m["heap_bytes_per_table"] = float64(ready-empty) / float64(x)
	s.emit(x, variantTables, m, res)
	s.cfg.stage("one table, %d publications in flight", x)
	res, m, err = s.publish(ctx, PublishConfig{Nodes: 3, Subscribers: 2, Tables: 1, Window: x})
	if err != nil {
		return err
	}
	s.emit(x, variantInFlight, m, res)
	return nil
}

// scaleInFlight is the publications the services dimension keeps in
// flight in all, spread over its services.
const scaleInFlight = 4096

// services: x publisher services on node 1, one table each, 4,096
// publications in flight spread over them.
func (s *scaler) services(ctx context.Context, x int) error {
	s.cfg.stage("%d services", x)
	res, m, err := s.publish(ctx, PublishConfig{Nodes: 3, Subscribers: 2, Services: x, Tables: 1, Window: max(scaleInFlight/x, 1)})
	if err != nil {
		return err
	}
	s.emit(x, "services", m, res)
	return nil
}

// subscribers: x subscribers of one table over nodes 2 and 3, at the
// highest rate the publisher reaches, then at half of it.
func (s *scaler) subscribers(ctx context.Context, x int) error {
	s.cfg.stage("%d subscribers, as fast as possible", x)
	res, m, err := s.publish(ctx, PublishConfig{Nodes: 3, Subscribers: x, Tables: 1})
	if err != nil {
		return err
	}
	s.emit(x, "max", m, res)
	half := max(int(res.PubsPerSec/2), 1)
	s.cfg.stage("%d subscribers at %d/s (half)", x, half)
	res, m, err = s.publish(ctx, PublishConfig{Nodes: 3, Subscribers: x, Tables: 1, Rate: half})
	if err != nil {
		return err
	}
	s.emit(x, "half rate", m, res)
	return nil
}

// nodes: x nodes, all voters and then 3 voters and the rest non-voters:
// publish as fast as possible (a subscriber on every other node), at
// 1,000/s (the commit latency), and registry writes.
func (s *scaler) nodes(ctx context.Context, x int) error {
	variants := []int{x}
	if x > 3 {
		variants = append(variants, 3)
	}
	for _, voters := range variants {
		name := fmt.Sprintf("%d voters", voters)
		s.cfg.stage("%d nodes, %s", x, name)
		res, m, err := s.publish(ctx, PublishConfig{Nodes: x, Voters: voters, Subscribers: x - 1, Tables: 1})
		if err != nil {
			return err
		}
		at, _, err := s.publish(ctx, PublishConfig{Nodes: x, Voters: voters, Subscribers: x - 1, Tables: 1, Rate: 1000})
		if err != nil {
			return err
		}
		m["rate_1000_p50_us"], m["rate_1000_p99_us"] = at.Latency.P50, at.Latency.P99
		reg, err := Registry(ctx, RegistryConfig{Dir: s.runDir(), LogStore: s.cfg.LogStore, Nodes: x, Voters: voters, Clients: 64, Ops: 20000})
		if err != nil {
			return err
		}
		m["registry_ops_per_sec"], m["registry_p50_us"] = reg.OpsPerSec, reg.Latency.P50
		s.emit(x, name, m, map[string]any{"publish": res, "publish_rate_1000": at, "registry": reg})
	}
	return nil
}

// rows: a new subscriber on another node takes a snapshot of a table of x
// rows of 3 columns, each node a process of its own when it can.
func (s *scaler) rows(ctx context.Context, x int) error {
	s.cfg.stage("a snapshot of %d rows", x)
	res, err := Snapshot(ctx, SnapshotConfig{Dir: s.runDir(), LogStore: s.cfg.LogStore, Rows: x, Columns: 3, Spawn: s.cfg.Spawn, NoBaseline: true})
	if err != nil {
		return err
	}
	m := map[string]float64{"seconds": res.Seconds, "mb_per_sec": res.MBPerSec, "rss_mb": res.RSSMB, "cache_bytes_per_row": res.CacheBytesPerRow}
	if res.NodeRSSMB != nil {
		m["publisher_rss_mb"], m["subscriber_rss_mb"] = res.NodeRSSMB[rolePublisher], res.NodeRSSMB[roleSubscriber]
	}
	s.emit(x, res.Mode, m, res)
	return nil
}

// scaleLoad is the registry the registry dimension builds at x services:
// 10 tables each, as many subscriptions as services, a datasource per 10.
func scaleLoad(x int) RegistryLoad {
	l := RegistryLoad{Services: x, TablesPerService: 10, Subscriptions: x, Datasources: x / 10}
	if x < 2 {
		l.Subscriptions = 0
	}
	return l
}

// registry: registry writes (64 clients) on a registry of x services (and
// 10x tables, x subscriptions, x/10 datasources), then a new node joining
// a cluster with that registry.
func (s *scaler) registry(ctx context.Context, x int) error {
	load := scaleLoad(x)
	s.cfg.stage("registry writes on a registry of %d services", x)
	reg, err := Registry(ctx, RegistryConfig{Dir: s.runDir(), LogStore: s.cfg.LogStore, Nodes: 3, Clients: 64, Ops: 20000, Load: load})
	if err != nil {
		return err
	}
	s.cfg.stage("a new node joining a cluster with a registry of %d services", x)
	join, err := Join(ctx, JoinConfig{Dir: s.runDir(), LogStore: s.cfg.LogStore, Nodes: 3, Load: load, Spawn: s.cfg.Spawn})
	if err != nil {
		return err
	}
	m := map[string]float64{
		"ops_per_sec": reg.OpsPerSec, "p50_us": reg.Latency.P50, "p99_us": reg.Latency.P99, "failed": float64(reg.Failed),
		"load_seconds": join.LoadSeconds, "join_seconds": join.Seconds, "snapshot_bytes": float64(join.SnapshotBytes),
		"bytes_per_table": join.BytesPerTable, "join_rss_mb": join.RSSMB, "heap_bytes_per_table": join.HeapBytesPerTable,
	}
	if i := slices.IndexFunc(s.points, func(p ScalePoint) bool { return p.X <= 1 }); i >= 0 && s.points[i].Metrics["ops_per_sec"] > 0 {
		m["vs_empty"] = reg.OpsPerSec / s.points[i].Metrics["ops_per_sec"]
	}
	s.emit(x, "registry", m, map[string]any{"registry": reg, "join": join})
	return nil
}
