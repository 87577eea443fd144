package dse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/cluster"
	"dse.dev/dse/dse/publish"
	"dse.dev/dse/dse/push"
	"dse.dev/dse/dse/replica"
	"dse.dev/dse/dse/serve"
	"dse.dev/dse/dse/subscribe"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

// Node is one process's membership in a dse cluster: its cluster port, its
// Raft instance and replicated FSM (package cluster), and the services it
// hosts.
type Node struct {
	cfg    Config
	deps   Deps
	id     string
	logger hclog.Logger

	trans   *transport.Transport
	cluster *cluster.Membership
	fsm     *fsm.FSM

	metrics   *nodeMetrics
	reg       *prometheus.Registry
	local     *localServices     // the services running here
	batcher   *publish.Batcher   // their publications' group commit
	retention *publish.Retention // the budget of their tables' history
	pusher    *push.Pusher       // sequenced publications to subscriber nodes
	subs      *subscribe.Engine  // this node's subscriptions and delivery
	tables    *cache.Shared      // the tables its subscribers' caches share
	replicas  *replica.Engine    // the replicas of external services held here

	extMu    sync.Mutex
	external map[string]*externalService

	attach *serve.Sessions // attach.go: sessions of processes serving RPC actions from outside

	watches      atomic.Int64 // watches open (Watch), at most cfg.MaxWatches
	authSeen     atomic.Bool  // tokens were required (also across restarts)
	plainWarning sync.Once    // warnPlainClusterPort
	joinsFresh   bool         // joins with a token, without Raft state (AuthRequired)

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	goMu     sync.Mutex // goClosed, and goFunc's Add against Close's Wait
	goClosed bool
	stopOnce sync.Once
	stopErr  error
	done     chan struct{} // closed when the node has stopped (Close or Leave)
}

// identity is what DataDir remembers about the node across restarts.
type identity struct {
	ID        string `json:"id"`
	Advertise string `json:"advertise"`
	HTTPAddr  string `json:"http"`
}

const identityFile = "node.json"

// New starts a node with its settings and collaborators: it opens storage
// under cfg.DataDir, listens on the cluster port and starts Raft. With cfg.Bootstrap and no existing state it
// forms a new cluster; otherwise it resumes its state, or waits to be added
// through Join.
func New(cfg Config, deps Deps) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dse: config: %w", err)
	}
	logger := deps.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("dse: data dir: %w", err)
	}
	id, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if id.ID != "" && cfg.ID != "" && id.ID != cfg.ID {
		return nil, fmt.Errorf("dse: data dir %s belongs to node %q, not %q", cfg.DataDir, id.ID, cfg.ID)
	}
	if cfg.ID == "" {
		cfg.ID = id.ID
	}
	if cfg.ID == "" {
		return nil, errors.New("dse: config: ID is required on a node's first start")
	}
	logger = logger.With("node", cfg.ID)

	trans, err := transport.New(transport.Config{
		Bind:         cfg.Bind,
		Advertise:    cfg.Advertise,
		MaxFrameSize: cfg.MaxFrameSize,
		Logger:       logger.Named("transport"),
		Faults:       deps.Faults,
		TLS:          deps.ClusterTLS,
		ClusterKey:   cfg.ClusterKey,
	})
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:      cfg,
		deps:     deps,
		id:       cfg.ID,
		logger:   logger,
		trans:    trans,
		fsm:      fsm.New(),
		done:     make(chan struct{}),
		external: map[string]*externalService{},
		reg:      prometheus.NewRegistry(),
		attach:   serve.NewSessions(),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.cluster, err = cluster.New(n.ctx, cluster.Config{
		ID:                cfg.ID,
		DataDir:           cfg.DataDir,
		HTTPAddr:          cfg.HTTPAddr,
		LogStore:          cfg.LogStore,
		Bootstrap:         cfg.Bootstrap,
		HeartbeatTimeout:  cfg.HeartbeatTimeout,
		ElectionTimeout:   cfg.ElectionTimeout,
		ApplyTimeout:      cfg.ApplyTimeout,
		LivenessGrace:     cfg.LivenessGrace,
		SnapshotRetain:    cfg.SnapshotRetain,
		SnapshotThreshold: cfg.SnapshotThreshold,
	}, trans, n.fsm, n.reg, logger)
	if err != nil {
		n.cancel()
		trans.Close()
		return nil, err
	}
	n.initMetrics()
	n.replicas, err = replica.New(replica.Config{
		Dir:        cfg.DataDir,
		Node:       cfg.ID,
		Context:    n.ctx,
		Registry:   n.fsm,
		Writer:     n.cluster,
		Sender:     trans,
		Fetcher:    fetcher{n},
		Ready:      n.cluster.CaughtUp,
		Go:         n.goFunc,
		LagTimeout: cfg.ReplicaLagTimeout,
		AckTimeout: cfg.ApplyTimeout,
		Catchups:   n.metrics.replicaCatchups,
		Commits:    n.metrics.replicaCommits,
		Logger:     logger.Named("replica"),
	})
	if err != nil {
		n.cancel()
		n.cluster.ShutdownRaft()
		n.cluster.Close()
		trans.Close()
		return nil, err
	}
	n.goFunc(n.replicas.Run)
	n.joinsFresh = cfg.JoinsWithToken && !n.cluster.Existing()
	n.startEngine()
	if err := saveIdentity(cfg.DataDir, identity{ID: n.id, Advertise: trans.Addr(), HTTPAddr: cfg.HTTPAddr}); err != nil {
		n.Close()
		return nil, err
	}
	trans.SetHandler(n)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, authMarker)); err == nil {
		n.authSeen.Store(true)
	}
	if n.authSeen.Load() || cfg.BootstrapToken != "" || cfg.JoinsWithToken {
		n.warnPlainClusterPort()
	}
	if cfg.Bootstrap && (cfg.Secure || cfg.BootstrapToken != "") {
		n.goFunc(n.createBootstrapToken)
	}
	n.goFunc(n.noteAuthOnceSynced)
	n.goFunc(n.removeDeadWatches)
	n.goFunc(n.attachLoop)
	n.goFunc(n.placeLoop)
	n.goFunc(n.runLoop)
	return n, nil
}

// startEngine wires and starts the publish and subscribe paths: the
// batcher numbers publications through the cluster, the pusher sends them
// to the nodes of their subscribers, and the subscriber engine delivers
// what arrives here.
func (n *Node) startEngine() {
	n.local = &localServices{byID: map[string]*DataService{}}
	n.tables = cache.NewShared()
	n.subs = subscribe.New(subscribe.Config{
		Context:      n.ctx,
		Registry:     n.fsm,
		Fetcher:      fetcher{n},
		ResubTimeout: n.cfg.ResubTimeout,
		Go:           n.goFunc,
		Deliveries:   n.metrics.deliveries,
		Dropped:      n.metrics.dropped,
		Catchups:     n.metrics.resubscribes,
		Logger:       n.logger.Named("subscribe"),
	})
	n.pusher = push.New(push.Config{
		Node:     n.id,
		Registry: n.fsm,
		Sender:   n.trans,
		Local: func(pubs []*table.Publication, size int) {
			n.replicas.Offer(pubs, true)
			n.subs.Enqueue(pubs, time.Now(), size)
		},
		LocalReplica: func(pubs []*table.Publication) { n.replicas.Offer(pubs, true) },
		Dropped:      n.metrics.dropped,
		Faults:       n.deps.Faults,
		Logger:       n.logger.Named("push"),
	})
	n.retention = publish.NewRetention(n.cfg.HistoryBytes)
	var sequencer publish.Sequencer = n.cluster
	if n.deps.Sequencer != nil {
		sequencer = n.deps.Sequencer
	}
	n.batcher = publish.NewBatcher(publish.Config{
		Node:         n.id,
		Registry:     n.fsm,
		Sequencer:    sequencer,
		Pusher:       n.pusher,
		Durability:   n.replicas,
		Early:        n.pusher,
		Retention:    n.retention,
		ApplyTimeout: n.cfg.ApplyTimeout,
		Publications: n.metrics.publications,
		Commits:      n.metrics.seqCommits,
	})
	n.goFunc(func() { n.batcher.Run(n.ctx) })
	n.goFunc(n.subs.Run)
	n.goFunc(n.watchRegistry)
}

func loadIdentity(dir string) (identity, error) {
	var id identity
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return id, fmt.Errorf("dse: read identity: %w", err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("dse: %s is corrupt: %w", filepath.Join(dir, identityFile), err)
	}
	return id, nil
}

// StoredIdentity returns the node id, cluster and HTTP addresses remembered in
// dir, empty if the dir holds no node yet.
func StoredIdentity(dir string) (id, advertise, httpAddr string, err error) {
	i, err := loadIdentity(dir)
	return i.ID, i.Advertise, i.HTTPAddr, err
}

func saveIdentity(dir string, id identity) error {
	b, _ := json.MarshalIndent(id, "", "  ")
	tmp := filepath.Join(dir, identityFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("dse: write identity: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, identityFile)); err != nil {
		return fmt.Errorf("dse: write identity: %w", err)
	}
	return nil
}

// HasState reports whether the node holds Raft state: resumed at start, or
// received since.
func (n *Node) HasState() bool { return n.cluster.HasState() }

// LogStore names the Raft log store the node runs on.
func (n *Node) LogStore() string { return n.cluster.LogStore() }

// ID returns the node's id.
func (n *Node) ID() string { return n.id }

// Addr returns the node's cluster address.
func (n *Node) Addr() string { return n.trans.Addr() }

// HTTPAddr returns the HTTP address the node advertises.
func (n *Node) HTTPAddr() string { return n.cfg.HTTPAddr }

// FSM returns the node's local copy of the replicated state, for reads.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Done is closed once the node has stopped, by Close or after Leave.
func (n *Node) Done() <-chan struct{} { return n.done }

// goFunc runs f in a goroutine that Close waits for. Once Close has
// begun waiting, f is not started: it would find the node closed (and
// adding to a WaitGroup being waited on at zero is a misuse).
func (n *Node) goFunc(f func()) { n.tryGo(f) }

// tryGo is goFunc, reporting whether f was started.
func (n *Node) tryGo(f func()) bool {
	n.goMu.Lock()
	defer n.goMu.Unlock()
	if n.goClosed {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// Close stops the node: its services, Raft, and the cluster port. It is safe
// to call more than once and from several goroutines.
func (n *Node) Close() error {
	n.stopOnce.Do(func() {
		n.cancel()
		errs := []error{n.cluster.ShutdownRaft()}
		n.goMu.Lock()
		n.goClosed = true
		n.goMu.Unlock()
		n.wg.Wait()
		errs = append(errs, n.cluster.Close(), n.trans.Close())
		n.stopErr = errors.Join(errs...)
		close(n.done)
		n.logger.Info("node stopped")
	})
	return n.stopErr
}

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.cluster.IsLeader() }

// Leader returns the current leader's id and cluster address, empty if none
// is known.
func (n *Node) Leader() (id, addr string) { return n.cluster.Leader() }

// WaitLeader blocks until the cluster has a leader this node knows of.
func (n *Node) WaitLeader(ctx context.Context) (string, error) { return n.cluster.WaitLeader(ctx) }

// applyErr commits a registry command whose only result is an error,
// through the registry's group commit, and returns once this node's FSM
// has applied it.
func (n *Node) applyErr(ctx context.Context, t fsm.CommandType, body any) error {
	return n.cluster.Write(ctx, t, body)
}
