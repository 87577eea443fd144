package dse

import (
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
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if n.IsLeader() {
			n.placeDatasources()
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
