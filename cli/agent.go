package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	ucli "github.com/urfave/cli/v2"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/pki"
	"dse.dev/dse/dse/table"
)

func agentCommand() *ucli.Command {
	d := dse.DefaultConfig()
	return &ucli.Command{
		Name:     "agent",
		Category: "server",
		Usage:    "run one node in the foreground until SIGINT/SIGTERM",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "id", Usage: "node id (remembered in --data-dir)"},
			&ucli.StringFlag{Name: "data-dir", Usage: "where the node keeps its Raft log, snapshots and identity (required)"},
			&ucli.StringFlag{Name: "bind", Usage: "cluster port (Raft and data)", Value: d.Bind},
			&ucli.StringFlag{Name: "advertise", Usage: "cluster address peers dial (default: the bound address)"},
			&ucli.StringFlag{Name: "http", Usage: "HTTP API address", Value: d.HTTPAddr},
			&ucli.BoolFlag{Name: "bootstrap", Usage: "start a new cluster with this node alone"},
			&ucli.StringSliceFlag{Name: "join", Usage: "HTTP address(es) of members to join through"},
			&ucli.BoolFlag{Name: "nonvoter", Usage: "join as a non-voting member"},
			&ucli.DurationFlag{Name: "resub-timeout", Usage: "gap or stale-table time before a subscriber catches up", Value: d.ResubTimeout},
			&ucli.DurationFlag{Name: "apply-timeout", Usage: "how long a registry write, or an external publication with its replicas' disks, may take before it fails", Value: d.ApplyTimeout},
			&ucli.DurationFlag{Name: "liveness-grace", Usage: "heartbeat failure time before the leader records a node down", Value: d.LivenessGrace},
			&ucli.IntFlag{Name: "max-watches", Usage: "watches open on this node at once, at most", Value: d.MaxWatches},
			&ucli.StringFlag{Name: "log-store", Usage: "Raft log store for a new --data-dir: wal (hashicorp/raft-wal, one fsync per append) or boltdb (hashicorp/raft-boltdb, two per commit) (default: what --data-dir holds, wal if new)"},
			&ucli.DurationFlag{Name: "join-timeout", Usage: "how long to keep trying to join", Value: time.Minute},
			&ucli.StringFlag{Name: "log-level", Usage: "trace, debug, info, warn or error", Value: "info"},
			&ucli.BoolFlag{Name: "log-json", Usage: "log JSON lines"},
			&ucli.StringFlag{Name: "tls-cert", Usage: "this node's certificate (mutual TLS on the cluster port, HTTPS on --http)"},
			&ucli.StringFlag{Name: "tls-key", Usage: "the certificate's key"},
			&ucli.StringFlag{Name: "tls-ca", Usage: "the cluster CA"},
			&ucli.StringFlag{Name: "bootstrap-token", Usage: "with --bootstrap: the first admin token (default: generated and printed once when TLS is on)", EnvVars: []string{"DSE_BOOTSTRAP_TOKEN"}},
			&ucli.StringFlag{Name: "token", Usage: "token to join a secured cluster with", EnvVars: []string{"DSE_TOKEN"}},
			&ucli.StringFlag{Name: "cluster-key", Usage: "a secret every node of the cluster is given (16 characters or more): the cluster port talks only to peers that hold it; guards the port without TLS", EnvVars: []string{"DSE_CLUSTER_KEY"}},
			&ucli.IntFlag{Name: "max-frame", Usage: "largest cluster-port frame, bytes", Value: d.MaxFrameSize},
			&ucli.Int64Flag{Name: "max-body", Usage: "largest HTTP request body, bytes", Value: api.DefaultMaxBody},
			&ucli.IntFlag{Name: "max-rows", Usage: "most rows in one table or delta", Value: table.DefaultLimits.MaxRows},
			&ucli.IntFlag{Name: "max-columns", Usage: "most values in one row", Value: table.DefaultLimits.MaxColumns},
			&ucli.IntFlag{Name: "max-string", Usage: "longest string or bytes value, bytes", Value: table.DefaultLimits.MaxString},
		},
		Action: runAgent,
	}
}

// nodeOptions is what starting one node needs, from agent flags or dev.
type nodeOptions struct {
	cfg         dse.Config
	deps        dse.Deps
	join        []string
	joinTimeout time.Duration
	httpTLS     *tls.Config // HTTPS for the API
	joinTLS     *tls.Config // trust for joining over HTTPS
	joinToken   string
	maxBody     int64
}

// runningNode is a node with its HTTP server.
type runningNode struct {
	node *dse.Node
	http *api.Server
	ln   net.Listener
	errc chan error
}

// startNode starts a node and its HTTP API, then joins the cluster if asked
// and the node has no state yet; a node with state rejoins by itself, and
// with --join asks again if it finds no leader (it left, or was removed).
func startNode(ctx context.Context, o nodeOptions) (*runningNode, error) {
	ln, err := net.Listen("tcp", o.cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --http %s: %w", o.cfg.HTTPAddr, err)
	}
	o.cfg.HTTPAddr = ln.Addr().String()
	node, err := dse.New(o.cfg, o.deps)
	if err != nil {
		ln.Close()
		return nil, err
	}
	rn := &runningNode{node: node, ln: ln, errc: make(chan error, 1)}
	rn.http = api.NewServer(node, api.ServerConfig{Logger: o.deps.Logger.Named("http"), TLS: o.httpTLS, MaxBody: o.maxBody})
	go func() { rn.errc <- rn.http.Serve(ln) }()
	if len(o.join) > 0 && !node.HasState() {
		jctx, cancel := context.WithTimeout(ctx, o.joinTimeout)
		err := api.JoinCluster(jctx, o.join, o.joinTLS, o.joinToken, dse.JoinRequest{
			ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr(), Voter: !o.cfg.NonVoter,
		})
		cancel()
		if err != nil {
			rn.stop()
			return nil, err
		}
	} else if len(o.join) > 0 {
		go rejoin(node, o)
	} else if !o.cfg.Bootstrap && !node.HasState() {
		o.deps.Logger.Warn("this node neither starts a cluster (--bootstrap) nor joins one (--join ADDR): it waits until a member adds it (POST /v1/members)")
	}
	return rn, nil
}

// rejoinAfter is how long a node back on its data dir waits for a leader
// before it asks to join again: a cluster restarting as a whole elects one
// well within it.
const rejoinAfter = 5 * time.Second

// rejoin asks the --join addresses to take node (back) in while it finds
// no leader: a member that left, or was removed, is never reached by one
// again. Asking as a current member changes nothing.
func rejoin(node *dse.Node, o nodeOptions) {
	for {
		select {
		case <-node.Done():
			return
		case <-time.After(rejoinAfter):
		}
		if id, _ := node.Leader(); id != "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.joinTimeout)
		err := api.JoinCluster(ctx, o.join, o.joinTLS, o.joinToken, dse.JoinRequest{
			ID: node.ID(), Addr: node.Addr(), HTTPAddr: node.HTTPAddr(), Voter: !o.cfg.NonVoter,
		})
		cancel()
		if err == nil {
			o.deps.Logger.Info("no leader found: joined the cluster again", "via", o.join)
			return
		}
		o.deps.Logger.Warn("no leader found, and joining again failed; retrying", "via", o.join, "error", err)
	}
}

func (rn *runningNode) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	herr := rn.http.Shutdown(ctx)
	nerr := rn.node.Close()
	return errors.Join(nerr, herr)
}

func newLogger(name, level string, jsonFormat bool) (hclog.Logger, error) {
	lvl := hclog.LevelFromString(level)
	if lvl == hclog.NoLevel {
		return nil, usagef("--log-level %q is not one of trace, debug, info, warn, error", level)
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: lvl, Output: os.Stderr, JSONFormat: jsonFormat, Exclude: shutdownNoise}), nil
}

// shutdownNoise drops hashicorp/raft's errors about connections a peer
// closed while shutting down: they say nothing an operator can act on.
func shutdownNoise(_ hclog.Level, msg string, args ...any) bool {
	if msg != "failed to decode incoming command" && msg != "failed to flush response" {
		return false
	}
	s := fmt.Sprint(args...)
	return strings.Contains(s, "use of closed network connection") || strings.Contains(s, "transport shutdown") || strings.Contains(s, "connection reset by peer")
}

func runAgent(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	if c.String("data-dir") == "" {
		return usagef("agent needs --data-dir")
	}
	logger, err := newLogger("dse", c.String("log-level"), c.Bool("log-json"))
	if err != nil {
		return err
	}
	cfg := dse.DefaultConfig()
	cfg.ID = c.String("id")
	cfg.DataDir = c.String("data-dir")
	cfg.Bind = c.String("bind")
	cfg.Advertise = c.String("advertise")
	cfg.HTTPAddr = c.String("http")
	cfg.Bootstrap = c.Bool("bootstrap")
	cfg.NonVoter = c.Bool("nonvoter")
	cfg.ResubTimeout = c.Duration("resub-timeout")
	if cfg.LogStore = c.String("log-store"); !validLogStore(cfg.LogStore, true) {
		return usagef("--log-store %q: want wal or boltdb", cfg.LogStore)
	}
	cfg.LivenessGrace = c.Duration("liveness-grace")
	cfg.ApplyTimeout = c.Duration("apply-timeout")
	if cfg.MaxWatches = c.Int("max-watches"); cfg.MaxWatches < 1 {
		return usagef("--max-watches %d: must be at least 1", cfg.MaxWatches)
	}
	// A restart on a data dir resumes the addresses it had, unless told
	// otherwise.
	storedID, adv, httpAddr, err := dse.StoredIdentity(cfg.DataDir)
	if err != nil {
		return err
	}
	if cfg.ID == "" && storedID == "" {
		return usagef("--id is required on a node's first start (a new --data-dir)")
	}
	if !c.IsSet("bind") && adv != "" {
		cfg.Bind = adv
	}
	if !c.IsSet("http") && httpAddr != "" {
		cfg.HTTPAddr = httpAddr
	}
	var join []string
	for _, j := range c.StringSlice("join") {
		for _, a := range strings.Split(j, ",") {
			if a = strings.TrimSpace(a); a != "" {
				join = append(join, a)
			}
		}
	}
	if cfg.Bootstrap && len(join) > 0 {
		return usagef("--bootstrap and --join are exclusive: a node either starts a cluster or joins one")
	}
	cfg.MaxFrameSize = c.Int("max-frame")
	lim := table.Limits{MaxRows: c.Int("max-rows"), MaxColumns: c.Int("max-columns"), MaxString: c.Int("max-string")}
	if lim.MaxRows < 1 || lim.MaxColumns < 1 || lim.MaxString < 1 {
		return usagef("--max-rows, --max-columns and --max-string must be positive")
	}
	table.DefaultLimits = lim
	if c.Int64("max-body") < 1024 {
		return usagef("--max-body %d: want at least 1024", c.Int64("max-body"))
	}
	if key := c.String("cluster-key"); key != "" {
		cfg.ClusterKey = []byte(key)
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%s", configFlags.Replace(err.Error()))
	}
	opts := nodeOptions{cfg: cfg, deps: dse.Deps{Logger: logger}, join: join, joinTimeout: c.Duration("join-timeout"), joinToken: c.String("token"), maxBody: c.Int64("max-body")}
	// The node applies it only when it has no Raft state yet: a member
	// back on its own knows from its registry (and its auth-required
	// marker).
	opts.cfg.JoinsWithToken = opts.joinToken != "" && len(join) > 0

	files := pki.Files{Cert: c.String("tls-cert"), Key: c.String("tls-key"), CA: c.String("tls-ca")}
	if files != (pki.Files{}) {
		if files.Cert == "" || files.Key == "" || files.CA == "" {
			return usagef("TLS needs all of --tls-cert, --tls-key and --tls-ca")
		}
		cluster, https, err := pki.Configs(files)
		if err != nil {
			return err
		}
		opts.deps.ClusterTLS, opts.httpTLS = cluster, https
		if opts.joinTLS, err = pki.ClientConfig(files.CA); err != nil {
			return err
		}
		opts.cfg.Secure = true
	}
	if bt := c.String("bootstrap-token"); bt != "" {
		if !cfg.Bootstrap {
			return usagef("--bootstrap-token goes with --bootstrap")
		}
		if len(bt) < 16 {
			return usagef("--bootstrap-token must be at least 16 characters")
		}
		opts.cfg.BootstrapToken = bt
	}
	out := c.App.Writer
	opts.deps.OnBootstrapToken = func(secret string) {
		fmt.Fprintf(out, "bootstrap admin token (shown once): %s\n", secret)
	}
	rn, err := startNode(c.Context, opts)
	if err != nil {
		return err
	}
	scheme := "http"
	if opts.httpTLS != nil {
		scheme = "https"
	}
	logger.Info("agent started", "id", rn.node.ID(), "cluster", rn.node.Addr(), "http", rn.node.HTTPAddr(), "console", scheme+"://"+rn.node.HTTPAddr()+"/ui/")
	fmt.Fprintf(c.App.Writer, "dse agent %s: cluster %s, http %s\n", rn.node.ID(), rn.node.Addr(), rn.node.HTTPAddr())
	select {
	case <-c.Context.Done():
		logger.Info("shutting down")
	case <-rn.node.Done():
		logger.Info("node stopped")
	case err := <-rn.errc:
		rn.stop()
		return fmt.Errorf("http server: %w", err)
	}
	return rn.stop()
}

// configFlags names, in dse.Config's errors, the flags that set the fields.
var configFlags = strings.NewReplacer(
	"ID (", "--id (",
	"ResubTimeout (", "--resub-timeout (",
	"LivenessGrace (", "--liveness-grace (",
	"ApplyTimeout (", "--apply-timeout (",
	"MaxFrameSize (", "--max-frame (",
	"MaxWatches (", "--max-watches (",
	"LogStore (", "--log-store (",
	"ClusterKey (", "--cluster-key (",
)
