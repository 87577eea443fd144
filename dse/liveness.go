package dse

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"dse.dev/dse/fsm"
)

// peerHealth is the leader's view of one follower, from Raft's own heartbeat
// observations.
type peerHealth struct {
	failingSince time.Time // when heartbeats started failing
	lastFailure  time.Time // the latest failure observed
}

// livenessLoop runs on every node and acts while it leads: it records a node
// down once its heartbeats have failed for LivenessGrace, and up again when
// they resume (or, for a node the registry had down when leadership began,
// when none have failed for a grace period).
func (n *Node) livenessLoop() {
	obsCh := make(chan raft.Observation, 256)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)

	tick := time.NewTicker(n.cfg.LivenessGrace / 5)
	defer tick.Stop()
	health := map[string]*peerHealth{}
	var leaderSince time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-obsCh:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				h := health[string(d.PeerID)]
				if h == nil {
					h = &peerHealth{}
					health[string(d.PeerID)] = h
				}
				if h.failingSince.IsZero() {
					h.failingSince = d.LastContact
					if h.failingSince.IsZero() || h.failingSince.Before(leaderSince) {
						h.failingSince = leaderSince
					}
				}
				h.lastFailure = time.Now()
			case raft.ResumedHeartbeatObservation:
				delete(health, string(d.PeerID))
			case raft.LeaderObservation:
				// Leadership changed hands: what we knew is stale.
				health = map[string]*peerHealth{}
				leaderSince = time.Now()
			}
		case <-tick.C:
			if !n.IsLeader() {
				leaderSince = time.Time{}
				continue
			}
			if leaderSince.IsZero() {
				leaderSince = time.Now()
			}
			n.reconcileLiveness(health, leaderSince)
		}
	}
}

func (n *Node) reconcileLiveness(health map[string]*peerHealth, leaderSince time.Time) {
	servers, _, err := n.configuration()
	if err != nil {
		return
	}
	now := time.Now()
	// Raft reports a failing peer again at least every transport timeout; a
	// peer not reported for longer has recovered even if the observation
	// that said so was dropped (the observer does not block Raft).
	for id, h := range health {
		if now.Sub(h.lastFailure) > 2*n.cfg.LivenessGrace+2*time.Second {
			delete(health, id)
		}
	}
	// Registry records of nodes no longer in the configuration (a leader
	// that removed itself, a member replaced under a new id) go too.
	member := map[string]bool{}
	for _, s := range servers {
		member[string(s.ID)] = true
	}
	for _, node := range n.fsm.Nodes() {
		if !member[node.ID] {
			n.logger.Info("removing the registry record of a former member", "peer", node.ID)
			res, _ := n.applyLocal(fsm.MustEncode(fsm.CmdNodeRemove, fsm.NodeRemove{ID: node.ID}))
			if err := res.err(); err != nil {
				n.logger.Warn("cannot remove a former member's record", "peer", node.ID, "error", err)
			}
		}
	}
	for _, s := range servers {
		id := string(s.ID)
		node, ok := n.fsm.Node(id)
		if !ok {
			continue // not registered yet; its join records it
		}
		want := node.Up
		switch h := health[id]; {
		case id == n.id:
			want = true
		case h != nil && now.Sub(h.failingSince) > n.cfg.LivenessGrace:
			want = false
		case h == nil && now.Sub(leaderSince) > n.cfg.LivenessGrace:
			want = true
		}
		if want == node.Up {
			continue
		}
		n.logger.Info("recording node liveness", "peer", id, "up", want)
		res, _ := n.applyLocal(fsm.MustEncode(fsm.CmdNodeLiveness, fsm.NodeLiveness{ID: id, Up: want}))
		if err := res.err(); err != nil {
			n.logger.Warn("liveness update failed", "peer", id, "error", err)
		}
	}
}

// selfRegisterLoop keeps this node's registry record (addresses) current
// while it is a Raft member: after a restart on a new address, or when the
// bootstrap node first leads.
func (n *Node) selfRegisterLoop() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if !n.needsSelfRegister() {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		err := n.applyErr(ctx, fsm.CmdNodeUpsert, fsm.NodeUpsert{ID: n.id, Addr: n.trans.Addr(), HTTPAddr: n.cfg.HTTPAddr})
		cancel()
		if err != nil {
			n.logger.Debug("self registration failed, retrying", "error", err)
		}
	}
}

// ensureRegistered makes sure the registry knows this node before a service
// is placed on it (the bootstrap node registers itself only once it leads).
func (n *Node) ensureRegistered(ctx context.Context) error {
	if _, ok := n.fsm.Node(n.id); ok {
		return nil
	}
	if !n.needsSelfRegister() {
		return fmt.Errorf("%w: node %q is not a cluster member yet", ErrUnavailable, n.id)
	}
	return n.applyErr(ctx, fsm.CmdNodeUpsert, fsm.NodeUpsert{ID: n.id, Addr: n.trans.Addr(), HTTPAddr: n.cfg.HTTPAddr})
}

func (n *Node) needsSelfRegister() bool {
	if id, _ := n.Leader(); id == "" {
		return false
	}
	servers, _, err := n.configuration()
	if err != nil {
		return false
	}
	member := false
	for _, s := range servers {
		member = member || string(s.ID) == n.id
	}
	if !member {
		return false
	}
	rec, ok := n.fsm.Node(n.id)
	return !ok || rec.Addr != n.trans.Addr() || rec.HTTPAddr != n.cfg.HTTPAddr
}
