package dse

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"

	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/publish"
	"dse.dev/dse/dse/raftlog"
	"dse.dev/dse/transport"
)

// Config holds a node's settings. DefaultConfig gives every field a value;
// New validates them before anything starts.
type Config struct {
	// ID names the node in the cluster. Stored in DataDir on first start; a
	// restart may leave it empty.
	ID string
	// DataDir holds the Raft log, stable store, snapshots and node identity.
	DataDir string
	// Bind is the cluster port (Raft and dse frames). Port 0 picks one.
	Bind string
	// Advertise is the cluster address peers dial; defaults to Bind's
	// resolved address.
	Advertise string
	// HTTPAddr is the HTTP API address peers and clients are told about; the
	// HTTP server itself is run by the caller (package dse/api).
	HTTPAddr string
	// Bootstrap starts a new single-node cluster when DataDir holds no state.
	Bootstrap bool
	// NonVoter joins as a non-voting member.
	NonVoter bool
	// ResubTimeout is how long a subscriber tolerates a sequence gap, or an
	// FSM seqnum ahead of what it applied, before catching up.
	ResubTimeout time.Duration
	// HistorySize is how many recent publications a publisher keeps per
	// table (up to twice as many) for subscribers that catch up; fewer
	// when their rows outweigh the table's own (8 at least then) or the
	// node's HistoryBytes is spent. Further back, they get a snapshot.
	HistorySize int
	// HistoryBytes bounds the history of every table of the node together
	// (about, in bytes of memory): past it the oldest deltas node-wide are
	// dropped first. Zero or less: only HistorySize bounds it.
	HistoryBytes int64
	// ReplicaLagTimeout is how long the owner of a replicated external
	// service waits for an in-sync replica to acknowledge a publication
	// before it takes the replica out of the in-sync set.
	ReplicaLagTimeout time.Duration
	// ReplicaReplaceAfter is how long a replica's node may be down before
	// the leader replaces the replica on another live node.
	ReplicaReplaceAfter time.Duration
	// LivenessGrace is how long the leader waits, after a node stops
	// answering heartbeats, before it records the node down.
	LivenessGrace time.Duration
	// HeartbeatTimeout and ElectionTimeout tune Raft (see hashicorp/raft).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// ApplyTimeout bounds one Raft apply on the leader.
	ApplyTimeout time.Duration
	// LogStore is the Raft log store: LogStoreWAL or LogStoreBoltDB. Empty
	// keeps what DataDir already holds, and LogStoreWAL for a new one.
	LogStore string
	// SnapshotRetain is how many Raft snapshots are kept on disk.
	SnapshotRetain int
	// SnapshotThreshold is how many log entries trigger a Raft snapshot.
	SnapshotThreshold uint64
	// MaxFrameSize bounds one cluster-port frame.
	MaxFrameSize int
	// MaxWatches bounds the watches (`dse watch`, Node.Watch) open on the
	// node at once: each holds a subscriber in the registry, and a read
	// token may open them.
	MaxWatches int
	// MaxHookQueue bounds the publications a local subscriber's hooks
	// may fall behind by (0: 65,536, as NATS's pending limit of a
	// subscription). Past it, or past 1,048,576 rows, the subscriber is cut
	// off: its hooks skip what they had queued and get each table next
	// as a snapshot of its cache (dse_subscriber_cutoffs_total counts
	// them).
	MaxHookQueue int
	// ClusterKey, when set, is a secret every node of the cluster holds:
	// the cluster port talks only to peers that prove they hold it
	// (transport.Config.ClusterKey). It guards the port where TLS does not.
	ClusterKey []byte
	// Secure turns authentication on at bootstrap: the new cluster's first
	// admin token is BootstrapToken, or a generated one handed to
	// Deps.OnBootstrapToken (to be printed once).
	Secure         bool
	BootstrapToken string
	// JoinsWithToken says the node joins its cluster with a token: started
	// without Raft state, until it has caught up with the cluster's
	// registry (and so learned whether the cluster holds tokens), it
	// serves no request without one.
	JoinsWithToken bool
}

// Raft log stores a node can keep its log and stable state in (package
// raftlog).
const (
	// LogStoreWAL is hashicorp/raft-wal: one fsync per append. The default.
	LogStoreWAL = raftlog.WAL
	// LogStoreBoltDB is hashicorp/raft-boltdb/v2: two fsyncs per commit.
	LogStoreBoltDB = raftlog.BoltDB
)

// Deps are a node's collaborators: what it is given rather than told, kept
// apart from the settings of Config (as Consul's fsm keeps its Deps). None
// is required.
type Deps struct {
	// Logger receives the node's structured logs (nil: nowhere).
	Logger hclog.Logger
	// ClusterTLS, when set, is the cluster port's mutual-TLS config (package
	// pki): peers without a certificate from the cluster CA are refused.
	ClusterTLS *tls.Config
	// Faults, when set, injects faults into the node's pushes and one-way
	// frames, and loses replies, as its rules say (tests and chaos runs).
	// Rules may change while the node runs.
	Faults *transport.Faults
	// OnBootstrapToken receives the cluster's first admin token when the
	// node generated it (Config.Secure without BootstrapToken), to be shown
	// once.
	OnBootstrapToken func(secret string)
	// Sequencer, when set, numbers this node's publications instead of
	// the registry (nil: Raft, through the leader). Benchmarks only: `dse
	// bench publish --baseline` counts seqnums locally to measure the push
	// path without Raft; subscribers on other nodes do not see the
	// registry's seqnums move.
	Sequencer publish.Sequencer
}

// DefaultConfig returns the defaults for every setting but ID and DataDir.
func DefaultConfig() Config {
	return Config{
		Bind:                "127.0.0.1:7400",
		HTTPAddr:            "127.0.0.1:7401",
		ResubTimeout:        2 * time.Second,
		HistorySize:         1024,
		HistoryBytes:        64 << 20,
		LivenessGrace:       1500 * time.Millisecond,
		ReplicaLagTimeout:   time.Second,
		ReplicaReplaceAfter: 30 * time.Second,
		HeartbeatTimeout:    time.Second,
		ElectionTimeout:     time.Second,
		ApplyTimeout:        10 * time.Second,
		SnapshotRetain:      3,
		SnapshotThreshold:   8192,
		MaxFrameSize:        64 << 20,
		MaxWatches:          1024,
	}
}

// Validate checks a Config, naming the first bad field and its value.
func (c *Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("DataDir is required")
	case c.ID != "" && !name.Valid(c.ID):
		return fmt.Errorf("ID (%q) must be %s", c.ID, name.Rule)
	case c.ResubTimeout < 10*time.Millisecond:
		return fmt.Errorf("ResubTimeout (%s) must be at least 10ms", c.ResubTimeout)
	case c.ReplicaLagTimeout < 10*time.Millisecond:
		return fmt.Errorf("ReplicaLagTimeout (%s) must be at least 10ms", c.ReplicaLagTimeout)
	case c.ReplicaReplaceAfter < time.Second:
		return fmt.Errorf("ReplicaReplaceAfter (%s) must be at least 1s", c.ReplicaReplaceAfter)
	case c.LivenessGrace < 10*time.Millisecond:
		return fmt.Errorf("LivenessGrace (%s) must be at least 10ms", c.LivenessGrace)
	case c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < c.HeartbeatTimeout:
		return fmt.Errorf("ElectionTimeout (%s) cannot be smaller than HeartbeatTimeout (%s), which must be at least 5ms", c.ElectionTimeout, c.HeartbeatTimeout)
	case c.ApplyTimeout <= 0:
		return fmt.Errorf("ApplyTimeout (%s) must be positive", c.ApplyTimeout)
	case c.HistorySize < 1:
		return fmt.Errorf("HistorySize (%d) must be at least 1", c.HistorySize)
	case c.LogStore != "" && c.LogStore != LogStoreWAL && c.LogStore != LogStoreBoltDB:
		return fmt.Errorf("LogStore (%q) must be %q or %q", c.LogStore, LogStoreWAL, LogStoreBoltDB)
	case c.SnapshotRetain < 1:
		return fmt.Errorf("SnapshotRetain (%d) must be at least 1", c.SnapshotRetain)
	case c.MaxFrameSize < 1<<16:
		return fmt.Errorf("MaxFrameSize (%d) must be at least 65536", c.MaxFrameSize)
	case c.MaxWatches < 1:
		return fmt.Errorf("MaxWatches (%d) must be at least 1", c.MaxWatches)
	case c.MaxHookQueue < 0:
		return fmt.Errorf("MaxHookQueue (%d) must not be negative", c.MaxHookQueue)
	case c.BootstrapToken != "" && (!c.Bootstrap || len(c.BootstrapToken) < 16):
		return fmt.Errorf("BootstrapToken goes with Bootstrap, and has 16 characters or more")
	case c.ClusterKey != nil && len(c.ClusterKey) < transport.MinClusterKey:
		return fmt.Errorf("ClusterKey (%d bytes) must be at least %d bytes", len(c.ClusterKey), transport.MinClusterKey)
	}
	for name, a := range map[string]string{"Bind": c.Bind, "HTTPAddr": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%s (%q) is not a host:port address: %v", name, a, err)
		}
	}
	return nil
}

// checkTableID checks a publisher's id and a table's name.
func checkTableID(publisher, table string) error {
	if err := name.Check("publisher", publisher); err != nil {
		return err
	}
	return name.Check("table name", table)
}
