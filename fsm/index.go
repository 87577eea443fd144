package fsm

import (
	"maps"
	"slices"
)

// index is what the registry is asked for often, kept beside the state
// so that no answer scans it: every node's watchers ask, after every
// change, for the services it hosts or replicates, its datasources and its
// attachments; the leader's placement asks for what is unplaced. With
// 100,000 services a scan cloned every record, on every node, several
// times a second.
//
// It is derived from the state, never persisted: Restore rebuilds it.
// After an entry is applied, the records the entry may have changed are
// filed again (affected says which); an entry it cannot tell of (the
// node-wide ones: a node removed, up or down) refiles everything.
type index struct {
	svcNodes map[string]map[string]struct{} // node → services with it among their instances or replicas
	svcOn    map[string][]string            // service → the nodes svcNodes files it under
	attached map[string]struct{}            // services with attachments
	repl     map[string]struct{}            // replicated services
	replOn   map[string]map[string]struct{} // node → services whose tables it replicates

	dsNodes  map[string]map[string]struct{} // node ("" unplaced) → datasources placed there
	dsOn     map[string]string              // datasource → the node dsNodes files it under
	dsByName map[string]string              // datasource name → id
	dsOff    map[string]struct{}            // disabled datasources
}

func newIndex() *index {
	return &index{
		svcNodes: map[string]map[string]struct{}{},
		svcOn:    map[string][]string{},
		attached: map[string]struct{}{},
		repl:     map[string]struct{}{},
		replOn:   map[string]map[string]struct{}{},
		dsNodes:  map[string]map[string]struct{}{},
		dsOn:     map[string]string{},
		dsByName: map[string]string{},
		dsOff:    map[string]struct{}{},
	}
}

// reindexAll files every record again.
func (s *state) reindexAll() {
	s.ix = newIndex()
	for id := range s.services {
		s.reindexService(id)
	}
	for id := range s.datasources {
		s.reindexDatasource(id, "")
	}
}

// reindexService files service id as the state has it now (gone if
// deleted).
func (s *state) reindexService(id string) {
	ix := s.ix
	for _, n := range ix.svcOn[id] {
		unfile(ix.svcNodes, n, id)
		unfile(ix.replOn, n, id)
	}
	delete(ix.svcOn, id)
	delete(ix.attached, id)
	delete(ix.repl, id)
	svc, ok := s.services[id]
	if !ok {
		return
	}
	nodes := slices.Concat(svc.Instances, svc.Replicas)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	for _, n := range nodes {
		file(ix.svcNodes, n, id)
	}
	for _, n := range replicaNodes(svc) {
		file(ix.replOn, n, id) // a subset of nodes: unfiled with them
	}
	if len(nodes) > 0 {
		ix.svcOn[id] = nodes
	}
	if len(svc.Attached) > 0 {
		ix.attached[id] = struct{}{}
	}
	if len(svc.Replicas) > 0 {
		ix.repl[id] = struct{}{}
	}
}

// replicaNodes returns the nodes that keep svc's tables: its replicas,
// or the instances of an external service made before replication.
func replicaNodes(svc *Service) []string {
	switch {
	case len(svc.Replicas) > 0:
		return svc.Replicas
	case svc.Kind == kindExternal:
		return svc.Instances
	}
	return nil
}

// file adds id to the set of key in m.
func file(m map[string]map[string]struct{}, key, id string) {
	set := m[key]
	if set == nil {
		set = map[string]struct{}{}
		m[key] = set
	}
	set[id] = struct{}{}
}

// unfile removes id from the set of key in m.
func unfile(m map[string]map[string]struct{}, key, id string) {
	if set := m[key]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

// reindexDatasource files datasource id as the state has it now; name is
// the one it had before the entry (a deleted one's), "" if unknown.
func (s *state) reindexDatasource(id, name string) {
	ix := s.ix
	if n, ok := ix.dsOn[id]; ok {
		unfile(ix.dsNodes, n, id)
		delete(ix.dsOn, id)
	}
	if name != "" && ix.dsByName[name] == id {
		delete(ix.dsByName, name)
	}
	delete(ix.dsOff, id)
	d, ok := s.datasources[id]
	if !ok {
		return
	}
	file(ix.dsNodes, d.Node, id)
	ix.dsOn[id] = d.Node
	ix.dsByName[d.Name] = id
	if !d.Enabled {
		ix.dsOff[id] = struct{}{}
	}
}

// affected returns, before cmd is applied, the services and datasources
// (with their names) it may change, or all when it cannot tell.
type affected struct {
	all      bool
	services []string
	dss      map[string]string // id → name before
}

func (a *affected) service(id string) { a.services = append(a.services, id) }

func (a *affected) datasource(s *state, id string) {
	if a.dss == nil {
		a.dss = map[string]string{}
	}
	name := ""
	if d, ok := s.datasources[id]; ok {
		name = d.Name
	}
	a.dss[id] = name
}

// affects adds what cmd may change to a.
func (a *affected) affects(s *state, cmd command) {
	switch c := cmd.(type) {
	case *Publish, *Subscribe, *Unsubscribe, *TokenCreate, *TokenRevoke:
	case *ServiceRegister:
		a.service(c.ID)
	case *ServiceUnregister:
		a.service(c.ID)
	case *ServiceCreate:
		a.service(c.ID)
	case *ReplicaSync:
		a.service(c.Service)
	case *ReplicaMove:
		a.service(c.Service)
	case *ReplicaResign:
		a.service(c.Service)
	case *ServiceAttach:
		a.service(c.Service)
	case *ServiceDetach:
		a.service(c.Service)
	case *DatasourceAdd:
		a.datasource(s, c.Datasource.ID)
	case *DatasourceUpdate:
		a.datasource(s, c.ID)
	case *DatasourcePlace:
		a.datasource(s, c.ID)
	case *DatasourceDelete:
		a.datasource(s, c.ID)
		if d, ok := s.datasources[c.ID]; ok {
			a.service(d.Name)
		}
	case *Once, *Batch:
		// Their commands file what they change as each applies.
	default: // node-wide, or new: refile everything
		a.all = true
	}
}

// applyCmd applies cmd and files again what it changed: a command of a
// batch sees the index as the commands before it left it.
func (s *state) applyCmd(cmd command, index uint64) any {
	var a affected
	a.affects(s, cmd)
	res := cmd.apply(s, index)
	s.refile(&a)
	return res
}

// refile files again what an applied entry affected.
func (s *state) refile(a *affected) {
	if a.all {
		s.reindexAll()
		return
	}
	for _, id := range a.services {
		s.reindexService(id)
	}
	for id, name := range a.dss {
		s.reindexDatasource(id, name)
	}
}

// ServicesOn returns the services with node among their instances or
// replicas, sorted by id.
func (f *FSM) ServicesOn(node string) []Service {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.servicesIn(f.s.ix.svcNodes[node])
}

// ReplicasOn returns the services whose tables node keeps (among their
// replicas, or an instance of an external service made before
// replication), sorted by id: what a node's replica engine and external
// instances follow, without the services it merely runs.
func (f *FSM) ReplicasOn(node string) []Service {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.servicesIn(f.s.ix.replOn[node])
}

// servicesIn returns copies of the services of set, sorted by id.
func (s *state) servicesIn(set map[string]struct{}) []Service {
	ids := slices.Sorted(maps.Keys(set))
	out := make([]Service, 0, len(ids))
	for _, id := range ids {
		out = append(out, *s.services[id].clone())
	}
	return out
}

// Attachments returns every service's attachments, by service id.
func (f *FSM) Attachments() map[string][]Attachment {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[string][]Attachment{}
	for id := range f.s.ix.attached {
		out[id] = cloneAttachments(f.s.services[id].Attached)
	}
	return out
}

// DatasourcesOn returns the datasources placed on node ("": those placed
// nowhere), sorted by id.
func (f *FSM) DatasourcesOn(node string) []Datasource {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ids := slices.Sorted(maps.Keys(f.s.ix.dsNodes[node]))
	out := make([]Datasource, 0, len(ids))
	for _, id := range ids {
		out = append(out, *f.s.datasources[id].clone())
	}
	return out
}

// DatasourceByName returns the datasource named name.
func (f *FSM) DatasourceByName(name string) (Datasource, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	id, ok := f.s.ix.dsByName[name]
	if !ok {
		return Datasource{}, false
	}
	return *f.s.datasources[id].clone(), true
}

// ReplicatedServices returns the replicated services, sorted by id.
func (f *FSM) ReplicatedServices() []Service {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.servicesIn(f.s.ix.repl)
}

// Unplaced returns what the leader's datasource placement must look at,
// given the nodes that can run datasources: those placed nowhere or on
// any other node, and disabled ones still placed, sorted by id; and how
// many are placed on each of live.
func (f *FSM) Unplaced(live map[string]bool) ([]Datasource, map[string]int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ix := f.s.ix
	load := map[string]int{}
	var ids []string
	for n, set := range ix.dsNodes {
		if live[n] {
			load[n] = len(set)
			continue
		}
		ids = slices.AppendSeq(ids, maps.Keys(set))
	}
	for id := range ix.dsOff {
		if n := ix.dsOn[id]; live[n] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]Datasource, 0, len(ids))
	for _, id := range ids {
		d := f.s.datasources[id]
		if d.Node == "" && !d.Enabled {
			continue // placed nowhere, as it should be
		}
		out = append(out, *d.clone())
	}
	return out, load
}
