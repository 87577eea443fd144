package table

// Set is a table's content: rows by key. It is not safe for concurrent use;
// its owner locks.
type Set struct {
	rows map[string]Row
}

// NewSet returns a set holding rows (duplicates collapse).
func NewSet(rows []Row) *Set {
	s := &Set{rows: make(map[string]Row, len(rows))}
	for _, r := range rows {
		s.rows[Key(r)] = r
	}
	return s
}

// Len returns the number of rows.
func (s *Set) Len() int { return len(s.rows) }

// Has reports whether the set holds r.
func (s *Set) Has(r Row) bool {
	_, ok := s.rows[Key(r)]
	return ok
}

// Rows returns the rows, sorted.
func (s *Set) Rows() []Row {
	out := make([]Row, 0, len(s.rows))
	for _, r := range s.rows {
		out = append(out, r)
	}
	Sort(out)
	return out
}

// Unsorted returns the rows in no particular order (cheaper than Rows).
func (s *Set) Unsorted() []Row {
	out := make([]Row, 0, len(s.rows))
	for _, r := range s.rows {
		out = append(out, r)
	}
	return out
}

// Clone returns an independent copy (rows are shared: they are immutable).
func (s *Set) Clone() *Set {
	c := &Set{rows: make(map[string]Row, len(s.rows))}
	for k, r := range s.rows {
		c.rows[k] = r
	}
	return c
}

// Apply removes del then adds add, and returns what actually changed: the
// rows added that were absent, the rows deleted that were present.
func (s *Set) Apply(add, del []Row) (added, deleted []Row) {
	for _, r := range del {
		k := Key(r)
		if _, ok := s.rows[k]; ok {
			delete(s.rows, k)
			deleted = append(deleted, r)
		}
	}
	for _, r := range add {
		k := Key(r)
		if _, ok := s.rows[k]; !ok {
			s.rows[k] = r
			added = append(added, r)
		}
	}
	return added, deleted
}

// Replace sets the content to rows and returns the difference from the old
// content, as a delta (a snapshot handed on as a diff, like client-go's
// DeltaFIFO on relist).
func (s *Set) Replace(rows []Row) (added, deleted []Row) {
	next := make(map[string]Row, len(rows))
	for _, r := range rows {
		k := Key(r)
		next[k] = r
		if _, ok := s.rows[k]; !ok {
			added = append(added, r)
		}
	}
	for k, r := range s.rows {
		if _, ok := next[k]; !ok {
			deleted = append(deleted, r)
		}
	}
	s.rows = next
	return added, deleted
}

// Diff returns what turns s into the content rows without changing s.
func (s *Set) Diff(rows []Row) (add, del []Row) {
	seen := make(map[string]struct{}, len(rows))
	for _, r := range rows {
		k := Key(r)
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if _, ok := s.rows[k]; !ok {
			add = append(add, r)
		}
	}
	for k, r := range s.rows {
		if _, ok := seen[k]; !ok {
			del = append(del, r)
		}
	}
	return add, del
}
