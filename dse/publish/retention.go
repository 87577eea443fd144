package publish

import (
	"sync"

	"dse.dev/dse/dse/table"
)

// Retention is a node's budget for the history its tables keep: every
// table keeps its last HistorySize deltas at most (up to twice as many),
// and all of them together about Limit bytes, the oldest deltas node-wide
// going first, whichever table holds them (as Kafka retains a log by bytes,
// not by partitions). Without it, thousands of tables each keeping their
// count took gigabytes: at 4,096 tables of 100-byte rows, 2.4 GB, whose
// marking starved Raft's heartbeats of CPU until the leader stepped down.
// A subscriber further behind than the history reaches catches up with a
// snapshot, as it does past the count.
type Retention struct {
	limit int64

	// Guarded by mu, a leaf taken under Table.mu (recording and
	// dropping); Enforce takes Table.mu only with mu released.
	mu    sync.Mutex
	used  int64  // bytes held by every table's history
	held  int    // deltas held by every table's history
	order []kept // every delta recorded, oldest first (some dropped since)
}

// kept is a delta a table recorded, in the order they were.
type kept struct {
	t    *Table
	seq  uint64
	size int64
}

// NewRetention returns a budget of limit bytes; limit ≤ 0 means none
// (only the tables' counts bound their history).
func NewRetention(limit int64) *Retention {
	return &Retention{limit: limit}
}

// Used reports the bytes and deltas held in the history of every table.
func (r *Retention) Used() (bytes int64, deltas int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used, r.held
}

// added records that t keeps the delta seq of size bytes.
func (r *Retention) added(t *Table, seq uint64, size int64) {
	r.mu.Lock()
	r.used += size
	r.held++
	r.order = append(r.order, kept{t, seq, size})
	r.mu.Unlock()
}

// dropped records that a table no longer keeps deltas of size bytes.
func (r *Retention) dropped(size int64, deltas int) {
	if deltas == 0 {
		return
	}
	r.mu.Lock()
	r.used -= size
	r.held -= deltas
	r.mu.Unlock()
}

// Enforce drops the oldest deltas node-wide while their total is over the
// limit, and forgets the records of deltas their tables dropped
// themselves (by count, for a snapshot, closing) once they outnumber the
// live ones. One goroutine calls it at a time (the batcher's, after each
// entry), holding no table's lock.
func (r *Retention) Enforce() {
	for {
		r.mu.Lock()
		over := r.limit > 0 && r.used > r.limit && len(r.order) > 0
		if !over {
			compact := len(r.order) > 2*r.held+1024
			r.mu.Unlock()
			if compact {
				r.compact()
			}
			return
		}
		// The oldest few at a time (as many as bring it under the limit,
		// if their tables still hold them), each table's at once: each
		// costs its table's lock.
		through := map[*Table]uint64{}
		n, excess := 0, r.used-r.limit
		for n < len(r.order) && n < 256 && excess > 0 {
			k := r.order[n]
			through[k.t] = max(through[k.t], k.seq)
			excess -= k.size
			n++
		}
		clear(r.order[:n])
		r.order = r.order[n:]
		r.mu.Unlock()
		for t, seq := range through {
			t.dropThrough(seq)
		}
	}
}

// compact forgets the records of deltas no table holds any more.
func (r *Retention) compact() {
	r.mu.Lock()
	order := r.order
	r.order = nil
	r.mu.Unlock()
	live := order[:0]
	for _, k := range order {
		if k.t.holds(k.seq) {
			live = append(live, k)
		}
	}
	clear(order[len(live):])
	r.mu.Lock()
	// Those recorded meanwhile come after the older ones.
	r.order = append(live, r.order...)
	r.mu.Unlock()
}

// heldSize estimates the memory a delta in the history takes: the
// publication and its rows' headers, values and bytes.
func heldSize(p *table.Publication) int64 {
	return heldOverhead(p) + rowsSize(p.Add) + rowsSize(p.Del)
}

// heldOverhead is heldSize without the rows: the publication itself.
func heldOverhead(p *table.Publication) int64 {
	return int64(160 + len(p.Publisher) + len(p.Table))
}

// rowsSize estimates the memory rows take: their headers, values and
// bytes.
func rowsSize(rows []table.Row) int64 {
	var size int64
	for _, row := range rows {
		size += 24 + 16*int64(len(row))
		for _, v := range row {
			switch x := v.(type) {
			case string:
				size += int64(len(x))
			case []byte:
				size += int64(len(x))
			}
		}
	}
	return size
}
