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
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

// Node is one process's membership in a dse cluster: its cluster port, its
// Raft instance and replicated FSM, and the services it hosts.
type Node struct {
	cfg    Config
	id     string
	logger hclog.Logger

	trans   *transport.Transport
	netTran *raft.NetworkTransport
	logs    logStore
	logKind string // LogStoreWAL or LogStoreBoltDB
	raft    *raft.Raft
	fsm     *fsm.FSM

	metrics *nodeMetrics
	reg     *prometheus.Registry
	svcs    *services     // the engine: hosted services, subscriptions, group commit
	applies *applyBatcher // the registry's group commit
	once    *onceIDs      // ids of the commands sent through leaderDo
	store   *tableStore

	extMu    sync.Mutex
	external map[string]*externalService

	attach *attachState // attach.go: sessions of processes serving RPC actions from outside

	caughtUp     atomic.Bool  // applied the leader's commit index since start
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

// New starts a node: it opens storage under cfg.DataDir, listens on the
// cluster port and starts Raft. With cfg.Bootstrap and no existing state it
// forms a new cluster; otherwise it resumes its state, or waits to be added
// through Join.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dse: config: %w", err)
	}
	logger := cfg.Logger
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
		Faults:       cfg.Faults,
		TLS:          cfg.ClusterTLS,
		ClusterKey:   cfg.ClusterKey,
	})
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:      cfg,
		id:       cfg.ID,
		logger:   logger,
		trans:    trans,
		fsm:      fsm.New(),
		done:     make(chan struct{}),
		external: map[string]*externalService{},
		attach:   newAttachState(), // attach.go
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.svcs = newServices(n)
	n.applies = newApplyBatcher(n)
	n.once = newOnceIDs(n.id)
	n.goFunc(n.applies.run) // before Raft: its first writes may come at once
	if n.store, err = openTableStore(cfg.DataDir); err != nil {
		n.cancel()
		trans.Close()
		return nil, err
	}
	if err := n.startRaft(); err != nil {
		n.cancel()
		trans.Close()
		n.store.close()
		if n.logs != nil {
			n.logs.Close()
		}
		return nil, err
	}
	if err := saveIdentity(cfg.DataDir, identity{ID: n.id, Advertise: trans.Addr(), HTTPAddr: cfg.HTTPAddr}); err != nil {
		n.Close()
		return nil, err
	}
	trans.SetHandler(n)
	n.initMetrics()
	n.goFunc(n.livenessLoop)
	n.goFunc(n.selfRegisterLoop)
	n.svcs.start()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, authMarker)); err == nil {
		n.authSeen.Store(true)
	}
	if n.authSeen.Load() || cfg.BootstrapToken != "" || cfg.JoinsWithToken {
		n.warnPlainClusterPort()
	}
	n.goFunc(n.catchUpLoop)
	n.goFunc(n.restoreLocal)
	n.goFunc(n.attachLoop) // attach.go
	n.goFunc(n.placeLoop)
	n.goFunc(n.runLoop)
	return n, nil
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

// logCacheSize is how many recent Raft entries a node keeps in memory (as
// Consul does, 512).
const logCacheSize = 512

func (n *Node) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.id)
	rc.Logger = n.logger.Named("raft")
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("dse: raft config: %w", err)
	}
	store, kind, err := openLogStore(n.cfg.DataDir, n.cfg.LogStore, n.logger)
	if err != nil {
		return err
	}
	n.logs = store
	n.logKind = kind
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, n.cfg.SnapshotRetain, n.logger.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("dse: snapshot store: %w", err)
	}
	n.netTran = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  n.trans.RaftLayer(n.ctx),
		MaxPool: 3,
		Timeout: 2 * time.Second,
		Logger:  n.logger.Named("raft-net"),
	})
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("dse: read raft state: %w", err)
	}
	// Recent entries stay in memory: the leader reads every entry it
	// replicates back from the log store, and raft-wal serves each read
	// with a pread.
	logs, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		return fmt.Errorf("dse: raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, n.netTran)
	if err != nil {
		n.netTran.Close()
		return fmt.Errorf("dse: start raft: %w", err)
	}
	n.raft = r
	n.joinsFresh = n.cfg.JoinsWithToken && !existing
	if n.cfg.Bootstrap && (n.cfg.Secure || n.cfg.BootstrapToken != "") {
		n.goFunc(n.createBootstrapToken)
	}
	if n.cfg.Bootstrap && !existing {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(n.id),
			Address:  raft.ServerAddress(n.trans.Addr()),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			r.Shutdown()
			n.netTran.Close()
			return fmt.Errorf("dse: bootstrap: %w", err)
		}
		n.logger.Info("bootstrapped a new cluster")
	}
	return nil
}

// HasState reports whether the node resumed existing Raft state at start.
func (n *Node) HasState() bool {
	return n.fsm.Index() > 0 || n.raft.LastIndex() > 0
}

// LogStore names the Raft log store the node runs on.
func (n *Node) LogStore() string { return n.logKind }

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
func (n *Node) goFunc(f func()) {
	n.goMu.Lock()
	defer n.goMu.Unlock()
	if n.goClosed {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Close stops the node: its services, Raft, and the cluster port. It is safe
// to call more than once and from several goroutines.
func (n *Node) Close() error {
	n.stopOnce.Do(func() {
		n.cancel()
		var errs []error
		if n.raft != nil {
			errs = append(errs, n.raft.Shutdown().Error())
		}
		n.goMu.Lock()
		n.goClosed = true
		n.goMu.Unlock()
		n.wg.Wait()
		if n.netTran != nil {
			errs = append(errs, n.netTran.Close())
		}
		errs = append(errs, n.trans.Close())
		errs = append(errs, n.logs.Close(), n.store.close())
		n.stopErr = errors.Join(errs...)
		close(n.done)
		n.logger.Info("node stopped")
	})
	return n.stopErr
}

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's id and cluster address, empty if none
// is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// WaitLeader blocks until the cluster has a leader this node knows of.
func (n *Node) WaitLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := n.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %v", ErrNoLeader, ctx.Err())
		case <-n.ctx.Done():
			return "", ErrClosed
		case <-t.C:
		}
	}
}

// configuration returns the current Raft membership.
func (n *Node) configuration() ([]raft.Server, uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, err
	}
	return f.Configuration().Servers, f.Index(), nil
}
