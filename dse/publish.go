package dse

import (
	"context"
	"fmt"
	"sync"
	"time"

	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/table"
)

// historySize bounds the recent publications a publisher keeps per table for
// subscribers catching up after a gap.
const historySize = 1024

// pubTable is one table a service publishes. Its content already includes
// publications waiting for their seqnums (pending): a publish computes its
// delta against everything published before it, and the batcher assigns
// seqnums in the same order.
type pubTable struct {
	name    string
	maxHist int
	mu      sync.Mutex
	cond    *sync.Cond

	rows          *table.Set
	seqnum        uint64 // last sequenced publication
	inc           uint64 // incarnation it was sequenced under
	published     bool   // a publication has been made (sequenced or pending)
	pending       int    // publications waiting for seqnums
	readers       int    // snapshot readers waiting for pending == 0
	forceSnapshot bool   // the next publication must be a snapshot
	epoch         uint64 // bumped when a publication fails to be sequenced
	history       []*table.Publication
	last          *pubReq // the last publication queued
	settleWaiters int     // publishes of no change waiting on one (settle)
}

func newPubTable(name string, maxHist int) *pubTable {
	t := &pubTable{name: name, maxHist: max(maxHist, 1), rows: table.NewSet(nil)}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// settled waits, under t.mu, until no publication is pending, holding off new
// ones meanwhile, so rows and seqnum describe the same moment, and runs f.
// It fails instead while the content holds a change whose publication
// failed: no seqnum was ever published with that content (paired with the
// last one, two subscribers could hold two contents under it). The table's
// next publication, its heal or the publisher's own, is a snapshot under a
// new seqnum.
func (t *pubTable) settled(f func()) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.readers++
	for t.pending > 0 {
		t.cond.Wait()
	}
	t.readers--
	t.cond.Broadcast()
	if t.forceSnapshot {
		return fmt.Errorf("%w: table %q holds a change whose publication failed; it is being republished as a snapshot under a new seqnum", ErrUnavailable, t.name)
	}
	f()
	return nil
}

// settle answers a publish of no change with the outcome of req, the
// publication queued last when it was made: once req is sequenced, its
// seqnum (not changed); if req failed, its failure.
func (t *pubTable) settle(req *pubReq, done chan<- pubResult) {
	t.mu.Lock()
	for !req.settled {
		t.cond.Wait()
	}
	t.settleWaiters--
	res := req.outcome
	t.mu.Unlock()
	done <- res
}

func (t *pubTable) publishedNow() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.published
}

// recordLocked appends sequenced publications to the history.
func (t *pubTable) recordLocked(p *table.Publication) {
	if p.Snapshot {
		// A snapshot is not kept: whoever is behind it catches up with a
		// snapshot of the current content anyway, and a big table's rows
		// would be held twice.
		clear(t.history)
		t.history = t.history[:0]
		return
	}
	if len(t.history) >= 2*t.maxHist {
		// Drop the oldest half at once rather than one per publication (a
		// copy of the whole history each time): the history holds the last
		// maxHist to 2*maxHist publications.
		n := copy(t.history, t.history[len(t.history)-t.maxHist:])
		clear(t.history[n:])
		t.history = t.history[:n]
	}
	t.history = append(t.history, p)
}

// since returns the sequenced publications after seqnum after, or false when
// the history no longer reaches back that far.
func (t *pubTable) sinceLocked(after uint64) ([]*table.Publication, bool) {
	if after >= t.seqnum {
		return nil, true
	}
	if len(t.history) == 0 || t.history[0].Seqnum > after+1 {
		return nil, false
	}
	for i, p := range t.history {
		if p.Seqnum <= after {
			continue
		}
		// Only an unbroken run from after+1 will do: a seqnum granted but
		// never published (a duplicated grant) leaves a hole only a
		// snapshot can cross.
		out := t.history[i:]
		expected := after + 1
		for _, q := range out {
			switch {
			case q.Snapshot:
				expected = q.Seqnum + 1
			case q.Seqnum != expected:
				return nil, false
			default:
				expected++
			}
		}
		return append([]*table.Publication(nil), out...), true
	}
	return nil, true
}

func (s *DataService) pubTable(name string) *pubTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	if !ok {
		hist := DefaultConfig().HistorySize
		if s.node != nil {
			hist = s.node.cfg.HistorySize
		}
		t = newPubTable(name, hist)
		s.tables[name] = t
	}
	return t
}

func (s *DataService) existingTable(name string) (*pubTable, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	return t, ok
}

// Publish sets a table's full new content (publish). The node computes the
// delta against the last publication and sends that, or the whole table when
// useSnapshot is set (or the table's first publication under this owner).
// Nothing changed means nothing is sent and no seqnum used: it returns
// (current seqnum, false). Otherwise it returns the publication's seqnum
// once it is committed in the registry and pushed to subscriber nodes.
// rows, the slice and its Rows, are the node's from the call on: the caller
// must not modify them.
func (s *DataService) Publish(ctx context.Context, tableName string, rows []Row, useSnapshot bool) (uint64, bool, error) {
	if err := table.CanonicalRows(rows, table.DefaultLimits); err != nil {
		return 0, false, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s.publish(ctx, tableName, func(t *pubTable) (add, del, content []Row) {
		// The new content, indexed once; the delta falls out of it.
		add, del = t.rows.Replace(rows)
		if t.rows.Len() == len(rows) {
			content = rows // no duplicates: a snapshot needs no copy
		}
		return add, del, content
	}, useSnapshot)
}

// PublishDelta publishes a change the caller already knows (rows added and
// deleted), without diffing a big table. Rows already present (added) or
// absent (deleted) are no change. As with Publish, the rows of add and del
// are the node's from the call on: the caller must not modify them (the
// node keeps them in its table and its history, and sends them later to
// subscribers catching up).
func (s *DataService) PublishDelta(ctx context.Context, tableName string, add, del []Row) (uint64, bool, error) {
	if err := s.checkDelta(tableName, add, del); err != nil {
		return 0, false, err
	}
	return s.publish(ctx, tableName, deltaChange(add, del), false)
}

// checkDelta refuses a delta with bad rows, or one for a table this instance
// has not published in full since it took the service over.
func (s *DataService) checkDelta(tableName string, add, del []Row) error {
	if err := table.CanonicalRows(add, table.DefaultLimits); err != nil {
		return fmt.Errorf("%w: add: %v", ErrInvalid, err)
	}
	if err := table.CanonicalRows(del, table.DefaultLimits); err != nil {
		return fmt.Errorf("%w: del: %v", ErrInvalid, err)
	}
	if n := s.nodeOf(); n != nil {
		if t, ok := s.existingTable(tableName); (!ok || !t.publishedNow()) && n.fsm.Seqnum(s.id, tableName) > 0 {
			return fmt.Errorf("%w: %s/%s was published before this instance owned it: publish its full content first", ErrInvalid, s.id, tableName)
		}
	}
	return nil
}

// deltaChange applies a known delta; Set.Apply reports what actually
// changed, and that is the publication.
func deltaChange(add, del []Row) func(*pubTable) (added, deleted, content []Row) {
	return func(t *pubTable) ([]Row, []Row, []Row) {
		added, deleted := t.rows.Apply(add, del)
		return added, deleted, nil
	}
}

// PublishDeltaAsync is PublishDelta without the wait, for a publisher that
// keeps many publications in flight (as NATS's PublishAsync): it returns
// once the change is applied to the table and queued for its seqnum, and
// the Publishing says what it came to. Publications of one table are
// sequenced in the order their calls returned; when one fails, those queued
// behind it fail too, and the table's next publication is a snapshot. The
// rows of add and del are the node's from the call on, as with
// PublishDelta. A node holds at most 1,048,576 publications waiting for
// seqnums: one more is refused (ErrUnavailable) before it changes its
// table, as NATS refuses an async publish with too many pending.
func (s *DataService) PublishDeltaAsync(tableName string, add, del []Row) (*Publishing, error) {
	if err := s.checkDelta(tableName, add, del); err != nil {
		return nil, err
	}
	return s.startPublish(tableName, deltaChange(add, del), false)
}

// Publishing is a publication on its way to its seqnum.
type Publishing struct {
	svc, table string
	n          *Node
	done       chan pubResult // nil once res holds the outcome
	res        pubResult
}

// Wait returns the publication's seqnum once it is committed in the
// registry and pushed to subscriber nodes, and whether it changed anything
// (a change that changed nothing is no publication: the table's current
// seqnum, false). When ctx ends first it returns ErrUnavailable and the
// publication goes on; Wait can be called again. Not for concurrent use.
func (p *Publishing) Wait(ctx context.Context) (uint64, bool, error) {
	if p.done != nil {
		select {
		case r := <-p.done:
			p.res, p.done = r, nil
		case <-ctx.Done():
			return 0, false, fmt.Errorf("%w: publication of %s/%s not yet sequenced: %v", ErrUnavailable, p.svc, p.table, ctx.Err())
		case <-p.n.ctx.Done():
			return 0, false, ErrClosed
		}
	}
	return p.res.seqnum, p.res.changed, p.res.err
}

// publish runs change on the table's content and waits for the seqnum.
func (s *DataService) publish(ctx context.Context, tableName string, change func(*pubTable) (add, del, content []Row), useSnapshot bool) (uint64, bool, error) {
	p, err := s.startPublish(tableName, change, useSnapshot)
	if err != nil {
		return 0, false, err
	}
	return p.Wait(ctx)
}

// startPublish runs change on the table's content (under its lock; change
// returns what it actually added and deleted, and the whole new content when
// it has it as a slice of its own), then queues the publication for its
// seqnum. The service counts as busy (Wait) until the batcher answers.
func (s *DataService) startPublish(tableName string, change func(*pubTable) (add, del, content []Row), useSnapshot bool) (*Publishing, error) {
	if err := name.Check("table name", tableName); err != nil {
		return nil, err
	}
	n, ok := s.enter()
	if !ok {
		return nil, s.errNotRunning()
	}
	queued := false
	defer func() {
		if !queued {
			s.leave()
		}
	}()
	owner, inc, ok := n.fsm.Owner(s.id)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q", ErrServiceNotFound, s.id)
	case owner != n.id:
		return nil, fmt.Errorf("%w: service %q is standing by on node %q; node %q owns it", ErrFenced, s.id, n.id, owner)
	}
	if q := n.svcs.batcher.queued(); q >= maxWaitingPubs {
		return nil, fmt.Errorf("%w: node %q has %d publications waiting for seqnums; wait for some (Publishing.Wait) and publish again", ErrUnavailable, n.id, q)
	}
	t := s.pubTable(tableName)
	pending := &Publishing{svc: s.id, table: tableName, n: n}
	t.mu.Lock()
	for t.readers > 0 {
		t.cond.Wait()
	}
	epoch := t.epoch
	add, del, content := change(t)
	// A new owner's first publication of each table is a snapshot.
	first := !t.published || (t.inc != 0 && t.inc != inc)
	if len(add) == 0 && len(del) == 0 && !first && !t.forceSnapshot {
		if t.pending == 0 || t.last == nil {
			pending.res = pubResult{seqnum: t.seqnum}
			t.mu.Unlock()
			return pending, nil
		}
		// Publications of the table are in flight, and the content is
		// that of the last one queued: so is the answer (its seqnum, or
		// its failure; the last seqnum, now, would vouch for content that
		// has none yet, and a later one for content it never had).
		pending.done = make(chan pubResult, 1)
		target := t.last
		t.settleWaiters++
		t.mu.Unlock()
		go t.settle(target, pending.done)
		return pending, nil
	}
	p := &table.Publication{
		Publisher: s.id,
		Table:     tableName,
		Snapshot:  useSnapshot || first || t.forceSnapshot,
		SentAt:    time.Now().UnixNano(),
	}
	if p.Snapshot {
		p.Rows = content
		if p.Rows == nil {
			p.Rows = t.rows.Shared()
		}
	} else {
		p.Add, p.Del = add, del
	}
	pending.done = make(chan pubResult, 1)
	// Under t.mu: queue order is table order.
	req := &pubReq{svc: s, t: t, pub: p, inc: inc, epoch: epoch, done: pending.done}
	if !n.svcs.batcher.enqueue(req) {
		// The node closed: the change is in the content but was never
		// sequenced, so whatever comes next must be a snapshot.
		t.epoch++
		t.forceSnapshot = true
		t.mu.Unlock()
		return nil, ErrClosed
	}
	t.published, t.forceSnapshot = true, false
	t.pending++
	t.last = req
	queued = true
	t.mu.Unlock()
	return pending, nil
}

// heal republishes a table as a snapshot after a failed publication, unless
// a publication since has done it.
func (s *DataService) heal(tableName string) {
	n := s.nodeOf()
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
	defer cancel()
	if _, changed, err := s.publish(ctx, tableName, func(*pubTable) (add, del, content []Row) { return nil, nil, nil }, true); err == nil && changed {
		n.logger.Info("table healed with a snapshot after a failed publication", "service", s.id, "table", tableName)
	}
}

// GetSnapshot returns a table's current content (get_snapshot), or what the
// GetSnapshot hook says.
func (s *DataService) GetSnapshot(tableName string) ([]Row, error) {
	if s.hooks.GetSnapshot != nil {
		return s.hooks.GetSnapshot(tableName)
	}
	_, rows, err := s.GetLastPublishedDataWithSeqnum(tableName)
	return rows, err
}

// GetLastPublishedDataWithSeqnum returns a table's last sequenced content and
// its seqnum, consistently (get_last_published_data_with_seqnum). A table
// never published has seqnum 0 and no rows.
func (s *DataService) GetLastPublishedDataWithSeqnum(tableName string) (uint64, []Row, error) {
	t, ok := s.existingTable(tableName)
	if !ok {
		return 0, []Row{}, nil
	}
	var seq uint64
	var rows []Row
	err := t.settled(func() {
		seq, rows = t.seqnum, t.rows.Rows()
	})
	return seq, rows, err
}

// snapshotPublication returns the table as a snapshot publication at its
// last seqnum, for a subscriber catching up.
func (t *pubTable) snapshotPublication(publisher string) (*table.Publication, error) {
	var p *table.Publication
	err := t.settled(func() {
		p = &table.Publication{Publisher: publisher, Table: t.name, Seqnum: t.seqnum, Snapshot: true, Rows: t.rows.Shared()}
	})
	return p, err
}
