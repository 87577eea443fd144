package cli

import (
	"context"
	"encoding/json"
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
		var join []string
		if i > 0 {
			join = []string{nodes[0].node.HTTPAddr()}
		}
		rn, err := startNode(ctx, nodeOptions{cfg: cfg, deps: dse.Deps{Logger: logger}, join: join, joinTimeout: 30 * time.Second})
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
	demoFile, err := startDemo(ctx, nodes[0].node, dir)
	if err != nil {
		return fmt.Errorf("start the demo datasource: %w", err)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "dse dev: %d-node cluster, data in %s\n\n", n, dir)
	for _, rn := range nodes {
		fmt.Fprintf(w, "  %-6s http %-16s cluster %s\n", rn.node.ID(), rn.node.HTTPAddr(), rn.node.Addr())
	}
	a := nodes[0].node.HTTPAddr()
	b := nodes[len(nodes)-1].node.HTTPAddr()
	fmt.Fprintf(w, "\nWeb console: http://%s/ui/ (every node serves one at /ui/)\n", a)
	fmt.Fprintf(w, "\nDatasource \"demo\" (driver file, following %s) publishes table %q, changing every second.\n", demoFile, demoTable)
	fmt.Fprintf(w, "\nTry, in another terminal:\n")
	fmt.Fprintf(w, "  go run . --addr %s watch %s %s\n", b, "demo", demoTable)
	fmt.Fprintf(w, "  go run . --addr %s get %s %s\n", a, "demo", demoTable)
	fmt.Fprintf(w, "  go run . --addr %s services list\n", b)
	fmt.Fprintf(w, "  go run . --addr %s rpc %s ping --args '{\"hello\":\"dse\"}'\n", b, "demo")
	fmt.Fprintf(w, "  go run . --addr %s datasources status demo\n", a)
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

// startDemo adds the demo datasource: a file driver following a JSON file
// that dev rewrites every second with the last five ticks, so `dse watch`
// shows data move (and moves with the datasource if its node stops).
func startDemo(ctx context.Context, n *dse.Node, dir string) (string, error) {
	path := filepath.Join(dir, "demo.json")
	write := func(i int64) error {
		var rows [][]any
		for k := max(1, i-4); k <= i; k++ {
			rows = append(rows, []any{k, fmt.Sprintf("tick %d", k)})
		}
		b, _ := json.Marshal(map[string]any{demoTable: rows})
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			return err
		}
		return os.Rename(path+".tmp", path)
	}
	if err := write(1); err != nil {
		return "", err
	}
	// On a restart, node 1 may not have replayed the log that holds the
	// datasource yet: a name already taken is the demo of a run before.
	if _, err := n.GetDatasource("demo", true); errors.Is(err, dse.ErrNotFound) {
		_, err := n.AddDatasource(ctx, dse.DatasourceSpec{
			Name: "demo", Driver: "file", Enabled: true,
			Description: "dse dev's demo: a JSON file rewritten every second",
			Config:      map[string]any{"path": path, "poll_interval": "250ms"},
		})
		if err != nil && !errors.Is(err, dse.ErrExists) {
			return "", err
		}
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := int64(2); ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := write(i); err != nil {
				fmt.Fprintf(os.Stderr, "dse dev: demo file: %v\n", err)
			}
		}
	}()
	return path, nil
}
