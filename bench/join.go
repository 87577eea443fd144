package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/fsm"
)

// RegistryLoad is a registry built in bulk, straight from fsm commands
// (dse.Node.WriteRegistry): services, each with tables that have a seqnum,
// subscriptions between them, and disabled datasources.
type RegistryLoad struct {
	Services         int `json:"services"`
	TablesPerService int `json:"tables_per_service"`
	Subscriptions    int `json:"subscriptions"`
	Datasources      int `json:"datasources"`
}

// Tables is how many tables the load holds.
func (l RegistryLoad) Tables() int { return l.Services * l.TablesPerService }

// Empty reports whether the load holds nothing.
func (l RegistryLoad) Empty() bool { return l.Services == 0 && l.Datasources == 0 }

func (l RegistryLoad) validate() error {
	switch {
	case l.Services < 0 || l.TablesPerService < 0 || l.Subscriptions < 0 || l.Datasources < 0:
		return configErr("--services %d, --tables-per-service %d, --subscriptions %d, --datasources %d: want 0 or more",
			l.Services, l.TablesPerService, l.Subscriptions, l.Datasources)
	case l.Subscriptions > 0 && l.Services < 2:
		return configErr("--subscriptions %d: want --services 2 or more (services subscribe to each other's tables)", l.Subscriptions)
	case l.Subscriptions > 0 && l.TablesPerService < 1:
		return configErr("--subscriptions %d: want --tables-per-service 1 or more", l.Subscriptions)
	case l.Subscriptions > l.Tables()*(l.Services-1):
		return configErr("--subscriptions %d: at most %d distinct ones with %d services of %d tables", l.Subscriptions, l.Tables()*(l.Services-1), l.Services, l.TablesPerService)
	}
	return nil
}

// loadConcurrency is how many registry writes loading keeps in flight: the
// registry's group commit packs them into few entries (up to 1 MiB each,
// about 7,000 registers), and few entries matter: on a big registry each
// one costs every node a walk of its services.
const loadConcurrency = 4096

// publishChunk is how many tables one fsm.Publish command of the load
// creates (about 40 bytes each).
const publishChunk = 8192

// builtinActions are the actions every Go service registers.
var builtinActions = []string{"get_last_published_data_with_seqnum", "get_snapshot", "ping"}

func loadService(i int) string { return fmt.Sprintf("bench-load-%06d", i) }

// loadRegistry writes l into the registry through node (any member):
// services with their instance on one of nodes each, in turn.
func loadRegistry(ctx context.Context, node *dse.Node, nodes []string, l RegistryLoad) error {
	if err := parallel(l.Services, loadConcurrency, func(i int) error {
		return node.WriteRegistry(ctx, fsm.CmdServiceRegister, fsm.ServiceRegister{ID: loadService(i), Node: nodes[i%len(nodes)], Kind: dse.KindGo, Endpoints: builtinActions})
	}); err != nil {
		return fmt.Errorf("services: %w", err)
	}
	// Each table gets its seqnum from an fsm.Publish, as a publisher's
	// first publication does.
	tables := l.Tables()
	chunks := (tables + publishChunk - 1) / publishChunk
	if err := parallel(chunks, 8, func(c int) error {
		var cmd fsm.Publish
		for k := c * publishChunk; k < min((c+1)*publishChunk, tables); k++ {
			svc := loadService(k / l.TablesPerService)
			_, inc, ok := node.FSM().Owner(svc)
			if !ok {
				return fmt.Errorf("service %s not in the registry after its register", svc)
			}
			cmd.Requests = append(cmd.Requests, fsm.PublishRequest{Service: svc, Incarnation: inc, Table: loadTable(k % l.TablesPerService), Count: 1})
		}
		return node.WriteRegistry(ctx, fsm.CmdPublish, cmd)
	}); err != nil {
		return fmt.Errorf("tables: %w", err)
	}
	// Subscription k: table k mod tables, by the service after its
	// publisher (then the one after that, once every table has one).
	if err := parallel(l.Subscriptions, loadConcurrency, func(k int) error {
		t := k % max(tables, 1)
		pub := t / l.TablesPerService
		sub := (pub + 1 + k/max(tables, 1)) % l.Services
		return node.WriteRegistry(ctx, fsm.CmdSubscribe, fsm.Subscribe{Subscriber: loadService(sub), Publisher: loadService(pub), Table: loadTable(t % l.TablesPerService)})
	}); err != nil {
		return fmt.Errorf("subscriptions: %w", err)
	}
	if err := parallel(l.Datasources, loadConcurrency, func(i int) error {
		id := fmt.Sprintf("bench-ds-%06d", i)
		return node.WriteRegistry(ctx, fsm.CmdDatasourceAdd, fsm.DatasourceAdd{Datasource: fsm.Datasource{
			ID: id, Name: id, Driver: "bench", Description: "a disabled datasource of dse bench", Enabled: false,
			Config: map[string]any{"poll_interval": int64(30)},
		}})
	}); err != nil {
		return fmt.Errorf("datasources: %w", err)
	}
	return nil
}

func loadTable(t int) string { return fmt.Sprintf("t%d", t) }

// raftTrailingLogs is hashicorp/raft's TrailingLogs, which dse keeps: the
// entries a snapshot leaves in the log behind it.
const raftTrailingLogs = 10240

// fillLog writes harmless registry entries through node until a snapshot
// taken after what it writes next would compact its log, so that a new node gets the snapshot, as it does
// from a cluster that has run for a while. raft-wal (dse's default log)
// deletes only whole segment files behind a snapshot and still reads what
// the open one holds: a new node replays the log from index 1 until the
// first 64 MiB segment is sealed and more than TrailingLogs entries
// follow it. So it first writes big entries (a datasource with a 900 KB
// config, deleted again) until the log has a second segment file under
// walDir (any log store with fewer than two files counts as rotated),
// then small ones (the node's own record, as it is) past TrailingLogs.
func fillLog(ctx context.Context, node *dse.Node, walDir string) error {
	segments := func() int {
		files, _ := filepath.Glob(filepath.Join(walDir, "*.wal"))
		return len(files)
	}
	if _, err := os.Stat(walDir); err == nil {
		pad := strings.Repeat("x", 900<<10)
		for i := 0; segments() < 2; i++ {
			id := fmt.Sprintf("bench-filler-%d", i)
			if err := node.WriteRegistry(ctx, fsm.CmdDatasourceAdd, fsm.DatasourceAdd{Datasource: fsm.Datasource{
				ID: id, Name: id, Driver: "bench", Config: map[string]any{"pad": pad}}}); err != nil {
				return err
			}
			if err := node.WriteRegistry(ctx, fsm.CmdDatasourceDelete, fsm.DatasourceDelete{ID: id}); err != nil {
				return err
			}
		}
	}
	want := node.Status().LastIndex + raftTrailingLogs + 1024
	self := fsm.NodeUpsert{ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr()}
	for node.Status().LastIndex < want {
		// 8 writers: one entry each, the registry's batches in flight.
		if err := parallel(512, 8, func(int) error { return node.WriteRegistry(ctx, fsm.CmdNodeUpsert, self) }); err != nil {
			return err
		}
	}
	return nil
}

// JoinConfig sets up `dse bench join`.
type JoinConfig struct {
	Dir      string
	LogStore string
	// Nodes is the cluster the new node joins (3 by default).
	Nodes int
	Load  RegistryLoad
	// NoFill skips filling the log first (fillLog): the new node then
	// replays a young cluster's log from index 1 instead of installing the
	// snapshot, as it does from a cluster whose first log segment is
	// still open.
	NoFill bool
	// Spawn, when set, runs the new node in a process of its own (see
	// RunSnapshotNode), so that its RSS is its own.
	Spawn    Spawn
	Progress func(stage string)
}

// Validate checks the configuration; its errors wrap ErrConfig.
func (c *JoinConfig) Validate() error {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Nodes < 1 {
		return configErr("--nodes %d: want at least 1", c.Nodes)
	}
	if err := c.Load.validate(); err != nil {
		return err
	}
	return checkDir(c.Dir)
}

func (c *JoinConfig) stage(format string, a ...any) {
	if c.Progress != nil {
		c.Progress(fmt.Sprintf(format, a...))
	}
}

// JoinResult is what `dse bench join --json` prints.
type JoinResult struct {
	Mode     string `json:"mode"` // where the new node ran: "multi-process" or "in-process"
	LogStore string `json:"log_store"`
	Nodes    int    `json:"nodes"`
	RegistryLoad
	Tables int `json:"tables"`
	// LoadSeconds is how long building the registry took, RaftEntries the
	// leader's log then.
	LoadSeconds float64 `json:"load_seconds"`
	RaftEntries uint64  `json:"raft_entries"`
	// Seconds is from the new node's join request until its applied index
	// reached the leader's commit index.
	Seconds float64 `json:"seconds"`
	// ViaSnapshot says the new node installed the leader's snapshot (it
	// holds one afterwards) rather than replaying the log.
	ViaSnapshot bool `json:"via_snapshot"`
	// SnapshotBytes is the leader's Raft snapshot taken before the join,
	// SnapshotIndex its index; BytesPerTable is SnapshotBytes over the
	// tables (0 without tables).
	SnapshotBytes int64   `json:"snapshot_bytes"`
	SnapshotIndex uint64  `json:"snapshot_index"`
	BytesPerTable float64 `json:"bytes_per_table"`
	// RSSMB is the new node's peak resident set (its process's with a
	// process of its own; the bench process's otherwise, all nodes in it).
	RSSMB float64 `json:"rss_mb"`
	// HeapMB is the Go heap in use the registry took on the new node
	// (after a GC, once current, less the same before it joined), and
	// HeapBytesPerTable that over the tables: the memory an idle table
	// costs a node that holds only the registry.
	HeapMB            float64 `json:"heap_mb"`
	HeapBytesPerTable float64 `json:"heap_bytes_per_table"`
}

// Join builds a registry of cfg.Load on a new cluster, takes a Raft
// snapshot of it, then starts a new node, joins it, and times until it is
// current: its applied index at the leader's commit index.
func Join(ctx context.Context, cfg JoinConfig) (_ *JoinResult, err error) {
	defer func() { err = orInterrupted(ctx, err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx) // ends the new node's process on the way out
	defer cancel()
	dir, cleanup, err := benchDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	cfg.stage("starting %d nodes", cfg.Nodes)
	c, err := StartClusterWith(ctx, ClusterConfig{Dir: dir, Nodes: cfg.Nodes, LogStore: cfg.LogStore, HTTP: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	leader := c.Nodes[0]
	res := &JoinResult{Mode: "in-process", LogStore: leader.LogStore(), Nodes: cfg.Nodes, RegistryLoad: cfg.Load, Tables: cfg.Load.Tables()}
	if cfg.Spawn != nil {
		res.Mode = "multi-process"
	}
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		ids[i] = n.ID()
	}
	// The filling first, on an empty registry: on a big one, every entry
	// costs each node a walk of the registry.
	if !cfg.NoFill {
		cfg.stage("filling the log past Raft's trailing logs")
		if err := fillLog(ctx, leader, filepath.Join(dir, leader.ID(), "raft-wal")); err != nil {
			return nil, err
		}
	}
	cfg.stage("loading %d services, %d tables, %d subscriptions, %d datasources", cfg.Load.Services, cfg.Load.Tables(), cfg.Load.Subscriptions, cfg.Load.Datasources)
	start := time.Now()
	if err := loadRegistry(ctx, leader, ids, cfg.Load); err != nil {
		return nil, err
	}
	res.LoadSeconds = time.Since(start).Seconds()
	cfg.stage("a snapshot")
	res.RaftEntries = leader.Status().LastIndex
	snap, err := leader.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	res.SnapshotBytes, res.SnapshotIndex = snap.Bytes, snap.Index
	if t := cfg.Load.Tables(); t > 0 {
		res.BytesPerTable = float64(snap.Bytes) / float64(t)
	}
	cfg.stage("a new node joins (snapshot of %d bytes)", snap.Bytes)
	spec := nodeSpec{Role: roleJoiner, ID: fmt.Sprintf("bench%d", cfg.Nodes+1), Dir: dir, LogStore: cfg.LogStore, Join: leader.HTTPAddr()}
	var rep nodeReport
	if cfg.Spawn != nil {
		p, err := startNodeProc(ctx, cfg.Spawn, spec)
		if err != nil {
			return nil, err
		}
		defer p.stop()
		if rep, err = p.report(); err != nil {
			return nil, err
		}
	} else {
		var stop func()
		if rep, stop, err = startSnapshotNode(ctx, spec); err != nil {
			return nil, err
		}
		defer stop()
	}
	res.Seconds, res.ViaSnapshot, res.RSSMB = rep.Seconds, rep.ViaSnapshot, rep.RSSMB
	res.HeapMB = float64(rep.HeapBytes) / (1 << 20)
	if t := cfg.Load.Tables(); t > 0 {
		res.HeapBytesPerTable = float64(rep.HeapBytes) / float64(t)
	}
	return res, nil
}

// joinAndCatchUp joins node to the cluster of the leader at spec.Join (an
// HTTP address) and times it until its applied index reaches the leader's
// commit index; it reports that, the node's peak RSS and the heap the
// registry took.
func joinAndCatchUp(ctx context.Context, node *dse.Node, spec nodeSpec) (nodeReport, error) {
	empty := heapAfterGC()
	leader := api.NewClient(api.ClientConfig{Addr: spec.Join})
	jctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := api.JoinCluster(jctx, []string{spec.Join}, nil, "", dse.JoinRequest{ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr(), Voter: true}); err != nil {
		return nodeReport{}, err
	}
	for {
		st, err := leader.Status(jctx)
		if err != nil {
			return nodeReport{}, fmt.Errorf("leader status: %w", err)
		}
		if node.Status().AppliedIndex >= st.CommitIndex {
			break
		}
		select {
		case <-jctx.Done():
			return nodeReport{}, fmt.Errorf("not current after %s: applied %d, the leader's commit %d", time.Since(start).Truncate(time.Second), node.Status().AppliedIndex, st.CommitIndex)
		case <-time.After(2 * time.Millisecond):
		}
	}
	rep := nodeReport{Seconds: time.Since(start).Seconds(), RSSMB: peakRSSMB()}
	// A node that installed a snapshot holds one in its snapshot store.
	snaps, _ := os.ReadDir(filepath.Join(spec.Dir, spec.ID, "snapshots"))
	rep.ViaSnapshot = len(snaps) > 0
	full := heapAfterGC()
	rep.HeapBytes = int64(full.HeapInuse) - int64(empty.HeapInuse)
	return rep, nil
}
