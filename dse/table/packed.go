package table

import (
	"bytes"
	"math"
	"math/bits"

	"dse.dev/dse/internal/bigmem"
)

// Packed is a set of rows kept as their canonical msgpack encodings (what
// appendRow writes, one encoding per row value) in byte arenas, indexed by
// an open-addressing table of row numbers. A row costs its encoding, 8
// bytes saying where it starts, 4 of its hash and 8 to 16 bytes of index:
// 46-50 bytes for a row of an int, a short string and a float, against
// about 130 in a Set of decoded values (the values, their interfaces, the
// row's slice header, its hash). Rows are decoded when they are read
// (Unsorted).
//
// It is what a subscriber's cache holds: a copy of a table that is looked
// up by row and changed by deltas, but rarely read whole. A publisher's
// table, read whole to encode snapshots and whose rows its caller hands
// in decoded, keeps a Set.
//
// Equality is on the encodings, which is equality on the values as Equal
// has it (floats by their bits): a canonical encoding is unique per row.
// Two rows' hashes are maphash of those bytes, as Set's are, so a decoded
// snapshot's hashes serve both.
//
// Packed is not safe for concurrent use; its owner locks. The zero value
// is an empty set.
type Packed struct {
	// base is the arena a snapshot loaded, shared read-only with whoever
	// else loaded the same publication (every cache on a node takes the
	// one copy the decoder made); tail holds the rows added since, in
	// chunks of chunkSize that are never copied to grow (a growing slice
	// copied the whole tail at each growth: 4x slower deltas). A row
	// starting at offset o lies in base when o < len(base), else at t =
	// o-len(base): in chunk t/chunkSize, at t%chunkSize. A row bigger
	// than a chunk has one of its own, the chunks its bytes would span
	// left nil. Removed rows leave their bytes behind, until there are as
	// many of those as of live rows (compact).
	base []byte
	tail [][]byte
	held int // bytes of the tail's chunks, removed rows' included
	// ownBase: base is the set's own (compact made it), not a snapshot's.
	ownBase bool
	// spare holds the chunks and the base a compaction emptied, which the
	// tail and the next compaction reuse: a table that keeps its size
	// under deltas allocates nothing in the steady state.
	spare  [][]byte
	starts []uint64 // starts[i]: where row i's encoding begins
	// sharedStarts: starts is a decoded snapshot's, shared read-only as
	// base is; the set's first change copies it (ownStarts).
	sharedStarts bool
	// hashes[i] is row i's hash's low 32 bits: all an index of at most
	// 2^32 slots looks at, so growing and removing need not hash rows
	// again, and most probes skip the arenas.
	hashes []uint32
	slots  []uint32 // 0: empty; else 1 + a row number; a power of 2, at most half full
	live   int      // bytes of the arenas that rows hold
	buf    []byte   // scratch: the encoding of a row looked up
}

// enc returns row i's encoding and what follows it in its arena (msgpack
// values end themselves: comparing a prefix is comparing the row).
func (s *Packed) enc(i uint32) []byte {
	o := s.starts[i]
	if o < uint64(len(s.base)) {
		return s.base[o:]
	}
	t := o - uint64(len(s.base))
	return s.tail[t/chunkSize][t%chunkSize:]
}

// chunkSize is the size of the tail's chunks. The first grows to it as a
// slice does, from a size that depends on the table's (appendTail).
const chunkSize = 1 << 20

// appendTail appends e to the tail and returns its offset.
func (s *Packed) appendTail(e []byte) uint64 {
	s.held += len(e)
	k := len(s.tail) - 1
	if k >= 0 && len(s.tail[k])+len(e) <= chunkSize {
		o := uint64(len(s.base) + k*chunkSize + len(s.tail[k]))
		s.tail[k] = append(s.tail[k], e...)
		return o
	}
	if len(e) > chunkSize {
		// A chunk of its own, spanning the address of as many chunks.
		o := uint64(len(s.base) + len(s.tail)*chunkSize)
		s.tail = append(s.tail, append([]byte(nil), e...))
		// Placeholders, at least one: the rows after it go in the last,
		// which grows as a slice does.
		for range (len(e) - 1) / chunkSize {
			s.tail = append(s.tail, nil)
		}
		return o
	}
	want := chunkSize
	if len(s.tail) == 0 {
		// Small for a small table; for a bigger one, its size, which a
		// tail refilling after a compaction reaches before the next.
		want = min(chunkSize, max(64, 2*len(e), s.live))
	}
	c := s.take(want)
	o := uint64(len(s.base) + len(s.tail)*chunkSize)
	s.tail = append(s.tail, append(c, e...))
	return o
}

// row returns row i's encoding alone.
func (s *Packed) row(i uint32) []byte {
	b := s.enc(i)
	return b[:rowLen(b)]
}

// rowLen is the length of the encoded row b starts with. b holds an
// encoding the set checked or wrote: it does not fail.
func rowLen(b []byte) int {
	r := reader{b: b}
	m, err := r.arrayLen()
	if err != nil {
		panic("table: packed row does not decode: " + err.Error())
	}
	var c rowCounts
	for range max(m, 0) {
		if err := r.scanScalar(&c, noLimits); err != nil {
			panic("table: packed row does not decode: " + err.Error())
		}
	}
	return r.pos
}

// noLimits bounds nothing: rowLen reads rows that were bounded on arrival.
var noLimits = Limits{MaxRows: math.MaxInt, MaxColumns: math.MaxInt, MaxString: math.MaxInt}

// encode sets s.buf to r's canonical encoding. A row that is not
// canonical is made so value by value (Canonical); one that cannot be (a
// value that is not a scalar, which every publication path refuses before
// it gets here) reports false.
func (s *Packed) encode(r Row) bool {
	b, ok := encodeRow(s.buf[:0], r)
	s.buf = b
	return ok
}

// encodeRow appends r's canonical encoding to b, as encode.
func encodeRow(b []byte, r Row) ([]byte, bool) {
	out, err := appendRow(b, r)
	if err != nil {
		c := make(Row, len(r))
		for i, v := range r {
			if c[i], err = Canonical(v); err != nil {
				return b, false
			}
		}
		if out, err = appendRow(b, c); err != nil {
			return b, false
		}
	}
	return out, true
}

// Len returns the number of rows.
func (s *Packed) Len() int { return len(s.starts) }

// find returns the slot of the row encoded as e (hash h) and whether it
// holds it; when it does not, the slot is where it would go.
func (s *Packed) find(h uint64, e []byte) (uint64, bool) {
	if len(s.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(s.slots) - 1)
	for j := h & mask; ; j = (j + 1) & mask {
		v := s.slots[j]
		if v == 0 {
			return j, false
		}
		if s.hashes[v-1] == uint32(h) && bytes.HasPrefix(s.enc(v-1), e) {
			return j, true
		}
	}
}

// Has reports whether the set holds r. It changes nothing: readers may
// call it at once.
func (s *Packed) Has(r Row) bool {
	var small [128]byte
	e, ok := encodeRow(small[:0], r)
	if !ok {
		return false
	}
	_, ok = s.find(hashBytes(e), e)
	return ok
}

// reserve makes room for n rows without growing the index, rehashing the
// rows from their encodings.
func (s *Packed) reserve(n int) {
	size := slotsFor(n)
	if size <= len(s.slots) {
		return
	}
	s.slots = make([]uint32, size)
	mask := uint64(size - 1)
	for i, h := range s.hashes {
		j := uint64(h) & mask
		for s.slots[j] != 0 {
			j = (j + 1) & mask
		}
		s.slots[j] = uint32(i + 1)
	}
}

// add inserts the row encoded as e (hash h) unless present, and reports
// whether it did.
func (s *Packed) add(h uint64, e []byte) bool {
	if 2*(len(s.starts)+1) > len(s.slots) {
		s.reserve(max(len(s.starts)+1, 2*len(s.starts)))
	}
	j, ok := s.find(h, e)
	if ok {
		return false
	}
	if len(s.starts) >= maxPacked {
		panic("table: packed set over 2 billion rows")
	}
	s.slots[j] = uint32(len(s.starts) + 1)
	s.ownStarts()
	s.starts = append(s.starts, s.appendTail(e))
	s.hashes = append(s.hashes, uint32(h))
	s.live += len(e)
	return true
}

// remove deletes the row encoded as e (hash h) if present, and reports
// whether it did.
func (s *Packed) remove(h uint64, e []byte) bool {
	j, ok := s.find(h, e)
	if !ok {
		return false
	}
	i := s.slots[j] - 1
	clearSlot(s.slots, s.hashes, j)
	s.live -= len(e)
	// Keep the row numbers dense: the last one takes the hole's.
	last := uint32(len(s.starts) - 1)
	s.ownStarts()
	if i != last {
		renumber(s.slots, s.hashes[last], last, i)
		s.starts[i], s.hashes[i] = s.starts[last], s.hashes[last]
	}
	s.starts, s.hashes = s.starts[:last], s.hashes[:last]
	// Compacted once removed rows outweigh the live ones (a copy of the
	// live rows, paid for by as many bytes removed): a small table under
	// deltas stays small.
	if dead := len(s.base) + s.held - s.live; dead > s.live && dead >= 1<<10 {
		s.compact()
	}
	return true
}

// ownStarts makes starts the set's own before it changes them.
func (s *Packed) ownStarts() {
	if s.sharedStarts {
		s.starts = append(make([]uint64, 0, len(s.starts)+1), s.starts...)
		s.sharedStarts = false
	}
}

// compact copies the live rows into one new arena: removed rows' bytes
// go. The row numbers, and so the index, stay.
func (s *Packed) compact() {
	var arena []byte
	if len(s.starts) > 0 {
		arena = s.take(s.live)
	}
	s.ownStarts()
	for i := range s.starts {
		e := s.row(uint32(i))
		s.starts[i] = uint64(len(arena))
		arena = append(arena, e...)
	}
	emptied := s.tail
	if s.ownBase {
		emptied = append(emptied, s.base)
	}
	s.base, s.tail, s.held, s.ownBase = arena, nil, 0, arena != nil
	// Kept to be reused, up to what the tail grows to between two
	// compactions: the live rows, as many bytes removed or 1 KiB, and as
	// much again as a slice's growth may add. With only the first two, a
	// small table's chunk outgrew the room by then and was dropped, and
	// every compaction of a one-row table under deltas regrew its tail
	// from 128 bytes: 0.3 allocations and 200 bytes an Apply.
	room := 2 * (2*s.live + 1<<10)
	for _, c := range s.spare {
		room -= cap(c)
	}
	for _, c := range emptied {
		if c != nil && cap(c) <= room {
			s.spare = append(s.spare, c[:0])
			room -= cap(c)
		}
	}
}

// take returns an empty slice with room for n bytes: a spare one, or a
// new one.
func (s *Packed) take(n int) []byte {
	for i, c := range s.spare {
		if cap(c) >= n {
			s.spare[i] = s.spare[len(s.spare)-1]
			s.spare = s.spare[:len(s.spare)-1]
			return c[:0]
		}
	}
	if n >= bigmem.MinSize {
		return bigmem.Make[byte](n)[:0]
	}
	return make([]byte, 0, n)
}

// Apply removes del then adds add, and returns what actually changed: the
// rows added that were absent, the rows deleted that were present (as
// Set.Apply).
func (s *Packed) Apply(add, del []Row) (added, deleted []Row) {
	buf := make([]Row, len(del)+len(add))
	deleted, added = buf[:0:len(del)], buf[len(del):len(del)]
	for _, r := range del {
		if s.encode(r) && s.remove(hashBytes(s.buf), s.buf) {
			deleted = append(deleted, r)
		}
	}
	if n := len(s.starts) + len(add); 2*n > len(s.slots) {
		s.reserve(n)
	}
	for _, r := range add {
		if s.encode(r) && s.add(hashBytes(s.buf), s.buf) {
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

// Replace sets the content to rows and returns the difference from the
// old content (as Set.Replace); into an empty set, added may be rows
// itself. The caller must modify none of them.
func (s *Packed) Replace(rows []Row) (added, deleted []Row) {
	return s.replace(rows, packedRows{}, nil)
}

// packedRows are rows' encodings end to end (a decoded snapshot's, never
// changed by anyone: a set keeps them as its base), and where each starts
// (nil: unknown).
type packedRows struct {
	raw    []byte
	starts []uint64
}

// replace is Replace, with the rows' encodings when they are known
// (raw.raw not nil), and their hashes (nil when not known).
func (s *Packed) replace(rows []Row, raw packedRows, hashes []uint64) (added, deleted []Row) {
	next := &Packed{}
	hashes, dup := next.load(rows, raw, hashes)
	if len(s.starts) == 0 {
		*s = *next
		if dup == nil {
			return rows, nil
		}
		added = make([]Row, 0, len(s.starts))
		for i, r := range rows {
			if !dup[i] {
				added = append(added, r)
			}
		}
		return added, nil
	}
	k := uint32(0) // next's row number of rows[i]: the rows kept, in order
	for i, r := range rows {
		if dup != nil && dup[i] {
			continue
		}
		if _, had := s.find(hashes[i], next.row(k)); !had {
			added = append(added, r)
		}
		k++
	}
	for i := range s.starts {
		e := s.row(uint32(i))
		if _, kept := next.find(hashBytes(e), e); !kept {
			deleted = append(deleted, decodeRows([][]byte{e})...)
		}
	}
	*s = *next
	return added, deleted
}

// load fills an empty set with rows, and returns their hashes and which of
// them repeat an earlier one (nil: none). raw, when not nil, is the rows'
// encodings end to end, which becomes the base arena; otherwise they are
// encoded. hashes, when not nil, are the rows' (hashBytes of their
// encodings). A big load fills the index in the order of the slots, as
// Set.load does.
func (s *Packed) load(rows []Row, packed packedRows, hashes []uint64) ([]uint64, []bool) {
	n := len(rows)
	if n >= maxPacked {
		panic("table: packed set over 2 billion rows")
	}
	raw := packed.raw
	if raw != nil && len(packed.starts) == n && len(hashes) == n {
		// All known, from the decoder: the starts are shared with the
		// other sets that load the same publication, until a change
		// (copying them here cost a new subscriber of a million rows 8
		// MB of fresh memory while it took the snapshot).
		s.sharedStarts = true
		return s.index(raw, packed.starts[:n:n], hashes[:n:n], nil)
	}
	s.starts = bigmem.Make[uint64](n)
	var dup []bool
	known := len(hashes) == n
	if known {
		hashes = hashes[:n:n]
	} else {
		hashes = bigmem.Make[uint64](n)
	}
	if raw != nil {
		off := 0
		for i := range n {
			s.starts[i] = uint64(off)
			l := rowLen(raw[off:])
			if !known {
				hashes[i] = hashBytes(raw[off : off+l])
			}
			off += l
		}
		raw = raw[:off:off]
	} else {
		var arena []byte
		if n > 0 {
			arena = make([]byte, 0, n*rowSizeHint(rows[0]))
		}
		for i, r := range rows {
			start := len(arena)
			s.starts[i] = uint64(start)
			if b, err := appendRow(arena, r); err == nil {
				arena = b
			} else if s.encode(r) {
				arena = append(arena, s.buf...)
			} else {
				// Not a row of scalars (every publication path refuses
				// those first): left out, as a repeat is.
				if dup == nil {
					dup = make([]bool, n)
				}
				dup[i], s.starts[i] = true, unencoded
				continue
			}
			hashes[i] = hashBytes(arena[start:])
		}
		if cap(arena) > len(arena)+len(arena)/4 {
			arena = bytes.Clone(arena) // the estimate was well over
		}
		raw = arena[:len(arena):len(arena)]
	}
	return s.index(raw, s.starts, hashes, dup)
}

// index makes base, holding the rows that start at starts (whose hashes
// are hashes), the set's content, and indexes it; dup marks rows to leave
// out (nil: none yet). It returns the hashes and the rows left out as
// repeats or unencodable (nil: none).
func (s *Packed) index(base []byte, starts, hashes []uint64, dup []bool) ([]uint64, []bool) {
	n := len(starts)
	s.base, s.starts, s.live = base, starts, len(base)
	s.hashes = bigmem.Make[uint32](n)
	for i, h := range hashes {
		s.hashes[i] = uint32(h)
	}
	s.slots = bigmem.Make[uint32](slotsFor(n))
	mask := uint64(len(s.slots) - 1)
	order := make([]uint32, n)
	if n < 1<<14 {
		for i := range order {
			order[i] = uint32(i)
		}
	} else {
		// A counting sort on the slots' top bits (at most 1024 buckets):
		// the probes stay in cache instead of jumping across the index.
		shift := max(0, bits.Len64(mask)-10)
		starts := make([]int, (mask>>shift)+2)
		for _, h := range hashes {
			starts[(h&mask)>>shift+1]++
		}
		for b := 1; b < len(starts); b++ {
			starts[b] += starts[b-1]
		}
		for i, h := range hashes {
			b := (h & mask) >> shift
			order[starts[b]] = uint32(i)
			starts[b]++
		}
	}
	for _, i := range order {
		if dup != nil && dup[i] {
			continue
		}
		for j := hashes[i] & mask; ; j = (j + 1) & mask {
			o := s.slots[j]
			if o == 0 {
				s.slots[j] = i + 1
				break
			}
			if hashes[o-1] == hashes[i] && bytes.HasPrefix(s.enc(o-1), s.row(i)) {
				if dup == nil {
					dup = make([]bool, n)
				}
				dup[i] = true
				break
			}
		}
	}
	if dup != nil {
		s.dropLoaded(dup)
	}
	return hashes, dup
}

// dropLoaded removes the rows load marked as repeats, keeping the order of
// the others, and renumbers the index.
func (s *Packed) dropLoaded(dup []bool) {
	renum := make([]uint32, len(s.starts)) // old row number -> 1 + new
	s.ownStarts()
	k := 0
	for i, o := range s.starts {
		if dup[i] {
			if o != unencoded {
				s.live -= rowLen(s.enc(uint32(i)))
			}
			continue
		}
		s.starts[k], s.hashes[k] = o, s.hashes[i]
		k++
		renum[i] = uint32(k)
	}
	s.starts, s.hashes = s.starts[:k], s.hashes[:k]
	for j, v := range s.slots {
		if v != 0 {
			s.slots[j] = renum[v-1]
		}
	}
}

// maxPacked bounds a Packed set's rows: its index, at most half full,
// then has at most 2^32 slots, all a 32-bit hash can address.
const maxPacked = 1 << 31

// unencoded marks, in load, a row left out for not being one of scalars.
const unencoded = math.MaxUint64

// Rows returns the rows, decoded and sorted.
func (s *Packed) Rows() []Row {
	out := s.Unsorted()
	Sort(out)
	return out
}

// Unsorted returns the rows, decoded, in no particular order.
func (s *Packed) Unsorted() []Row {
	encs := make([][]byte, len(s.starts))
	for i := range encs {
		encs[i] = s.row(uint32(i))
	}
	return decodeRows(encs)
}

// decodeRows decodes rows encoded as the set holds them, their values in
// slabs as the publication decoder's.
func decodeRows(encs [][]byte) []Row {
	var c rowCounts
	for _, e := range encs {
		r := reader{b: e}
		m, _ := r.arrayLen()
		for range max(m, 0) {
			r.scanScalar(&c, noLimits)
		}
		c.vals += max(m, 0)
	}
	c.rows = len(encs)
	sl := newSlabs(c, 0, 0, nil)
	rows := sl.rows[:len(encs):len(encs)]
	for i, e := range encs {
		r := reader{b: e}
		if err := r.readRowRange(rows[i:i+1], sl, nil, nil); err != nil {
			panic("table: packed row does not decode: " + err.Error())
		}
	}
	return rows
}

// Clone returns an independent copy.
func (s *Packed) Clone() *Packed {
	c := &Packed{
		starts: append([]uint64(nil), s.starts...),
		hashes: append([]uint32(nil), s.hashes...),
		slots:  append([]uint32(nil), s.slots...),
		live:   s.live,
	}
	// One arena of the live rows: the copy owns everything it holds.
	c.base = make([]byte, 0, s.live)
	for i := range c.starts {
		e := s.row(uint32(i))
		c.starts[i] = uint64(len(c.base))
		c.base = append(c.base, e...)
	}
	c.ownBase = true
	return c
}
