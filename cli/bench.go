package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"

	"dse.dev/dse/bench"
	"dse.dev/dse/dse"
)

func benchCommand() *ucli.Command {
	dir := func() ucli.Flag {
		return &ucli.StringFlag{Name: "dir", Usage: "where the nodes keep their data (default: a temporary folder, removed afterwards)"}
	}
	logStore := func() ucli.Flag {
		return &ucli.StringFlag{Name: "log-store", Value: dse.LogStoreWAL, Usage: "Raft log store of the nodes: wal (the nodes' default) or boltdb"}
	}
	var stops []func() error // what --cpuprofile, --memprofile and --trace started
	return &ucli.Command{
		Name:  "bench",
		Usage: "benchmark real nodes (loopback TCP, Raft log with fsync)",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the whole run (this process: the in-process nodes and the load) to `FILE` (go tool pprof)"},
			&ucli.StringFlag{Name: "memprofile", Usage: "write an allocation profile of the whole run to `FILE` once it ends (go tool pprof -sample_index=alloc_space)"},
			&ucli.StringFlag{Name: "trace", Usage: "write an execution trace of the whole run to `FILE` (go tool trace; -pprof=sync or net shows where latency waits)"},
		},
		Before: func(c *ucli.Context) error {
			for _, r := range []struct {
				flag  string
				start func(io.Writer) error
				stop  func()
			}{
				{"cpuprofile", pprof.StartCPUProfile, pprof.StopCPUProfile},
				{"memprofile", nil, nil},
				{"trace", trace.Start, trace.Stop},
			} {
				p := c.String(r.flag)
				if p == "" {
					continue
				}
				f, err := os.Create(p)
				if err == nil && r.start != nil {
					if err = r.start(f); err != nil {
						f.Close()
					}
				}
				if err != nil {
					for _, stop := range stops { // what the other flag started
						stop()
					}
					stops = nil
					return fmt.Errorf("--%s: %w", r.flag, err)
				}
				flag, stop := r.flag, r.stop
				stops = append(stops, func() error {
					if stop != nil {
						stop()
					} else if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
						f.Close()
						return fmt.Errorf("--%s: %w", flag, err)
					}
					if err := f.Close(); err != nil {
						return fmt.Errorf("--%s: %w", flag, err)
					}
					return nil
				})
			}
			return nil
		},
		After: func(*ucli.Context) error {
			var errs []error
			for _, stop := range stops {
				errs = append(errs, stop())
			}
			stops = nil
			return errors.Join(errs...)
		},
		Subcommands: []*ucli.Command{
			{
				Name:  "publish",
				Usage: "one publisher on node 1 sends deltas; subscribers on the other nodes check order and latency",
				Flags: []ucli.Flag{
					dir(),
					logStore(),
					&ucli.IntFlag{Name: "nodes", Value: 3},
					&ucli.IntFlag{Name: "voters", Usage: "how many of the nodes vote; the others are non-voters (default: all)"},
					&ucli.IntFlag{Name: "services", Value: 1, Usage: "publisher services on node 1, each publishing --tables tables"},
					&ucli.IntFlag{Name: "subscribers", Value: 2},
					&ucli.IntFlag{Name: "tables", Value: 1},
					&ucli.IntFlag{Name: "rows-per-delta", Value: 1},
					&ucli.IntFlag{Name: "row-bytes", Value: 100},
					&ucli.DurationFlag{Name: "duration", Value: 10 * time.Second},
					&ucli.IntFlag{Name: "rate", Usage: "publications per second (0: as fast as possible)"},
					&ucli.IntFlag{Name: "window", Usage: "publications of each table kept in flight (async publish, by one goroutine for all tables)", DefaultText: fmt.Sprint(bench.DefaultWindow)},
					&ucli.IntFlag{Name: "writers", Usage: "instead of the async publisher, this many goroutines per table, each publishing and waiting"},
					&ucli.BoolFlag{Name: "external", Usage: "drive an external service (--replicas) over the HTTP API instead: --clients HTTP clients, each setting a table of its own"},
					&ucli.IntFlag{Name: "clients", Value: 64, Usage: "with --external: HTTP clients publishing at once, each waiting for its answer"},
					&ucli.IntFlag{Name: "replicas", Value: 3, Usage: "with --external: the service's replicas"},
					&ucli.StringFlag{Name: "via", Value: bench.ViaOwner, Usage: "with --external: send every publication to the owner's node (owner), or client k's to node k mod nodes (spread)"},
					&ucli.BoolFlag{Name: "baseline", Usage: "also run the same load with seqnums from a local counter instead of Raft (baseline_pubs_per_sec)"},
					&ucli.BoolFlag{Name: "no-raft-floor", Usage: "with --rate: skip the run of hashicorp/raft alone at the same rate (raft_floor_p50_us)"},
					&ucli.StringFlag{Name: "plot", Usage: "write the latency distribution and throughput to `FILE.svg`"},
				},
				Action: benchPublish,
			},
			{
				Name:  "snapshot",
				Usage: "a new subscriber on another node takes a snapshot of a big table",
				Flags: []ucli.Flag{
					dir(),
					logStore(),
					&ucli.IntFlag{Name: "rows", Value: 1_000_000},
					&ucli.IntFlag{Name: "columns", Value: 3},
					&ucli.BoolFlag{Name: "in-process", Usage: "run both nodes in this process (default: a dse process per node, so that each node's RSS is its own)"},
					&ucli.IntFlag{Name: "rounds", Value: 1, Usage: "new subscribers on the same node that take the snapshot in turn (seconds: the first's; round_seconds: each's)"},
				},
				Action: benchSnapshot,
			},
			{
				Name:  "join",
				Usage: "a new node joins a cluster whose registry holds many services, tables and subscriptions, and catches up",
				Flags: []ucli.Flag{
					dir(),
					logStore(),
					&ucli.IntFlag{Name: "nodes", Value: 3, Usage: "the cluster's nodes before the new one joins"},
					&ucli.IntFlag{Name: "services", Value: 100_000},
					&ucli.IntFlag{Name: "tables-per-service", Value: 10},
					&ucli.IntFlag{Name: "subscriptions", Value: 100_000},
					&ucli.IntFlag{Name: "datasources", Usage: "disabled datasources in the registry besides"},
					&ucli.BoolFlag{Name: "in-process", Usage: "run the new node in this process (default: a dse process of its own, so that its RSS is its own)"},
					&ucli.BoolFlag{Name: "no-fill", Usage: "do not first fill the log past a segment and Raft's trailing logs: the new node then replays the young log instead of installing the snapshot"},
				},
				Action: benchJoin,
			},
			{
				Name:  "scale",
				Usage: "sweep one dimension (--dim), one JSON line per point; --plot draws the curves",
				Description: "dimensions and their default points:\n" +
					"  tables       tables of one publisher, one publication in flight each, against one table with as many in flight\n" +
					"  services     publisher services on node 1, 4,096 publications in flight spread over them\n" +
					"  subscribers  subscribers of one table over nodes 2 and 3: as fast as possible, then at half that rate\n" +
					"  nodes        cluster size, all voters and 3 voters with non-voters: publish, publish at 1,000/s, registry writes\n" +
					"  rows         rows of a table whose snapshot a new subscriber on another node takes (a process per node)\n" +
					"  registry     services in the registry (10 tables each, as many subscriptions, a datasource per 10): writes, and a new node joining",
				Flags: []ucli.Flag{
					dir(),
					logStore(),
					&ucli.StringFlag{Name: "dim", Required: true, Usage: "the dimension: " + strings.Join(bench.ScaleDims, ", ")},
					&ucli.StringFlag{Name: "points", Usage: "the points, comma-separated (default: the dimension's, see above)"},
					&ucli.DurationFlag{Name: "duration", Value: 3 * time.Second, Usage: "each publish run's"},
					&ucli.BoolFlag{Name: "in-process", Usage: "run every node in this process (rows and registry: default a process per new node)"},
					&ucli.StringFlag{Name: "plot", Usage: "write the curves to `FILE.svg`"},
				},
				Action: benchScale,
			},
			{
				// One node of a multi-process snapshot or join bench, run by it.
				Name:   "snapshot-node",
				Hidden: true,
				Action: func(c *ucli.Context) error { return bench.RunSnapshotNode(c.Context, os.Stdin, c.App.Writer) },
			},
			{
				Name:  "registry",
				Usage: "concurrent Raft-committed registry writes (register, subscribe, unsubscribe, unregister)",
				Flags: []ucli.Flag{
					dir(),
					logStore(),
					&ucli.IntFlag{Name: "nodes", Value: 3},
					&ucli.IntFlag{Name: "clients", Value: 64},
					&ucli.IntFlag{Name: "ops", Value: 40000},
					&ucli.IntFlag{Name: "services", Usage: "services already in the registry before the run (written in bulk, as dse bench join does)"},
					&ucli.IntFlag{Name: "tables-per-service", Value: 10, Usage: "with --services: the tables each publishes"},
					&ucli.IntFlag{Name: "subscriptions", Usage: "with --services: subscriptions between them"},
					&ucli.IntFlag{Name: "datasources", Usage: "disabled datasources already in the registry"},
				},
				Action: benchRegistry,
			},
			{
				Name:  "rpc",
				Usage: "an echo RPC to a service on another node",
				Flags: []ucli.Flag{
					dir(),
					logStore(),
					&ucli.IntFlag{Name: "callers", Value: 1},
					&ucli.DurationFlag{Name: "duration", Value: 10 * time.Second},
					&ucli.StringFlag{Name: "plot", Usage: "write the latency distribution and throughput to `FILE.svg`"},
				},
				Action: benchRPC,
			},
		},
	}
}

// progress prints a progress line on a terminal (stderr), nothing otherwise.
func progress(label string) func(time.Duration, uint64) {
	if !onTerminal() {
		return nil
	}
	return func(d time.Duration, n uint64) {
		fmt.Fprintf(os.Stderr, "\r%s: %s, %d so far", label, d.Truncate(time.Second), n)
	}
}

// stageProgress prints each stage of a run on its own line on a terminal
// (stderr), nothing otherwise.
func stageProgress(label string) func(string) {
	if !onTerminal() {
		return nil
	}
	return func(stage string) { fmt.Fprintf(os.Stderr, "%s: %s\n", label, stage) }
}

func onTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// endProgress ends a progress line, if one was printed.
func endProgress(on bool) {
	if on {
		fmt.Fprintln(os.Stderr)
	}
}

// validate checks a benchmark's configuration before anything starts: a
// bad value is bad usage (exit 2).
func validate(cfg interface{ Validate() error }) error {
	if err := cfg.Validate(); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), bench.ErrConfig.Error()+": "))
	}
	return nil
}

// createPlot checks, before a run, that the plot file can be written: a
// bad path fails at once rather than after the run. A file already there
// is left as it is until the run succeeds; one created for the check is
// removed again (the returned func) when the run fails.
func createPlot(path string) (remove func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	_, statErr := os.Stat(path)
	existed := statErr == nil
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--plot: %w", err)
	}
	f.Close()
	if existed {
		return func() {}, nil
	}
	return func() { os.Remove(path) }, nil
}

func benchPublish(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	if ls := c.String("log-store"); !validLogStore(ls, false) {
		return usagef("--log-store %q: want wal or boltdb", ls)
	}
	if c.Bool("external") {
		return benchExternal(c)
	}
	for _, f := range []string{"clients", "replicas", "via"} {
		if c.IsSet(f) {
			return usagef("--%s goes with --external", f)
		}
	}
	cfg := bench.PublishConfig{
		Dir: c.String("dir"), LogStore: c.String("log-store"), Nodes: c.Int("nodes"), Voters: c.Int("voters"), Services: c.Int("services"),
		Subscribers: c.Int("subscribers"), Tables: c.Int("tables"),
		RowsPerDelta: c.Int("rows-per-delta"), RowBytes: c.Int("row-bytes"), Duration: c.Duration("duration"),
		Rate: c.Int("rate"), Window: c.Int("window"), Writers: c.Int("writers"), Baseline: c.Bool("baseline"), NoRaftFloor: c.Bool("no-raft-floor"),
		Progress: progress("publish"),
	}
	if cfg.Services < 1 {
		return usagef("--services %d: want at least 1", cfg.Services)
	}
	if err := validate(&cfg); err != nil {
		return err
	}
	removePlot, err := createPlot(c.String("plot"))
	if err != nil {
		return err
	}
	res, err := bench.Publish(c.Context, cfg)
	endProgress(cfg.Progress != nil)
	if err != nil {
		removePlot()
		return err
	}
	if p := c.String("plot"); p != "" {
		if err := bench.Plot(p, "dse bench publish", res.Latencies, res.Series); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	if jsonOut(c) {
		return printJSON(c, res)
	}
	w := c.App.Writer
	publisher := fmt.Sprintf("%d in flight per table (async)", res.Window)
	if res.Writers > 0 {
		publisher = fmt.Sprintf("%d waiting writers per table", res.Writers)
	}
	fmt.Fprintf(w, "publish: %d nodes (%d voters, %s, %s log), %d subscribers, %d services × %d tables, %d rows of %d bytes per delta, rate %s, %s\n",
		res.Nodes, res.Voters, res.Mode, res.LogStore, res.Subscribers, res.Services, res.Tables, res.RowsPerDelta, res.RowBytes, rateText(res.Rate), publisher)
	fmt.Fprintf(w, "  %d publications in %.1fs: %.0f/s, %.0f deliveries/s, %d failed\n", res.Publications, res.Seconds, res.PubsPerSec, res.DeliveriesPerSec, res.Failed)
	if res.FirstFailure != "" {
		fmt.Fprintf(w, "  first failure: %s\n", res.FirstFailure)
	}
	fmt.Fprintf(w, "  %d Raft commits (%.1f publications each), %d catch-ups, %d subscribers cut off, %d order violations\n", res.RaftCommits, res.PubsPerCommit, res.Catchups, res.Cutoffs, res.OrderViolations)
	fmt.Fprintf(w, "  latency publish→apply: p50 %.0fµs  p99 %.0fµs  p99.9 %.0fµs  max %.0fµs\n", res.Latency.P50, res.Latency.P99, res.Latency.P999, res.Latency.Max)
	if res.BaselineLatency != nil {
		fmt.Fprintf(w, "  baseline (seqnums from a local counter, no Raft): %.0f/s, p50 %.0fµs  p99 %.0fµs; dse %.2fx of it\n",
			res.BaselinePubsPerSec, res.BaselineLatency.P50, res.BaselineLatency.P99, res.VsBaseline)
	}
	if res.RaftFloorP50 > 0 {
		fmt.Fprintf(w, "  hashicorp/raft alone at %s: p50 %.0fµs  p99 %.0fµs (one at a time: p50 %.0fµs); dse p50 %.2fx of it\n",
			rateText(res.Rate), res.RaftFloorP50, res.RaftFloorP99, res.RaftFloorSerialP50, res.VsRaftFloor)
	}
	return nil
}

// benchExternal is `dse bench publish --external`.
func benchExternal(c *ucli.Context) error {
	for _, f := range []string{"voters", "services", "tables", "rows-per-delta", "window", "writers", "baseline", "no-raft-floor"} {
		if c.IsSet(f) {
			return usagef("--%s does not go with --external (each client sets a table of its own, one row)", f)
		}
	}
	cfg := bench.ExternalConfig{
		Dir: c.String("dir"), LogStore: c.String("log-store"), Nodes: c.Int("nodes"), Replicas: c.Int("replicas"), Clients: c.Int("clients"),
		Via: c.String("via"), RowBytes: c.Int("row-bytes"), Duration: c.Duration("duration"), Rate: c.Int("rate"), Progress: progress("publish --external"),
	}
	if c.IsSet("subscribers") { // none by default, as JetStream's publish bench has none
		cfg.Subscribers = c.Int("subscribers")
	}
	if err := validate(&cfg); err != nil {
		return err
	}
	removePlot, err := createPlot(c.String("plot"))
	if err != nil {
		return err
	}
	res, err := bench.External(c.Context, cfg)
	endProgress(cfg.Progress != nil)
	if err != nil {
		removePlot()
		return err
	}
	if p := c.String("plot"); p != "" {
		if err := bench.Plot(p, "dse bench publish --external", res.Latencies, res.Series); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	if jsonOut(c) {
		return printJSON(c, res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "publish --external: %d nodes (in-process, HTTP API each, %s log), a service with %d replicas, %d HTTP clients via %s, rate %s, %d subscribers\n",
		res.Nodes, res.LogStore, res.Replicas, res.Clients, res.Via, rateText(res.Rate), res.Subscribers)
	fmt.Fprintf(w, "  %d acknowledged publications in %.1fs: %.0f/s, %d failed, %.0f deliveries/s\n", res.Publications, res.Seconds, res.PubsPerSec, res.Failed, res.DeliveriesPerSec)
	if res.FirstFailure != "" {
		fmt.Fprintf(w, "  first failure: %s\n", res.FirstFailure)
	}
	fmt.Fprintf(w, "  latency request→answer: p50 %.0fµs  p99 %.0fµs  p99.9 %.0fµs  max %.0fµs\n", res.Latency.P50, res.Latency.P99, res.Latency.P999, res.Latency.Max)
	for _, n := range res.ByNode {
		fmt.Fprintf(w, "  via %s: %d publications, p50 %.0fµs  p99 %.0fµs\n", n.Node, n.Ops, n.Latency.P50, n.Latency.P99)
	}
	return nil
}

func rateText(r int) string {
	if r == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%d/s", r)
}

func benchSnapshot(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	if ls := c.String("log-store"); !validLogStore(ls, false) {
		return usagef("--log-store %q: want wal or boltdb", ls)
	}
	if c.Int("rounds") < 1 {
		return usagef("--rounds %d: want at least 1", c.Int("rounds"))
	}
	cfg := bench.SnapshotConfig{Dir: c.String("dir"), LogStore: c.String("log-store"), Rows: c.Int("rows"), Columns: c.Int("columns"), Rounds: c.Int("rounds"),
		Progress: stageProgress("snapshot")}
	if err := validate(&cfg); err != nil {
		return err
	}
	if !c.Bool("in-process") {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find the dse binary to start the nodes with: %w (or use --in-process)", err)
		}
		cfg.Spawn = func(ctx context.Context) *exec.Cmd { return exec.CommandContext(ctx, exe, "bench", "snapshot-node") }
	}
	res, err := bench.Snapshot(c.Context, cfg)
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "snapshot: 2 nodes (%s, %s log), %d rows of %d columns, %.1f MB\n  %.3fs, %.0f MB/s; bare encode+decode %.3fs (%.1fx)\n",
		res.Mode, res.LogStore, res.Rows, res.Columns, float64(res.Bytes)/1e6, res.Seconds, res.MBPerSec, res.BaselineSeconds, res.Seconds/res.BaselineSeconds)
	if len(res.Rounds) > 1 {
		fmt.Fprintf(w, "  rounds:")
		for _, r := range res.Rounds {
			fmt.Fprintf(w, " %.3fs", r)
		}
		fmt.Fprintf(w, " (a new subscriber each on the same node)\n")
	}
	fmt.Fprintf(w, "  the subscriber's cache: %.0f bytes per row of heap in use (%.0f live)\n", res.CacheBytesPerRow, res.CacheLiveBytesPerRow)
	if res.NodeRSSMB != nil {
		fmt.Fprintf(w, "  peak RSS: publisher node %.0f MB, subscriber node %.0f MB\n", res.NodeRSSMB["publisher"], res.NodeRSSMB["subscriber"])
	} else {
		fmt.Fprintf(w, "  peak RSS of the process (both nodes): %.0f MB\n", res.RSSMB)
	}
	return nil
}

func benchScale(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	if ls := c.String("log-store"); !validLogStore(ls, false) {
		return usagef("--log-store %q: want wal or boltdb", ls)
	}
	cfg := bench.ScaleConfig{Dim: c.String("dim"), Dir: c.String("dir"), LogStore: c.String("log-store"), Duration: c.Duration("duration"), Progress: stageProgress("scale")}
	if p := c.String("points"); p != "" {
		for _, f := range strings.Split(p, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return usagef("--points %q: %q is not a number", p, f)
			}
			cfg.Points = append(cfg.Points, n)
		}
	}
	if err := validate(&cfg); err != nil {
		return err
	}
	spawn, err := nodeSpawn(c)
	if err != nil {
		return err
	}
	cfg.Spawn = spawn
	removePlot, err := createPlot(c.String("plot"))
	if err != nil {
		return err
	}
	var werr error
	cfg.Emit = func(p bench.ScalePoint) {
		if werr == nil {
			werr = printJSON(c, p)
		}
	}
	points, err := bench.Scale(c.Context, cfg)
	if err == nil {
		err = werr
	}
	if err != nil {
		if len(points) == 0 {
			removePlot()
		} else if p := c.String("plot"); p != "" {
			bench.PlotScale(p, cfg.Dim, points) // the points measured so far
		}
		return err
	}
	if p := c.String("plot"); p != "" {
		if err := bench.PlotScale(p, cfg.Dim, points); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	return nil
}

// nodeSpawn runs this dse binary as one bench node (`dse bench
// snapshot-node`), unless --in-process.
func nodeSpawn(c *ucli.Context) (bench.Spawn, error) {
	if c.Bool("in-process") {
		return nil, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find the dse binary to start the nodes with: %w (or use --in-process)", err)
	}
	return func(ctx context.Context) *exec.Cmd { return exec.CommandContext(ctx, exe, "bench", "snapshot-node") }, nil
}

func registryLoad(c *ucli.Context) bench.RegistryLoad {
	return bench.RegistryLoad{Services: c.Int("services"), TablesPerService: c.Int("tables-per-service"), Subscriptions: c.Int("subscriptions"), Datasources: c.Int("datasources")}
}

func benchJoin(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	if ls := c.String("log-store"); !validLogStore(ls, false) {
		return usagef("--log-store %q: want wal or boltdb", ls)
	}
	cfg := bench.JoinConfig{Dir: c.String("dir"), LogStore: c.String("log-store"), Nodes: c.Int("nodes"), Load: registryLoad(c), NoFill: c.Bool("no-fill"), Progress: stageProgress("join")}
	if cfg.Nodes < 1 {
		return usagef("--nodes %d: want at least 1", cfg.Nodes)
	}
	if err := validate(&cfg); err != nil {
		return err
	}
	spawn, err := nodeSpawn(c)
	if err != nil {
		return err
	}
	cfg.Spawn = spawn
	res, err := bench.Join(c.Context, cfg)
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, res)
	}
	w := c.App.Writer
	how := "replaying the log"
	if res.ViaSnapshot {
		how = "installing the snapshot"
	}
	fmt.Fprintf(w, "join: %d nodes (%s log), a registry of %d services, %d tables, %d subscriptions, %d datasources (built in %.1fs, %d Raft entries)\n",
		res.Nodes, res.LogStore, res.Services, res.Tables, res.Subscriptions, res.Datasources, res.LoadSeconds, res.RaftEntries)
	fmt.Fprintf(w, "  snapshot: %d bytes at index %d, %.1f bytes per table\n", res.SnapshotBytes, res.SnapshotIndex, res.BytesPerTable)
	fmt.Fprintf(w, "  the new node (%s) was current %.3fs after its join request, %s; peak RSS %.0f MB, registry heap %.1f MB (%.0f bytes per table)\n",
		res.Mode, res.Seconds, how, res.RSSMB, res.HeapMB, res.HeapBytesPerTable)
	return nil
}

func benchRegistry(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	if ls := c.String("log-store"); !validLogStore(ls, false) {
		return usagef("--log-store %q: want wal or boltdb", ls)
	}
	cfg := bench.RegistryConfig{Dir: c.String("dir"), LogStore: c.String("log-store"), Nodes: c.Int("nodes"), Clients: c.Int("clients"), Ops: c.Int("ops"),
		Load: registryLoad(c), Progress: progress("registry")}
	if cfg.Load.Services == 0 {
		cfg.Load.TablesPerService = 0
	}
	if err := validate(&cfg); err != nil {
		return err
	}
	res, err := bench.Registry(c.Context, cfg)
	endProgress(cfg.Progress != nil)
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, res)
	}
	fmt.Fprintf(c.App.Writer, "registry: %d nodes (%s, %s log), %d clients, %d writes in %.1fs: %.0f/s, %d failed\n  latency p50 %.0fµs  p99 %.0fµs  max %.0fµs\n",
		res.Nodes, res.Mode, res.LogStore, res.Clients, res.Ops, res.Seconds, res.OpsPerSec, res.Failed, res.Latency.P50, res.Latency.P99, res.Latency.Max)
	if res.FirstFailure != "" {
		fmt.Fprintf(c.App.Writer, "  first failure: %s\n", res.FirstFailure)
	}
	if l := res.Load; l != nil {
		fmt.Fprintf(c.App.Writer, "  on a registry of %d services, %d tables, %d subscriptions, %d datasources (written in %.1fs)\n",
			l.Services, l.Tables(), l.Subscriptions, l.Datasources, res.LoadSeconds)
	}
	fmt.Fprintf(c.App.Writer, "  %d Raft entries (%.1f writes each)\n", res.RaftEntries, res.OpsPerEntry)
	for _, n := range res.ByNode {
		role := "follower"
		if n.Leader {
			role = "leader"
		}
		fmt.Fprintf(c.App.Writer, "  on %s (%s): %d writes, p50 %.0fµs  p99 %.0fµs\n", n.Node, role, n.Ops, n.Latency.P50, n.Latency.P99)
	}
	return nil
}

func benchRPC(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	if ls := c.String("log-store"); !validLogStore(ls, false) {
		return usagef("--log-store %q: want wal or boltdb", ls)
	}
	cfg := bench.RPCConfig{Dir: c.String("dir"), LogStore: c.String("log-store"), Callers: c.Int("callers"), Duration: c.Duration("duration"),
		Progress: progress("rpc")}
	if err := validate(&cfg); err != nil {
		return err
	}
	removePlot, err := createPlot(c.String("plot"))
	if err != nil {
		return err
	}
	res, err := bench.RPC(c.Context, cfg)
	endProgress(cfg.Progress != nil)
	if err != nil {
		removePlot()
		return err
	}
	if p := c.String("plot"); p != "" {
		if err := bench.Plot(p, "dse bench rpc", res.Latencies, res.Series); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	if jsonOut(c) {
		return printJSON(c, res)
	}
	fmt.Fprintf(c.App.Writer, "rpc: 2 nodes (%s, %s log), %d callers, %d calls in %.1fs: %.0f/s\n  latency p50 %.0fµs  p99 %.0fµs  max %.0fµs\n",
		res.Mode, res.LogStore, res.Callers, res.Calls, res.Seconds, res.CallsPerSec, res.Latency.P50, res.Latency.P99, res.Latency.Max)
	return nil
}

// validLogStore reports whether s names a Raft log store ("" only if
// emptyOK: keep what the data dir holds).
func validLogStore(s string, emptyOK bool) bool {
	return s == dse.LogStoreWAL || s == dse.LogStoreBoltDB || (emptyOK && s == "")
}
