package fsm

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// Business errors returned as Apply results. Check them with errors.Is.
var (
	// ErrNodeNotFound is returned for a command naming an unknown node.
	ErrNodeNotFound = errors.New("node not found")
	// ErrServiceNotFound is returned for a command naming an unknown service.
	ErrServiceNotFound = errors.New("service not found")
	// ErrServiceExists is returned when a service id is taken by another
	// kind of service.
	ErrServiceExists = errors.New("service already exists")
	// ErrFenced is returned to a publish request from an incarnation that no
	// longer owns its service.
	ErrFenced = errors.New("stale incarnation")
	// ErrSeqnumTaken refuses a speculative publish request whose first
	// seqnum is not the table's next (PublishRequest.First).
	ErrSeqnumTaken = errors.New("seqnum already taken")
	// ErrDatasourceNotFound is returned for an unknown datasource id.
	ErrDatasourceNotFound = errors.New("datasource not found")
	// ErrDatasourceExists is returned when a datasource id or name is taken.
	ErrDatasourceExists = errors.New("datasource already exists")
	// ErrInvalid is returned for a command with a missing or malformed field.
	ErrInvalid = errors.New("invalid command")
	// ErrTokenNotFound is returned for an unknown token id.
	ErrTokenNotFound = errors.New("token not found")
)

// Token is an API token as the registry keeps it: the secret's SHA-256, hex.
type Token struct {
	ID   string `msgpack:"id" json:"id"`
	Name string `msgpack:"name" json:"name"`
	Role string `msgpack:"role" json:"role"`
	Hash string `msgpack:"hash" json:"-"`
}

// Node is a cluster member as the registry knows it.
type Node struct {
	ID       string `msgpack:"id" json:"id"`
	Addr     string `msgpack:"addr" json:"address"`
	HTTPAddr string `msgpack:"http" json:"http"`
	Up       bool   `msgpack:"up" json:"up"`
	// Since is the log index of the last liveness change.
	Since uint64 `msgpack:"since" json:"since"`
}

// Service is a registered service. Instances lists the nodes that host an
// instance, sorted; Owner is the one allowed to publish, under Incarnation.
type Service struct {
	ID          string   `msgpack:"id"`
	Kind        string   `msgpack:"kind"`
	Instances   []string `msgpack:"instances"`
	Owner       string   `msgpack:"owner"`
	Incarnation uint64   `msgpack:"inc"`
	Endpoints   []string `msgpack:"endpoints"`
	// Attached are the streams through which processes outside Go serve
	// actions of an external service; Served, every action an attachment
	// has served since the service was created, sorted (attach.go).
	Attached []Attachment `msgpack:"attached,omitempty"`
	Served   []string     `msgpack:"served,omitempty"`
	// Replicas are the nodes that keep a replicated external service's
	// tables, the owner first at creation (replicas.go); its instances.
	// InSync, sorted, are those that hold every publication the owner
	// acknowledged: the owner is one of them. Factor is how many replicas
	// it was created to have. All empty for other services.
	Replicas []string `msgpack:"replicas,omitempty"`
	InSync   []string `msgpack:"insync,omitempty"`
	Factor   int      `msgpack:"factor,omitempty"`
}

// Subscription is one (subscriber, publisher, table) triple.
type Subscription struct {
	Subscriber string `msgpack:"subscriber"`
	Publisher  string `msgpack:"publisher"`
	Table      string `msgpack:"table"`
}

// TableSeq is the latest committed seqnum of one published table.
type TableSeq struct {
	Publisher string `msgpack:"p"`
	Table     string `msgpack:"t"`
	Seqnum    uint64 `msgpack:"s"`
}

// Datasource is a datasource configuration and its placement.
type Datasource struct {
	ID          string         `msgpack:"id"`
	Name        string         `msgpack:"name"`
	Driver      string         `msgpack:"driver"`
	Description string         `msgpack:"description"`
	Type        string         `msgpack:"type"`
	Enabled     bool           `msgpack:"enabled"`
	Config      map[string]any `msgpack:"config"`
	Node        string         `msgpack:"node"`
	Incarnation uint64         `msgpack:"inc"`
}

// state is everything the FSM holds. Only Apply (under the FSM's write lock)
// and Restore mutate it.
type state struct {
	index       uint64
	nodes       map[string]*Node
	services    map[string]*Service
	subs        map[string]map[string]map[string]struct{} // publisher → table → subscriber set
	seqnums     map[string]map[string]uint64              // publisher → table → seqnum
	datasources map[string]*Datasource
	tokens      map[string]*Token
	origins     map[string]*origin // Once's senders (once.go)

	// Derived, not persisted: bySub is subs by subscriber; ix the
	// index.go lookups.
	bySub map[string]map[pubTable]struct{}
	ix    *index

	// unsubscribed counts the entries applied on this node since it
	// started (not persisted) that may have removed a subscription:
	// watchers of removals skip their scan while it stays put.
	unsubscribed uint64
}

func newState() *state {
	return &state{
		nodes:       map[string]*Node{},
		services:    map[string]*Service{},
		subs:        map[string]map[string]map[string]struct{}{},
		seqnums:     map[string]map[string]uint64{},
		datasources: map[string]*Datasource{},
		tokens:      map[string]*Token{},
		origins:     map[string]*origin{},
		bySub:       map[string]map[pubTable]struct{}{},
		ix:          newIndex(),
	}
}

// pubTable names a publisher's table.
type pubTable struct{ publisher, table string }

// clone returns a deep copy; the snapshot persists it while Apply goes on.
func (s *state) clone() *state {
	c := newState()
	c.index = s.index
	for k, n := range s.nodes {
		cp := *n
		c.nodes[k] = &cp
	}
	for k, v := range s.services {
		c.services[k] = v.clone()
	}
	for p, tables := range s.subs {
		ct := make(map[string]map[string]struct{}, len(tables))
		for t, set := range tables {
			ct[t] = maps.Clone(set)
		}
		c.subs[p] = ct
	}
	for p, tables := range s.seqnums {
		c.seqnums[p] = maps.Clone(tables)
	}
	for k, d := range s.datasources {
		c.datasources[k] = d.clone()
	}
	for k, t := range s.tokens {
		cp := *t
		c.tokens[k] = &cp
	}
	for k, o := range s.origins {
		c.origins[k] = o.clone()
	}
	return c
}

func (v *Service) clone() *Service {
	cp := *v
	cp.Instances = slices.Clone(v.Instances)
	cp.Endpoints = slices.Clone(v.Endpoints)
	cp.Attached = cloneAttachments(v.Attached) // attach.go
	cp.Served = slices.Clone(v.Served)
	cp.Replicas = slices.Clone(v.Replicas)
	cp.InSync = slices.Clone(v.InSync)
	return &cp
}

func (d *Datasource) clone() *Datasource {
	cp := *d
	cp.Config = cloneConfig(d.Config)
	return &cp
}

func cloneConfig(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = cloneValue(v)
	}
	return c
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneConfig(x)
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = cloneValue(e)
		}
		return c
	default:
		return x
	}
}

func (c *NodeUpsert) apply(s *state, index uint64) any {
	if c.ID == "" || c.Addr == "" {
		return fmt.Errorf("%w: node id and address are required", ErrInvalid)
	}
	n, ok := s.nodes[c.ID]
	if !ok {
		n = &Node{ID: c.ID}
		s.nodes[c.ID] = n
	}
	n.Addr, n.HTTPAddr = c.Addr, c.HTTPAddr
	if !n.Up || !ok {
		n.Up, n.Since = true, index
		s.nodeUp(c.ID, index)
	}
	return nil
}

func (c *NodeRemove) apply(s *state, index uint64) any {
	if _, ok := s.nodes[c.ID]; !ok {
		return fmt.Errorf("%w: %q", ErrNodeNotFound, c.ID)
	}
	delete(s.nodes, c.ID)
	for _, id := range sortedKeys(s.services) {
		s.removeInstance(s.services[id], c.ID, index)
	}
	s.unplaceDatasources(c.ID)
	s.detachNode(c.ID) // attach.go: its streams went with it
	return nil
}

func (c *NodeLiveness) apply(s *state, index uint64) any {
	n, ok := s.nodes[c.ID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNodeNotFound, c.ID)
	}
	if n.Up == c.Up {
		return nil
	}
	n.Up, n.Since = c.Up, index
	if c.Up {
		s.nodeUp(c.ID, index)
		return nil
	}
	// Services owned by the dead node fail over to a standby instance (an
	// in-sync replica); a replica down is out of sync.
	for _, id := range sortedKeys(s.services) {
		svc := s.services[id]
		switch {
		case len(svc.Replicas) > 0 && slices.Contains(svc.Replicas, c.ID):
			s.outOfSync(svc, c.ID, index)
		case svc.Owner == c.ID:
			s.electOwner(svc, index)
		}
	}
	s.unplaceDatasources(c.ID)
	return nil
}

// nodeUp gives every ownerless service with an instance on node an owner.
func (s *state) nodeUp(node string, index uint64) {
	for _, id := range sortedKeys(s.services) {
		svc := s.services[id]
		if svc.Owner == "" && slices.Contains(svc.Instances, node) {
			s.electOwner(svc, index)
		}
	}
}

// electOwner picks the first candidate (in sorted order: an instance, or
// an in-sync replica of a replicated service) on a live node as the owner,
// with a new incarnation; no live candidate leaves it ownerless.
func (s *state) electOwner(svc *Service, index uint64) {
	prev := svc.Owner
	svc.Owner = ""
	for _, n := range svc.candidates() {
		if node, ok := s.nodes[n]; ok && node.Up {
			svc.Owner = n
			break
		}
	}
	if svc.Owner != prev && svc.Owner != "" {
		svc.Incarnation = index
	}
}

func (s *state) removeInstance(svc *Service, node string, index uint64) {
	i := slices.Index(svc.Instances, node)
	if i < 0 {
		return
	}
	if len(svc.Replicas) > 0 {
		// A replica lost with its node: its in-sync place goes, and if it
		// was the last in-sync one, what it alone held went with it: the
		// remaining replicas are all there is (the operator removed the
		// node for good).
		last := slices.Equal(svc.InSync, []string{node})
		s.dropReplica(svc, node)
		if last {
			svc.InSync = slices.Sorted(slices.Values(svc.Replicas))
		}
		if len(svc.Replicas) == 0 {
			s.deleteService(svc.ID)
			return
		}
		if svc.Owner == node {
			s.electOwner(svc, index)
		}
		return
	}
	svc.Instances = slices.Delete(svc.Instances, i, i+1)
	if len(svc.Instances) == 0 {
		s.deleteService(svc.ID)
		return
	}
	if svc.Owner == node {
		s.electOwner(svc, index)
	}
}

// deleteService removes a service and the subscriptions it holds (not
// those to its tables: they outlive it, as in Congress).
func (s *state) deleteService(id string) {
	delete(s.services, id)
	for pt := range s.bySub[id] {
		s.removeSub(Subscription{Subscriber: id, Publisher: pt.publisher, Table: pt.table})
	}
}

func (s *state) unplaceDatasources(node string) {
	for _, d := range s.datasources {
		if d.Node == node {
			d.Node = ""
		}
	}
}

func (c *ServiceRegister) apply(s *state, index uint64) any {
	if c.ID == "" || c.Node == "" {
		return fmt.Errorf("%w: service id and node are required", ErrInvalid)
	}
	if _, ok := s.nodes[c.Node]; !ok {
		return fmt.Errorf("%w: %q", ErrNodeNotFound, c.Node)
	}
	svc, ok := s.services[c.ID]
	if ok && c.Exclusive {
		return fmt.Errorf("%w: %q", ErrServiceExists, c.ID)
	}
	if ok && svc.Kind != c.Kind {
		return fmt.Errorf("%w: service %q is of kind %q, not %q", ErrServiceExists, c.ID, svc.Kind, c.Kind)
	}
	if ok && len(svc.Replicas) > 0 {
		// A replica's node starting its instance: the owner's takes a new
		// incarnation (a new process); nothing else changes.
		if !slices.Contains(svc.Replicas, c.Node) {
			return fmt.Errorf("%w: %q is kept on nodes %v, not %q", ErrInvalid, c.ID, svc.Replicas, c.Node)
		}
		if svc.Owner == c.Node {
			svc.Incarnation = index
		}
		return nil
	}
	if !ok && c.Kind == kindExternal && !c.Exclusive {
		// A replica's instance starting (its node started, or it saw the
		// create) after the service was deleted: it must not bring the
		// service back. Only a create makes one.
		return fmt.Errorf("%w: external service %q (deleted, or never created)", ErrServiceNotFound, c.ID)
	}
	if !ok {
		svc = &Service{ID: c.ID}
		s.services[c.ID] = svc
	}
	svc.Kind = c.Kind
	svc.Endpoints = sortedUnique(c.Endpoints)
	if !slices.Contains(svc.Instances, c.Node) {
		svc.Instances = append(svc.Instances, c.Node)
		slices.Sort(svc.Instances)
	}
	switch {
	case svc.Owner == "" || !s.nodes[svc.Owner].Up:
		s.electOwner(svc, index)
	case svc.Owner == c.Node:
		// The owner's node registers it again: a new process (restarted,
		// or started again after a stop). A new incarnation fences
		// whatever an earlier one still has in flight.
		svc.Incarnation = index
	}
	return nil
}

func (c *ServiceUnregister) apply(s *state, index uint64) any {
	svc, ok := s.services[c.ID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrServiceNotFound, c.ID)
	}
	if c.Node == "" {
		s.deleteService(c.ID)
		return nil
	}
	if !slices.Contains(svc.Instances, c.Node) {
		return fmt.Errorf("%w: %q has no instance on node %q", ErrServiceNotFound, c.ID, c.Node)
	}
	if len(svc.Replicas) > 0 {
		return fmt.Errorf("%w: %q is replicated: its replicas move with ReplicaMove, or it is deleted whole", ErrInvalid, c.ID)
	}
	s.removeInstance(svc, c.Node, index)
	return nil
}

// MaxPublishCount bounds the seqnums one request may take; MaxSkip, the
// seqnums a request may skip (PublishRequest.Skip).
const (
	MaxPublishCount = 1 << 20
	MaxSkip         = 1 << 20
)

func (c *Publish) apply(s *state, _ uint64) any {
	grants := make([]PublishGrant, len(c.Requests))
	for i, r := range c.Requests {
		svc, ok := s.services[r.Service]
		switch {
		case !ok:
			grants[i].Err = fmt.Errorf("%w: %q", ErrServiceNotFound, r.Service)
		case svc.Owner == "" || svc.Incarnation != r.Incarnation:
			grants[i].Err = fmt.Errorf("%w: service %q incarnation %d, current %d", ErrFenced, r.Service, r.Incarnation, svc.Incarnation)
		case r.Table == "" || r.Count == 0 || r.Count > MaxPublishCount:
			grants[i].Err = fmt.Errorf("%w: publish needs a table and a count of 1 to %d", ErrInvalid, MaxPublishCount)
		case r.Skip > MaxSkip || r.First != 0 && (r.After != 0 || r.Skip != 0) || r.After > math.MaxUint64-MaxPublishCount-MaxSkip:
			grants[i].Err = fmt.Errorf("%w: publish skips at most %d seqnums, and a first seqnum goes without after or skip", ErrInvalid, MaxSkip)
		default:
			tables, ok := s.seqnums[r.Service]
			if !ok {
				tables = map[string]uint64{}
				s.seqnums[r.Service] = tables
			}
			cur := tables[r.Table]
			if r.First != 0 && r.First != cur+1 {
				grants[i].Err = fmt.Errorf("%w: %s/%s: seqnum %d asked for, the table is at %d", ErrSeqnumTaken, r.Service, r.Table, r.First, cur)
				continue
			}
			// Nothing can be on a replica ahead of a table never granted.
			skip := r.Skip
			if cur == 0 && r.After == 0 {
				skip = 0
			}
			first := max(cur, r.After) + 1 + skip
			grants[i].First = first
			tables[r.Table] = first + r.Count - 1
		}
	}
	return grants
}

func (c *DatasourceAdd) apply(s *state, _ uint64) any {
	d := c.Datasource
	if d.ID == "" || d.Name == "" || d.Driver == "" {
		return fmt.Errorf("%w: datasource id, name and driver are required", ErrInvalid)
	}
	if _, ok := s.datasources[d.ID]; ok {
		return fmt.Errorf("%w: id %q", ErrDatasourceExists, d.ID)
	}
	if _, ok := s.ix.dsByName[d.Name]; ok {
		return fmt.Errorf("%w: name %q", ErrDatasourceExists, d.Name)
	}
	d.Node, d.Incarnation = "", 0
	s.datasources[d.ID] = d.clone()
	return nil
}

func (c *DatasourceUpdate) apply(s *state, _ uint64) any {
	d, ok := s.datasources[c.ID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrDatasourceNotFound, c.ID)
	}
	if c.Config != nil {
		d.Config = cloneConfig(c.Config)
	}
	if c.Enabled != nil {
		d.Enabled = *c.Enabled
	}
	if c.Description != nil {
		d.Description = *c.Description
	}
	return nil
}

func (c *DatasourceDelete) apply(s *state, _ uint64) any {
	d, ok := s.datasources[c.ID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrDatasourceNotFound, c.ID)
	}
	delete(s.datasources, c.ID)
	// Its service goes, and so do the subscriptions to its tables.
	if svc, ok := s.services[d.Name]; ok && svc.Kind == "datasource" {
		s.deleteService(d.Name)
	}
	s.removeSubsTo(d.Name)
	return nil
}

func (c *DatasourcePlace) apply(s *state, index uint64) any {
	d, ok := s.datasources[c.ID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrDatasourceNotFound, c.ID)
	}
	if c.Node != "" {
		if _, ok := s.nodes[c.Node]; !ok {
			return fmt.Errorf("%w: %q", ErrNodeNotFound, c.Node)
		}
	}
	d.Node, d.Incarnation = c.Node, index
	return nil
}

func (c *Batch) apply(s *state, index uint64) any {
	results := make([]any, len(c.decoded))
	for i, cmd := range c.decoded {
		results[i] = s.applyCmd(cmd, index)
	}
	return results
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
