package table

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestSetAgainstModel runs random Apply, Replace and Diff calls on a Set and
// on a map keyed by Key, with a hash that collides on purpose (so the
// overflow path is exercised) and with the real one.
func TestSetAgainstModel(t *testing.T) {
	defer func() { testHash = nil }()
	for _, name := range []string{"colliding", "wrapping", "real"} {
		switch name {
		case "colliding":
			testHash = func(h uint64) uint64 { return h % 3 }
		case "wrapping": // colliding at the index's end: probes wrap around
			testHash = func(h uint64) uint64 { return ^uint64(0) - h%3 }
		default:
			testHash = nil
		}
		rng := rand.New(rand.NewPCG(1, 2))
		row := func() Row {
			switch rng.IntN(4) {
			case 0:
				return Row{int64(rng.IntN(20))}
			case 1:
				return Row{"s", float64(rng.IntN(20))}
			case 2:
				return Row{[]byte{byte(rng.IntN(20))}, nil, true}
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
		s, model := NewSet(nil), map[string]Row{}
		keys := func(rs []Row) map[string]bool {
			m := map[string]bool{}
			for _, r := range rs {
				m[Key(r)] = true
			}
			return m
		}
		for i := range 3000 {
			switch rng.IntN(3) {
			case 0:
				add, del := rows(), rows()
				added, deleted := s.Apply(add, del)
				var wantDel, wantAdd []Row
				for _, r := range del {
					if _, ok := model[Key(r)]; ok {
						delete(model, Key(r))
						wantDel = append(wantDel, r)
					}
				}
				for _, r := range add {
					if _, ok := model[Key(r)]; !ok {
						model[Key(r)] = r
						wantAdd = append(wantAdd, r)
					}
				}
				if !reflect.DeepEqual(keys(added), keys(wantAdd)) || !reflect.DeepEqual(keys(deleted), keys(wantDel)) {
					t.Fatalf("%s step %d: Apply reported %v/%v, want %v/%v", name, i, added, deleted, wantAdd, wantDel)
				}
			case 1:
				next := rows()
				add, del := s.Diff(next)
				nextKeys := keys(next)
				var wantAdd, wantDel []Row
				for _, r := range next {
					if _, ok := model[Key(r)]; !ok {
						wantAdd = append(wantAdd, r)
					}
				}
				for k, r := range model {
					if !nextKeys[k] {
						wantDel = append(wantDel, r)
					}
				}
				if !reflect.DeepEqual(keys(add), keys(wantAdd)) || !reflect.DeepEqual(keys(del), keys(wantDel)) {
					t.Fatalf("%s step %d: Diff %v/%v, want %v/%v", name, i, add, del, wantAdd, wantDel)
				}
				if rng.IntN(2) == 0 {
					added, deleted := s.Replace(next)
					if !reflect.DeepEqual(keys(added), keys(wantAdd)) || !reflect.DeepEqual(keys(deleted), keys(wantDel)) {
						t.Fatalf("%s step %d: Replace %v/%v, want %v/%v", name, i, added, deleted, wantAdd, wantDel)
					}
					model = map[string]Row{}
					for _, r := range next {
						model[Key(r)] = r
					}
				}
			case 2:
				r := row()
				_, want := model[Key(r)]
				if s.Has(r) != want {
					t.Fatalf("%s step %d: Has(%v) = %v", name, i, r, !want)
				}
			}
			if s.Len() != len(model) || !reflect.DeepEqual(keys(s.Unsorted()), keys(mapValues(model))) {
				t.Fatalf("%s step %d: set holds %v, model %v", name, i, s.Rows(), model)
			}
			if c := s.Clone(); !reflect.DeepEqual(keys(c.Unsorted()), keys(s.Unsorted())) || c.Len() != s.Len() {
				t.Fatalf("%s step %d: clone differs", name, i)
			}
		}
	}
}

func mapValues(m map[string]Row) []Row {
	out := make([]Row, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	return out
}

func TestEqualMatchesKey(t *testing.T) {
	vals := []any{nil, true, false, int64(1), int64(2), 1.0, 2.5, "1", "x", []byte("1"), []byte{}}
	for _, a := range vals {
		for _, b := range vals {
			if got, want := Equal(Row{a}, Row{b}), Key(Row{a}) == Key(Row{b}); got != want {
				t.Errorf("Equal(%#v, %#v) = %v, keys say %v", a, b, got, want)
			}
		}
	}
}

// TestSetLoadBig: a load big enough to take the slot-ordered path, with
// duplicates, with the real hash and with one whose low bits collide, holds
// exactly the distinct rows, in the order given, and stays usable.
func TestSetLoadBig(t *testing.T) {
	defer func() { testHash = nil }()
	for _, name := range []string{"real", "low bits colliding"} {
		if name == "real" {
			testHash = nil
		} else {
			testHash = func(h uint64) uint64 { return h &^ 0xff }
		}
		var rows []Row
		for i := range 80_000 {
			rows = append(rows, Row{int64(i), "r"})
			if i%7 == 0 {
				rows = append(rows, Row{int64(i), "r"}) // a duplicate
			}
		}
		s := NewSet(rows)
		if s.Len() != 80_000 {
			t.Fatalf("%s: %d rows, want 80000", name, s.Len())
		}
		for i := range 80_000 {
			if !s.Has(Row{int64(i), "r"}) {
				t.Fatalf("%s: row %d missing", name, i)
			}
		}
		if s.Has(Row{int64(80_000), "r"}) {
			t.Fatalf("%s: holds a row never added", name)
		}
		// The rows stay in the order given, the repeats left out.
		for i, r := range s.Unsorted() {
			if r[0] != int64(i) {
				t.Fatalf("%s: row %d listed is %v", name, i, r)
			}
		}
		var del []Row
		for i := 0; i < 80_000; i += 3 {
			del = append(del, Row{int64(i), "r"})
		}
		if _, deleted := s.Apply(nil, del); len(deleted) != len(del) || s.Len() != 80_000-len(del) {
			t.Fatalf("%s: deleted %d of %d, %d left", name, len(deleted), len(del), s.Len())
		}
		for i := range 80_000 {
			if s.Has(Row{int64(i), "r"}) != (i%3 != 0) {
				t.Fatalf("%s: after deletes, row %d present = %v", name, i, !(i%3 != 0))
			}
		}
		added, deleted := NewSet(nil).Replace(rows)
		if len(added) != 80_000 || deleted != nil {
			t.Fatalf("%s: Replace into empty added %d", name, len(added))
		}
	}
}

// TestSetSharedStaysAsItWas: what Shared returned does not change when the
// set changes afterwards, by deletes (which move rows in place), adds or a
// Replace.
func TestSetSharedStaysAsItWas(t *testing.T) {
	var rows []Row
	for i := range 100 {
		rows = append(rows, Row{int64(i)})
	}
	s := NewSet(rows)
	shared := s.Shared()
	want := slices.Clone(shared)
	s.Apply([]Row{{int64(100)}, {int64(101)}}, []Row{{int64(0)}, {int64(50)}, {int64(99)}})
	if !reflect.DeepEqual(shared, want) {
		t.Fatal("a delete changed what Shared returned")
	}
	if s.Len() != 99 || s.Has(Row{int64(50)}) || !s.Has(Row{int64(101)}) || !s.Has(Row{int64(98)}) {
		t.Fatalf("set after the change: %d rows", s.Len())
	}
	again := s.Shared()
	want = slices.Clone(again)
	s.Replace([]Row{{int64(7)}})
	s.Apply(nil, []Row{{int64(7)}})
	if !reflect.DeepEqual(again, want) {
		t.Fatal("a Replace and a delete changed what Shared returned")
	}
}

// TestSetKeepsBigLoadsIntact: a big load keeps the caller's array rather
// than copying it, and changes to the set never reach that array.
func TestSetKeepsBigLoadsIntact(t *testing.T) {
	var rows []Row
	for i := range 40_000 {
		rows = append(rows, Row{int64(i)})
	}
	want := slices.Clone(rows)
	s := NewSet(rows)
	var del []Row
	for i := 0; i < 40_000; i += 2 {
		del = append(del, Row{int64(i)})
	}
	s.Apply([]Row{{int64(-1)}}, del)
	if !reflect.DeepEqual(rows, want) {
		t.Fatal("changing the set changed the rows it was loaded from")
	}
	if s.Len() != 20_001 || !s.Has(Row{int64(-1)}) || !s.Has(Row{int64(39_999)}) || s.Has(Row{int64(0)}) {
		t.Fatalf("set after the change: %d rows", s.Len())
	}
	r := NewSet(nil)
	if added, _ := r.Replace(rows); &added[0] != &rows[0] {
		t.Fatal("Replace into an empty set copied the rows")
	}
	r.Apply(nil, rows[:100])
	if !reflect.DeepEqual(rows, want) {
		t.Fatal("changing a set changed the rows it was replaced with")
	}
}
