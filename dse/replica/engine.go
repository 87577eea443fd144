package replica

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/dse/wire"
	"dse.dev/dse/fsm"
)

// Registry is what replication reads of the cluster's registry.
type Registry interface {
	Service(id string) (fsm.Service, bool)
	// ReplicasOn returns the services whose tables node keeps (see
	// replicasOf), not the others it runs.
	ReplicasOn(node string) []fsm.Service
	Node(id string) (fsm.Node, bool)
	Seqnum(publisher, table string) uint64
	PublishedTables(publisher string) []string
	Changed() <-chan struct{}
}

// Writer commits a registry command (package cluster).
type Writer interface {
	Write(ctx context.Context, t fsm.CommandType, body any) error
}

// Sender queues a one-way frame to a peer (package transport).
type Sender interface {
	Send(addr string, typ byte, body []byte) error
}

// Fetcher asks a service's owner node for what follows after in a table:
// the encoded batch of its deltas, or a snapshot (package dse's catch-up
// on the wire).
type Fetcher interface {
	FetchTable(ctx context.Context, owner, service, tbl string, after uint64) ([]byte, error)
}

// Config holds an engine's collaborators and settings.
type Config struct {
	Dir      string // the node's data dir, where the store lives
	Node     string // this node's id
	Context  context.Context
	Registry Registry
	Writer   Writer
	Sender   Sender
	Fetcher  Fetcher
	// Ready reports whether this node's registry is current (it has
	// caught up with the leader since it started): the engine decides
	// what it holds only then.
	Ready func() bool
	// Go runs f in a goroutine the node waits for when it closes.
	Go func(f func())
	// LagTimeout is how long the owner waits for an in-sync replica's
	// acknowledgement before it takes the replica out of the in-sync set;
	// AckTimeout, how long a publication waits to be durable before it
	// fails with an unknown outcome.
	LagTimeout, AckTimeout time.Duration
	// Catchups counts the catch-ups replicas ask their owner for (nil:
	// not counted).
	Catchups prometheus.Counter
	// Commits observes how long each of the store's commits took, its
	// fdatasync included (nil: not observed).
	Commits prometheus.Observer
	Logger  hclog.Logger
}

// Engine is a node's replication: the replicas it holds (in memory and on
// disk), and, for the services it owns, the tracking of which publications
// the in-sync replicas hold.
type Engine struct {
	cfg   Config
	store *store
	tr    *tracker

	mu   sync.Mutex
	svcs map[string]*held // the replicas this node holds, by service

	wqMu     sync.Mutex
	wq       []write
	wqSignal chan struct{}
	closed   bool
}

// held is a service's replica on this node.
type held struct {
	tables   map[string]*replTable
	ackedTo  string    // the owner it last acknowledged to
	changed  time.Time // when one of its tables last moved
	resigned bool      // it left the in-sync set since it started
	resentAt time.Time // when every table's acknowledgement was last resent
}

// replTable is one table of a replica.
type replTable struct {
	seq     uint64
	set     *table.Set
	buf     map[uint64]*table.Publication // early deltas
	durable uint64                        // the last seqnum on disk
	deltas  int                           // written since the last snapshot
	bytes   int
	// progress is when the table last moved (or a catch-up was asked for).
	progress time.Time
	pulling  bool
}

// write is one item of the store's queue: ops, and the seqnums they make
// durable.
type write struct {
	ops  []op
	acks []ackPoint
	done chan error // optional: told once written
}

type ackPoint struct {
	svc, tbl string
	seq      uint64
}

// maxBuffered bounds the early deltas a replica holds per table.
const maxBuffered = 10000

// New opens the store in cfg.Dir and loads the replicas it holds.
func New(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.LagTimeout <= 0 {
		cfg.LagTimeout = time.Second
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 10 * time.Second
	}
	st, err := openStore(cfg.Dir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	loaded, err := st.load()
	if err != nil {
		st.close()
		return nil, fmt.Errorf("dse: load replica store: %w", err)
	}
	e := &Engine{cfg: cfg, store: st, svcs: map[string]*held{}, wqSignal: make(chan struct{}, 1)}
	now := time.Now()
	for svc, tables := range loaded {
		h := &held{tables: map[string]*replTable{}}
		for name, t := range tables {
			h.tables[name] = &replTable{seq: t.seq, set: t.set, durable: t.seq, deltas: t.deltas, bytes: t.bytes, progress: now}
		}
		e.svcs[svc] = h
	}
	e.tr = newTracker(e)
	return e, nil
}

// Run runs the store's writer and the engine's loop until the context
// ends; then it closes the store.
func (e *Engine) Run() {
	e.cfg.Go(e.loop)
	e.writeLoop()
}

// replicasOf returns a service's replica set and in-sync set: its own
// for a replicated service; for an external service made before
// replication, its one instance.
func replicasOf(rec fsm.Service) (replicas, inSync []string) {
	if len(rec.Replicas) > 0 {
		return rec.Replicas, rec.InSync
	}
	if rec.Kind == "external" {
		return rec.Instances, rec.Instances
	}
	return nil, nil
}

// Replicated reports whether rec's tables are kept by replicas.
func Replicated(rec fsm.Service) bool {
	r, _ := replicasOf(rec)
	return len(r) > 0
}

// Holds reports whether this node holds a replica of service.
func (e *Engine) Holds(service string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.svcs[service]
	return ok
}

// Table returns this node's copy of a table of service, and its seqnum.
func (e *Engine) Table(service, tbl string) (uint64, []table.Row, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, ok := e.svcs[service]
	if !ok {
		return 0, nil, false
	}
	t, ok := h.tables[tbl]
	if !ok {
		return 0, []table.Row{}, true
	}
	return t.seq, t.set.Rows(), true
}

// Tables returns this node's copy of every table of service, by name.
func (e *Engine) Tables(service string) map[string][]table.Row {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, ok := e.svcs[service]
	if !ok {
		return nil
	}
	out := make(map[string][]table.Row, len(h.tables))
	for name, t := range h.tables {
		out[name] = t.set.Unsorted()
	}
	return out
}

// Offer takes publications of services this node replicates: pushed by
// their owner (local false), or made here by this node, their owner
// (local true). Each table's are applied in seqnum order (a snapshot
// replaces the table, a delta follows the seqnum before it; early ones
// wait for the gap to fill, which a catch-up from the owner repairs),
// written to disk, then acknowledged to the owner. Other publications are
// left alone. A node never takes pushes of a service it owns: they come
// from an owner it replaced.
func (e *Engine) Offer(pubs []*table.Publication, local bool) {
	var w write
	now := time.Now()
	// Whether each publisher's are this node's to keep, looked up once a
	// call: a call brings thousands of one publisher's.
	keep := map[string]bool{}
	e.mu.Lock()
	for _, p := range pubs {
		mine, known := keep[p.Publisher]
		if !known {
			rec, ok := e.cfg.Registry.Service(p.Publisher)
			replicas, _ := replicasOf(rec)
			mine = ok && slices.Contains(replicas, e.cfg.Node) && (local || rec.Owner != e.cfg.Node)
			keep[p.Publisher] = mine
		}
		if !mine {
			continue
		}
		h := e.heldLocked(p.Publisher, &w)
		t := h.tables[p.Table]
		if t == nil {
			t = &replTable{set: table.NewSet(nil)}
			h.tables[p.Table] = t
		}
		if e.applyLocked(p.Publisher, t, p, &w) {
			h.changed, t.progress = now, now
		}
	}
	e.mu.Unlock()
	if len(w.ops) > 0 {
		e.queue(w)
	}
}

// heldLocked returns the replica of svc, created (and its marker queued in
// w) if this node held none.
func (e *Engine) heldLocked(svc string, w *write) *held {
	h := e.svcs[svc]
	if h == nil {
		h = &held{tables: map[string]*replTable{}}
		e.svcs[svc] = h
		w.ops = append(w.ops, op{kind: opAddService, svc: svc})
	}
	return h
}

// applyLocked applies p to t if it is next, and what it lets through of the
// early ones; it reports whether t moved.
func (e *Engine) applyLocked(svc string, t *replTable, p *table.Publication, w *write) bool {
	switch {
	case p.Snapshot && p.Seqnum > t.seq, p.Snapshot && t.seq == 0 && t.set.Len() == 0:
		p.ApplyTo(t.set)
		t.seq = p.Seqnum
		for s := range t.buf {
			if s <= t.seq {
				delete(t.buf, s)
			}
		}
		e.writeSnapshotLocked(svc, p.Table, t, p, w)
	case !p.Snapshot && p.Seqnum == t.seq+1:
		e.applyDeltaLocked(svc, t, p, w)
	case p.Seqnum > t.seq+1:
		if t.buf == nil {
			t.buf = map[uint64]*table.Publication{}
		}
		if len(t.buf) < maxBuffered {
			t.buf[p.Seqnum] = p
		}
		return false
	default:
		return false // old, or a duplicate
	}
	for {
		next, ok := t.buf[t.seq+1]
		if !ok {
			break
		}
		delete(t.buf, t.seq+1)
		if next.Snapshot {
			next.ApplyTo(t.set)
			t.seq = next.Seqnum
			e.writeSnapshotLocked(svc, next.Table, t, next, w)
		} else {
			e.applyDeltaLocked(svc, t, next, w)
		}
	}
	return true
}

// Compaction: a table's deltas are folded into a new snapshot once they
// number compactDeltas, or weigh more than the snapshot did (at least
// compactBytes).
const (
	compactDeltas = 512
	compactBytes  = 1 << 20
)

func (e *Engine) applyDeltaLocked(svc string, t *replTable, p *table.Publication, w *write) {
	p.ApplyTo(t.set)
	t.seq = p.Seqnum
	enc, err := p.AppendTo(nil)
	if err != nil {
		e.cfg.Logger.Error("cannot encode a replica's delta", "service", svc, "table", p.Table, "error", err)
		return
	}
	t.deltas++
	t.bytes += len(enc)
	w.ops = append(w.ops, op{kind: opDelta, svc: svc, tbl: p.Table, seq: p.Seqnum, encoded: enc})
	w.acks = append(w.acks, ackPoint{svc, p.Table, p.Seqnum})
	if t.deltas >= compactDeltas || t.bytes >= compactBytes {
		snap := &table.Publication{Publisher: svc, Table: p.Table, Seqnum: t.seq, Snapshot: true, Rows: t.set.Shared()}
		e.writeSnapshotLocked(svc, p.Table, t, snap, w)
	}
}

func (e *Engine) writeSnapshotLocked(svc, tbl string, t *replTable, p *table.Publication, w *write) {
	snap := p
	if !p.Snapshot || p.Publisher != svc {
		snap = &table.Publication{Publisher: svc, Table: tbl, Seqnum: t.seq, Snapshot: true, Rows: t.set.Shared()}
	}
	enc, err := snap.Encode() // sized up front: a big table grows no buffer
	if err != nil {
		e.cfg.Logger.Error("cannot encode a replica's snapshot", "service", svc, "table", tbl, "error", err)
		return
	}
	t.deltas, t.bytes = 0, 0
	w.ops = append(w.ops, op{kind: opSnapshot, svc: svc, tbl: tbl, seq: t.seq, encoded: enc})
	w.acks = append(w.acks, ackPoint{svc, tbl, t.seq})
}

// queue hands w to the store's writer.
func (e *Engine) queue(w write) bool {
	e.wqMu.Lock()
	if e.closed {
		e.wqMu.Unlock()
		if w.done != nil {
			w.done <- errdefs.ErrClosed
		}
		return false
	}
	e.wq = append(e.wq, w)
	e.wqMu.Unlock()
	select {
	case e.wqSignal <- struct{}{}:
	default:
	}
	return true
}

// writeLoop is the store's group commit: while one transaction is written,
// the next gathers everything queued, and acknowledgements go out once it
// is on disk.
func (e *Engine) writeLoop() {
	defer func() {
		e.wqMu.Lock()
		e.closed = true
		q := e.wq
		e.wq = nil
		e.wqMu.Unlock()
		for _, w := range q {
			if w.done != nil {
				w.done <- errdefs.ErrClosed
			}
		}
		e.tr.failAll(fmt.Errorf("%w: the node is shutting down; the publication may or may not be kept", errdefs.ErrClosed))
		e.store.close()
	}()
	for {
		select {
		case <-e.cfg.Context.Done():
			return
		case <-e.wqSignal:
		}
		for {
			e.wqMu.Lock()
			q := e.wq
			e.wq = nil
			e.wqMu.Unlock()
			if len(q) == 0 {
				break
			}
			var ops []op
			for _, w := range q {
				ops = append(ops, w.ops...)
			}
			start := time.Now()
			err := e.store.commit(ops)
			if e.cfg.Commits != nil {
				e.cfg.Commits.Observe(time.Since(start).Seconds())
			}
			if err != nil {
				e.cfg.Logger.Error("cannot write replicas", "error", err)
			}
			touched := map[string]map[string]bool{} // by service, its tables
			e.mu.Lock()
			for _, w := range q {
				for _, a := range w.acks {
					if err != nil {
						break
					}
					if h := e.svcs[a.svc]; h != nil {
						if t := h.tables[a.tbl]; t != nil && a.seq > t.durable {
							t.durable = a.seq
							if touched[a.svc] == nil {
								touched[a.svc] = map[string]bool{}
							}
							touched[a.svc][a.tbl] = true
						}
					}
				}
			}
			e.mu.Unlock()
			for _, w := range q {
				if w.done != nil {
					w.done <- err
				}
			}
			for svc, tables := range touched {
				e.acknowledge(svc, false, tables)
			}
		}
	}
}

// Ack is what a replica has on disk of a service, of all its tables or of
// some (those that moved): the body of a wire.ReplicaAck frame.
type Ack struct {
	Service string            `msgpack:"s"`
	Node    string            `msgpack:"n"`
	Tables  map[string]uint64 `msgpack:"t"`
}

// acknowledge tells svc's owner what this node holds of it on disk: of
// every table, or of those in only (the ones a commit moved: the owner
// keeps the highest it heard of each, so an acknowledgement costs what
// moved, not what the service holds); when onOwnerChange, only if the
// owner changed since the last time.
func (e *Engine) acknowledge(svc string, onOwnerChange bool, only map[string]bool) {
	rec, ok := e.cfg.Registry.Service(svc)
	if !ok || rec.Owner == "" {
		return
	}
	e.mu.Lock()
	h := e.svcs[svc]
	if h == nil || onOwnerChange && h.ackedTo == rec.Owner {
		e.mu.Unlock()
		return
	}
	h.ackedTo = rec.Owner
	a := Ack{Service: svc, Node: e.cfg.Node}
	if only != nil {
		a.Tables = make(map[string]uint64, len(only))
		for name := range only {
			if t := h.tables[name]; t != nil {
				a.Tables[name] = t.durable
			}
		}
	} else {
		a.Tables = make(map[string]uint64, len(h.tables))
		for name, t := range h.tables {
			a.Tables[name] = t.durable
		}
	}
	e.mu.Unlock()
	if rec.Owner == e.cfg.Node {
		e.tr.ack(a)
		return
	}
	node, ok := e.cfg.Registry.Node(rec.Owner)
	if !ok {
		return
	}
	body, err := wire.Encode(a)
	if err == nil {
		e.cfg.Sender.Send(node.Addr, wire.ReplicaAck, body)
	}
}

// HandleAck takes a replica's acknowledgement (a wire.ReplicaAck frame) of
// a service this node owns.
func (e *Engine) HandleAck(from string, body []byte) {
	var a Ack
	if err := wire.Decode(body, &a, "replica acknowledgement"); err != nil {
		e.cfg.Logger.Warn("dropping a malformed replica acknowledgement", "from", from, "error", err)
		return
	}
	e.tr.ack(a)
}
