package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/cache"
)

// Spawn returns a command that runs this program as one bench node: a
// process that calls RunSnapshotNode with its stdin and stdout. The CLI
// passes one that runs `dse bench snapshot-node`; tests re-run their own
// binary.
type Spawn func(ctx context.Context) *exec.Cmd

// Snapshot node roles.
const (
	rolePublisher  = "publisher"
	roleSubscriber = "subscriber"
	// roleJoiner is `dse bench join`'s new node.
	roleJoiner = "joiner"
)

// nodeSpec is the one line a bench node process reads first on stdin.
type nodeSpec struct {
	Role     string `json:"role"`
	ID       string `json:"id"`
	Dir      string `json:"dir"`
	LogStore string `json:"log_store,omitempty"`
	Rows     int    `json:"rows"`
	Columns  int    `json:"columns"`
	Rounds   int    `json:"rounds,omitempty"`
	// Join is the publisher node's HTTP address, for the subscriber.
	Join string `json:"join,omitempty"`
}

// nodeReport is a line a bench node process writes on stdout: the
// publisher's once its table is published and once stdin closes, the
// subscriber's once it has the snapshot.
type nodeReport struct {
	HTTPAddr string  `json:"http_addr,omitempty"`
	LogStore string  `json:"log_store,omitempty"`
	Seconds  float64 `json:"seconds,omitempty"`
	// Rounds are the seconds of every round, the first one's included.
	Rounds []float64 `json:"rounds,omitempty"`
	RSSMB  float64   `json:"rss_mb,omitempty"`
	// Cache is the heap the first round's subscriber cache took.
	Cache *cacheMem `json:"cache,omitempty"`
	// The joiner's: whether it installed a snapshot, the heap the
	// registry took.
	ViaSnapshot bool   `json:"via_snapshot,omitempty"`
	HeapBytes   int64  `json:"heap_bytes,omitempty"`
	Error       string `json:"error,omitempty"`
}

// nodeConfig is the configuration of bench node id under dir: real TCP on
// 127.0.0.1, a Raft log with fsync.
func nodeConfig(dir, id, logStore string, bootstrap bool) dse.Config {
	cfg := dse.DefaultConfig()
	cfg.ID = id
	cfg.DataDir = filepath.Join(dir, id)
	cfg.Bind, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Bootstrap = bootstrap
	cfg.LogStore = logStore
	return cfg
}

// RunSnapshotNode is one node of a multi-process `dse bench snapshot`: it
// reads its nodeSpec from in, reports on out, and stops when in closes
// (when the bench, its parent, is done or gone).
func RunSnapshotNode(ctx context.Context, in io.Reader, out io.Writer) error {
	lines := bufio.NewScanner(in)
	if !lines.Scan() {
		return errors.New("bench node: no spec on stdin")
	}
	var spec nodeSpec
	if err := json.Unmarshal(lines.Bytes(), &spec); err != nil {
		return fmt.Errorf("bench node: spec: %w", err)
	}
	enc := json.NewEncoder(out)
	rep, stop, err := startSnapshotNode(ctx, spec)
	if err != nil {
		enc.Encode(nodeReport{Error: err.Error()})
		return err
	}
	defer stop()
	if err := enc.Encode(rep); err != nil {
		return err
	}
	for lines.Scan() { // until the parent closes stdin
	}
	if spec.Role == rolePublisher {
		return enc.Encode(nodeReport{RSSMB: peakRSSMB()})
	}
	return nil
}

// startSnapshotNode starts spec's node and does its part: the publisher
// publishes the big table, the subscriber joins and times its snapshot,
// the joiner joins and times its catching up with the registry.
func startSnapshotNode(ctx context.Context, spec nodeSpec) (nodeReport, func(), error) {
	bootstrap := spec.Role == rolePublisher
	if !bootstrap && spec.Role != roleSubscriber && spec.Role != roleJoiner {
		return nodeReport{}, nil, fmt.Errorf("bench node: unknown role %q", spec.Role)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nodeReport{}, nil, err
	}
	cfg := nodeConfig(spec.Dir, spec.ID, spec.LogStore, bootstrap)
	cfg.HTTPAddr = ln.Addr().String()
	node, err := dse.New(cfg, dse.Deps{})
	if err != nil {
		ln.Close()
		return nodeReport{}, nil, err
	}
	srv := api.NewServer(node, api.ServerConfig{})
	go srv.Serve(ln)
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		node.Close()
	}
	rep := nodeReport{HTTPAddr: node.HTTPAddr(), LogStore: node.LogStore()}
	switch {
	case bootstrap:
		err = publishBigTable(ctx, node, spec)
	case spec.Role == roleJoiner:
		var got nodeReport
		got, err = joinAndCatchUp(ctx, node, spec)
		got.HTTPAddr, got.LogStore = rep.HTTPAddr, rep.LogStore
		rep = got
	default:
		rep.Rounds, rep.Cache, rep.RSSMB, err = takeSnapshot(ctx, node, spec)
		if len(rep.Rounds) > 0 {
			rep.Seconds = rep.Rounds[0]
		}
	}
	if err != nil {
		stop()
		return nodeReport{}, nil, err
	}
	return rep, stop, nil
}

func publishBigTable(ctx context.Context, node *dse.Node, spec nodeSpec) error {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := node.WaitLeader(wctx); err != nil {
		return err
	}
	pub := dse.NewDataService(bigPublisher, dse.Hooks{})
	if err := node.Register(ctx, pub); err != nil {
		return err
	}
	if _, _, err := pub.Publish(ctx, bigTable, makeRows(spec.Rows, spec.Columns), true); err != nil {
		return err
	}
	runtime.GC() // the generator's garbage is not the node's
	return nil
}

// takeSnapshot joins the publisher's cluster and times new subscribers'
// snapshots of the big table (snapshotRounds), and reports the node's peak
// RSS after the first.
func takeSnapshot(ctx context.Context, node *dse.Node, spec nodeSpec) ([]float64, *cacheMem, float64, error) {
	jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err := api.JoinCluster(jctx, []string{spec.Join}, nil, "", dse.JoinRequest{ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr(), Voter: true})
	if err != nil {
		return nil, nil, 0, err
	}
	for {
		if _, _, ok := node.FSM().Owner(bigPublisher); ok && len(node.FSM().Nodes()) == 2 {
			break
		}
		select {
		case <-jctx.Done():
			return nil, nil, 0, fmt.Errorf("the publisher is not in this node's registry after joining: %w", jctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	var rss float64
	rounds, cache, err := snapshotRounds(ctx, node, spec.Rows, spec.Rounds, func() { rss = peakRSSMB() })
	return rounds, cache, rss, err
}

// cacheMem is the Go heap a subscriber's cache of the big table holds: the
// heap in use (HeapInuse: the spans, what the node pays) and the live bytes
// (HeapAlloc), each after a GC, after the snapshot less before it.
type cacheMem struct {
	InuseBytes int64 `json:"inuse_bytes"`
	LiveBytes  int64 `json:"live_bytes"`
}

// heapAfterGC collects the heap and reads it.
func heapAfterGC() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// snapshotRounds times rounds new subscribers on node, one after another,
// each taking a snapshot of the big table (timeSnapshot); each is deleted
// before the next, so that each round's snapshot comes from the publisher
// again, into memory the node's heap may already hold. afterFirst is
// called once the first round is done.
// The first round's cache is measured (cacheMem) before it is deleted.
func snapshotRounds(ctx context.Context, node *dse.Node, rows, rounds int, afterFirst func()) ([]float64, *cacheMem, error) {
	var out []float64
	var cache *cacheMem
	for i := range max(rounds, 1) {
		id := fmt.Sprintf("bench-snap-sub-%d", i+1)
		seconds, mem, err := timeSnapshot(ctx, node, id, rows)
		if err != nil {
			return nil, nil, fmt.Errorf("round %d: %w", i+1, err)
		}
		out = append(out, seconds)
		if i == 0 {
			cache = &mem
			if afterFirst != nil {
				afterFirst()
			}
		}
		if err := node.DeleteService(ctx, id); err != nil {
			return nil, nil, fmt.Errorf("round %d: %w", i+1, err)
		}
	}
	return out, cache, nil
}

// timeSnapshot registers subscriber id on node and times its snapshot of
// the big table, from the subscribe call until its cache holds all rows;
// then it measures the heap the cache holds.
func timeSnapshot(ctx context.Context, node *dse.Node, id string, rows int) (float64, cacheMem, error) {
	var once sync.Once
	got := make(chan struct{})
	sub := dse.NewDataService(id, dse.Hooks{ReceiveData: func(_, _ string, d dse.Data) {
		if d.Snapshot && len(d.Rows) == rows {
			once.Do(func() { close(got) })
		}
	}})
	if err := node.Register(ctx, sub); err != nil {
		return 0, cacheMem{}, err
	}
	// As testing.B does before a benchmark: start from a collected heap, so
	// the setup's garbage is not charged to the measurement.
	before := heapAfterGC()
	start := time.Now()
	if err := sub.Subscribe(ctx, bigPublisher, bigTable); err != nil {
		return 0, cacheMem{}, err
	}
	select {
	case <-got:
	case <-time.After(5 * time.Minute):
		return 0, cacheMem{}, fmt.Errorf("the snapshot did not arrive in 5 minutes")
	case <-ctx.Done():
		return 0, cacheMem{}, ctx.Err()
	}
	seconds := time.Since(start).Seconds()
	if n := sub.Cache().Len(cache.TableID{Publisher: bigPublisher, Table: bigTable}); n != rows {
		return 0, cacheMem{}, fmt.Errorf("subscriber holds %d rows, want %d", n, rows)
	}
	after := heapAfterGC()
	mem := cacheMem{InuseBytes: int64(after.HeapInuse) - int64(before.HeapInuse), LiveBytes: int64(after.HeapAlloc) - int64(before.HeapAlloc)}
	runtime.KeepAlive(sub)
	return seconds, mem, nil
}

// nodeProc is a running bench node process.
type nodeProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *json.Decoder
}

func startNodeProc(ctx context.Context, spawn Spawn, spec nodeSpec) (*nodeProc, error) {
	cmd := spawn(ctx)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bench node %s: %w", spec.ID, err)
	}
	p := &nodeProc{cmd: cmd, stdin: stdin, out: json.NewDecoder(stdout)}
	line, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(line, '\n')); err != nil {
		p.stop()
		return nil, fmt.Errorf("bench node %s: %w", spec.ID, err)
	}
	return p, nil
}

// reportTimeout bounds the wait for a node's report: the longest step, a
// snapshot, gives up after 5 minutes on its own.
const reportTimeout = 10 * time.Minute

// report reads the node's next report; a node silent for reportTimeout is
// killed.
func (p *nodeProc) report() (nodeReport, error) {
	t := time.AfterFunc(reportTimeout, func() { p.cmd.Process.Kill() })
	defer t.Stop()
	var r nodeReport
	if err := p.out.Decode(&r); err != nil {
		return r, fmt.Errorf("bench node %s: no report: %w", p.cmd.Path, err)
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// stop closes the node's stdin, which ends it, and waits for it (killing
// it if it does not end in 30 seconds).
func (p *nodeProc) stop() error {
	p.stdin.Close()
	t := time.AfterFunc(30*time.Second, func() { p.cmd.Process.Kill() })
	defer t.Stop()
	return p.cmd.Wait()
}

// snapshotProcesses runs the snapshot benchmark with each node in its own
// process, so that each node's peak RSS is its own.
func snapshotProcesses(ctx context.Context, cfg SnapshotConfig, res *SnapshotResult) error {
	ctx, cancel := context.WithCancel(ctx) // kills the nodes on the way out
	defer cancel()
	dir, cleanup, err := benchDir(cfg.Dir)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.stage("publisher node: publishing %d rows", cfg.Rows)
	pub, err := startNodeProc(ctx, cfg.Spawn, nodeSpec{Role: rolePublisher, ID: "bench1", Dir: dir, LogStore: cfg.LogStore, Rows: cfg.Rows, Columns: cfg.Columns})
	if err != nil {
		return err
	}
	defer pub.stop()
	ready, err := pub.report()
	if err != nil {
		return err
	}
	res.LogStore = ready.LogStore
	cfg.stage("subscriber node: taking the snapshot (%d round(s))", cfg.Rounds)
	sub, err := startNodeProc(ctx, cfg.Spawn, nodeSpec{Role: roleSubscriber, ID: "bench2", Dir: dir, LogStore: cfg.LogStore, Rows: cfg.Rows, Columns: cfg.Columns, Rounds: cfg.Rounds, Join: ready.HTTPAddr})
	if err != nil {
		return err
	}
	defer sub.stop()
	got, err := sub.report()
	if err != nil {
		return err
	}
	res.Seconds = got.Seconds
	if len(got.Rounds) > 1 {
		res.Rounds = got.Rounds
	}
	res.NodeRSSMB = map[string]float64{rolePublisher: 0, roleSubscriber: got.RSSMB}
	res.setCache(got.Cache)
	pub.stdin.Close()
	last, err := pub.report()
	if err != nil {
		return err
	}
	res.NodeRSSMB[rolePublisher] = last.RSSMB
	res.RSSMB = max(last.RSSMB, got.RSSMB)
	return nil
}
