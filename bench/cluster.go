package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/hashicorp/go-hclog"

	"dse.dev/dse/dse"
)

// Cluster is a set of in-process nodes on loopback with real storage.
type Cluster struct {
	Nodes []*dse.Node
	dir   string
	temp  bool
}

// StartCluster starts n nodes under dir (a new temporary folder, removed by
// Close, when dir is empty): real TCP on 127.0.0.1, raft-boltdb with fsync.
func StartCluster(ctx context.Context, dir string, n int, logStore string, logger hclog.Logger) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("nodes %d: want at least 1", n)
	}
	c := &Cluster{dir: dir}
	if dir == "" {
		d, err := os.MkdirTemp("", "dse-bench-")
		if err != nil {
			return nil, err
		}
		c.dir, c.temp = d, true
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	for i := range n {
		cfg := dse.DefaultConfig()
		cfg.ID = fmt.Sprintf("bench%d", i+1)
		cfg.DataDir = filepath.Join(c.dir, cfg.ID)
		cfg.Bind, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Bootstrap = i == 0
		cfg.Logger = logger
		cfg.LogStore = logStore
		node, err := dse.New(cfg)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, node)
		if i == 0 {
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err = node.WaitLeader(wctx)
			cancel()
		} else {
			jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err = c.Nodes[0].Join(jctx, dse.JoinRequest{ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr(), Voter: true})
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
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		c.Nodes[i].Close()
	}
	if c.temp {
		os.RemoveAll(c.dir)
	}
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
