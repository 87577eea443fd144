package fsm

import (
	"fmt"
	"slices"
)

// Replicated services: an external service's tables are kept on several
// nodes, its replicas, as Kafka keeps a partition on in-sync replicas while
// its metadata lives in a quorum. The registry holds the replica set and
// which replicas are in sync (hold every publication the owner
// acknowledged); the rows go peer to peer and never through Raft.
//
// The owner acknowledges a publication once every in-sync replica holds it
// on disk, and only while at least a majority of the replica set is in sync
// (MinInSync), so losing any minority of the replicas loses nothing
// acknowledged. The owner shrinks the in-sync set when a replica falls
// behind and grows it when one has caught up (ReplicaSync, fenced by the
// owner's incarnation); the leader records a replica down out of sync
// (NodeLiveness), and replaces a replica lost for good (ReplicaMove). When
// the owner's node goes down, the owner becomes a live in-sync replica,
// under a new incarnation: it holds everything acknowledged. A replica that
// knows it is behind (a restart, its data dir gone) leaves the in-sync set
// itself (ReplicaResign). The in-sync set never loses its last member: that
// replica holds what was acknowledged last, and the service waits for it.

// The replication commands (see commands.go: values are part of the log
// format).
const (
	CmdServiceCreate CommandType = 17
	CmdReplicaSync   CommandType = 18
	CmdReplicaMove   CommandType = 19
	CmdReplicaResign CommandType = 22
)

// MaxReplicas bounds a service's replica set.
const MaxReplicas = 9

// MinInSync is how many of n replicas must be in sync for the owner to
// acknowledge a publication: a majority, so that the loss of any n/2 of
// them (one of three) cannot lose what it acknowledged.
func MinInSync(n int) int { return n/2 + 1 }

// ServiceCreate creates an external service kept on Replicas nodes (1 to
// MaxReplicas; fewer when the cluster has fewer live nodes): Node, which
// owns it, and the live nodes that hold the fewest replicas (by id on a
// tie). It fails with ErrServiceExists when the id is taken. Every replica
// starts in sync: none holds anything yet.
type ServiceCreate struct {
	ID        string   `msgpack:"id"`
	Node      string   `msgpack:"node"`
	Kind      string   `msgpack:"kind"`
	Endpoints []string `msgpack:"endpoints"`
	Replicas  int      `msgpack:"replicas"`
}

// ReplicaSync sets the in-sync replicas of Service, on behalf of its owner
// of Incarnation (a stale owner is fenced). InSync must hold the owner and
// be a subset of the replica set.
type ReplicaSync struct {
	Service     string   `msgpack:"service"`
	Incarnation uint64   `msgpack:"inc"`
	InSync      []string `msgpack:"insync"`
}

// ReplicaMove replaces replica Remove of Service by Add, a node that holds
// none (the leader's, for a replica lost for good). Add starts out of sync;
// Remove, the owner, is refused (the owner moves by failover first). An
// empty Add only removes; an empty Remove only adds.
type ReplicaMove struct {
	Service string `msgpack:"service"`
	Remove  string `msgpack:"remove"`
	Add     string `msgpack:"add"`
}

// ReplicaResign takes replica Node of Service out of the in-sync set (it
// knows it is behind); an owner resigning hands the service to a live
// in-sync replica with a new incarnation. The last in-sync replica stays.
type ReplicaResign struct {
	Service string `msgpack:"service"`
	Node    string `msgpack:"node"`
}

func (c *ServiceCreate) apply(s *state, index uint64) any {
	if c.ID == "" || c.Node == "" || c.Kind == "" {
		return fmt.Errorf("%w: service id, node and kind are required", ErrInvalid)
	}
	if c.Replicas < 1 || c.Replicas > MaxReplicas {
		return fmt.Errorf("%w: replicas %d: want 1 to %d", ErrInvalid, c.Replicas, MaxReplicas)
	}
	if n, ok := s.nodes[c.Node]; !ok || !n.Up {
		return fmt.Errorf("%w: %q (or down)", ErrNodeNotFound, c.Node)
	}
	if _, ok := s.services[c.ID]; ok {
		return fmt.Errorf("%w: %q", ErrServiceExists, c.ID)
	}
	svc := &Service{ID: c.ID, Kind: c.Kind, Endpoints: sortedUnique(c.Endpoints), Factor: c.Replicas, Owner: c.Node, Incarnation: index}
	svc.Replicas = append([]string{c.Node}, s.pickReplicas(c.Replicas-1, []string{c.Node})...)
	svc.Instances = slices.Sorted(slices.Values(svc.Replicas))
	svc.InSync = slices.Clone(svc.Instances)
	s.services[c.ID] = svc
	return nil
}

// pickReplicas returns up to k live nodes not in taken, those holding the
// fewest replicas first, by id on a tie.
func (s *state) pickReplicas(k int, taken []string) []string {
	if k <= 0 {
		return nil
	}
	load := map[string]int{}
	for _, svc := range s.services {
		for _, r := range svc.Replicas {
			load[r]++
		}
	}
	var cands []string
	for _, id := range sortedKeys(s.nodes) {
		if s.nodes[id].Up && !slices.Contains(taken, id) {
			cands = append(cands, id)
		}
	}
	slices.SortStableFunc(cands, func(a, b string) int { return load[a] - load[b] })
	return cands[:min(k, len(cands))]
}

func (c *ReplicaSync) apply(s *state, _ uint64) any {
	svc, ok := s.services[c.Service]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrServiceNotFound, c.Service)
	case len(svc.Replicas) == 0:
		return fmt.Errorf("%w: %q is not replicated", ErrInvalid, c.Service)
	case svc.Owner == "" || svc.Incarnation != c.Incarnation:
		return fmt.Errorf("%w: service %q incarnation %d, current %d", ErrFenced, c.Service, c.Incarnation, svc.Incarnation)
	case !slices.Contains(c.InSync, svc.Owner):
		return fmt.Errorf("%w: the in-sync replicas of %q must hold its owner %q", ErrInvalid, c.Service, svc.Owner)
	}
	for _, r := range c.InSync {
		if !slices.Contains(svc.Replicas, r) {
			return fmt.Errorf("%w: %q is not a replica of %q", ErrInvalid, r, c.Service)
		}
	}
	svc.InSync = sortedUnique(c.InSync)
	return nil
}

func (c *ReplicaMove) apply(s *state, _ uint64) any {
	svc, ok := s.services[c.Service]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrServiceNotFound, c.Service)
	case len(svc.Replicas) == 0:
		return fmt.Errorf("%w: %q is not replicated", ErrInvalid, c.Service)
	case c.Remove != "" && !slices.Contains(svc.Replicas, c.Remove):
		return fmt.Errorf("%w: %q is not a replica of %q", ErrInvalid, c.Remove, c.Service)
	case c.Remove != "" && c.Remove == svc.Owner:
		return fmt.Errorf("%w: %q owns %q: it moves by failover first", ErrInvalid, c.Remove, c.Service)
	case c.Add != "" && slices.Contains(svc.Replicas, c.Add):
		return fmt.Errorf("%w: %q is a replica of %q already", ErrInvalid, c.Add, c.Service)
	case c.Remove == "" && c.Add == "":
		return fmt.Errorf("%w: a replica move needs a node to remove or to add", ErrInvalid)
	case c.Remove == "" && len(svc.Replicas) >= svc.Factor:
		return fmt.Errorf("%w: %q has its %d replicas", ErrInvalid, c.Service, svc.Factor)
	}
	if c.Add != "" {
		if n, ok := s.nodes[c.Add]; !ok || !n.Up {
			return fmt.Errorf("%w: %q (or down)", ErrNodeNotFound, c.Add)
		}
	}
	if c.Remove != "" {
		s.dropReplica(svc, c.Remove)
	}
	if c.Add != "" {
		svc.Replicas = append(svc.Replicas, c.Add)
		if !slices.Contains(svc.Instances, c.Add) {
			svc.Instances = append(svc.Instances, c.Add)
			slices.Sort(svc.Instances)
		}
	}
	return nil
}

// dropReplica takes node out of svc's replica set, instances and in-sync
// set (the last in-sync replica excepted: nothing else holds what was
// acknowledged).
func (s *state) dropReplica(svc *Service, node string) {
	svc.Replicas = slices.DeleteFunc(svc.Replicas, func(r string) bool { return r == node })
	svc.Instances = slices.DeleteFunc(svc.Instances, func(r string) bool { return r == node })
	if len(svc.InSync) > 1 {
		svc.InSync = slices.DeleteFunc(svc.InSync, func(r string) bool { return r == node })
	}
}

func (c *ReplicaResign) apply(s *state, index uint64) any {
	svc, ok := s.services[c.Service]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrServiceNotFound, c.Service)
	case !slices.Contains(svc.Replicas, c.Node):
		return fmt.Errorf("%w: %q is not a replica of %q", ErrInvalid, c.Node, c.Service)
	}
	s.outOfSync(svc, c.Node, index)
	return nil
}

// outOfSync takes node out of a replicated svc's in-sync set unless it is
// the last, and if it owned svc, gives svc to a live in-sync replica (or no
// one, while none is live).
func (s *state) outOfSync(svc *Service, node string, index uint64) {
	if len(svc.InSync) > 1 && slices.Contains(svc.InSync, node) {
		svc.InSync = slices.DeleteFunc(svc.InSync, func(r string) bool { return r == node })
	}
	if svc.Owner == node {
		s.electOwner(svc, index)
		if svc.Owner == node && !slices.Contains(svc.InSync, node) {
			svc.Owner = "" // it was not in sync: wait for one that is
		}
	}
}

// candidates are the instances that may own svc: for a replicated service
// its in-sync replicas, else every instance.
func (v *Service) candidates() []string {
	if len(v.Replicas) > 0 {
		return v.InSync
	}
	return v.Instances
}
