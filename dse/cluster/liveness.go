package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"dse.dev/dse/dse/errdefs"
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
func (c *Membership) livenessLoop() {
	obsCh := make(chan raft.Observation, 256)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	c.raft.RegisterObserver(obs)
	defer c.raft.DeregisterObserver(obs)

	tick := time.NewTicker(c.cfg.LivenessGrace / 5)
	defer tick.Stop()
	health := map[string]*peerHealth{}
	var leaderSince time.Time
	for {
		select {
		case <-c.ctx.Done():
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
			if !c.IsLeader() {
				leaderSince = time.Time{}
				continue
			}
			if leaderSince.IsZero() {
				leaderSince = time.Now()
			}
			c.reconcileLiveness(health, leaderSince)
		}
	}
}

func (c *Membership) reconcileLiveness(health map[string]*peerHealth, leaderSince time.Time) {
	servers, _, err := c.Configuration()
	if err != nil {
		return
	}
	now := time.Now()
	// Raft reports a failing peer again at least every transport timeout; a
	// peer not reported for longer has recovered even if the observation
	// that said so was dropped (the observer does not block Raft).
	for id, h := range health {
		if now.Sub(h.lastFailure) > 2*c.cfg.LivenessGrace+2*time.Second {
			delete(health, id)
		}
	}
	// Registry records of nodes no longer in the configuration (a leader
	// that removed itself, a member replaced under a new id) go too.
	member := map[string]bool{}
	for _, s := range servers {
		member[string(s.ID)] = true
	}
	for _, node := range c.fsm.Nodes() {
		if !member[node.ID] {
			c.logger.Info("removing the registry record of a former member", "peer", node.ID)
			if err := c.ApplyLeader(fsm.MustEncode(fsm.CmdNodeRemove, fsm.NodeRemove{ID: node.ID})); err != nil {
				c.logger.Warn("cannot remove a former member's record", "peer", node.ID, "error", err)
			}
		}
	}
	for _, s := range servers {
		id := string(s.ID)
		node, ok := c.fsm.Node(id)
		if !ok {
			continue // not registered yet; its join records it
		}
		want := node.Up
		switch h := health[id]; {
		case id == c.id:
			want = true
		case h != nil && now.Sub(h.failingSince) > c.cfg.LivenessGrace:
			want = false
		case h == nil && now.Sub(leaderSince) > c.cfg.LivenessGrace:
			want = true
		}
		if want == node.Up {
			continue
		}
		c.logger.Info("recording node liveness", "peer", id, "up", want)
		if err := c.ApplyLeader(fsm.MustEncode(fsm.CmdNodeLiveness, fsm.NodeLiveness{ID: id, Up: want})); err != nil {
			c.logger.Warn("liveness update failed", "peer", id, "error", err)
		}
	}
}

// selfRegisterLoop keeps this node's registry record (addresses) current
// while it is a Raft member: after a restart on a new address, or when the
// bootstrap node first leads.
func (c *Membership) selfRegisterLoop() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		if !c.needsSelfRegister() {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		err := c.Write(ctx, fsm.CmdNodeUpsert, fsm.NodeUpsert{ID: c.id, Addr: c.trans.Addr(), HTTPAddr: c.cfg.HTTPAddr})
		cancel()
		if err != nil {
			c.logger.Debug("self registration failed, retrying", "error", err)
		}
	}
}

// EnsureRegistered makes sure the registry knows this node before a service
// is placed on it (the bootstrap node registers itself only once it leads).
func (c *Membership) EnsureRegistered(ctx context.Context) error {
	if _, ok := c.fsm.Node(c.id); ok {
		return nil
	}
	if !c.needsSelfRegister() {
		return fmt.Errorf("%w: node %q is not a cluster member yet", errdefs.ErrUnavailable, c.id)
	}
	return c.Write(ctx, fsm.CmdNodeUpsert, fsm.NodeUpsert{ID: c.id, Addr: c.trans.Addr(), HTTPAddr: c.cfg.HTTPAddr})
}

func (c *Membership) needsSelfRegister() bool {
	if id, _ := c.Leader(); id == "" {
		return false
	}
	servers, _, err := c.Configuration()
	if err != nil {
		return false
	}
	member := false
	for _, s := range servers {
		member = member || string(s.ID) == c.id
	}
	if !member {
		return false
	}
	rec, ok := c.fsm.Node(c.id)
	return !ok || rec.Addr != c.trans.Addr() || rec.HTTPAddr != c.cfg.HTTPAddr
}
