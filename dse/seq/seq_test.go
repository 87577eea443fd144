package seq

import (
	"math/rand/v2"
	"testing"
	"time"

	"dse.dev/dse/dse/table"
)

var t0 = time.Unix(1000, 0)

func delta(n uint64) *table.Publication { return &table.Publication{Seqnum: n} }
func snap(n uint64) *table.Publication  { return &table.Publication{Seqnum: n, Snapshot: true} }

func seqs(ps []*table.Publication) []uint64 {
	var out []uint64
	for _, p := range ps {
		out = append(out, p.Seqnum)
	}
	return out
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRules(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []*table.Publication
		want []uint64
		last uint64
		buf  int
	}{
		{"in order", []*table.Publication{snap(1), delta(2), delta(3)}, []uint64{1, 2, 3}, 3, 0},
		{"out of order", []*table.Publication{snap(1), delta(3), delta(4), delta(2)}, []uint64{1, 2, 3, 4}, 4, 0},
		{"duplicates dropped", []*table.Publication{snap(1), delta(2), delta(2), delta(1), snap(1)}, []uint64{1, 2}, 2, 0},
		{"snapshot replaces and drops older buffered", []*table.Publication{snap(1), delta(3), delta(5), snap(4)}, []uint64{1, 4, 5}, 5, 0},
		{"older snapshot dropped", []*table.Publication{snap(5), snap(3), delta(4)}, []uint64{5}, 5, 0},
		{"gap stays buffered", []*table.Publication{snap(1), delta(3), delta(4)}, []uint64{1}, 1, 2},
		{"first delta on an empty table", []*table.Publication{delta(1), delta(2)}, []uint64{1, 2}, 2, 0},
		{"a seed, then the first publication", []*table.Publication{snap(0), snap(0), snap(1), delta(2)}, []uint64{0, 1, 2}, 2, 0},
		{"a seed after publications is old", []*table.Publication{snap(1), snap(0)}, []uint64{1}, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := New(100)
			var got []uint64
			for _, p := range c.in {
				got = append(got, seqs(s.Offer(p, t0))...)
			}
			if !equal(got, c.want) || s.Last() != c.last || s.Buffered() != c.buf {
				t.Fatalf("applied %v last %d buffered %d; want %v last %d buffered %d", got, s.Last(), s.Buffered(), c.want, c.last, c.buf)
			}
		})
	}
}

func TestBufferIsBounded(t *testing.T) {
	s := New(10)
	s.Offer(snap(1), t0)
	for i := uint64(3); i < 100; i++ {
		s.Offer(delta(i), t0)
	}
	if s.Buffered() != 10 || s.Overflows != 87 {
		t.Fatalf("buffered %d overflows %d; want 10 and 87", s.Buffered(), s.Overflows)
	}
}

// A thousand buffered deltas drain in one loop, without recursion.
func TestLongDrainIsIterative(t *testing.T) {
	s := New(100000)
	s.Offer(snap(1), t0)
	for i := uint64(100002); i >= 3; i-- {
		if got := s.Offer(delta(i), t0); got != nil {
			t.Fatalf("applied %v before the gap filled", seqs(got))
		}
	}
	got := s.Offer(delta(2), t0)
	if len(got) != 100001 || s.Last() != 100002 || s.Buffered() != 0 {
		t.Fatalf("drained %d, last %d", len(got), s.Last())
	}
}

func TestGapTriggersCatchupEveryTime(t *testing.T) {
	s := New(100)
	timeout := 2 * time.Second
	s.Offer(snap(1), t0)
	// Three gaps in a row: each must be noticed (Congress stopped after one).
	now := t0
	next := uint64(2)
	for gap := range 3 {
		s.Offer(delta(next+1), now)
		if s.NeedsCatchup(now.Add(timeout-time.Millisecond), next+1, timeout) {
			t.Fatalf("gap %d: catch-up before the timeout", gap)
		}
		if !s.NeedsCatchup(now.Add(timeout), next+1, timeout) {
			t.Fatalf("gap %d: no catch-up after the timeout", gap)
		}
		s.CatchupStarted(now.Add(timeout))
		if s.NeedsCatchup(now.Add(timeout+time.Millisecond), next+1, timeout) {
			t.Fatalf("gap %d: catch-up again right after one started", gap)
		}
		// The catch-up brings the missing delta.
		if got := s.Offer(delta(next), now.Add(timeout)); !equal(seqs(got), []uint64{next, next + 1}) {
			t.Fatalf("gap %d: applied %v", gap, seqs(got))
		}
		if s.NeedsCatchup(now.Add(10*timeout), next+1, timeout) {
			t.Fatalf("gap %d: catch-up with no gap left", gap)
		}
		next += 2
		now = now.Add(10 * timeout)
	}
}

// The last publication was lost and nothing follows it: only the FSM's
// seqnum tells.
func TestLostFinalUpdateNoticedThroughFSM(t *testing.T) {
	s := New(100)
	timeout := time.Second
	s.Offer(snap(1), t0)
	s.Offer(delta(2), t0)
	if s.NeedsCatchup(t0, 3, timeout) {
		t.Fatal("catch-up at once")
	}
	if !s.NeedsCatchup(t0.Add(timeout), 3, timeout) {
		t.Fatal("committed seqnum 3 ahead of applied 2 not noticed")
	}
	s.Offer(delta(3), t0.Add(timeout))
	if s.NeedsCatchup(t0.Add(3*timeout), 3, timeout) {
		t.Fatal("catch-up after catching up")
	}
}

// Any arrival order, with duplicates, applies each seqnum once, in order.
func TestRandomOrderConverges(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var in []*table.Publication
		for i := uint64(1); i <= 500; i++ {
			p := delta(i)
			if i == 1 {
				p = snap(1)
			}
			in = append(in, p)
			if rng.IntN(5) == 0 {
				in = append(in, p)
			}
		}
		rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		s := New(1000)
		var got []uint64
		for _, p := range in {
			got = append(got, seqs(s.Offer(p, t0))...)
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Fatalf("seed %d: applied %d after %d", seed, got[i], got[i-1])
			}
		}
		if s.Last() != 500 {
			t.Fatalf("seed %d: last %d, want 500", seed, s.Last())
		}
	}
}

// TestNoCatchupWhileProgressing: a subscriber that stays one publication
// behind the registry at every check, but applies one each time, lost
// nothing: it never needs a catch-up; once it stops advancing, it does.
func TestNoCatchupWhileProgressing(t *testing.T) {
	s := New(100)
	s.Offer(snap(1), t0)
	timeout := time.Second
	now := t0
	for i := uint64(2); i < 100; i++ {
		now = now.Add(300 * time.Millisecond)
		if s.NeedsCatchup(now, i, timeout) {
			t.Fatalf("at %d, one behind and advancing: a catch-up", i)
		}
		s.Offer(delta(i), now)
	}
	for range 3 {
		now = now.Add(300 * time.Millisecond)
		s.NeedsCatchup(now, 100, timeout)
	}
	if !s.NeedsCatchup(now.Add(300*time.Millisecond), 100, timeout) {
		t.Fatal("no progress for the timeout, one behind: no catch-up")
	}
}
