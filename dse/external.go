package dse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// External services are created through the API (`dse services create`) on
// the addressed node; their tables are set from outside by publish. What
// their publish acknowledges is on that node's disk first (a bbolt file in the
// data dir), so it survives a crash; a restarted node republishes every table
// as a snapshot under a new seqnum.

var (
	bucketServices = []byte("services")
	bucketTables   = []byte("tables")
)

// tableStore keeps external services' tables on local disk.
type tableStore struct {
	db *bolt.DB
}

func openTableStore(dir string) (*tableStore, error) {
	db, err := bolt.Open(filepath.Join(dir, "services.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("dse: open service store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketServices); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketTables)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("dse: init service store: %w", err)
	}
	return &tableStore{db: db}, nil
}

func tableKey(service, tbl string) []byte { return []byte(service + "\x00" + tbl) }

func (ts *tableStore) addService(id string) error {
	return ts.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketServices).Put([]byte(id), nil) })
}

func (ts *tableStore) deleteService(id string) error {
	return ts.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketServices).Delete([]byte(id)); err != nil {
			return err
		}
		c := tx.Bucket(bucketTables).Cursor()
		prefix := []byte(id + "\x00")
		for k, _ := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// putTable stores a table's full content; the write is fsynced when it
// returns.
func (ts *tableStore) putTable(service, tbl string, rows []Row) error {
	b, err := (&table.Publication{Publisher: service, Table: tbl, Snapshot: true, Rows: rows}).Encode()
	if err != nil {
		return err
	}
	return ts.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTables).Put(tableKey(service, tbl), b) })
}

// load returns every stored service with its tables.
func (ts *tableStore) load() (map[string]map[string][]Row, error) {
	out := map[string]map[string][]Row{}
	err := ts.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketServices).ForEach(func(k, _ []byte) error {
			out[string(k)] = map[string][]Row{}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketTables).ForEach(func(k, v []byte) error {
			pubs, err := table.DecodeBatch(append(table.AppendBatch(nil, 1), v...))
			if err != nil {
				return fmt.Errorf("stored table %q: %w", k, err)
			}
			p := pubs[0]
			if tables, ok := out[p.Publisher]; ok {
				tables[p.Table] = p.Rows
			}
			return nil
		})
	})
	return out, err
}

func (ts *tableStore) close() error { return ts.db.Close() }

// externalService adds durable publication to a DataService.
type externalService struct {
	*DataService
	mu    sync.Mutex      // serializes publish + persist, so disk order is seqnum order
	dirty map[string]bool // tables whose last publish failed: persist on the next
}

// CreateService registers, on this node, an external service whose tables
// are set by Publish (`dse services create`). An id already registered
// anywhere is refused with ErrServiceExists.
func (n *Node) CreateService(ctx context.Context, id string) (DataServiceInfo, error) {
	if err := name.Check("service id", id); err != nil {
		return DataServiceInfo{}, err
	}
	if _, ok := n.fsm.Service(id); ok {
		return DataServiceInfo{}, fmt.Errorf("%w: %q", ErrServiceExists, id)
	}
	if _, err := n.lookupDatasource(id); err == nil {
		return DataServiceInfo{}, fmt.Errorf("%w: %q is a datasource's name", ErrServiceExists, id)
	}
	if err := n.store.addService(id); err != nil {
		return DataServiceInfo{}, fmt.Errorf("%w: store: %v", ErrUnavailable, err)
	}
	if err := n.startExternalWith(ctx, id, nil, true); err != nil {
		n.store.deleteService(id)
		return DataServiceInfo{}, err
	}
	return n.ServiceInfo(id)
}

// startExternalWith starts an external service; stored tables (after a
// restart) are republished as snapshots before any client publish can run.
// With create, it registers exclusively (`dse services create`): an id
// taken meanwhile fails as existing.
func (n *Node) startExternalWith(ctx context.Context, id string, stored map[string][]Row, create bool) error {
	s := NewDataService(id, Hooks{})
	s.kind = KindExternal
	s.exclusive = create
	ext := &externalService{DataService: s, dirty: map[string]bool{}}
	s.AddRPCEndpoint(Endpoint{"publish": ext.publishRPC})
	ext.mu.Lock()
	defer ext.mu.Unlock()
	n.extMu.Lock()
	n.external[id] = ext
	n.extMu.Unlock()
	if err := n.Register(ctx, s); err != nil {
		n.extMu.Lock()
		delete(n.external, id)
		n.extMu.Unlock()
		return err
	}
	for _, tbl := range slices.Sorted(maps.Keys(stored)) {
		if _, _, err := s.Publish(ctx, tbl, stored[tbl], true); err != nil {
			// Registered but not republished (this node came back before
			// the cluster marked it up again, so its service has no owner
			// yet): stop it here, and let the restore start it again. Its
			// instance stays in the registry: unregistering the only one
			// would delete the service, and the restore would then forget
			// its stored tables.
			s.stopLocal()
			n.extMu.Lock()
			delete(n.external, id)
			n.extMu.Unlock()
			return fmt.Errorf("republish %s/%s: %w", id, tbl, err)
		}
	}
	return nil
}

// DeleteService removes a service from the registry wherever it runs
// (`dse services delete`); its node stops it and forgets its tables.
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
// service runs (through its publish RPC), and returns once the publication
// is sequenced and on the owner node's disk.
func (n *Node) Publish(ctx context.Context, service, tbl string, rows []Row, snapshot bool) (PublishResult, error) {
	if err := name.Check("table name", tbl); err != nil {
		// Here, not at the owner: refused there, it came back as the
		// method's failure (502), not as bad input.
		return PublishResult{}, err
	}
	if err := table.CanonicalRows(rows, table.DefaultLimits); err != nil {
		return PublishResult{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	raw := make([]any, len(rows))
	for i, r := range rows {
		raw[i] = []any(r)
	}
	res, err := n.RPC(ctx, service, "publish", map[string]any{"table": tbl, "rows": raw, "snapshot": snapshot}, RPCOptions{Timeout: n.cfg.ApplyTimeout})
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

func (e *externalService) publishRPC(ctx context.Context, args map[string]any) (any, error) {
	tbl, _ := args["table"].(string)
	snapshot, _ := args["snapshot"].(bool)
	rows, err := table.FromValue(args["rows"], table.DefaultLimits)
	if err != nil {
		return nil, err
	}
	seq, changed, err := e.publishDurable(ctx, tbl, rows, snapshot)
	if err != nil {
		return nil, err
	}
	return map[string]any{"seqnum": int64(seq), "changed": changed}, nil
}

func (e *externalService) publishDurable(ctx context.Context, tbl string, rows []Row, snapshot bool) (uint64, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	seq, changed, err := e.Publish(ctx, tbl, rows, snapshot)
	if err != nil {
		// It may still be sequenced: whatever comes next is written to disk
		// even if it looks like no change.
		e.dirty[tbl] = true
		return seq, changed, err
	}
	if !changed && !e.dirty[tbl] {
		return seq, false, nil
	}
	n := e.nodeOf()
	if n == nil {
		return 0, false, e.errNotRunning()
	}
	if err := n.store.putTable(e.id, tbl, rows); err != nil {
		e.dirty[tbl] = true
		return 0, false, fmt.Errorf("%w: publication %d sequenced but not stored: %v", ErrUnavailable, seq, err)
	}
	delete(e.dirty, tbl)
	return seq, changed, nil
}

// restoreLocal runs once the node knows a leader: it restarts the external
// services stored on this node, republishing each table as a snapshot, and
// removes the watch services a crash left behind.
func (n *Node) restoreLocal() {
	stored, err := n.store.load()
	if err != nil {
		n.logger.Error("cannot read stored services", "error", err)
		return
	}
	// Each try registers its services again (a Raft write, and a new
	// incarnation each): a failure that lasts is tried less often.
	wait := 500 * time.Millisecond
	for {
		if _, err := n.WaitLeader(n.ctx); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		err := n.restoreOnce(ctx, stored)
		cancel()
		if err == nil {
			return
		}
		n.logger.Warn("restoring services failed, retrying", "error", err, "in", wait)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

func (n *Node) restoreOnce(ctx context.Context, stored map[string]map[string][]Row) error {
	// Decide with an up-to-date registry: a service deleted while this node
	// was down must not come back.
	for !n.cluster.CaughtUp() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, svc := range n.fsm.Services() {
		// Watches this process runs are live; the others died with the
		// previous process.
		if _, live := n.local.get(svc.ID); live {
			continue
		}
		if svc.Kind == KindWatch && slices.Contains(svc.Instances, n.id) {
			if err := n.applyErr(ctx, fsm.CmdServiceUnregister, fsm.ServiceUnregister{ID: svc.ID, Node: n.id}); err != nil && !errors.Is(err, ErrServiceNotFound) {
				return err
			}
		}
	}
	// One service that cannot start does not hold up the others: it stays
	// in stored, to be tried again.
	var failed []error
	for _, id := range slices.Sorted(maps.Keys(stored)) {
		if rec, ok := n.fsm.Service(id); !ok || rec.Kind != KindExternal || !slices.Contains(rec.Instances, n.id) {
			n.logger.Info("forgetting a stored service the cluster deleted", "service", id)
			if err := n.store.deleteService(id); err != nil {
				failed = append(failed, err)
				continue
			}
			delete(stored, id)
			continue
		}
		if _, running := n.local.get(id); !running {
			if err := n.startExternalWith(ctx, id, stored[id], false); err != nil {
				failed = append(failed, fmt.Errorf("restart %s: %w", id, err))
				continue
			}
		}
		delete(stored, id)
	}
	return errors.Join(failed...)
}

// stopRemoved stops local services whose instance on this node left the
// registry (deleted, or removed with the node), and forgets stored ones.
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
		_, ext := n.external[s.id]
		delete(n.external, s.id)
		n.extMu.Unlock()
		if ext {
			if err := n.store.deleteService(s.id); err != nil {
				n.logger.Error("cannot forget stored service", "service", s.id, "error", err)
			}
		}
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
