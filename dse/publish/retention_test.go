package publish

import (
	"testing"

	"dse.dev/dse/dse/table"
)

// record sequences delta seq of t, which adds a row, directly: applied
// to the content as a publication is, then kept as granted does.
func record(t *Table, seq uint64) {
	t.mu.Lock()
	p := &table.Publication{Publisher: "p", Table: t.name, Seqnum: seq, Add: []table.Row{{int64(seq), "0123456789"}}}
	t.rows.Apply(p.Add, nil)
	t.recordLocked(p)
	t.seqnum = seq
	t.mu.Unlock()
}

func deltaSize() int64 {
	return heldSize(&table.Publication{Publisher: "p", Table: "a", Add: []table.Row{{int64(1), "0123456789"}}})
}

// TestRetentionDropsTheOldestNodeWide: over budget, the oldest deltas go,
// whichever table holds them; a subscriber behind them gets a snapshot,
// one within the history still gets deltas.
func TestRetentionDropsTheOldestNodeWide(t *testing.T) {
	ret := NewRetention(10 * deltaSize())
	a, b := NewTable("a", 100, ret), NewTable("b", 100, ret)
	for seq := uint64(1); seq <= 10; seq++ {
		record(a, seq)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		record(b, seq)
	}
	ret.Enforce()
	if used, n := ret.Used(); used > 10*deltaSize() || n > 10 {
		t.Fatalf("held %d bytes in %d deltas, over the budget of %d", used, n, 10*deltaSize())
	}
	if a.holds(1) || a.holds(5) {
		t.Fatal("a still holds its oldest deltas")
	}
	for seq := uint64(1); seq <= 5; seq++ {
		if !b.holds(seq) {
			t.Fatalf("b lost delta %d, newer than a's dropped ones", seq)
		}
	}
	got, err := a.Catchup("p", 0)
	if err != nil || len(got) != 1 || !got[0].Snapshot {
		t.Fatalf("a catch-up from 0: %d publications, %v; want a snapshot", len(got), err)
	}
	got, err = a.Catchup("p", 8)
	if err != nil || len(got) != 2 || got[0].Seqnum != 9 || got[0].Snapshot {
		t.Fatalf("a catch-up from 8: %v, %v; want deltas 9 and 10", got, err)
	}
}

// TestRetentionForgetsWhatTablesDropped: deltas a table drops itself (its
// count, a snapshot, Close) leave the budget, and their records do not pile
// up.
func TestRetentionForgetsWhatTablesDropped(t *testing.T) {
	ret := NewRetention(1 << 30)
	a := NewTable("a", 4, ret)
	for seq := uint64(1); seq <= 10000; seq++ {
		record(a, seq)
		ret.Enforce()
	}
	used, n := ret.Used()
	if n < 4 || n > 8 || used != int64(n)*deltaSize() {
		t.Fatalf("held %d deltas, %d bytes; want 4 to 8 of %d", n, used, deltaSize())
	}
	ret.mu.Lock()
	recs := len(ret.order)
	ret.mu.Unlock()
	if recs > 2*n+1024 {
		t.Fatalf("%d records for %d deltas held", recs, n)
	}
	a.mu.Lock()
	a.recordLocked(&table.Publication{Publisher: "p", Table: "a", Seqnum: 10001, Snapshot: true})
	a.mu.Unlock()
	if used, n := ret.Used(); used != 0 || n != 0 {
		t.Fatalf("after a snapshot: %d bytes in %d deltas", used, n)
	}
	record(a, 10002)
	a.Close()
	record(a, 10003)
	if used, n := ret.Used(); used != 0 || n != 0 || a.holds(10003) {
		t.Fatalf("after Close: %d bytes in %d deltas", used, n)
	}
}

// TestNoRetentionKeepsTheCount: without a budget only the count bounds it.
func TestNoRetentionKeepsTheCount(t *testing.T) {
	ret := NewRetention(0)
	a := NewTable("a", 100, ret)
	for seq := uint64(1); seq <= 150; seq++ {
		record(a, seq)
	}
	ret.Enforce()
	if _, n := ret.Used(); n != 150 || !a.holds(1) {
		t.Fatalf("held %d, holds 1: %v", n, a.holds(1))
	}
}

// TestHistoryNoBiggerThanItsTable: a table whose deltas replace its one
// row keeps minHistory of them, not its count (a subscriber further
// behind gets the one-row snapshot); a big table under small deltas
// keeps its count.
func TestHistoryNoBiggerThanItsTable(t *testing.T) {
	small := NewTable("small", 100, nil)
	prev := []table.Row(nil)
	for seq := uint64(1); seq <= 1000; seq++ {
		add := []table.Row{{int64(seq), "0123456789"}}
		small.mu.Lock()
		small.rows.Apply(add, prev)
		small.recordLocked(&table.Publication{Publisher: "p", Table: "small", Seqnum: seq, Add: add, Del: prev})
		small.seqnum = seq
		small.mu.Unlock()
		prev = add
	}
	if n := len(small.history); n != minHistory {
		t.Fatalf("one-row table: %d deltas kept, want %d", n, minHistory)
	}
	if got, err := small.Catchup("p", 1000-minHistory); err != nil || len(got) != minHistory || got[0].Snapshot {
		t.Fatalf("catch-up %d behind: %d publications, %v; want the deltas", minHistory, len(got), err)
	}
	if got, err := small.Catchup("p", 1000-minHistory-1); err != nil || len(got) != 1 || !got[0].Snapshot {
		t.Fatalf("catch-up %d behind: %d publications, %v; want a snapshot", minHistory+1, len(got), err)
	}
	big := NewTable("big", 100, nil)
	big.mu.Lock()
	for k := range 10_000 {
		big.rows.Apply([]table.Row{{int64(-k - 1), "0123456789"}}, nil)
	}
	big.mu.Unlock()
	for seq := uint64(1); seq <= 150; seq++ {
		record(big, seq)
	}
	if n := len(big.history); n != 150 {
		t.Fatalf("10,000-row table: %d deltas kept, want all 150 (its count is 100 to 200)", n)
	}
}
