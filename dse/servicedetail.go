package dse

import (
	"fmt"
	"slices"

	"dse.dev/dse/fsm"
)

// ServiceDetail is one service as the registry holds it, with what
// DataServiceInfo leaves out: its incarnation, kind, instances and the
// seqnum and subscribers of each table it publishes. The web console's
// services page and GET /v1/services/{id} show it.
type ServiceDetail struct {
	ServiceID string `json:"service_id"`
	// NodeID is the owner instance's node ("" while none is live).
	NodeID      string `json:"node_id"`
	Incarnation uint64 `json:"incarnation"`
	Kind        string `json:"kind"`
	// Instances are the nodes that run an instance, the owner's included;
	// Standbys are those that do not own it.
	Instances []string      `json:"instances"`
	Standbys  []string      `json:"standbys"`
	Endpoints []string      `json:"endpoints"`
	Tables    []TableDetail `json:"tables"`
	// Replicas are the nodes that keep an external service's tables, and
	// whether each holds every publication the owner acknowledged;
	// ReplicationFactor is how many it was created to have, MinInSync how
	// many must be in sync for a publish to be acknowledged. Empty for
	// other services.
	Replicas          []ReplicaDetail `json:"replicas"`
	ReplicationFactor int             `json:"replication_factor"`
	MinInSync         int             `json:"min_in_sync"`
}

// ReplicaDetail is one replica of a service.
type ReplicaDetail struct {
	NodeID string `json:"node_id"`
	InSync bool   `json:"in_sync"`
	Owner  bool   `json:"owner"`
	Up     bool   `json:"up"`
}

// TableDetail is one published table: its latest committed seqnum and how
// many subscribers (services and watches) it has.
type TableDetail struct {
	Table       string `json:"table"`
	Seqnum      uint64 `json:"seqnum"`
	Subscribers int    `json:"subscribers"`
}

// ServiceDetail returns service id's detail from this node's registry
// copy, or ErrServiceNotFound.
func (n *Node) ServiceDetail(id string) (ServiceDetail, error) {
	svc, ok := n.fsm.Service(id)
	if !ok {
		return ServiceDetail{}, fmt.Errorf("%w: %q", ErrServiceNotFound, id)
	}
	d := ServiceDetail{
		ServiceID:   id,
		NodeID:      svc.Owner,
		Incarnation: svc.Incarnation,
		Kind:        svc.Kind,
		Instances:   sortedCopy(svc.Instances),
		Standbys:    []string{},
		Endpoints:   sortedCopy(svc.Endpoints),
		Tables:      []TableDetail{},
	}
	for _, node := range d.Instances {
		if node != svc.Owner {
			d.Standbys = append(d.Standbys, node)
		}
	}
	d.Replicas = []ReplicaDetail{}
	replicas, inSync, factor := svc.Replicas, svc.InSync, svc.Factor
	if len(replicas) == 0 && svc.Kind == KindExternal { // made before replication
		replicas, inSync, factor = svc.Instances, svc.Instances, 1
	}
	for _, r := range sortedCopy(replicas) {
		node, _ := n.fsm.Node(r)
		d.Replicas = append(d.Replicas, ReplicaDetail{NodeID: r, InSync: slices.Contains(inSync, r), Owner: r == svc.Owner, Up: node.Up})
	}
	if len(replicas) > 0 {
		d.ReplicationFactor, d.MinInSync = factor, fsm.MinInSync(len(replicas))
	}
	for _, t := range n.fsm.PublishedTables(id) {
		d.Tables = append(d.Tables, TableDetail{Table: t, Seqnum: n.fsm.Seqnum(id, t), Subscribers: len(n.fsm.Subscribers(id, t))})
	}
	return d, nil
}

// sortedCopy returns a sorted copy of s, empty rather than nil: the JSON
// shape has lists, never null.
func sortedCopy(s []string) []string {
	out := append([]string{}, s...)
	slices.Sort(out)
	return out
}
