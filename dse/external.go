package dse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// External services are created through the API (`dse services create`);
// their tables are set from outside by publish. Each is kept on its
// replicas (package replica; DefaultReplicas nodes, or every node when the
// cluster has fewer): every replica node runs an instance, the owner's
// publishes, and a publish is answered once the in-sync replicas hold it on
// disk. When the owner's node goes down, the leader makes an in-sync
// replica the owner; its instance takes over: it republishes each table of
// its replica as a snapshot under a new seqnum before any client's publish.

// DefaultReplicas is how many replicas an external service gets unless
// its creator says otherwise.
const DefaultReplicas = 3

// externalService is the instance of an external service on one of its
// replica nodes.
type externalService struct {
	*DataService
	n *Node
	// mu holds publishes (read) off while the instance takes over (write).
	mu       sync.RWMutex
	tookOver uint64 // the incarnation whose takeover is done
}

// externalActions are the actions every external service has.
var externalActions = func() []string {
	e := &externalService{DataService: NewDataService("x", Hooks{})}
	e.addEndpoints()
	return e.actions()
}()

func (e *externalService) addEndpoints() {
	e.AddRPCEndpoint(Endpoint{
		"publish":                             e.publishRPC,
		"get_last_published_data_with_seqnum": e.lastRPC,
		"get_snapshot":                        e.snapshotRPC,
	})
}

// CreateService creates an external service whose tables are set by
// Publish, owned by this node and kept on replicas nodes (0: the default,
// DefaultReplicas; fewer when the cluster has fewer live nodes) (`dse
// services create`). An id already registered is refused with
// ErrServiceExists.
func (n *Node) CreateService(ctx context.Context, id string, replicas int) (DataServiceInfo, error) {
	if err := name.Check("service id", id); err != nil {
		return DataServiceInfo{}, err
	}
	if replicas == 0 {
		replicas = DefaultReplicas
	}
	if replicas < 1 || replicas > fsm.MaxReplicas {
		return DataServiceInfo{}, fmt.Errorf("%w: replicas %d: want 1 to %d", ErrInvalid, replicas, fsm.MaxReplicas)
	}
	if _, ok := n.fsm.Service(id); ok {
		return DataServiceInfo{}, fmt.Errorf("%w: %q", ErrServiceExists, id)
	}
	if _, err := n.lookupDatasource(id); err == nil {
		return DataServiceInfo{}, fmt.Errorf("%w: %q is a datasource's name", ErrServiceExists, id)
	}
	if err := n.cluster.EnsureRegistered(ctx); err != nil {
		return DataServiceInfo{}, err
	}
	if err := n.applyErr(ctx, fsm.CmdServiceCreate, fsm.ServiceCreate{ID: id, Node: n.id, Kind: KindExternal, Endpoints: externalActions, Replicas: replicas}); err != nil {
		return DataServiceInfo{}, err
	}
	if err := n.startExternal(ctx, id); err != nil && !errors.Is(err, ErrServiceExists) {
		return DataServiceInfo{}, err
	}
	return n.ServiceInfo(id)
}

// startExternal starts this node's instance of external service id, a
// replica placed here; the owner's registers it again, which gives it a
// new incarnation (a process restarted fences what the last one had in
// flight).
func (n *Node) startExternal(ctx context.Context, id string) error {
	ext := &externalService{n: n}
	ext.DataService = NewDataService(id, Hooks{OwnershipChanged: ext.ownershipChanged})
	ext.kind = KindExternal
	ext.addEndpoints()
	n.extMu.Lock()
	if _, ok := n.external[id]; ok {
		n.extMu.Unlock()
		return fmt.Errorf("%w: %q runs on node %q", ErrServiceExists, id, n.id)
	}
	n.external[id] = ext
	n.extMu.Unlock()
	if err := n.Register(ctx, ext.DataService); err != nil {
		n.extMu.Lock()
		delete(n.external, id)
		n.extMu.Unlock()
		return err
	}
	return nil
}

// ownershipChanged takes over when the instance becomes the owner.
func (e *externalService) ownershipChanged(o Ownership) {
	if o.Owner {
		e.takeover(o.Incarnation)
	}
}

// takeover republishes, once per incarnation, every table of this node's
// replica as a snapshot: a new owner's first publications, queued before
// any client's (which wait on e.mu), so that what the replica held (every
// publication the old owner acknowledged) is what the next publish
// changes.
func (e *externalService) takeover(inc uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tookOver >= inc {
		return
	}
	if e.holdsNothing() {
		// Its data dir gone: it must not republish that (the other
		// replicas would take it, losing what was acknowledged). Its
		// replica hands the service to an in-sync one.
		return
	}
	tables := e.n.replicas.Tables(e.id)
	for _, tbl := range slices.Sorted(maps.Keys(tables)) {
		rows := tables[tbl]
		if _, err := e.publishStart(tbl, rows, true); err != nil {
			e.n.logger.Warn("cannot republish a table as its new owner", "service", e.id, "table", tbl, "error", err)
			return // the next publish tries again
		}
	}
	e.tookOver = inc
	e.n.logger.Info("took the service over", "service", e.id, "incarnation", inc, "tables", len(tables))
}

// holdsNothing reports whether this node's replica holds nothing of the
// tables the service has published (the node's data dir is gone).
func (e *externalService) holdsNothing() bool {
	published := false
	for _, tbl := range e.n.fsm.PublishedTables(e.id) {
		if e.n.fsm.Seqnum(e.id, tbl) == 0 {
			continue
		}
		published = true
		if seq, rows, ok := e.n.replicas.Table(e.id, tbl); ok && (seq > 0 || len(rows) > 0) {
			return false
		}
	}
	return published
}

// ensureTakeover takes over if this instance owns the service under an
// incarnation it has not taken over yet (its ownership hook may not have
// run yet).
func (e *externalService) ensureTakeover() {
	if _, inc, ok := e.n.fsm.Owner(e.id); ok {
		e.mu.RLock()
		done := e.tookOver >= inc
		e.mu.RUnlock()
		if !done {
			e.takeover(inc)
		}
	}
}

// publishStart queues a publication of tbl's full new content.
func (e *externalService) publishStart(tbl string, rows []Row, snapshot bool) (*Publishing, error) {
	if err := table.CanonicalRows(rows, table.DefaultLimits); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return e.startPublish(tbl, func(set *table.Set) (add, del, content []Row) {
		add, del = set.Replace(rows)
		if set.Len() == len(rows) {
			content = rows
		}
		return add, del, content
	}, snapshot)
}

// nodeError marks an RPC method's error as the node's own refusal (this
// instance does not own the service, say), so that it keeps its code on
// its way back instead of reading as the method's failure.
type nodeError struct{ error }

func (e nodeError) Unwrap() error { return e.error }

func (e *externalService) publishRPC(ctx context.Context, args map[string]any) (any, error) {
	tbl, _ := args["table"].(string)
	snapshot, _ := args["snapshot"].(bool)
	rows, err := table.FromValue(args["rows"], table.DefaultLimits)
	if err != nil {
		return nil, nodeError{fmt.Errorf("%w: %v", ErrInvalid, err)}
	}
	res, err := e.publish(ctx, tbl, rows, snapshot)
	if err != nil {
		return nil, nodeError{err}
	}
	return map[string]any{"seqnum": int64(res.Seqnum), "changed": res.Changed}, nil
}

// publish is the publish action on canonical rows, which are the
// instance's from the call on: Node.Publish calls it directly when this
// node's instance owns the service, its RPC otherwise.
func (e *externalService) publish(ctx context.Context, tbl string, rows []Row, snapshot bool) (PublishResult, error) {
	if !e.IsOwner() {
		owner, _, _ := e.n.fsm.Owner(e.id)
		return PublishResult{}, fmt.Errorf("%w: %q is a replica of %s on node %q; node %q owns it", ErrFenced, e.id, e.id, e.n.id, owner)
	}
	if err := e.n.replicas.CanPublish(e.id); err != nil {
		return PublishResult{}, err
	}
	e.ensureTakeover()
	e.mu.RLock()
	p, err := e.publishStart(tbl, rows, snapshot)
	e.mu.RUnlock()
	if err != nil {
		return PublishResult{}, err
	}
	seq, changed, err := p.Wait(ctx)
	if err != nil {
		return PublishResult{}, err
	}
	return PublishResult{Seqnum: seq, Changed: changed}, nil
}

// publishByRPC is Publish through the service's publish RPC.
func (n *Node) publishByRPC(ctx context.Context, service string, args map[string]any) (PublishResult, error) {
	res, err := n.RPC(ctx, service, "publish", args, RPCOptions{Timeout: n.cfg.ApplyTimeout})
	if errors.Is(err, ErrNoSuchMethod) {
		return PublishResult{}, fmt.Errorf("%w: %q is not an external service (create it with `dse services create`); its own program publishes its tables", ErrInvalid, service)
	}
	if err != nil {
		return PublishResult{}, err
	}
	m, _ := res.(map[string]any)
	seq, _ := m["seqnum"].(int64)
	changed, _ := m["changed"].(bool)
	return PublishResult{Seqnum: uint64(seq), Changed: changed}, nil
}

// localPublisher returns this node's instance of service when it owns the
// service (publish is a reserved action, which no attached process
// shadows): Publish then calls it without the RPC codec and its goroutine
// (which cost a publication through the owner's node 60-100 us of its ~2
// ms, and its rows encoded and decoded once more).
func (n *Node) localPublisher(service string) *externalService {
	n.extMu.Lock()
	e := n.external[service]
	n.extMu.Unlock()
	if e == nil || !e.IsOwner() {
		return nil
	}
	return e
}

// last returns a table's content and seqnum: the owner's, once it has
// taken over; else this node's replica's (a standby answers reads while
// the owner cannot).
func (e *externalService) last(tbl string) (uint64, []Row, error) {
	if e.IsOwner() {
		e.ensureTakeover()
		if _, inc, _ := e.n.fsm.Owner(e.id); e.takenOver(inc) {
			return e.GetLastPublishedDataWithSeqnum(tbl)
		}
	}
	seq, rows, ok := e.n.replicas.Table(e.id, tbl)
	if !ok || seq == 0 && e.n.fsm.Seqnum(e.id, tbl) > 0 {
		// A table it has not caught up yet is no answer: the next
		// instance gives one.
		return 0, nil, nodeError{fmt.Errorf("%w: node %q holds no replica of %s/%s yet", ErrUnavailable, e.n.id, e.id, tbl)}
	}
	return seq, rows, nil
}

func (e *externalService) takenOver(inc uint64) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.tookOver >= inc
}

// tableArg reads the table argument of the read actions.
func tableArg(args map[string]any) (string, error) {
	t, ok := args["table"].(string)
	if !ok || t == "" {
		return "", fmt.Errorf("argument \"table\" (a string) is required")
	}
	return t, nil
}

func (e *externalService) lastRPC(_ context.Context, args map[string]any) (any, error) {
	tbl, err := tableArg(args)
	if err != nil {
		return nil, err
	}
	seq, rows, err := e.last(tbl)
	if err != nil {
		return nil, err
	}
	return map[string]any{"seqnum": int64(seq), "rows": rowsValue(rows)}, nil
}

func (e *externalService) snapshotRPC(_ context.Context, args map[string]any) (any, error) {
	tbl, err := tableArg(args)
	if err != nil {
		return nil, err
	}
	_, rows, err := e.last(tbl)
	if err != nil {
		return nil, err
	}
	return rowsValue(rows), nil
}

// DeleteService removes a service from the registry wherever it runs
// (`dse services delete`); its replicas stop it and forget its tables.
func (n *Node) DeleteService(ctx context.Context, id string) error {
	svc, ok := n.fsm.Service(id)
	if !ok {
		return fmt.Errorf("%w: %q", ErrServiceNotFound, id)
	}
	switch svc.Kind {
	case KindDatasource:
		return fmt.Errorf("%w: %q is a datasource's service: use `dse datasources delete`", ErrInvalid, id)
	case KindWatch:
		return fmt.Errorf("%w: %q belongs to a running watch", ErrInvalid, id)
	}
	return n.applyErr(ctx, fsm.CmdServiceUnregister, fsm.ServiceUnregister{ID: id})
}

// PublishRequest is the body of an external publication.
type PublishRequest struct {
	Table    string `msgpack:"table" json:"table"`
	Rows     []Row  `msgpack:"rows" json:"rows"`
	Snapshot bool   `msgpack:"snapshot" json:"snapshot"`
}

// PublishResult answers an external publication.
type PublishResult struct {
	Seqnum  uint64 `json:"seqnum"`
	Changed bool   `json:"changed"`
}

// Publish sets the full content of an external service's table, wherever the
// service runs (through its owner: directly when it is this node's
// instance, by its publish RPC otherwise), and returns once the
// publication is sequenced and on the disks of its in-sync replicas. While
// the service has no reachable owner (its node down, its replicas taking
// over) it tries again until ApplyTimeout, when the publication certainly
// did not run; a publication that failed after it reached the owner (a
// timeout, the owner lost) may or may not have taken effect, and its error
// says so. rows, the slice and its Rows, are the node's from the call on,
// as DataService.Publish's are: the caller must not modify them.
func (n *Node) Publish(ctx context.Context, service, tbl string, rows []Row, snapshot bool) (PublishResult, error) {
	if err := name.Check("table name", tbl); err != nil {
		// Here, not at the owner: refused there, it came back as the
		// method's failure (502), not as bad input.
		return PublishResult{}, err
	}
	if err := table.CanonicalRows(rows, table.DefaultLimits); err != nil {
		return PublishResult{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var args map[string]any // the RPC's, made once it is needed
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	wait := 25 * time.Millisecond
	for {
		var res PublishResult
		var err error
		if e := n.localPublisher(service); e != nil {
			res, err = e.publish(ctx, tbl, rows, snapshot)
		} else {
			if args == nil {
				raw := make([]any, len(rows))
				for i, r := range rows {
					raw[i] = []any(r)
				}
				args = map[string]any{"table": tbl, "rows": raw, "snapshot": snapshot}
			}
			res, err = n.publishByRPC(ctx, service, args)
		}
		if err == nil {
			return res, nil
		}
		// Only where it certainly did not run: refused by a replica that
		// does not own the service (yet), or not sent to any instance.
		if !errors.Is(err, ErrFenced) && !errors.Is(err, errNotRun) {
			return PublishResult{}, err
		}
		select {
		case <-ctx.Done():
			return PublishResult{}, fmt.Errorf("%w: no owner of %q took the publication within %s (it did not take effect): %v", ErrUnavailable, service, n.cfg.ApplyTimeout, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// startExternals starts the instances of the external services this node
// replicates that do not run here yet (created elsewhere, a replica moved
// here, the node restarted).
func (n *Node) startExternals() {
	if !n.cluster.CaughtUp() {
		return
	}
	for _, rec := range n.fsm.ReplicasOn(n.id) {
		if rec.Kind != KindExternal {
			continue
		}
		replicas := rec.Replicas
		if len(replicas) == 0 {
			replicas = rec.Instances // made before replication
		}
		if !slices.Contains(replicas, n.id) {
			continue
		}
		if _, running := n.local.get(rec.ID); running {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		err := n.startExternal(ctx, rec.ID)
		cancel()
		if err != nil && !errors.Is(err, ErrServiceExists) {
			n.logger.Warn("cannot start a replica's instance, retrying", "service", rec.ID, "error", err)
		}
	}
}

// removeDeadWatches runs once the node knows a leader and has caught up:
// it removes the watch services its previous process left in the
// registry.
func (n *Node) removeDeadWatches() {
	for n.ctx.Err() == nil {
		if n.cluster.CaughtUp() {
			break
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, svc := range n.fsm.ServicesOn(n.id) {
		// Watches this process runs are live; the others died with the
		// previous process.
		if _, live := n.local.get(svc.ID); live || svc.Kind != KindWatch || !slices.Contains(svc.Instances, n.id) {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		err := n.applyErr(ctx, fsm.CmdServiceUnregister, fsm.ServiceUnregister{ID: svc.ID, Node: n.id})
		cancel()
		if err != nil && !errors.Is(err, ErrServiceNotFound) {
			n.logger.Warn("cannot remove a dead watch", "service", svc.ID, "error", err)
		}
	}
}

// stopRemoved stops local services whose instance on this node left the
// registry (deleted, moved, or removed with the node).
func (n *Node) stopRemoved() {
	for _, s := range n.local.all() {
		rec, ok := n.fsm.Service(s.id)
		if ok && slices.Contains(rec.Instances, n.id) {
			continue
		}
		if s.Status() != "running" {
			continue
		}
		n.logger.Info("service left the registry, stopping it here", "service", s.id)
		s.stopLocal()
		n.extMu.Lock()
		delete(n.external, s.id)
		n.extMu.Unlock()
	}
}

// watchCounter makes watch service ids unique within a process.
var watchCounter struct {
	sync.Mutex
	n uint64
}

func newWatchID(node string) string {
	var b [4]byte
	rand.Read(b[:])
	watchCounter.Lock()
	watchCounter.n++
	c := watchCounter.n
	watchCounter.Unlock()
	return fmt.Sprintf("watch.%s.%s%d", node, hex.EncodeToString(b[:]), c)
}
