package publish

import (
	"fmt"
	"sync"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// Table is one table a service publishes, and the rules of its
// publications. Its content already includes publications waiting for
// their seqnums (pending): a publish computes its delta against everything
// published before it, and the batcher assigns seqnums in the same order.
// The batcher asks the table what each step means for it (queued, failed,
// granted); it does not reach into it.
type Table struct {
	name    string
	maxHist int
	ret     *Retention // the node's budget for every table's history; nil: none
	mu      sync.Mutex
	cond    *sync.Cond

	rows          *table.Set
	seqnum        uint64   // last sequenced publication
	inc           uint64   // incarnation it was sequenced under
	published     bool     // a publication has been made (sequenced or pending)
	pending       int      // publications waiting for seqnums
	readers       int      // snapshot readers waiting for pending == 0
	forceSnapshot bool     // the next publication must be a snapshot
	epoch         uint64   // bumped when a publication fails to be sequenced
	history       []held   // sequenced deltas, oldest first
	histRows      int64    // the bytes of their rows (rowsSize)
	closed        bool     // Close: the history stays empty
	last          *request // the last publication queued
	settleWaiters int      // publishes of no change waiting on one (settle)

	// What speculation (plan) knows of the registry: the table's seqnum
	// there as of the last grant, the incarnation of that grant, the
	// highest seqnum ever sent to replicas ahead of its grant, and whether
	// a publication failed since the last grant (the registry's seqnum is
	// then unknown).
	regSeq, grantInc, spoken uint64
	unsure                   bool
}

// MaxSpeculative bounds the publications of one table sent to its replicas
// in one entry before their seqnums are granted; it is also what a
// table's first grant under a new incarnation skips (fsm.PublishRequest
// Skip), past every seqnum an earlier owner may have sent ahead.
const MaxSpeculative = 1024

// plan fills in how req, the table's request in the next entry, asks for
// its seqnums, for a replicated service: speculatively (First, the
// table's next seqnum, under which the caller sends the publications to
// the replicas before the entry commits) when this instance knows the
// registry's seqnum for sure; otherwise after its grant, past every
// seqnum that may be on a replica without having been granted (After,
// Skip).
//
// Why no seqnum is ever granted for content other than what a replica
// holds under it: this instance speculates only from a seqnum it saw
// granted under its incarnation, with nothing failed since, so what it
// sends ahead is at most MaxSpeculative past the registry's seqnum, and
// it is exactly what the registry grants if the entry commits (First must
// be the table's next). After a failure it skips past all it sent ahead;
// a new incarnation (another owner, or this node's next process, which
// knows nothing of what the last one sent) skips MaxSpeculative on its
// first grant. Its first publication of the table under an incarnation
// is a snapshot, so replicas take it whatever they hold.
func (t *Table) plan(req *fsm.PublishRequest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.grantInc != req.Incarnation:
		req.After, req.Skip = t.spoken, MaxSpeculative
	case t.unsure:
		req.After = t.spoken
	case req.Count <= MaxSpeculative:
		req.First = t.regSeq + 1
		t.spoken = max(t.spoken, t.regSeq+req.Count)
	}
}

// held is a delta of the history and the memory it takes.
type held struct {
	p    *table.Publication
	size int64 // heldSize
	rows int64 // rowsSize
}

// NewTable returns an empty table, never published, that keeps at least
// history deltas (up to twice as many) for subscribers catching up, within
// ret's node-wide budget (nil: no budget).
func NewTable(name string, history int, ret *Retention) *Table {
	t := &Table{name: name, maxHist: max(history, 1), ret: ret, rows: table.NewSet(nil)}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// Close empties the table's history and keeps it empty: its service has
// stopped, and what it held goes back to the node's budget.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.dropLocked(len(t.history))
}

// Name returns the table's name.
func (t *Table) Name() string { return t.name }

// Published reports whether the table has been published by this instance
// (a publication sequenced or pending).
func (t *Table) Published() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.published
}

// settled waits, under t.mu, until no publication is pending, holding off new
// ones meanwhile, so rows and seqnum describe the same moment, and runs f.
// It fails instead while the content holds a change whose publication
// failed: no seqnum was ever published with that content (paired with the
// last one, two subscribers could hold two contents under it). The table's
// next publication, its heal or the publisher's own, is a snapshot under a
// new seqnum.
func (t *Table) settled(f func()) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.readers++
	for t.pending > 0 {
		t.cond.Wait()
	}
	t.readers--
	t.cond.Broadcast()
	if t.forceSnapshot {
		return fmt.Errorf("%w: table %q holds a change whose publication failed; it is being republished as a snapshot under a new seqnum", errdefs.ErrUnavailable, t.name)
	}
	f()
	return nil
}

// Last returns the table's last sequenced content and its seqnum,
// consistently (get_last_published_data_with_seqnum): it waits for the
// publications in flight. A table never published has seqnum 0.
func (t *Table) Last() (uint64, []table.Row, error) {
	var seq uint64
	var rows []table.Row
	err := t.settled(func() { seq, rows = t.seqnum, t.rows.Rows() })
	return seq, rows, err
}

// Snapshot returns the table as a snapshot publication at its last seqnum,
// for a subscriber catching up. The rows are shared with the table (copy
// on write).
func (t *Table) Snapshot(publisher string) (*table.Publication, error) {
	var p *table.Publication
	err := t.settled(func() {
		p = &table.Publication{Publisher: publisher, Table: t.name, Seqnum: t.seqnum, Snapshot: true, Rows: t.rows.Shared()}
	})
	return p, err
}

// Catchup returns what answers a subscriber whose last seqnum is after:
// the deltas that follow it when the history holds them all, else a
// snapshot of the current content.
func (t *Table) Catchup(publisher string, after uint64) ([]*table.Publication, error) {
	t.mu.Lock()
	hist, ok := t.sinceLocked(after)
	t.mu.Unlock()
	if ok {
		return hist, nil
	}
	p, err := t.Snapshot(publisher)
	if err != nil {
		return nil, err
	}
	return []*table.Publication{p}, nil
}

// sinceLocked returns the sequenced publications after seqnum after, or
// false when the history no longer reaches back that far unbroken.
func (t *Table) sinceLocked(after uint64) ([]*table.Publication, bool) {
	if after >= t.seqnum {
		return nil, true
	}
	if len(t.history) == 0 || t.history[0].p.Seqnum > after+1 {
		return nil, false
	}
	for i, h := range t.history {
		if h.p.Seqnum <= after {
			continue
		}
		// Only an unbroken run from after+1 will do: a seqnum granted but
		// never published (a duplicated grant) leaves a hole only a
		// snapshot can cross.
		out := make([]*table.Publication, 0, len(t.history)-i)
		expected := after + 1
		for _, h := range t.history[i:] {
			q := h.p
			switch {
			case q.Snapshot:
				expected = q.Seqnum + 1
			case q.Seqnum != expected:
				return nil, false
			default:
				expected++
			}
			out = append(out, q)
		}
		return out, true
	}
	return nil, true
}

// recordLocked appends a sequenced publication to the history.
func (t *Table) recordLocked(p *table.Publication) {
	if p.Snapshot {
		// A snapshot is not kept: whoever is behind it catches up with a
		// snapshot of the current content anyway, and a big table's rows
		// would be held twice.
		t.dropLocked(len(t.history))
		return
	}
	if t.closed {
		return
	}
	if len(t.history) >= 2*t.maxHist {
		// Drop the oldest half at once rather than one per publication:
		// the history holds the last maxHist to 2*maxHist publications.
		t.dropLocked(len(t.history) - t.maxHist)
	}
	rows := rowsSize(p.Add) + rowsSize(p.Del) // walked once: heldSize is this plus the overhead
	h := held{p: p, size: heldOverhead(p) + rows, rows: rows}
	t.history = append(t.history, h)
	t.histRows += h.rows
	if t.ret != nil {
		t.ret.added(t, p.Seqnum, h.size)
	}
	t.trimLocked(len(p.Add)+len(p.Del), h.rows)
}

// minHistory is how many deltas a table keeps whatever their size: a
// subscriber a few publications behind always catches up with deltas.
const minHistory = 8

// trimLocked drops the oldest deltas, down to minHistory, while their
// rows outweigh the table's (estimated from the delta just recorded, of
// n rows in rowBytes): a subscriber that far behind is served as well by
// a snapshot, which it gets when the history does not reach back to it.
// CockroachDB truncates a range's Raft log by the same rule, once the
// log is bigger than the range. Without it, 4,096 one-row tables each
// kept about 50 deltas (their share of the node's budget), and the
// collector's marking of them was a fifth of a publication's CPU.
func (t *Table) trimLocked(n int, rowBytes int64) {
	if len(t.history) <= minHistory || n == 0 {
		return
	}
	content := int64(t.rows.Len()) * rowBytes / int64(n)
	drop, rows := 0, t.histRows
	for len(t.history)-drop > minHistory && rows > content {
		rows -= t.history[drop].rows
		drop++
	}
	t.dropLocked(drop)
}

// dropLocked drops the oldest n deltas of the history.
func (t *Table) dropLocked(n int) {
	if n <= 0 {
		return
	}
	var size int64
	for _, h := range t.history[:n] {
		size += h.size
		t.histRows -= h.rows
	}
	// Re-sliced, not copied: the next append that outgrows the array
	// moves what is left to a new one.
	clear(t.history[:n])
	t.history = t.history[n:]
	if len(t.history) == 0 {
		t.history = nil
	}
	if t.ret != nil {
		t.ret.dropped(size, n)
	}
}

// dropThrough drops the deltas up to seqnum seq (the node's budget is
// spent, and they are its oldest).
func (t *Table) dropThrough(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for n < len(t.history) && t.history[n].p.Seqnum <= seq {
		n++
	}
	t.dropLocked(n)
}

// holds reports whether the history still holds delta seq.
func (t *Table) holds(seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.history) > 0 && t.history[0].p.Seqnum <= seq && seq <= t.history[len(t.history)-1].p.Seqnum
}

// stale reports whether a publication computed in epoch can no longer be
// sequenced: one before it failed (it built on content subscribers never
// got).
func (t *Table) stale(epoch uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return epoch != t.epoch
}

// failed records that r was not sequenced. The first failure of an epoch
// starts a new one, which fails the publications queued behind r (their
// deltas assumed r) and makes the table's next publication a snapshot; it
// reports whether this failure did.
func (t *Table) failed(r *request, err error) (newEpoch bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.unsure = true
	newEpoch = r.epoch == t.epoch
	if newEpoch {
		t.epoch++
		t.forceSnapshot = true
	}
	t.pending--
	if t.pending == 0 {
		t.last = nil
	}
	r.settled, r.outcome = true, Result{Err: err}
	t.cond.Broadcast()
	return newEpoch
}

// granted gives reqs, a run of this table's publications in queue order,
// the seqnums from first on, under the owner's incarnation inc, and records
// them in the history. It returns false, granting nothing, when the epoch
// moved since reqs were computed (a later publication of the table failed
// while the entry was built, its owner having changed): their seqnums then
// stay unused and the table heals with a snapshot.
func (t *Table) granted(reqs []*request, first, inc uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.regSeq, t.grantInc, t.unsure = first+uint64(len(reqs))-1, inc, false
	if reqs[0].epoch != t.epoch {
		return false
	}
	for k, r := range reqs {
		r.pub.Seqnum = first + uint64(k)
		r.settled, r.outcome = true, Result{Seqnum: r.pub.Seqnum}
		t.recordLocked(r.pub)
	}
	t.seqnum = first + uint64(len(reqs)) - 1
	t.inc = inc
	t.pending -= len(reqs)
	if t.pending == 0 {
		t.last = nil // hold no publication longer than needed
	}
	if t.pending == 0 && t.readers > 0 || t.settleWaiters > 0 {
		t.cond.Broadcast()
	}
	return true
}

// settle answers a publish of no change with the outcome of req, the
// publication queued last when it was made: once req is sequenced, its
// seqnum (not changed); if req failed, its failure.
func (t *Table) settle(req *request, done chan<- Result) {
	t.mu.Lock()
	for !req.settled {
		t.cond.Wait()
	}
	t.settleWaiters--
	res := req.outcome
	t.mu.Unlock()
	done <- res
}
