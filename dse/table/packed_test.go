package table

import (
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// decodedSnapshot returns rows as a snapshot decoded off the wire, with
// the encodings and hashes the decoder keeps.
func decodedSnapshot(t testing.TB, rows []Row) *Publication {
	t.Helper()
	enc, err := (&Publication{Publisher: "p", Table: "t", Seqnum: 1, Snapshot: true, Rows: rows}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := DecodeBatch(append(AppendBatch(nil, 1), enc...))
	if err != nil {
		t.Fatal(err)
	}
	return pubs[0]
}

// TestPackedAgainstModel runs random Apply, Replace and Has calls on a
// Packed set and on a map keyed by Key, with hashes that collide on
// purpose and with the real one; snapshots come both decoded (the
// encodings kept) and as rows.
func TestPackedAgainstModel(t *testing.T) {
	defer func() { testHash = nil }()
	for _, name := range []string{"colliding", "wrapping", "real"} {
		switch name {
		case "colliding":
			testHash = func(h uint64) uint64 { return h % 3 }
		case "wrapping":
			testHash = func(h uint64) uint64 { return ^uint64(0) - h%3 }
		default:
			testHash = nil
		}
		rng := rand.New(rand.NewPCG(3, 4))
		row := func() Row {
			switch rng.IntN(5) {
			case 0:
				return Row{int64(rng.IntN(20) * 1000)}
			case 1:
				return Row{"s" + strconv.Itoa(rng.IntN(20)), float64(rng.IntN(20))}
			case 2:
				return Row{[]byte{byte(rng.IntN(20))}, nil, true}
			case 3:
				return Row{rng.IntN(5)} // not canonical: an int
			}
			return Row{}
		}
		rows := func() []Row {
			out := make([]Row, rng.IntN(12))
			for i := range out {
				out[i] = row()
			}
			return out
		}
		canon := func(r Row) Row {
			c := make(Row, len(r))
			for i, v := range r {
				c[i], _ = Canonical(v)
			}
			return c
		}
		keys := func(rs []Row) map[string]bool {
			m := map[string]bool{}
			for _, r := range rs {
				m[Key(canon(r))] = true
			}
			return m
		}
		s, model := &Packed{}, map[string]Row{}
		for i := range 3000 {
			switch rng.IntN(3) {
			case 0:
				add, del := rows(), rows()
				added, deleted := s.Apply(add, del)
				var wantDel, wantAdd []Row
				for _, r := range del {
					if _, ok := model[Key(canon(r))]; ok {
						delete(model, Key(canon(r)))
						wantDel = append(wantDel, r)
					}
				}
				for _, r := range add {
					if _, ok := model[Key(canon(r))]; !ok {
						model[Key(canon(r))] = canon(r)
						wantAdd = append(wantAdd, r)
					}
				}
				if !reflect.DeepEqual(keys(added), keys(wantAdd)) || !reflect.DeepEqual(keys(deleted), keys(wantDel)) {
					t.Fatalf("%s step %d: Apply reported %v/%v, want %v/%v", name, i, added, deleted, wantAdd, wantDel)
				}
			case 1:
				next := rows()
				nextKeys := keys(next)
				var wantAdd, wantDel []Row
				for _, r := range next {
					if _, ok := model[Key(canon(r))]; !ok {
						wantAdd = append(wantAdd, r)
					}
				}
				for k, r := range model {
					if !nextKeys[k] {
						wantDel = append(wantDel, r)
					}
				}
				var added, deleted []Row
				if rng.IntN(2) == 0 {
					added, deleted = s.Replace(next)
				} else {
					p := decodedSnapshot(t, canonRows(next))
					added, deleted = p.ApplyToPacked(s)
				}
				if !reflect.DeepEqual(keys(added), keys(wantAdd)) || !reflect.DeepEqual(keys(deleted), keys(wantDel)) {
					t.Fatalf("%s step %d: Replace %v/%v, want %v/%v", name, i, added, deleted, wantAdd, wantDel)
				}
				model = map[string]Row{}
				for _, r := range next {
					model[Key(canon(r))] = canon(r)
				}
			case 2:
				r := row()
				_, want := model[Key(canon(r))]
				if s.Has(r) != want {
					t.Fatalf("%s step %d: Has(%v) = %v", name, i, r, !want)
				}
			}
			if s.Len() != len(model) || !reflect.DeepEqual(keys(s.Unsorted()), keys(mapValues(model))) {
				t.Fatalf("%s step %d: set holds %v, model %v", name, i, s.Rows(), model)
			}
		}
	}
}

func canonRows(rows []Row) []Row {
	out := make([]Row, len(rows))
	for i, r := range rows {
		c := make(Row, len(r))
		for j, v := range r {
			c[j], _ = Canonical(v)
		}
		out[i] = c
	}
	return out
}

// TestPackedBigLoad: a big decoded snapshot, with repeats, loads into a
// set that finds each row, shares the decoder's encodings with a second
// set, and stays whole while the other changes and compacts.
func TestPackedBigLoad(t *testing.T) {
	defer func() { testHash = nil }()
	for _, collide := range []bool{false, true} {
		testHash = nil
		if collide {
			testHash = func(h uint64) uint64 { return h &^ 0xff }
		}
		const n = 50_000
		rows := make([]Row, 0, n+100)
		for i := range n {
			rows = append(rows, Row{int64(i), "row-" + strconv.Itoa(i), float64(i) / 7})
		}
		rows = append(rows, rows[:100]...) // repeats
		p := decodedSnapshot(t, rows)
		if p.rawRows == nil {
			t.Fatal("a canonical snapshot came without its encodings")
		}
		a, b := &Packed{}, &Packed{}
		added, _ := p.ApplyToPacked(a)
		if len(added) != n || a.Len() != n {
			t.Fatalf("collide=%v: %d added, %d held; want %d", collide, len(added), a.Len(), n)
		}
		p.ApplyToPacked(b)
		// Delete nine rows in ten from a: its arenas compact.
		var del []Row
		for i := range n {
			if i%10 != 0 {
				del = append(del, rows[i])
			}
		}
		if _, deleted := a.Apply([]Row{{"new"}}, del); len(deleted) != len(del) {
			t.Fatalf("collide=%v: %d deleted, want %d", collide, len(deleted), len(del))
		}
		if got := len(a.base) + a.held; got > 2*a.live+64<<10 {
			t.Fatalf("collide=%v: %d bytes of arena for %d live", collide, got, a.live)
		}
		for i := range n {
			if a.Has(rows[i]) != (i%10 == 0) {
				t.Fatalf("collide=%v: a.Has(row %d) = %v", collide, i, !(i%10 == 0))
			}
			if !b.Has(rows[i]) {
				t.Fatalf("collide=%v: b lost row %d while a changed", collide, i)
			}
		}
		if !a.Has(Row{"new"}) || a.Len() != n/10+1 {
			t.Fatalf("collide=%v: a holds %d rows", collide, a.Len())
		}
		got := b.Rows()
		Sort(rows[:n])
		if !reflect.DeepEqual(got, rows[:n]) {
			t.Fatalf("collide=%v: b's rows differ from the snapshot's", collide)
		}
	}
}

// TestPackedForeignEncoding: a snapshot another encoder wrote (not the
// canonical encoding) comes without encodings to keep, and the set still
// holds its rows.
func TestPackedForeignEncoding(t *testing.T) {
	for _, rows := range [][]any{
		{[]any{int8(1), float32(2)}, []any{"x"}},
		{[]any{"a", true}, []any{"x"}, nil}, // canonical but for a nil row
	} {
		checkForeign(t, rows)
	}
}

func checkForeign(t *testing.T, rows []any) {
	t.Helper()
	body, err := msgpack.Marshal([]any{[]any{"p", "t", uint64(1), true, rows, nil, nil, int64(0)}})
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := DecodeBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	if pubs[0].rawRows != nil {
		t.Fatal("a foreign encoding was kept as canonical")
	}
	s := &Packed{}
	pubs[0].ApplyToPacked(s)
	if s.Len() != len(rows) || !s.Has(Row{"x"}) || len(rows) == 3 && !s.Has(Row{}) {
		t.Fatalf("set holds %v", s.Rows())
	}
}

// TestPackedTailChunks: rows added after a load go into chunks, big ones
// (over a chunk) into chunks of their own, and every one is found, read
// back and removed.
func TestPackedTailChunks(t *testing.T) {
	s := &Packed{}
	var rows []Row
	for i := range 40 {
		size := 100 + i
		switch i % 10 {
		case 3:
			size = chunkSize/2 + i
		case 7:
			size = 2*chunkSize + 5 + i
		}
		rows = append(rows, Row{int64(i), strings.Repeat("y", size)})
	}
	for i := range rows {
		if added, _ := s.Apply(rows[i:i+1], nil); len(added) != 1 {
			t.Fatalf("row %d not added", i)
		}
	}
	for i, r := range rows {
		if !s.Has(r) {
			t.Fatalf("row %d (%d bytes) not found", i, len(r[1].(string)))
		}
	}
	got := s.Rows()
	want := append([]Row(nil), rows...)
	Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatal("the rows read back differ")
	}
	// Removing all but one compacts the arenas to that one.
	if _, deleted := s.Apply(nil, rows[1:]); len(deleted) != len(rows)-1 {
		t.Fatalf("%d deleted", len(deleted))
	}
	if s.Len() != 1 || !s.Has(rows[0]) || len(s.base)+s.held > 2*s.live+64<<10 {
		t.Fatalf("after removals: %d rows, %d bytes held for %d live", s.Len(), len(s.base)+s.held, s.live)
	}
}

// TestPackedSmallTableStaysSmall: a one-row table under many deltas
// (each replacing its row) holds about its row, not what it removed.
func TestPackedSmallTableStaysSmall(t *testing.T) {
	s := &Packed{}
	for i := range 10_000 {
		add := []Row{{int64(i), strings.Repeat("z", 100)}}
		var del []Row
		if i > 0 {
			del = []Row{{int64(i - 1), strings.Repeat("z", 100)}}
		}
		s.Apply(add, del)
	}
	held := cap(s.base)
	for _, c := range s.tail {
		held += cap(c)
	}
	for _, c := range s.spare {
		held += cap(c)
	}
	if s.Len() != 1 || held > 4<<10 {
		t.Fatalf("%d rows, %d bytes of arenas held for %d live", s.Len(), held, s.live)
	}
}

// A small table under deltas reuses its arenas: a compaction keeps the
// chunk its tail grew to, so the next fills it again without allocating.
// Before, a one-row table regrew its tail at every compaction (0.3
// allocations an Apply besides the result's).
func TestPackedSmallTableReusesItsChunks(t *testing.T) {
	// Rows of many sizes: whether a grown chunk fit the room kept
	// depended on where the slice's growth landed.
	for size := 8; size <= 400; size += 9 {
		s := &Packed{}
		rows := []Row{{int64(1), strings.Repeat("x", size)}, {int64(2), strings.Repeat("y", size)}}
		i := 0
		step := func() {
			s.Apply(rows[i%2:i%2+1], rows[(i+1)%2:(i+1)%2+1])
			i++
		}
		for range 1000 {
			step()
		}
		// One allocation is Apply's result, which the caller keeps.
		if a := testing.AllocsPerRun(5_000, step); a > 1.02 {
			t.Errorf("rows of %d bytes: %.2f allocations an Apply, want 1 (its result)", size, a)
		}
		if s.Len() != 1 {
			t.Fatalf("%d rows, want 1", s.Len())
		}
	}
}
