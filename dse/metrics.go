package dse

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// nodeMetrics are the node's Prometheus instruments. Each node has its own
// registry, so several nodes in one process (dse dev, tests) do not collide.
type nodeMetrics struct {
	publications    prometheus.Counter
	seqCommits      prometheus.Counter
	deliveries      prometheus.Counter
	dropped         prometheus.Counter
	resubscribes    prometheus.Counter
	replicaCatchups prometheus.Counter
	replicaCommits  prometheus.Histogram
	cutoffs         prometheus.Counter
	rpcCalls        *prometheus.CounterVec
}

func (n *Node) initMetrics() {
	reg := n.reg
	m := &nodeMetrics{
		publications:    prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_publications_total", Help: "Publications sequenced by services on this node."}),
		seqCommits:      prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_seqnum_commits_total", Help: "Raft entries that assigned seqnums for this node's publications."}),
		deliveries:      prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_deliveries_total", Help: "Publications applied by subscribers on this node."}),
		dropped:         prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_push_dropped_total", Help: "Publications not pushed because a peer's queue was full."}),
		resubscribes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_resubscribes_total", Help: "Subscriber catch-ups after a gap or a stale table."}),
		replicaCatchups: prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_replica_catchups_total", Help: "Catch-ups the replicas on this node asked their owner for."}),
		replicaCommits: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dse_replica_store_commit_seconds", Help: "Commits of the replica store on this node (one batch and its fdatasync each), by how long they took.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		cutoffs:  prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_subscriber_cutoffs_total", Help: "Times a local subscriber's hooks fell too far behind and were cut off (they resume from its cache as a snapshot)."}),
		rpcCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dse_rpc_calls_total", Help: "RPCs made by services on this node, by outcome."}, []string{"outcome"}),
	}
	watches := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dse_watches_open", Help: "Watches open on this node (at most --max-watches)."}, func() float64 { return float64(n.watches.Load()) })
	history := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dse_history_bytes", Help: "Memory the history of this node's published tables holds for subscribers catching up (at most HistoryBytes)."}, func() float64 {
		if n.retention == nil {
			return 0
		}
		b, _ := n.retention.Used()
		return float64(b)
	})
	reg.MustRegister(m.publications, m.seqCommits, m.deliveries, m.dropped, m.resubscribes, m.replicaCatchups, m.replicaCommits, m.cutoffs, m.rpcCalls, watches, history,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.metrics = m
}

// Registry returns the node's Prometheus registry, served at /metrics.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// EngineStats are counters of the node's publish path.
type EngineStats struct {
	Publications uint64 // publications sequenced by local services
	SeqCommits   uint64 // Raft entries that assigned their seqnums
	Deliveries   uint64 // publications applied by local subscriptions
	Dropped      uint64 // publications not pushed (peer queue full)
	Catchups     uint64 // subscriber catch-ups
	Cutoffs      uint64 // local subscribers' hooks cut off for falling behind
}

// Stats returns the node's publish-path counters.
func (n *Node) Stats() EngineStats {
	read := func(c prometheus.Counter) uint64 {
		var m dto.Metric
		c.Write(&m)
		return uint64(m.GetCounter().GetValue())
	}
	return EngineStats{
		Publications: read(n.metrics.publications),
		SeqCommits:   read(n.metrics.seqCommits),
		Deliveries:   read(n.metrics.deliveries),
		Dropped:      read(n.metrics.dropped),
		Catchups:     read(n.metrics.resubscribes),
		Cutoffs:      read(n.metrics.cutoffs),
	}
}
