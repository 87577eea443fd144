package dse

import (
	"slices"
	"time"

	"dse.dev/dse/fsm"
)

// Datasource placement, on the leader: each enabled datasource runs on
// exactly one live node at a time.

// placeLoop runs on every node and acts while it leads: it keeps each
// enabled datasource on exactly one live node, moving it (with a new
// incarnation) when its node goes down, and unplaces disabled ones.
func (n *Node) placeLoop() {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	downSince := map[string]time.Time{} // as this leader first saw each node down
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if !n.IsLeader() {
			clear(downSince)
			continue
		}
		n.placeDatasources()
		n.placeReplicas(downSince)
	}
}

// placeReplicas keeps each replicated external service on its replication
// factor of live nodes, as Consul's autopilot replaces dead servers: a
// replica whose node has been down for ReplicaReplaceAfter (as this leader
// saw it) moves to the live node that holds the fewest replicas, and a
// service short of its factor (its node removed, or created on a smaller
// cluster) gains one. A new replica starts out of sync and catches up from
// the owner, which then adds it to the in-sync set.
func (n *Node) placeReplicas(downSince map[string]time.Time) {
	now := time.Now()
	live := map[string]bool{}
	for _, node := range n.fsm.Nodes() {
		if node.Up {
			live[node.ID] = true
			delete(downSince, node.ID)
		} else if downSince[node.ID].IsZero() {
			downSince[node.ID] = now
		}
	}
	svcs := n.fsm.Services()
	load := map[string]int{}
	for _, svc := range svcs {
		for _, r := range svc.Replicas {
			load[r]++
		}
	}
	pick := func(taken []string) string {
		best := ""
		for id := range live {
			if slices.Contains(taken, id) {
				continue
			}
			if best == "" || load[id] < load[best] || load[id] == load[best] && id < best {
				best = id
			}
		}
		return best
	}
	for _, svc := range svcs {
		if len(svc.Replicas) == 0 {
			continue
		}
		var mv fsm.ReplicaMove
		switch {
		case len(svc.Replicas) < svc.Factor:
			mv = fsm.ReplicaMove{Service: svc.ID, Add: pick(svc.Replicas)}
		default:
			for _, r := range svc.Replicas {
				if since := downSince[r]; r != svc.Owner && !since.IsZero() && now.Sub(since) >= n.cfg.ReplicaReplaceAfter {
					mv = fsm.ReplicaMove{Service: svc.ID, Remove: r, Add: pick(svc.Replicas)}
					break
				}
			}
		}
		if mv.Add == "" {
			continue
		}
		n.logger.Info("placing a replica", "service", svc.ID, "from", mv.Remove, "to", mv.Add)
		if err := n.cluster.ApplyLeader(fsm.MustEncode(fsm.CmdReplicaMove, mv)); err != nil {
			n.logger.Warn("replica placement failed", "service", svc.ID, "error", err)
			continue
		}
		load[mv.Add]++
		if mv.Remove != "" {
			load[mv.Remove]--
		}
	}
}

func (n *Node) placeDatasources() {
	servers, _, err := n.cluster.Configuration()
	if err != nil {
		return
	}
	member := map[string]bool{}
	for _, s := range servers {
		member[string(s.ID)] = true
	}
	live := map[string]bool{}
	var liveIDs []string
	for _, node := range n.fsm.Nodes() {
		if node.Up && member[node.ID] {
			live[node.ID] = true
			liveIDs = append(liveIDs, node.ID)
		}
	}
	dss := n.fsm.Datasources()
	load := map[string]int{}
	for _, d := range dss {
		if d.Node != "" {
			load[d.Node]++
		}
	}
	for _, d := range dss {
		place := d.Node
		switch {
		case !d.Enabled:
			place = ""
		case d.Node != "" && live[d.Node]:
		default:
			place = ""
			for _, id := range liveIDs {
				if place == "" || load[id] < load[place] {
					place = id
				}
			}
		}
		if place != d.Node {
			n.logger.Info("placing datasource", "datasource", d.Name, "from", d.Node, "to", place)
			if err := n.cluster.ApplyLeader(fsm.MustEncode(fsm.CmdDatasourcePlace, fsm.DatasourcePlace{ID: d.ID, Node: place})); err != nil {
				n.logger.Warn("placement failed", "datasource", d.Name, "error", err)
				continue
			}
			if d.Node != "" {
				load[d.Node]--
			}
			if place != "" {
				load[place]++
			}
		}
		// Instances anywhere but where it is placed would keep the
		// service ownerless, or owned by an instance that no longer runs.
		if svc, ok := n.fsm.Service(d.Name); ok && svc.Kind == KindDatasource {
			for _, inst := range svc.Instances {
				if inst != place && (!live[inst] || d.Node == place) {
					if err := n.cluster.ApplyLeader(fsm.MustEncode(fsm.CmdServiceUnregister, fsm.ServiceUnregister{ID: d.Name, Node: inst})); err != nil {
						n.logger.Warn("cannot remove a stale datasource instance", "datasource", d.Name, "node", inst, "error", err)
					}
				}
			}
		}
	}
}
