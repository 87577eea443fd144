package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
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
		// A new cluster needs its first node to lead before others join; a
		// resumed one needs a quorum of its nodes up to elect at all.
		if i == 0 && !rn.node.HasState() || i == n-1 {
			wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
			_, err := rn.node.WaitLeader(wctx)
			wcancel()
			if err != nil {
				return err
			}
		}
	}
	demo, err := startDemo(ctx, nodes[0].node)
	if err != nil {
		return fmt.Errorf("start the demo publisher: %w", err)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "dse dev: %d-node cluster, data in %s\n\n", n, dir)
	for _, rn := range nodes {
		fmt.Fprintf(w, "  %-6s http %-16s cluster %s\n", rn.node.ID(), rn.node.HTTPAddr(), rn.node.Addr())
	}
	a := nodes[0].node.HTTPAddr()
	b := nodes[len(nodes)-1].node.HTTPAddr()
	fmt.Fprintf(w, "\nService %q on %s publishes table %q, changing every second.\n", demo.ID(), nodes[0].node.ID(), demoTable)
	fmt.Fprintf(w, "\nTry, in another terminal:\n")
	fmt.Fprintf(w, "  go run . --addr %s watch %s %s\n", b, demo.ID(), demoTable)
	fmt.Fprintf(w, "  go run . --addr %s get %s %s\n", a, demo.ID(), demoTable)
	fmt.Fprintf(w, "  go run . --addr %s services list\n", b)
	fmt.Fprintf(w, "  go run . --addr %s rpc %s ping --args '{\"hello\":\"dse\"}'\n", b, demo.ID())
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

const demoTable = "ticks"

// startDemo registers the demo publisher: a table of the last five ticks,
// one new row a second, so `dse watch` shows data move.
func startDemo(ctx context.Context, n *dse.Node) (*dse.DataService, error) {
	svc := dse.NewDataService("demo", dse.Hooks{})
	var err error
	for range 50 {
		if err = n.Register(ctx, svc); err == nil || !errors.Is(err, dse.ErrServiceExists) {
			break
		}
		// A previous run's instance is still registered: remove it first.
		if derr := n.DeleteService(ctx, svc.ID()); derr != nil && !errors.Is(derr, dse.ErrServiceNotFound) {
			return nil, derr
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := int64(1); ; i++ {
			var rows []dse.Row
			for k := max(1, i-4); k <= i; k++ {
				rows = append(rows, dse.Row{k, fmt.Sprintf("tick %d", k)})
			}
			if _, _, err := svc.Publish(ctx, demoTable, rows, false); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "dse dev: demo publish: %v\n", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-n.Done():
				return
			case <-t.C:
			}
		}
	}()
	return svc, nil
}
