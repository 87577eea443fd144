package dse

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// nodeMetrics are the node's Prometheus instruments. Each node has its own
// registry, so several nodes in one process (dse dev, tests) do not collide.
type nodeMetrics struct {
	applyLatency prometheus.Histogram
	publications prometheus.Counter
	seqCommits   prometheus.Counter
	deliveries   prometheus.Counter
	dropped      prometheus.Counter
	resubscribes prometheus.Counter
	rpcCalls     *prometheus.CounterVec
	unknown      prometheus.Counter
}

func (n *Node) initMetrics() {
	reg := prometheus.NewRegistry()
	m := &nodeMetrics{
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dse_raft_apply_seconds",
			Help:    "Latency of Raft applies committed by this node as leader.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		publications: prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_publications_total", Help: "Publications sequenced by services on this node."}),
		seqCommits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_seqnum_commits_total", Help: "Raft entries that assigned seqnums for this node's publications."}),
		deliveries:   prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_deliveries_total", Help: "Publications applied by subscribers on this node."}),
		dropped:      prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_push_dropped_total", Help: "Publications not pushed because a peer's queue was full."}),
		resubscribes: prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_resubscribes_total", Help: "Subscriber catch-ups after a gap or a stale table."}),
		rpcCalls:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dse_rpc_calls_total", Help: "RPCs made by services on this node, by outcome."}, []string{"outcome"}),
		unknown:      prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_leader_outcome_unknown_total", Help: "Commands this node sent to the leader whose outcome it could not know (reply lost, or leadership lost after the leader accepted them); each is sent again under its id and applied once."}),
	}
	watches := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dse_watches_open", Help: "Watches open on this node (at most --max-watches)."}, func() float64 { return float64(n.watches.Load()) })
	reg.MustRegister(m.applyLatency, m.publications, m.seqCommits, m.deliveries, m.dropped, m.resubscribes, m.rpcCalls, m.unknown, watches,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&raftCollector{n: n})
	n.metrics, n.reg = m, reg
}

// Registry returns the node's Prometheus registry, served at /metrics.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// raftCollector reads Raft's state at scrape time; on the leader it also asks
// each peer for its last index to report replication lag.
type raftCollector struct{ n *Node }

var (
	descState   = prometheus.NewDesc("dse_raft_state", "Raft state of this node (1 for the current state).", []string{"state"}, nil)
	descTerm    = prometheus.NewDesc("dse_raft_term", "Current Raft term.", nil, nil)
	descCommit  = prometheus.NewDesc("dse_raft_commit_index", "Raft commit index.", nil, nil)
	descApplied = prometheus.NewDesc("dse_raft_applied_index", "Raft index applied to the FSM.", nil, nil)
	descLast    = prometheus.NewDesc("dse_raft_last_index", "Last Raft log index stored.", nil, nil)
	descLeader  = prometheus.NewDesc("dse_raft_is_leader", "1 if this node is the leader.", nil, nil)
	descLag     = prometheus.NewDesc("dse_raft_peer_replication_lag", "Leader's last index minus the peer's last index (leader only; -1 if the peer did not answer).", []string{"peer"}, nil)
	descMembers = prometheus.NewDesc("dse_cluster_members", "Members in the Raft configuration, by suffrage.", []string{"suffrage"}, nil)
	descUp      = prometheus.NewDesc("dse_node_up", "Registry liveness of each node (1 up, 0 down).", []string{"node"}, nil)
)

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descTerm, descCommit, descApplied, descLast, descLeader, descLag, descMembers, descUp} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	st := n.Status()
	for _, s := range []string{"leader", "follower", "candidate", "shutdown"} {
		v := 0.0
		if s == st.State {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, s)
	}
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(st.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(st.LastIndex))
	leader := 0.0
	if st.State == "leader" {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leader)
	for _, node := range n.fsm.Nodes() {
		up := 0.0
		if node.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, node.ID)
	}
	servers, _, err := n.configuration()
	if err != nil {
		return
	}
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(voters), "voter")
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(len(servers)-voters), "nonvoter")
	if st.State != "leader" {
		return
	}
	var wg sync.WaitGroup
	for _, s := range servers {
		if string(s.ID) == n.id {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, 300*time.Millisecond)
			defer cancel()
			lag := -1.0
			if ps, err := n.peerStatus(ctx, string(s.Address)); err == nil {
				lag = float64(st.LastIndex) - float64(ps.LastIndex)
			}
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, lag, string(s.ID))
		}()
	}
	wg.Wait()
}

// EngineStats are counters of the node's publish path.
type EngineStats struct {
	Publications uint64 // publications sequenced by local services
	SeqCommits   uint64 // Raft entries that assigned their seqnums
	Deliveries   uint64 // publications applied by local subscriptions
	Dropped      uint64 // publications not pushed (peer queue full)
	Catchups     uint64 // subscriber catch-ups
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
	}
}
