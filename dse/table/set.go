package table

import (
	"bytes"
	"hash/maphash"
	"math"
	"math/bits"
	"runtime"

	"dse.dev/dse/internal/bigmem"
)

// seed keys the row hashes of every Set in this process (random per
// process, so rows cannot be crafted to collide).
var seed = maphash.MakeSeed()

// Set is a table's content: rows by value. It is not safe for concurrent
// use; its owner locks.
//
// The rows are kept dense in a slice, with their 64-bit hashes (hashRow:
// maphash of their canonical msgpack encoding) beside them, and indexed by
// an open-addressing table of slot indices (linear probing, backward-shift
// deletion, at most half full).
// Building a million-row set this way is about ten times faster than a Go
// map keyed by hash or by key string (measured: 9-55 ms against 120-350 ms,
// most of it the map's allocation and cache misses), and listing the rows is
// a copy of one slice. Equality is always checked on the values.
type Set struct {
	rows   []Row
	hashes []uint64 // hashes[i] is rows[i]'s
	slots  []uint32 // 0: empty; else 1 + an index into rows; len a power of 2
	// shared: the arrays of rows and hashes are not the set's alone
	// (Shared handed rows out, or load was given them); they are copied
	// before any of their first len(rows) elements changes. Appends need
	// no copy: the arrays load was given are cut at their length (an
	// append moves to an array of the set's own), and what Shared hands
	// out is cut at its length (an append goes past it).
	shared bool
}

// unshare copies the rows and their hashes when their arrays are shared
// (see shared), before one of them changes in place.
func (s *Set) unshare() {
	if s.shared {
		s.rows = append(make([]Row, 0, cap(s.rows)), s.rows...)
		s.hashes = append(make([]uint64, 0, cap(s.hashes)), s.hashes...)
		s.shared = false
	}
}

// NewSet returns a set holding rows (duplicates collapse).
func NewSet(rows []Row) *Set {
	s := &Set{}
	s.load(rows, nil)
	return s
}

// load adds rows to an empty set. A big load inserts them into the index in
// the order of their slots (a counting sort on the slots' top bits), so that
// the probes stay in cache instead of jumping across the whole index for
// every row. The set keeps rows' own array (shared, so copied before it is
// changed in place): the rows stay in the order given, which is the order
// their values lie in memory, and a million-row snapshot is not copied.
// hashes, when not nil, are the rows' hashes (a decoded snapshot's): the
// set keeps them too, shared like the rows.
func (s *Set) load(rows []Row, hashes []uint64) {
	if len(rows) < 1<<14 {
		s.reserve(len(rows))
		for i, r := range rows {
			if hashes != nil {
				s.add(hashes[i], r)
			} else {
				s.add(hashRow(r), r)
			}
		}
		return
	}
	if uint64(len(rows)) >= math.MaxUint32-1 {
		panic("table: set over 4 billion rows")
	}
	s.slots = bigmem.Make[uint32](slotsFor(len(rows)))
	s.rows, s.shared = rows[:len(rows):len(rows)], true
	if hashes != nil {
		s.hashes = hashes[:len(rows):len(rows)]
	} else {
		s.hashes = bigmem.Make[uint64](len(rows))
		hashRows(s.hashes, rows)
	}
	mask := uint64(len(s.slots) - 1)
	shift := max(0, bits.Len64(mask)-10) // at most 1024 buckets
	starts := make([]int, (mask>>shift)+2)
	for _, h := range s.hashes {
		starts[(h&mask)>>shift+1]++
	}
	for b := 1; b < len(starts); b++ {
		starts[b] += starts[b-1]
	}
	order := bigmem.Make[uint32](len(rows))
	for i, h := range s.hashes {
		b := (h & mask) >> shift
		order[starts[b]] = uint32(i)
		starts[b]++
	}
	var dup []bool // dup[i]: rows[i] repeats an earlier row
	for _, i := range order {
		h := s.hashes[i]
		j := h & mask
		for {
			o := s.slots[j]
			if o == 0 {
				s.slots[j] = i + 1
				break
			}
			// The occupants met here went in moments ago: their hashes
			// are still in cache.
			if s.hashes[o-1] == h && Equal(s.rows[o-1], s.rows[i]) {
				if dup == nil {
					dup = make([]bool, len(rows))
				}
				dup[i] = true
				break
			}
			j = (j + 1) & mask
		}
	}
	if dup != nil {
		s.dropLoaded(dup)
	}
}

// dropLoaded removes the rows load marked as repeats, keeping the order of
// the others, and renumbers the index.
func (s *Set) dropLoaded(dup []bool) {
	s.unshare()
	renum := make([]uint32, len(s.rows)) // old index -> 1 + new index
	k := 0
	for i := range s.rows {
		if dup[i] {
			continue
		}
		s.rows[k], s.hashes[k] = s.rows[i], s.hashes[i]
		k++
		renum[i] = uint32(k)
	}
	clear(s.rows[k:])
	s.rows, s.hashes = s.rows[:k], s.hashes[:k]
	for j, v := range s.slots {
		if v != 0 {
			s.slots[j] = renum[v-1]
		}
	}
}

// hashRows fills hashes with the rows' hashes, in two goroutines when the
// program may run two at once: hashing is most of indexing a big set.
func hashRows(hashes []uint64, rows []Row) {
	half := len(rows) / 2
	if half < 1<<15 || runtime.GOMAXPROCS(0) < 2 {
		for i, r := range rows {
			hashes[i] = hashRow(r)
		}
		return
	}
	done := make(chan struct{})
	go func() {
		for i, r := range rows[half:] {
			hashes[half+i] = hashRow(r)
		}
		close(done)
	}()
	for i, r := range rows[:half] {
		hashes[i] = hashRow(r)
	}
	<-done
}

// hashRow hashes a row: its canonical msgpack encoding (what appendRow
// writes, one encoding per row value), so that the decoder can hash a row's
// bytes as they arrive when they are that encoding (readRowRange).
func hashRow(r Row) uint64 {
	var small [128]byte
	b, err := appendRow(small[:0], r)
	if err != nil {
		// A value that is not canonical: no msgpack row starts with 0xff,
		// and its key still tells it apart.
		b = AppendKey(append(small[:0], 0xff), r)
	}
	return hashBytes(b)
}

// hashBytes is the hash of an encoded row.
func hashBytes(b []byte) uint64 {
	h := maphash.Bytes(seed, b)
	if testHash != nil {
		h = testHash(h)
	}
	return h
}

// testHash, when set, changes every hash: tests force collisions with it.
// (hashBytes itself is not a variable: b would escape through the call.)
var testHash func(uint64) uint64

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

// reserve makes room for n rows without growing the index.
func (s *Set) reserve(n int) {
	size := slotsFor(n)
	if size <= len(s.slots) {
		return
	}
	if cap(s.rows) < n {
		s.rows = append(make([]Row, 0, n), s.rows...)
		s.hashes = append(make([]uint64, 0, n), s.hashes...)
		s.shared = false
	}
	s.slots = make([]uint32, size)
	mask := uint64(size - 1)
	for i, h := range s.hashes {
		j := h & mask
		for s.slots[j] != 0 {
			j = (j + 1) & mask
		}
		s.slots[j] = uint32(i + 1)
	}
}

// slotsFor is the index size for n rows: a power of 2, at most half full.
func slotsFor(n int) int {
	size := 8
	for size < 2*n {
		size *= 2
	}
	return size
}

// find returns r's slot (hash h) and whether it holds r; when it does not,
// the slot is where r would go.
func (s *Set) find(h uint64, r Row) (uint64, bool) {
	if len(s.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(s.slots) - 1)
	for j := h & mask; ; j = (j + 1) & mask {
		v := s.slots[j]
		if v == 0 {
			return j, false
		}
		if i := v - 1; s.hashes[i] == h && Equal(s.rows[i], r) {
			return j, true
		}
	}
}

// add inserts r (hash h) unless present, and reports whether it did.
func (s *Set) add(h uint64, r Row) bool {
	if 2*(len(s.rows)+1) > len(s.slots) {
		s.reserve(max(len(s.rows)+1, 2*len(s.rows)))
	}
	j, ok := s.find(h, r)
	if ok {
		return false
	}
	if uint64(len(s.rows)) >= math.MaxUint32-1 {
		panic("table: set over 4 billion rows")
	}
	s.slots[j] = uint32(len(s.rows) + 1)
	if len(s.rows) == cap(s.rows) {
		s.shared = false // append moves the rows to a new array
	}
	s.rows = append(s.rows, r)
	s.hashes = append(s.hashes, h)
	return true
}

// remove deletes r (hash h) if present, and reports whether it did.
func (s *Set) remove(h uint64, r Row) bool {
	j, ok := s.find(h, r)
	if !ok {
		return false
	}
	i := s.slots[j] - 1
	clearSlot(s.slots, s.hashes, j)
	// Keep the rows dense: the last one moves into the hole.
	s.unshare()
	last := uint32(len(s.rows) - 1)
	if i != last {
		renumber(s.slots, s.hashes[last], last, i)
		s.rows[i], s.hashes[i] = s.rows[last], s.hashes[last]
	}
	s.rows[last] = nil
	s.rows, s.hashes = s.rows[:last], s.hashes[:last]
	return true
}

// clearSlot empties slot j of an index of row numbers (1 + the row's
// place in hashes), then shifts back the entries after it that would no
// longer be found past the hole (backward-shift deletion). Set and Packed
// share it, with their hashes of 64 and 32 bits.
func clearSlot[H uint32 | uint64](slots []uint32, hashes []H, j uint64) {
	mask := uint64(len(slots) - 1)
	slots[j] = 0
	for k := (j + 1) & mask; slots[k] != 0; k = (k + 1) & mask {
		ideal := uint64(hashes[slots[k]-1]) & mask
		// Stays when its ideal slot lies cyclically in (j, k].
		if (j < k && j < ideal && ideal <= k) || (k < j && (j < ideal || ideal <= k)) {
			continue
		}
		slots[j], slots[k] = slots[k], 0
		j = k
	}
}

// renumber makes the slot of row from (hash h) hold row to instead.
func renumber[H uint32 | uint64](slots []uint32, h H, from, to uint32) {
	mask := uint64(len(slots) - 1)
	for k := uint64(h) & mask; ; k = (k + 1) & mask {
		if slots[k] == from+1 {
			slots[k] = to + 1
			return
		}
	}
}

// Len returns the number of rows.
func (s *Set) Len() int { return len(s.rows) }

// Has reports whether the set holds r.
func (s *Set) Has(r Row) bool {
	_, ok := s.find(hashRow(r), r)
	return ok
}

// Rows returns the rows, sorted.
func (s *Set) Rows() []Row {
	out := s.Unsorted()
	Sort(out)
	return out
}

// Unsorted returns the rows in no particular order (cheaper than Rows).
func (s *Set) Unsorted() []Row { return append([]Row(nil), s.rows...) }

// Shared returns the rows in no particular order without copying them, for
// a reader outside the owner's lock (a snapshot being encoded): the set
// copies its rows before it next changes one in place, so what Shared
// returned stays as it was. The caller must not modify it.
func (s *Set) Shared() []Row {
	s.shared = true
	return s.rows[:len(s.rows):len(s.rows)]
}

// Clone returns an independent copy (rows are shared: they are immutable).
func (s *Set) Clone() *Set {
	return &Set{
		rows:   append([]Row(nil), s.rows...),
		hashes: append([]uint64(nil), s.hashes...),
		slots:  append([]uint32(nil), s.slots...),
	}
}

// Apply removes del then adds add, and returns what actually changed: the
// rows added that were absent, the rows deleted that were present.
func (s *Set) Apply(add, del []Row) (added, deleted []Row) {
	// Both results share one array (one allocation, not two).
	buf := make([]Row, len(del)+len(add))
	deleted, added = buf[:0:len(del)], buf[len(del):len(del)]
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
	if len(deleted) == 0 {
		deleted = nil
	}
	if len(added) == 0 {
		added = nil
	}
	return added, deleted
}

// Replace sets the content to rows and returns the difference from the old
// content, as a delta (a snapshot handed on as a diff, like client-go's
// DeltaFIFO on relist). The set keeps rows' array (see load); into an empty
// set, added may be rows itself. The caller must modify none of them.
func (s *Set) Replace(rows []Row) (added, deleted []Row) { return s.replace(rows, nil) }

// replace is Replace, with the rows' hashes when they are known (nil if
// not).
func (s *Set) replace(rows []Row, hashes []uint64) (added, deleted []Row) {
	next := &Set{}
	next.load(rows, hashes)
	if len(s.rows) == 0 {
		// Into an empty set (a first snapshot): everything is added.
		*s = *next
		if len(s.rows) == len(rows) {
			// rows itself, not a copy: a copy of a million rows under a
			// running GC's write barrier took a third of a second.
			return rows, nil
		}
		return s.Unsorted(), nil // without the duplicates
	}
	for i, r := range next.rows {
		if _, had := s.find(next.hashes[i], r); !had {
			added = append(added, r)
		}
	}
	for i, r := range s.rows {
		if _, kept := next.find(s.hashes[i], r); !kept {
			deleted = append(deleted, r)
		}
	}
	*s = *next
	return added, deleted
}

// Diff returns what turns s into the content rows without changing s.
func (s *Set) Diff(rows []Row) (add, del []Row) {
	seen := NewSet(nil)
	seen.reserve(len(rows))
	for _, r := range rows {
		h := hashRow(r)
		if !seen.add(h, r) {
			continue
		}
		if _, ok := s.find(h, r); !ok {
			add = append(add, r)
		}
	}
	for i, r := range s.rows {
		if _, ok := seen.find(s.hashes[i], r); !ok {
			del = append(del, r)
		}
	}
	return add, del
}
