package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
)

// Cluster is a set of in-process nodes on loopback with real storage.
type Cluster struct {
	Nodes []*dse.Node
	// servers are the nodes' HTTP APIs (ClusterConfig.HTTP), by node.
	servers []*api.Server
	cleanup func()
}

// StartCluster starts n nodes under dir, which must be new or empty (a new
// temporary folder, removed by Close, when dir is ""): real TCP on
// 127.0.0.1, a Raft log with fsync
// (logStore: dse.LogStoreWAL, the default, or dse.LogStoreBoltDB).
func StartCluster(ctx context.Context, dir string, n int, logStore string, logger hclog.Logger) (*Cluster, error) {
	return StartClusterWith(ctx, ClusterConfig{Dir: dir, Nodes: n, LogStore: logStore, Logger: logger})
}

// ClusterConfig sets up StartClusterWith.
type ClusterConfig struct {
	Dir      string
	Nodes    int
	LogStore string
	// Voters is how many of the nodes vote (0: all); the others join as
	// non-voters.
	Voters int
	Logger hclog.Logger
	// Deps, when set, gives node i (from 0) its collaborators; the logger
	// is added where it has none.
	Deps func(i int) dse.Deps
	// HTTP serves each node's HTTP API (package dse/api) on a port of
	// its own, the node's HTTPAddr.
	HTTP bool
}

// StartClusterWith starts a cluster as cfg says (see StartCluster).
func StartClusterWith(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	n := cfg.Nodes
	if n < 1 {
		return nil, fmt.Errorf("nodes %d: want at least 1", n)
	}
	voters := cfg.Voters
	if voters <= 0 || voters > n {
		voters = n
	}
	dir, cleanup, err := benchDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cleanup: cleanup}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	for i := range n {
		deps := dse.Deps{}
		if cfg.Deps != nil {
			deps = cfg.Deps(i)
		}
		if deps.Logger == nil {
			deps.Logger = logger
		}
		ncfg := nodeConfig(dir, fmt.Sprintf("bench%d", i+1), cfg.LogStore, i == 0)
		ncfg.NonVoter = i >= voters
		var ln net.Listener
		if cfg.HTTP {
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				c.Close()
				return nil, err
			}
			ncfg.HTTPAddr = ln.Addr().String()
		}
		node, err := dse.New(ncfg, deps)
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, node)
		if ln != nil {
			srv := api.NewServer(node, api.ServerConfig{})
			c.servers = append(c.servers, srv)
			go srv.Serve(ln)
		}
		if i == 0 {
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err = node.WaitLeader(wctx)
			cancel()
		} else {
			jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err = c.Nodes[0].Join(jctx, dse.JoinRequest{ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr(), Voter: i < voters})
			cancel()
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	// Every node knows every other before load starts.
	deadline := time.Now().Add(15 * time.Second)
	for _, node := range c.Nodes {
		for len(node.FSM().Nodes()) < n {
			if time.Now().After(deadline) {
				c.Close()
				return nil, fmt.Errorf("cluster did not form in time")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return c, nil
}

// Close stops every node and removes a temporary data dir.
func (c *Cluster) Close() {
	for _, srv := range c.servers {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
	}
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		c.Nodes[i].Close()
	}
	c.cleanup()
}

// ErrConfig marks a benchmark configuration that cannot run (a bad flag
// value, or a --dir in use); nothing was started.
var ErrConfig = errors.New("bad benchmark configuration")

func configErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// checkDir accepts a --dir that does not exist yet or is empty: each run
// starts a new cluster, and the Raft state of an earlier run would keep its
// nodes from forming one.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return configErr("--dir %s: %v", dir, err)
	case len(entries) > 0:
		return configErr("--dir %s is not empty: each run starts a new cluster; name a new or empty folder", dir)
	}
	return nil
}

// interrupted is the error of a run whose context ended (SIGINT or
// SIGTERM) before it finished: its figures would be partial.
func interrupted(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted before the run finished: %w", err)
	}
	return nil
}

// reportProgress calls progress (when set) about once a second with count()
// until the returned stop is called.
func reportProgress(progress func(time.Duration, uint64), start time.Time, count func() uint64) (stop func()) {
	if progress == nil {
		return func() {}
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				progress(time.Since(start), count())
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// orInterrupted turns a run's failure into interrupted's error when its
// context ended: the failure (a node that could not start, a publication
// that could not commit) is what the interruption caused.
func orInterrupted(ctx context.Context, err error) error {
	if err != nil && !errors.Is(err, ErrConfig) {
		if ierr := interrupted(ctx); ierr != nil {
			return ierr
		}
	}
	return err
}

// benchDir returns dir, or a new temporary folder when dir is empty, and
// what removes it afterwards (nothing for a dir the user named).
func benchDir(dir string) (string, func(), error) {
	if dir != "" {
		if err := checkDir(dir); err != nil {
			return "", nil, err
		}
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", "dse-bench-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// Latency summarizes durations in microseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999,omitempty"`
	Max  float64 `json:"max"`
}

func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(d)-1))
		return float64(d[i].Nanoseconds()) / 1e3
	}
	return Latency{P50: at(0.5), P99: at(0.99), P999: at(0.999), Max: float64(d[len(d)-1].Nanoseconds()) / 1e3}
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
