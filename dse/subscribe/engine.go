package subscribe

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/seq"
	"dse.dev/dse/dse/table"
)

// Subscriber is one local subscriber of tables.
type Subscriber interface {
	ID() string
	// Deliver applies one ordered publication (to the subscriber's cache,
	// then its hooks). Called from the delivery loop only, outside every
	// lock of this package, in seqnum order per table.
	Deliver(p *table.Publication, receipt time.Time)
	// Cached returns the subscriber's copy of a table and its seqnum: a
	// newcomer starts from it.
	Cached(id cache.TableID) (rows []table.Row, seqnum uint64, ok bool)
}

// Registry is what the engine reads of the cluster's registry: each
// table's committed seqnum, and who owns a publisher now.
type Registry interface {
	Seqnum(publisher, table string) uint64
	Owner(service string) (node string, incarnation uint64, ok bool)
}

// Fetcher asks a publisher's owner node for what follows req.After: the
// encoded batch of deltas, or a snapshot (package dse sends it over the
// cluster port, or answers it itself when the owner is this node).
type Fetcher interface {
	Fetch(ctx context.Context, owner string, req Request) ([]byte, error)
}

// Config holds an engine's collaborators and settings.
type Config struct {
	// Context is the node's: the engine's loops and catch-ups end with it.
	Context  context.Context
	Registry Registry
	Fetcher  Fetcher
	// ResubTimeout is how long a subscription tolerates a gap, or the
	// registry's seqnum ahead of what it applied without progress, before
	// it catches up.
	ResubTimeout time.Duration
	// Go runs f in a goroutine the node waits for when it closes.
	Go func(f func())
	// Counters (nil: not counted).
	Deliveries, Dropped, Catchups prometheus.Counter
	Logger                        hclog.Logger
}

// maxBuffered bounds the early deltas a subscription holds per table.
const maxBuffered = 10000

// The delivery queue's bounds, in publications and in their bytes on the
// wire (decoded, they take 2-5× that); beyond either, arriving
// publications are dropped and recovered through the gap rule. A queue
// holding none takes anything: one frame is bounded by the frame limit. A
// catch-up reply is always taken (one per subscription at most).
const (
	maxQueuedPubs  = 1 << 20
	maxQueuedBytes = 256 << 20
)

// Engine is a node's subscriber side: one subscription state per table
// for all its local subscribers, and the one delivery loop.
type Engine struct {
	cfg Config

	mu   sync.RWMutex
	subs map[cache.TableID]*State

	// The delivery queue: every publication a subscriber on this node
	// applies, from peers, from local publishers and from catch-ups, and
	// every local subscriber joining, goes through one loop. It is the only
	// code that sequences and delivers, so hooks run outside every lock and
	// in order per table, and may publish, subscribe or call RPCs freely.
	dqMu     sync.Mutex
	dq       []delivery
	dqPubs   int
	dqBytes  int
	dqSignal chan struct{}
	// maxQueuedBytes is maxQueuedBytes, lowered by tests.
	maxQueuedBytes int
}

// delivery is one item of the delivery queue.
type delivery struct {
	pubs    []*table.Publication
	st      *State     // with sub: a local subscriber joining st
	sub     Subscriber // joining st
	receipt time.Time
	size    int // pubs' bytes on the wire (estimated for local ones)
	// catchup, for a catch-up reply: its subscription. Taken whatever the
	// queue holds (it repairs what drops broke; one per subscription
	// waits at most: replyQueued).
	catchup *State
}

// New returns an engine; Run runs its loops.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Engine{cfg: cfg, subs: map[cache.TableID]*State{}, dqSignal: make(chan struct{}, 1), maxQueuedBytes: maxQueuedBytes}
}

// SetMaxQueuedBytes lowers the delivery queue's bound in bytes (tests).
func (e *Engine) SetMaxQueuedBytes(n int) { e.maxQueuedBytes = n }

// Run runs the delivery loop and the resubscribe loop until the engine's
// context ends.
func (e *Engine) Run() {
	e.cfg.Go(e.resubLoop)
	e.deliverLoop()
}

func (e *Engine) count(c prometheus.Counter, n int) {
	if c != nil && n > 0 {
		c.Add(float64(n))
	}
}

// Enqueue adds publications to the delivery queue without blocking (size
// is their bytes on the wire, estimated for local ones); beyond the bound
// they are dropped, and the subscription recovers through the gap rule.
func (e *Engine) Enqueue(pubs []*table.Publication, receipt time.Time, size int) {
	e.enqueue(delivery{pubs: pubs, receipt: receipt, size: size})
}

// HandleFrame takes a batch of publications pushed by a peer. body is only
// lent (the transport reuses it): DecodeBatch copies everything it keeps.
func (e *Engine) HandleFrame(from string, body []byte) {
	pubs, err := table.DecodeBatch(body)
	if err != nil {
		e.cfg.Logger.Warn("dropping malformed publications", "from", from, "error", err)
		return
	}
	e.Enqueue(pubs, time.Now(), len(body))
}

func (e *Engine) enqueue(d delivery) {
	e.dqMu.Lock()
	if len(d.pubs) > 0 && e.dqPubs > 0 && d.catchup == nil && (e.dqPubs+len(d.pubs) > maxQueuedPubs || e.dqBytes+d.size > e.maxQueuedBytes) {
		e.dqMu.Unlock()
		e.count(e.cfg.Dropped, len(d.pubs))
		return
	}
	e.dq = append(e.dq, d)
	e.dqPubs += len(d.pubs)
	e.dqBytes += d.size
	e.dqMu.Unlock()
	select {
	case e.dqSignal <- struct{}{}:
	default: // a signal already pending covers this one too
	}
}

func (e *Engine) deliverLoop() {
	for {
		select {
		case <-e.cfg.Context.Done():
			return
		case <-e.dqSignal:
		}
		for {
			e.dqMu.Lock()
			items := e.dq
			e.dq = nil
			e.dqPubs, e.dqBytes = 0, 0
			e.dqMu.Unlock()
			if len(items) == 0 {
				break
			}
			for _, d := range items {
				if d.sub != nil {
					e.join(d.st, d.sub)
				} else {
					e.receive(d.pubs, d.receipt)
				}
				if st := d.catchup; st != nil {
					st.mu.Lock()
					again := st.catchupWanted
					st.replyQueued, st.catchupWanted = false, false
					st.mu.Unlock()
					if again {
						e.cfg.Go(func() { e.catchup(st) })
					}
				}
			}
		}
	}
}

// receive sequences arrived publications and applies what is in order
// (delivery loop only). Subscribers' Deliver runs after the subscription's
// lock is released.
func (e *Engine) receive(pubs []*table.Publication, now time.Time) {
	for _, p := range pubs {
		e.mu.RLock()
		st := e.subs[cache.TableID{Publisher: p.Publisher, Table: p.Table}]
		e.mu.RUnlock()
		if st == nil {
			continue // nobody here subscribes (any more)
		}
		st.mu.Lock()
		applied := st.seq.Offer(p, now)
		locals := st.ordered
		st.mu.Unlock()
		e.count(e.cfg.Deliveries, len(applied))
		for _, a := range applied {
			for _, s := range locals {
				s.Deliver(a, now)
			}
		}
		// The sequencer reuses the array: cleared, it does not keep the
		// last publication, a snapshot's decoded rows and all, alive
		// until the table's next one.
		clear(applied)
	}
}

// State is this node's subscription to one (publisher, table): one
// sequencer, fanned out to every local subscriber (whose caches hold the
// table: the node keeps no copy of its own).
type State struct {
	id         cache.TableID
	mu         sync.Mutex
	seq        *seq.Sequencer
	locals     map[string]Subscriber
	ordered    []Subscriber    // locals sorted by id; replaced, never mutated, when locals change
	attaching  map[string]bool // local subscribers the delivery loop will add
	catchingUp bool
	restarted  bool // started over during a catch-up: catch up again after it
	// replyQueued: a catch-up reply waits in the delivery queue (which
	// takes them whatever it holds): no other catch-up starts until it is
	// delivered, or a slow hook piled up a reply every ResubTimeout.
	replyQueued bool
	// catchupWanted: a catch-up was asked for while a reply was queued; it
	// runs once that reply is delivered.
	catchupWanted bool
	// noOwner: the last catch-up found the publisher without an owner (not
	// registered yet): once it has one, the subscription catches up (a
	// table never published then gets its seed, the publisher's
	// get_snapshot).
	noOwner bool
}

// reorderLocked rebuilds the sorted list of local subscribers, which the
// delivery loop reads without copying (st.mu held).
func (st *State) reorderLocked() {
	ordered := make([]Subscriber, 0, len(st.locals))
	for _, id := range slices.Sorted(maps.Keys(st.locals)) {
		ordered = append(ordered, st.locals[id])
	}
	st.ordered = ordered
}

// Attach joins s to the node's subscription to id, creating it if needed:
// the delivery loop hands s the table, from another local subscriber's
// copy. It reports whether the node's subscription existed (if not, the
// caller starts its first catch-up once the registry holds it) and whether
// s was already attached.
func (e *Engine) Attach(s Subscriber, id cache.TableID) (existed, already bool) {
	e.mu.Lock()
	st, existed := e.subs[id]
	if !existed {
		st = &State{id: id, seq: seq.New(maxBuffered), locals: map[string]Subscriber{}, attaching: map[string]bool{}}
		e.subs[id] = st
	}
	e.mu.Unlock()
	st.mu.Lock()
	_, already = st.locals[s.ID()]
	already = already || st.attaching[s.ID()]
	if !already {
		st.attaching[s.ID()] = true
	}
	st.mu.Unlock()
	if !already {
		e.enqueue(delivery{st: st, sub: s})
	}
	return existed, already
}

// join adds a local subscriber to st (delivery loop only) and hands it the
// table, as a snapshot from another local subscriber's copy.
func (e *Engine) join(st *State, s Subscriber) {
	st.mu.Lock()
	if !st.attaching[s.ID()] {
		st.mu.Unlock()
		return // detached before it joined
	}
	delete(st.attaching, s.ID())
	st.locals[s.ID()] = s
	st.reorderLocked()
	var snap *table.Publication
	if last := st.seq.Last(); st.seq.Applied() {
		// The node keeps no copy of its own: the local subscribers' caches
		// all hold the table at last (the delivery loop applies to each in
		// turn), so the newcomer starts from one of them.
		for _, other := range st.ordered {
			if rows, at, ok := other.Cached(st.id); ok && at == last && other != s {
				snap = &table.Publication{Publisher: st.id.Publisher, Table: st.id.Table, Seqnum: last, Snapshot: true, Rows: rows}
				break
			}
		}
		if snap == nil {
			// None is current (a subscriber stopping skipped deliveries):
			// start the node's subscription over from the publisher.
			st.seq = seq.New(maxBuffered)
			st.restarted = st.catchingUp
			e.cfg.Go(func() { e.catchup(st) })
		}
	}
	st.mu.Unlock()
	if snap != nil {
		s.Deliver(snap, time.Now())
	}
}

// Detach ends subscriber's part in the node's subscription to id; the
// subscription goes with its last local subscriber.
func (e *Engine) Detach(subscriber string, id cache.TableID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st, ok := e.subs[id]; ok {
		e.detachLocked(st, subscriber)
	}
}

// DetachAll detaches subscriber from every subscription of the node.
func (e *Engine) DetachAll(subscriber string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, st := range e.subs {
		e.detachLocked(st, subscriber)
	}
}

func (e *Engine) detachLocked(st *State, subscriber string) {
	st.mu.Lock()
	delete(st.locals, subscriber)
	delete(st.attaching, subscriber)
	st.reorderLocked()
	empty := len(st.locals)+len(st.attaching) == 0
	st.mu.Unlock()
	if empty {
		delete(e.subs, st.id)
	}
}
