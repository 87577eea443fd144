package dse

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/seq"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
	"dse.dev/dse/internal/bigmem"
	"dse.dev/dse/transport"
)

// maxBuffered bounds the early deltas a subscriber holds per table.
const maxBuffered = 10000

// reorderLocked rebuilds the sorted list of local subscribers, which the
// delivery loop reads without copying (subState.mu held).
func (st *subState) reorderLocked() {
	ordered := make([]*DataService, 0, len(st.locals))
	for _, id := range slices.Sorted(maps.Keys(st.locals)) {
		ordered = append(ordered, st.locals[id])
	}
	st.ordered = ordered
}

// subState is this node's subscription to one (publisher, table): one
// sequencer, fanned out to every local subscriber (whose caches hold the
// table: the node keeps no copy of its own).
type subState struct {
	id         cache.TableID
	mu         sync.Mutex
	seq        *seq.Sequencer
	locals     map[string]*DataService
	ordered    []*DataService  // locals sorted by id; replaced, never mutated, when locals change
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
}

// services is the node's engine: the services it hosts, its subscriptions,
// and the group-commit batcher.
type services struct {
	n       *Node
	batcher *batcher

	mu    sync.RWMutex
	local map[string]*DataService
	subs  map[cache.TableID]*subState

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
	st      *subState // with svc: a local subscriber joining st
	svc     *DataService
	receipt time.Time
	size    int // pubs' bytes on the wire (estimated for local ones)
	// catchup, for a catch-up reply: its subscription. Taken whatever the
	// queue holds (it repairs what drops broke; one per subscription
	// waits at most: replyQueued).
	catchup *subState
}

// The delivery queue's bounds, in publications and in their bytes on the
// wire (decoded, they take 2-5× that); beyond either, arriving
// publications are dropped and recovered through the gap rule. A queue
// holding none takes anything: one frame is bounded by the frame limit. A
// catch-up reply is always taken (one per subscription at most).
const (
	maxQueuedPubs  = 1 << 20
	maxQueuedBytes = 256 << 20
)

func newServices(n *Node) *services {
	return &services{n: n, batcher: newBatcher(n), local: map[string]*DataService{}, subs: map[cache.TableID]*subState{}, dqSignal: make(chan struct{}, 1), maxQueuedBytes: maxQueuedBytes}
}

func (ss *services) start() {
	ss.n.goFunc(ss.batcher.run)
	ss.n.goFunc(ss.resubLoop)
	ss.n.goFunc(ss.watchRegistry)
	ss.n.goFunc(ss.deliverLoop)
}

// enqueue adds to the delivery queue without blocking; publications beyond
// the bound are dropped (the subscriber recovers through the gap rule).
func (ss *services) enqueue(d delivery) {
	ss.dqMu.Lock()
	if len(d.pubs) > 0 && ss.dqPubs > 0 && d.catchup == nil && (ss.dqPubs+len(d.pubs) > maxQueuedPubs || ss.dqBytes+d.size > ss.maxQueuedBytes) {
		ss.dqMu.Unlock()
		ss.n.metrics.dropped.Add(float64(len(d.pubs)))
		return
	}
	ss.dq = append(ss.dq, d)
	ss.dqPubs += len(d.pubs)
	ss.dqBytes += d.size
	ss.dqMu.Unlock()
	wake(ss.dqSignal)
}

func (ss *services) deliverLoop() {
	for {
		select {
		case <-ss.n.ctx.Done():
			return
		case <-ss.dqSignal:
		}
		for {
			ss.dqMu.Lock()
			items := ss.dq
			ss.dq = nil
			ss.dqPubs, ss.dqBytes = 0, 0
			ss.dqMu.Unlock()
			if len(items) == 0 {
				break
			}
			for _, d := range items {
				if d.svc != nil {
					ss.join(d.st, d.svc)
				} else {
					ss.receive(d.pubs, d.receipt)
				}
				if st := d.catchup; st != nil {
					st.mu.Lock()
					again := st.catchupWanted
					st.replyQueued, st.catchupWanted = false, false
					st.mu.Unlock()
					if again {
						ss.n.goFunc(func() { ss.catchup(st) })
					}
				}
			}
		}
	}
}

func (ss *services) add(s *DataService) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.local[s.id]; ok {
		return fmt.Errorf("%w: %q is already running on node %q", ErrServiceExists, s.id, ss.n.id)
	}
	ss.local[s.id] = s
	return nil
}

func (ss *services) remove(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.local, id)
	for tid, st := range ss.subs {
		st.mu.Lock()
		delete(st.locals, id)
		delete(st.attaching, id)
		st.reorderLocked()
		empty := len(st.locals)+len(st.attaching) == 0
		st.mu.Unlock()
		if empty {
			delete(ss.subs, tid)
		}
	}
}

func (ss *services) all() []*DataService {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	out := make([]*DataService, 0, len(ss.local))
	for _, s := range ss.local {
		out = append(out, s)
	}
	return out
}

func (ss *services) get(id string) (*DataService, bool) {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	s, ok := ss.local[id]
	return s, ok
}

// Service returns the service with id running on this node.
func (n *Node) Service(id string) (*DataService, bool) { return n.svcs.get(id) }

// Subscribe subscribes the service to a table of another service, wherever
// it runs; the publisher need not exist yet (subscribe). The service first
// receives the table as a snapshot, then its deltas in order.
func (s *DataService) Subscribe(ctx context.Context, publisher, tableName string) error {
	if err := checkTableID(publisher, tableName); err != nil {
		return err
	}
	n, ok := s.enter()
	if !ok {
		return s.errNotRunning()
	}
	defer s.leave()
	id := cache.TableID{Publisher: publisher, Table: tableName}
	st, existed, already := n.svcs.attach(s, id)
	if err := n.applyErr(ctx, fsm.CmdSubscribe, fsm.Subscribe{Subscriber: s.id, Publisher: publisher, Table: tableName}); err != nil {
		if !already {
			s.dropSub(id)
		}
		return err
	}
	s.recordSub(id)
	if !existed {
		// Registered with the publisher's node: now fetch what it has.
		n.goFunc(func() { n.svcs.catchup(st) })
	}
	return nil
}

// attach joins s to the node's subscription to id, creating it if needed: a
// new local subscriber starts from the node's copy. It reports whether the
// node's subscription existed and whether s was already attached.
func (ss *services) attach(s *DataService, id cache.TableID) (st *subState, existed, already bool) {
	ss.mu.Lock()
	st, existed = ss.subs[id]
	if !existed {
		st = &subState{id: id, seq: seq.New(maxBuffered), locals: map[string]*DataService{}, attaching: map[string]bool{}}
		ss.subs[id] = st
	}
	ss.mu.Unlock()
	st.mu.Lock()
	_, already = st.locals[s.id]
	already = already || st.attaching[s.id]
	if !already {
		st.attaching[s.id] = true
	}
	st.mu.Unlock()
	if !already {
		ss.enqueue(delivery{st: st, svc: s})
	}
	return st, existed, already
}

// join adds a local subscriber to st (delivery loop only) and hands it the
// table, as a snapshot from another local subscriber's cache.
func (ss *services) join(st *subState, s *DataService) {
	st.mu.Lock()
	if !st.attaching[s.id] {
		st.mu.Unlock()
		return // detached before it joined
	}
	delete(st.attaching, s.id)
	st.locals[s.id] = s
	st.reorderLocked()
	var snap *table.Publication
	if last := st.seq.Last(); last > 0 {
		// The node keeps no copy of its own: the local subscribers' caches
		// all hold the table at last (the delivery loop applies to each in
		// turn), so the newcomer starts from one of them.
		for _, other := range st.ordered {
			if rows, at, ok := other.cache.Unsorted(st.id); ok && at == last && other != s {
				snap = &table.Publication{Publisher: st.id.Publisher, Table: st.id.Table, Seqnum: last, Snapshot: true, Rows: rows}
				break
			}
		}
		if snap == nil {
			// None is current (a subscriber stopping skipped deliveries):
			// start the node's subscription over from the publisher.
			st.seq = seq.New(maxBuffered)
			st.restarted = st.catchingUp
			ss.n.goFunc(func() { ss.catchup(st) })
		}
	}
	st.mu.Unlock()
	if snap != nil {
		s.deliver(snap, time.Now())
	}
}

// recordSub notes, on the service, a subscription the registry holds.
func (s *DataService) recordSub(id cache.TableID) {
	s.mu.Lock()
	s.subs[id] = true
	s.mu.Unlock()
}

// resumeSubscriptions attaches a newly registered service to the
// subscriptions the registry already holds for it: subscriptions outlive
// restarts.
func (ss *services) resumeSubscriptions(s *DataService) {
	for _, sub := range ss.n.fsm.SubscriptionsOf(s.id) {
		id := cache.TableID{Publisher: sub.Publisher, Table: sub.Table}
		st, existed, _ := ss.attach(s, id)
		s.recordSub(id)
		if !existed {
			ss.n.goFunc(func() { ss.catchup(st) })
		}
	}
}

// Unsubscribe ends the service's subscription to one table (unsubscribe);
// its other subscriptions go on.
func (s *DataService) Unsubscribe(ctx context.Context, publisher, tableName string) error {
	n := s.nodeOf()
	if n == nil {
		return s.errNotRunning()
	}
	if err := n.applyErr(ctx, fsm.CmdUnsubscribe, fsm.Unsubscribe{Subscriber: s.id, Publisher: publisher, Table: tableName}); err != nil {
		return err
	}
	s.dropSub(cache.TableID{Publisher: publisher, Table: tableName})
	return nil
}

func (s *DataService) dropSub(id cache.TableID) {
	n := s.nodeOf()
	s.mu.Lock()
	delete(s.subs, id)
	s.mu.Unlock()
	ss := n.svcs
	ss.mu.Lock()
	if st, ok := ss.subs[id]; ok {
		st.mu.Lock()
		delete(st.locals, s.id)
		delete(st.attaching, s.id)
		st.reorderLocked()
		if len(st.locals)+len(st.attaching) == 0 {
			delete(ss.subs, id)
		}
		st.mu.Unlock()
	}
	ss.mu.Unlock()
	s.cache.Remove(id)
}

// deliver hands one ordered publication to the service: its cache, then its
// hooks. Called with the subState locked, so per table in order.
func (s *DataService) deliver(p *table.Publication, receipt time.Time) {
	if _, ok := s.enter(); !ok {
		return
	}
	defer s.leave()
	if s.hooks.ReceiveData == nil && s.hooks.ReceiveDataSequenced == nil {
		s.cache.Apply(p)
		return
	}
	d := Data{Snapshot: p.Snapshot, Rows: p.Rows, Add: p.Add, Del: p.Del}
	if len(p.Rows) > 0 {
		// The subscriber's cache may index p.Rows' own array (Set.load):
		// a hook that sorted it would break the index. Both only read
		// p.Rows, so a big copy is made while the cache indexes.
		copied := make(chan struct{})
		copyRows := func() {
			d.Rows = bigmem.Make[table.Row](len(p.Rows))
			copy(d.Rows, p.Rows)
			close(copied)
		}
		if len(p.Rows) >= 1<<16 {
			go copyRows()
		} else {
			copyRows()
		}
		s.cache.Apply(p)
		<-copied
	} else {
		s.cache.Apply(p)
	}
	if p.SentAt != 0 {
		d.Published = time.Unix(0, p.SentAt)
	}
	if s.hooks.ReceiveDataSequenced != nil {
		s.hooks.ReceiveDataSequenced(p.Publisher, p.Table, d, p.Seqnum, receipt)
	}
	if s.hooks.ReceiveData != nil {
		s.hooks.ReceiveData(p.Publisher, p.Table, d)
	}
}

// handlePublications receives a pushed batch from a peer. body is only lent
// (the transport reuses it): DecodeBatch copies everything it keeps.
func (ss *services) handlePublications(from string, body []byte) {
	pubs, err := table.DecodeBatch(body)
	if err != nil {
		ss.n.logger.Warn("dropping malformed publications", "from", from, "error", err)
		return
	}
	ss.enqueue(delivery{pubs: pubs, receipt: time.Now(), size: len(body)})
}

// receive sequences arrived publications and applies what is in order
// (delivery loop only). Hooks run after the table's lock is released.
func (ss *services) receive(pubs []*table.Publication, now time.Time) {
	for _, p := range pubs {
		ss.mu.RLock()
		st := ss.subs[cache.TableID{Publisher: p.Publisher, Table: p.Table}]
		ss.mu.RUnlock()
		if st == nil {
			continue // nobody here subscribes (any more)
		}
		st.mu.Lock()
		applied := st.seq.Offer(p, now)
		locals := st.ordered
		st.mu.Unlock()
		ss.n.metrics.deliveries.Add(float64(len(applied)))
		for _, a := range applied {
			for _, s := range locals {
				s.deliver(a, now)
			}
		}
	}
}

// catchupRequest asks a publisher's node for what follows After.
type catchupRequest struct {
	Publisher string `msgpack:"p"`
	Table     string `msgpack:"t"`
	After     uint64 `msgpack:"a"`
}

// catchup fetches, from the publisher's owner node, the deltas after what
// this node applied, or a snapshot when its history no longer reaches back.
func (ss *services) catchup(st *subState) {
	n := ss.n
	st.mu.Lock()
	if st.catchingUp {
		st.mu.Unlock()
		return
	}
	if st.replyQueued {
		st.catchupWanted = true // after the reply queued is delivered
		st.mu.Unlock()
		return
	}
	st.catchingUp = true
	after := st.seq.Last()
	st.seq.CatchupStarted(time.Now())
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		st.catchingUp = false
		again := st.restarted
		st.restarted = false
		st.mu.Unlock()
		if again {
			// The subscription started over while this one ran: what it
			// asked for no longer fits.
			n.goFunc(func() { ss.catchup(st) })
		}
	}()
	owner, _, ok := n.fsm.Owner(st.id.Publisher)
	if !ok || owner == "" {
		return // no publisher yet: its first publication will come
	}
	n.metrics.resubscribes.Inc()
	req := catchupRequest{Publisher: st.id.Publisher, Table: st.id.Table, After: after}
	var body []byte
	if owner == n.id {
		var err error
		if body, err = ss.catchupReply(req); err != nil {
			return
		}
	} else {
		rec, ok := n.fsm.Node(owner)
		if !ok {
			return
		}
		raw, err := encode(req)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		body, err = n.trans.Call(ctx, rec.Addr, msgCatchup, raw)
		cancel()
		if err != nil {
			n.logger.Debug("catch-up failed", "publisher", st.id.Publisher, "table", st.id.Table, "error", err)
			return
		}
	}
	pubs, err := table.DecodeBatch(body)
	if err != nil {
		n.logger.Warn("malformed catch-up reply", "publisher", st.id.Publisher, "error", err)
		return
	}
	st.mu.Lock()
	st.replyQueued = true
	st.mu.Unlock()
	ss.enqueue(delivery{pubs: pubs, receipt: time.Now(), size: len(body), catchup: st})
}

// streamCatchup answers a subscriber node's catch-up request with a reply
// the transport encodes as it sends it (transport.StreamHandler): a big
// table's snapshot is never held encoded in full on the publisher's node.
func (ss *services) streamCatchup(body []byte) (transport.StreamBody, error) {
	var req catchupRequest
	if err := decode(body, &req, "catch-up request"); err != nil {
		return nil, err
	}
	pubs, err := ss.catchupPubs(req)
	if err != nil {
		return nil, err
	}
	return newPubStream(pubs)
}

// catchupReply is the reply to a catch-up request from this node itself.
func (ss *services) catchupReply(req catchupRequest) ([]byte, error) {
	pubs, err := ss.catchupPubs(req)
	if err != nil {
		return nil, err
	}
	size := table.BatchHeaderSize
	for _, p := range pubs {
		size += p.SizeHint()
	}
	out := bigmem.Make[byte](size)[:table.BatchHeaderSize]
	for _, p := range pubs {
		if out, err = p.AppendTo(out); err != nil {
			return nil, err
		}
	}
	table.PutBatchHeader(out, len(pubs))
	return out, nil
}

// catchupPubs is what answers a catch-up request: the deltas after
// req.After when the history holds them all, else a snapshot.
func (ss *services) catchupPubs(req catchupRequest) ([]*table.Publication, error) {
	svc, ok := ss.get(req.Publisher)
	if !ok {
		return nil, fmt.Errorf("%w: %q does not run on node %q", ErrServiceNotFound, req.Publisher, ss.n.id)
	}
	t, ok := svc.existingTable(req.Table)
	if !ok {
		return nil, nil
	}
	t.mu.Lock()
	hist, ok := t.sinceLocked(req.After)
	t.mu.Unlock()
	if ok {
		return hist, nil
	}
	p, err := t.snapshotPublication(svc.id)
	if err != nil {
		return nil, err
	}
	return []*table.Publication{p}, nil
}

// pubStream is a batch of publications encoded as it is written.
type pubStream struct {
	pubs []*table.Publication
	n    int
}

func newPubStream(pubs []*table.Publication) (*pubStream, error) {
	s := &pubStream{pubs: pubs, n: table.BatchHeaderSize}
	for _, p := range pubs {
		m, err := p.EncodedLen()
		if err != nil {
			return nil, err
		}
		s.n += m
	}
	return s, nil
}

func (s *pubStream) Len() int { return s.n }

func (s *pubStream) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, table.BatchHeaderSize, 256<<10)
	table.PutBatchHeader(buf, len(s.pubs))
	m, err := w.Write(buf)
	total := int64(m)
	for _, p := range s.pubs {
		if err != nil {
			break
		}
		var k int64
		k, err = p.StreamTo(w, buf)
		total += k
	}
	return total, err
}

// resubLoop is check_resub_all for the whole node: it catches up every
// subscription whose gap, or whose lag behind the registry's seqnum, has
// lasted the resubscribe timeout.
func (ss *services) resubLoop() {
	tick := time.NewTicker(max(ss.n.cfg.ResubTimeout/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ss.n.ctx.Done():
			return
		case <-tick.C:
			ss.checkResub(nil)
		}
	}
}

// checkResub checks the subscriptions of the services in only (all if nil).
func (ss *services) checkResub(only map[cache.TableID]bool) {
	now := time.Now()
	ss.mu.RLock()
	all := make([]*subState, 0, len(ss.subs))
	for id, st := range ss.subs {
		if only == nil || only[id] {
			all = append(all, st)
		}
	}
	ss.mu.RUnlock()
	var due []*subState
	for _, st := range all {
		committed := ss.n.fsm.Seqnum(st.id.Publisher, st.id.Table)
		st.mu.Lock()
		if !st.catchingUp && !st.replyQueued && st.seq.NeedsCatchup(now, committed, ss.n.cfg.ResubTimeout) {
			due = append(due, st)
		}
		st.mu.Unlock()
	}
	for _, st := range due {
		ss.n.goFunc(func() { ss.catchup(st) })
	}
}

// CheckResubAll checks every subscription of the service now and catches up
// those whose gap or lag has outlasted the resubscribe timeout
// (check_resub_all). The node also does this on its own, continuously.
func (s *DataService) CheckResubAll() {
	n := s.nodeOf()
	if n == nil {
		return
	}
	s.mu.Lock()
	only := make(map[cache.TableID]bool, len(s.subs))
	for id := range s.subs {
		only[id] = true
	}
	s.mu.Unlock()
	n.svcs.checkResub(only)
}

// watchRegistry follows the registry for the local services: it tells
// publishers when a table gains its first subscriber or loses its last.
func (ss *services) watchRegistry() {
	for {
		changed := ss.n.fsm.Changed()
		ss.n.stopRemoved()
		for _, s := range ss.all() {
			s.syncSubscriberHooks()
			s.dropEndedSubscriptions()
		}
		select {
		case <-ss.n.ctx.Done():
			return
		case <-changed:
		}
		// Registry changes come in bursts under load: look at most every
		// few milliseconds.
		select {
		case <-ss.n.ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *DataService) syncSubscriberHooks() {
	if s.hooks.OnFirstSubscriber == nil && s.hooks.OnLastUnsubscriber == nil {
		return
	}
	now := map[string]bool{}
	for _, sub := range s.SubscriberList() {
		now[sub.Table] = true
	}
	s.mu.Lock()
	var gained, lost []string
	for t := range now {
		if !s.withSubs[t] {
			gained = append(gained, t)
		}
	}
	for t := range s.withSubs {
		if !now[t] {
			lost = append(lost, t)
		}
	}
	s.withSubs = now
	s.mu.Unlock()
	slices.Sort(gained)
	slices.Sort(lost)
	for _, t := range gained {
		if s.hooks.OnFirstSubscriber != nil {
			s.hooks.OnFirstSubscriber(t)
		}
	}
	for _, t := range lost {
		if s.hooks.OnLastUnsubscriber != nil {
			s.hooks.OnLastUnsubscriber(t)
		}
	}
}

// dropEndedSubscriptions forgets local subscriptions the registry no longer
// has (their publisher's datasource was deleted, say).
func (s *DataService) dropEndedSubscriptions() {
	n := s.nodeOf()
	if n == nil || s.Status() != "running" {
		return
	}
	s.mu.Lock()
	var ended []cache.TableID
	for id := range s.subs {
		if !slices.Contains(n.fsm.Subscribers(id.Publisher, id.Table), s.id) {
			ended = append(ended, id)
		}
	}
	s.mu.Unlock()
	for _, id := range ended {
		s.dropSub(id)
	}
}
