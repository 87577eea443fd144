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
//
// Each round looks only at what may need it (the registry's index: the
// datasources placed nowhere, on a node that is not live, or disabled, and
// the replicated services); every sweepEvery it also looks at every
// datasource's instances.
func (n *Node) placeLoop() {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	downSince := map[string]time.Time{} // as this leader first saw each node down
	var swept time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if !n.IsLeader() {
			clear(downSince)
			swept = time.Time{}
			continue
		}
		sweep := time.Since(swept) >= sweepEvery
		if sweep {
			swept = time.Now()
		}
		n.placeDatasources(sweep)
		n.placeReplicas(downSince)
	}
}

// sweepEvery is how often the leader's placement looks at every
// datasource's instances, not only those that may need it.
const sweepEvery = 10 * time.Second

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
	svcs := n.fsm.ReplicatedServices()
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

func (n *Node) placeDatasources(sweep bool) {
	servers, _, err := n.cluster.Configuration()
	if err != nil {
		return
	}
	member := map[string]bool{}
	for _, s := range servers {
		member[string(s.ID)] = true
	}
	live := map[string]bool{}
	var liveIDs, gone []string
	for _, node := range n.fsm.Nodes() {
		if node.Up && member[node.ID] {
			live[node.ID] = true
			liveIDs = append(liveIDs, node.ID)
		} else {
			gone = append(gone, node.ID)
		}
	}
	todo, load := n.fsm.Unplaced(live)
	if sweep {
		todo = n.fsm.Datasources()
	}
	checked := map[string]bool{}
	for _, d := range todo {
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
		checked[d.Name] = true
		n.removeStaleInstances(d.Name, place, d.Node == place, live)
	}
	// Instances left on nodes that are gone, of datasources placed well.
	for _, node := range gone {
		for _, svc := range n.fsm.ServicesOn(node) {
			if svc.Kind != KindDatasource || checked[svc.ID] {
				continue
			}
			if d, ok := n.fsm.DatasourceByName(svc.ID); ok {
				checked[svc.ID] = true
				n.removeStaleInstances(svc.ID, d.Node, true, live)
			}
		}
	}
}

// removeStaleInstances removes the instances of datasource name's service
// anywhere but where it is placed: on nodes that are not live, and, unless
// it just moved (its old node stops its own), on live ones. They would
// keep the service ownerless, or owned by an instance that no longer runs.
func (n *Node) removeStaleInstances(name, place string, stayed bool, live map[string]bool) {
	svc, ok := n.fsm.Service(name)
	if !ok || svc.Kind != KindDatasource {
		return
	}
	for _, inst := range svc.Instances {
		if inst != place && (!live[inst] || stayed) {
			if err := n.cluster.ApplyLeader(fsm.MustEncode(fsm.CmdServiceUnregister, fsm.ServiceUnregister{ID: name, Node: inst})); err != nil {
				n.logger.Warn("cannot remove a stale datasource instance", "datasource", name, "node", inst, "error", err)
			}
		}
	}
}
