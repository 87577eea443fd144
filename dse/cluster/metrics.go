package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the member's Prometheus instruments.
type metrics struct {
	applyLatency prometheus.Histogram
	unknown      prometheus.Counter
}

func newMetrics(c *Membership, reg prometheus.Registerer) *metrics {
	mt := &metrics{
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dse_raft_apply_seconds",
			Help:    "Latency of Raft applies committed by this node as leader.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{Name: "dse_leader_outcome_unknown_total", Help: "Commands this node sent to the leader whose outcome it could not know (reply lost, or leadership lost after the leader accepted them); each is sent again under its id and applied once."}),
	}
	reg.MustRegister(mt.applyLatency, mt.unknown, &raftCollector{c: c})
	return mt
}

// raftCollector reads Raft's state at scrape time; on the leader it also asks
// each peer for its last index to report replication lag.
type raftCollector struct{ c *Membership }

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

func (rc *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descTerm, descCommit, descApplied, descLast, descLeader, descLag, descMembers, descUp} {
		ch <- d
	}
}

func (rc *raftCollector) Collect(ch chan<- prometheus.Metric) {
	c := rc.c
	if c.raft == nil {
		return // not started (a failed start)
	}
	st := c.Status()
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
	for _, node := range c.fsm.Nodes() {
		up := 0.0
		if node.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, node.ID)
	}
	servers, _, err := c.Configuration()
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
		if string(s.ID) == c.id {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.ctx, 300*time.Millisecond)
			defer cancel()
			lag := -1.0
			if ps, err := c.PeerStatus(ctx, string(s.Address)); err == nil {
				lag = float64(st.LastIndex) - float64(ps.LastIndex)
			}
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, lag, string(s.ID))
		}()
	}
	wg.Wait()
}
