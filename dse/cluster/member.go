package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/raftlog"
	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

// Config holds a member's settings; package dse fills it from its own
// validated Config.
type Config struct {
	ID       string
	DataDir  string
	HTTPAddr string // told to peers in the registry
	// LogStore is raftlog.WAL or raftlog.BoltDB; empty keeps the data
	// dir's.
	LogStore          string
	Bootstrap         bool
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	ApplyTimeout      time.Duration
	LivenessGrace     time.Duration
	SnapshotRetain    int
	SnapshotThreshold uint64
}

// Member is one node's membership in the cluster: its Raft instance, log
// store and replicated registry, the commands it sends to the leader, and,
// while it leads, the cluster's liveness.
type Membership struct {
	cfg    Config
	id     string
	logger hclog.Logger
	trans  *transport.Transport
	fsm    *fsm.FSM

	netTran  *raft.NetworkTransport
	logs     raftlog.Store
	logKind  string
	raft     *raft.Raft
	existing bool // the data dir held Raft state at start

	once    *onceIDs
	applies *registryBatcher
	metrics *metrics

	caughtUp atomic.Bool   // applied the leader's commit index since start
	synced   chan struct{} // closed when caughtUp is set

	ctx      context.Context
	wg       sync.WaitGroup
	goMu     sync.Mutex
	goClosed bool
}

// logCacheSize is how many recent Raft entries a node keeps in memory (as
// Consul does, 512).
const logCacheSize = 512

// New starts Raft on trans (its Raft stream layer) with the log store and
// snapshots under cfg.DataDir, applying to f. With cfg.Bootstrap and no
// existing state it forms a new cluster of this member alone. Its
// goroutines end with ctx; Close, once ctx has ended, waits for them and
// releases what it holds.
func New(ctx context.Context, cfg Config, trans *transport.Transport, f *fsm.FSM, reg prometheus.Registerer, logger hclog.Logger) (*Membership, error) {
	c := &Membership{cfg: cfg, id: cfg.ID, logger: logger, trans: trans, fsm: f, ctx: ctx, synced: make(chan struct{})}
	c.once = newOnceIDs(c.id)
	c.metrics = newMetrics(c, reg)
	c.applies = newRegistryBatcher(c)
	if err := c.startRaft(); err != nil {
		if c.raft != nil {
			c.raft.Shutdown().Error()
		}
		if c.netTran != nil {
			c.netTran.Close()
		}
		if c.logs != nil {
			c.logs.Close()
		}
		return nil, err
	}
	c.goFunc(c.applies.run)
	c.goFunc(c.livenessLoop)
	c.goFunc(c.selfRegisterLoop)
	c.goFunc(c.syncLoop)
	return c, nil
}

func (c *Membership) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.id)
	rc.Logger = c.logger.Named("raft")
	rc.HeartbeatTimeout = c.cfg.HeartbeatTimeout
	rc.ElectionTimeout = c.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = c.cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = c.cfg.SnapshotThreshold
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("dse: raft config: %w", err)
	}
	store, kind, err := raftlog.Open(c.cfg.DataDir, c.cfg.LogStore, c.logger)
	if err != nil {
		return err
	}
	c.logs, c.logKind = store, kind
	snaps, err := raft.NewFileSnapshotStoreWithLogger(c.cfg.DataDir, c.cfg.SnapshotRetain, c.logger.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("dse: snapshot store: %w", err)
	}
	c.netTran = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  c.trans.RaftLayer(c.ctx),
		MaxPool: 3,
		Timeout: 2 * time.Second,
		Logger:  c.logger.Named("raft-net"),
	})
	if c.existing, err = raft.HasExistingState(store, store, snaps); err != nil {
		return fmt.Errorf("dse: read raft state: %w", err)
	}
	// Recent entries stay in memory: the leader reads every entry it
	// replicates back from the log store, and raft-wal serves each read
	// with a pread.
	logs, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		return fmt.Errorf("dse: raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, c.fsm, logs, store, snaps, c.netTran)
	if err != nil {
		return fmt.Errorf("dse: start raft: %w", err)
	}
	c.raft = r
	if c.cfg.Bootstrap && !c.existing {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(c.id),
			Address:  raft.ServerAddress(c.trans.Addr()),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("dse: bootstrap: %w", err)
		}
		c.logger.Info("bootstrapped a new cluster")
	}
	return nil
}

// goFunc runs f in a goroutine that Close waits for. Once Close has begun
// waiting, f is not started.
func (c *Membership) goFunc(f func()) {
	c.goMu.Lock()
	defer c.goMu.Unlock()
	if c.goClosed {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// ShutdownRaft stops Raft: every future waiting on it is answered. The
// member's context must have ended first (its loops stop with it).
func (c *Membership) ShutdownRaft() error {
	if c.raft == nil {
		return nil
	}
	return c.raft.Shutdown().Error()
}

// Close shuts Raft down if ShutdownRaft has not, waits for the member's
// goroutines (its context must have ended) and closes Raft's network
// transport and the log store.
func (c *Membership) Close() error {
	c.goMu.Lock()
	c.goClosed = true
	c.goMu.Unlock()
	var errs []error
	if c.raft != nil && c.raft.State() != raft.Shutdown {
		errs = append(errs, c.raft.Shutdown().Error())
	}
	c.wg.Wait()
	if c.netTran != nil {
		errs = append(errs, c.netTran.Close())
	}
	if c.logs != nil {
		errs = append(errs, c.logs.Close())
	}
	return errors.Join(errs...)
}

// ID returns the member's node id.
func (c *Membership) ID() string { return c.id }

// FSM returns the member's copy of the registry.
func (c *Membership) FSM() *fsm.FSM { return c.fsm }

// Existing reports whether the data dir held Raft state when the member
// started.
func (c *Membership) Existing() bool { return c.existing }

// HasState reports whether the member holds Raft state: resumed at start,
// or received since.
func (c *Membership) HasState() bool { return c.fsm.Index() > 0 || c.raft.LastIndex() > 0 }

// LogStore names the Raft log store the member runs on.
func (c *Membership) LogStore() string { return c.logKind }

// IsLeader reports whether this member is the Raft leader.
func (c *Membership) IsLeader() bool { return c.raft.State() == raft.Leader }

// Leader returns the current leader's id and cluster address, empty if
// none is known.
func (c *Membership) Leader() (id, addr string) {
	a, i := c.raft.LeaderWithID()
	return string(i), string(a)
}

// WaitLeader blocks until the cluster has a leader this member knows of.
func (c *Membership) WaitLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := c.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %v", errdefs.ErrNoLeader, ctx.Err())
		case <-c.ctx.Done():
			return "", errdefs.ErrClosed
		case <-t.C:
		}
	}
}

// Configuration returns the current Raft membership.
func (c *Membership) Configuration() ([]raft.Server, uint64, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, err
	}
	return f.Configuration().Servers, f.Index(), nil
}

// CaughtUp reports whether the member has applied, since it started, what
// the leader had committed when it asked (its registry is current).
func (c *Membership) CaughtUp() bool { return c.caughtUp.Load() }

// Synced is closed once the member has caught up (CaughtUp).
func (c *Membership) Synced() <-chan struct{} { return c.synced }

// InContact reports whether this member is in touch with the cluster: it
// leads, or heard from a leader lately. Past that, a leader counts it down
// and moves its work (datasources) to live nodes. "Lately" spans an
// election, and then the liveness grace the new leader gives before it
// moves anything: followers hear from no leader while one is elected.
func (c *Membership) InContact() bool {
	switch c.raft.State() {
	case raft.Leader:
		return true
	case raft.Shutdown:
		return false
	}
	last := c.raft.LastContact()
	return !last.IsZero() && time.Since(last) < c.OutOfContactAfter()
}

// OutOfContactAfter is how long a member goes without word from a leader
// before it counts itself cut off: the time to notice a lost leader (up to
// twice the heartbeat timeout) and elect another (up to twice the election
// timeout a round), plus the grace.
func (c *Membership) OutOfContactAfter() time.Duration {
	return 2*c.cfg.HeartbeatTimeout + 2*c.cfg.ElectionTimeout + c.cfg.LivenessGrace
}

// syncLoop marks the member caught up once its FSM has applied what the
// leader had committed when it asked (once per start).
func (c *Membership) syncLoop() {
	for c.ctx.Err() == nil {
		if err := c.syncWithLeader(); err == nil {
			c.caughtUp.Store(true)
			close(c.synced)
			return
		}
		select {
		case <-c.ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Membership) syncWithLeader() error {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	return c.Sync(ctx)
}

// Sync waits until this member's registry has applied what the leader had
// committed when it asked: a read after it sees every write committed
// before it, wherever it was made (etcd's ReadIndex). It costs a round
// trip to the leader.
func (c *Membership) Sync(ctx context.Context) error {
	if _, err := c.WaitLeader(ctx); err != nil {
		return err
	}
	if c.IsLeader() {
		return c.waitFuture(c.raft.Barrier(5 * time.Second))
	}
	_, addr := c.Leader()
	st, err := c.PeerStatus(ctx, addr)
	if err != nil {
		return err
	}
	return c.WaitApplied(ctx, st.CommitIndex)
}
