package cli

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	ucli "github.com/urfave/cli/v2"

	"dse.dev/dse/dse"
)

func devCommand() *ucli.Command {
	return &ucli.Command{
		Name:     "dev",
		Category: "server",
		Usage:    "run a local N-node cluster in one process, with a demo publisher",
		Flags: []ucli.Flag{
			&ucli.IntFlag{Name: "nodes", Usage: "number of nodes", Value: 3},
			&ucli.StringFlag{Name: "dir", Usage: "where the nodes keep their data", Value: "dse-dev-data"},
			&ucli.IntFlag{Name: "port-base", Usage: "node i listens on port-base+10*i (cluster) and +1 (HTTP); 0 picks free ports", Value: 7400},
			&ucli.StringFlag{Name: "log-level", Usage: "trace, debug, info, warn or error", Value: "warn"},
		},
		Action: runDev,
	}
}

func runDev(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	n := c.Int("nodes")
	if n < 1 || n > 9 {
		return usagef("--nodes %d: want 1 to 9", n)
	}
	base := c.Int("port-base")
	if base < 0 || base > 65535-10*n {
		return usagef("--port-base %d is out of range", base)
	}
	logger, err := newLogger("dse", c.String("log-level"), false)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(c.String("dir"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	var nodes []*runningNode
	defer func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			nodes[i].stop()
		}
	}()
	port := func(i, off int) string {
		if base == 0 {
			return "127.0.0.1:0"
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(base+10*i+off))
	}
	for i := range n {
		cfg := dse.DefaultConfig()
		cfg.ID = fmt.Sprintf("node%d", i+1)
		cfg.DataDir = filepath.Join(dir, cfg.ID)
		cfg.Bind, cfg.HTTPAddr = port(i, 0), port(i, 1)
		if base == 0 {
			// Free ports change on every run: resume the stored ones.
			if _, adv, h, err := dse.StoredIdentity(cfg.DataDir); err == nil && adv != "" {
				cfg.Bind, cfg.HTTPAddr = adv, h
			}
		}
		cfg.Bootstrap = i == 0
		cfg.Logger = logger
		var join []string
		if i > 0 {
			join = []string{nodes[0].node.HTTPAddr()}
		}
		rn, err := startNode(ctx, nodeOptions{cfg: cfg, join: join, joinTimeout: 30 * time.Second})
		if err != nil {
			return fmt.Errorf("start %s: %w", cfg.ID, err)
		}
		nodes = append(nodes, rn)
		if i == 0 {
			wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
			_, err := rn.node.WaitLeader(wctx)
			wcancel()
			if err != nil {
				return err
			}
		}
	}
	w := c.App.Writer
	fmt.Fprintf(w, "dse dev: %d-node cluster, data in %s\n\n", n, dir)
	for _, rn := range nodes {
		fmt.Fprintf(w, "  %-6s http %-16s cluster %s\n", rn.node.ID(), rn.node.HTTPAddr(), rn.node.Addr())
	}
	a := nodes[0].node.HTTPAddr()
	b := nodes[len(nodes)-1].node.HTTPAddr()
	fmt.Fprintf(w, "\nTry, in another terminal:\n")
	fmt.Fprintf(w, "  go run . --addr %s members list\n", a)
	fmt.Fprintf(w, "  go run . --addr %s status\n", b)
	fmt.Fprintf(w, "  go run . --addr %s leader transfer\n", b)
	fmt.Fprintf(w, "  curl -s http://%s/metrics | grep dse_raft\n", a)
	fmt.Fprintf(w, "\nCtrl-C stops the cluster; run again to resume it from %s.\n", dir)
	select {
	case <-ctx.Done():
	case <-nodes[0].node.Done():
	}
	fmt.Fprintln(w, "stopping")
	return nil
}
