package table

import (
	"bytes"
	"hash/maphash"
	"math"
)

// seed keys the row hashes of every Set in this process (random per
// process, so rows cannot be crafted to collide).
var seed = maphash.MakeSeed()

// Set is a table's content: rows by value. It is not safe for concurrent
// use; its owner locks.
//
// Rows are indexed by a 64-bit hash of their canonical key (AppendKey), not
// by the key itself: a key string per row would be an allocation and about
// twice the memory of the map entry. Rows whose hash another row already has
// (rare) live in an overflow map; equality is always checked on the values.
type Set struct {
	rows map[uint64]Row
	more map[uint64][]Row
	n    int
}

// NewSet returns a set holding rows (duplicates collapse).
func NewSet(rows []Row) *Set {
	s := &Set{rows: make(map[uint64]Row, len(rows))}
	for _, r := range rows {
		s.add(hashRow(r), r)
	}
	return s
}

// hashRow hashes a row's canonical key (a variable so that tests can force
// collisions).
var hashRow = func(r Row) uint64 {
	var small [128]byte
	return maphash.Bytes(seed, AppendKey(small[:0], r))
}

// Equal reports whether two canonical rows hold the same values (floats
// compared by their bits, as Key does).
func Equal(a, b Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i, v := range a {
		switch x := v.(type) {
		case nil:
			if b[i] != nil {
				return false
			}
		case bool:
			if y, ok := b[i].(bool); !ok || x != y {
				return false
			}
		case int64:
			if y, ok := b[i].(int64); !ok || x != y {
				return false
			}
		case float64:
			if y, ok := b[i].(float64); !ok || math.Float64bits(x) != math.Float64bits(y) {
				return false
			}
		case string:
			if y, ok := b[i].(string); !ok || x != y {
				return false
			}
		case []byte:
			if y, ok := b[i].([]byte); !ok || !bytes.Equal(x, y) {
				return false
			}
		default:
			if Key(Row{v}) != Key(Row{b[i]}) {
				return false
			}
		}
	}
	return true
}

// find reports whether the set holds r, whose hash is h.
func (s *Set) find(h uint64, r Row) bool {
	x, ok := s.rows[h]
	if !ok {
		return false
	}
	if Equal(x, r) {
		return true
	}
	for _, y := range s.more[h] {
		if Equal(y, r) {
			return true
		}
	}
	return false
}

// add inserts r (hash h) unless present, and reports whether it did.
func (s *Set) add(h uint64, r Row) bool {
	_, taken := s.rows[h]
	switch {
	case !taken:
		s.rows[h] = r
	case s.find(h, r):
		return false
	default:
		if s.more == nil {
			s.more = map[uint64][]Row{}
		}
		s.more[h] = append(s.more[h], r)
	}
	s.n++
	return true
}

// remove deletes r (hash h) if present, and reports whether it did.
func (s *Set) remove(h uint64, r Row) bool {
	x, ok := s.rows[h]
	if !ok {
		return false
	}
	more := s.more[h]
	if Equal(x, r) {
		if len(more) == 0 {
			delete(s.rows, h)
		} else {
			s.rows[h] = more[len(more)-1]
			s.setMore(h, more[:len(more)-1])
		}
		s.n--
		return true
	}
	for i, y := range more {
		if Equal(y, r) {
			more[i] = more[len(more)-1]
			s.setMore(h, more[:len(more)-1])
			s.n--
			return true
		}
	}
	return false
}

func (s *Set) setMore(h uint64, rows []Row) {
	if len(rows) == 0 {
		delete(s.more, h)
		return
	}
	s.more[h] = rows
}

// each calls fn for every row, in no particular order.
func (s *Set) each(fn func(Row)) {
	for _, r := range s.rows {
		fn(r)
	}
	for _, rows := range s.more {
		for _, r := range rows {
			fn(r)
		}
	}
}

// Len returns the number of rows.
func (s *Set) Len() int { return s.n }

// Has reports whether the set holds r.
func (s *Set) Has(r Row) bool { return s.find(hashRow(r), r) }

// Rows returns the rows, sorted.
func (s *Set) Rows() []Row {
	out := s.Unsorted()
	Sort(out)
	return out
}

// Unsorted returns the rows in no particular order (cheaper than Rows).
func (s *Set) Unsorted() []Row {
	out := make([]Row, 0, s.n)
	s.each(func(r Row) { out = append(out, r) })
	return out
}

// Clone returns an independent copy (rows are shared: they are immutable).
func (s *Set) Clone() *Set {
	c := &Set{rows: make(map[uint64]Row, len(s.rows)), n: s.n}
	for h, r := range s.rows {
		c.rows[h] = r
	}
	for h, rows := range s.more {
		if c.more == nil {
			c.more = map[uint64][]Row{}
		}
		c.more[h] = append([]Row(nil), rows...)
	}
	return c
}

// Apply removes del then adds add, and returns what actually changed: the
// rows added that were absent, the rows deleted that were present.
func (s *Set) Apply(add, del []Row) (added, deleted []Row) {
	for _, r := range del {
		if s.remove(hashRow(r), r) {
			deleted = append(deleted, r)
		}
	}
	for _, r := range add {
		if s.add(hashRow(r), r) {
			added = append(added, r)
		}
	}
	return added, deleted
}

// Replace sets the content to rows and returns the difference from the old
// content, as a delta (a snapshot handed on as a diff, like client-go's
// DeltaFIFO on relist).
func (s *Set) Replace(rows []Row) (added, deleted []Row) {
	next := &Set{rows: make(map[uint64]Row, len(rows))}
	if s.n == 0 {
		// Into an empty set (a first snapshot): everything is added.
		for _, r := range rows {
			next.add(hashRow(r), r)
		}
		*s = *next
		if s.n == len(rows) {
			return rows, nil
		}
		seen := &Set{rows: make(map[uint64]Row, s.n)}
		for _, r := range rows {
			if seen.add(hashRow(r), r) {
				added = append(added, r)
			}
		}
		return added, nil
	}
	for _, r := range rows {
		h := hashRow(r)
		if next.add(h, r) && !s.find(h, r) {
			added = append(added, r)
		}
	}
	s.each(func(r Row) {
		if !next.Has(r) {
			deleted = append(deleted, r)
		}
	})
	*s = *next
	return added, deleted
}

// Diff returns what turns s into the content rows without changing s.
func (s *Set) Diff(rows []Row) (add, del []Row) {
	seen := &Set{rows: make(map[uint64]Row, len(rows))}
	for _, r := range rows {
		h := hashRow(r)
		if !seen.add(h, r) {
			continue
		}
		if !s.find(h, r) {
			add = append(add, r)
		}
	}
	s.each(func(r Row) {
		if !seen.Has(r) {
			del = append(del, r)
		}
	})
	return add, del
}
