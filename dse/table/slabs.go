package table

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"dse.dev/dse/internal/bigmem"
)

// Decoding rows arrays: decodeRowArrays checks and counts them (the first
// pass, codec.go's scanRows), then builds the rows into slabs, a few big
// arrays per kind of value, instead of an allocation per value (the
// second pass, here; a big array decoded in two halves at once).

// eface is the runtime layout of an interface{} value.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

var (
	int64Type   = typeOf(int64(0))
	float64Type = typeOf(float64(0))
	stringType  = typeOf("")
	bytesType   = typeOf([]byte(nil))
)

func typeOf(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

// box sets *dst to the interface value of type typ whose data is at p, the
// way the runtime boxes a value, but pointing into a slab rather than at a
// fresh allocation. The slab's element must never change afterwards.
func box(dst *any, typ, p unsafe.Pointer) {
	e := (*eface)(unsafe.Pointer(dst))
	e.typ, e.data = typ, p
}

// slabs hold the memory the rows of one publication are decoded into.
// All but hashes and starts are carved out of one block of memory the
// garbage collector sees as holding no pointers (a []uint64): every
// pointer the rows hold points into that same block (or at the static
// type descriptors of interfaces, or, for strings an owned snapshot
// aliases, into its input, which the block keeps alive with a cleanup),
// and anything pointing at any part of the block keeps it all alive.
// The collector then neither scans a snapshot's rows (88 of their 120
// MB for a million rows of three columns were pointers it marked, often
// while they were written, with write barriers on) nor counts one
// allocation per kind of value per publication.
type slabs struct {
	rows   []Row
	vals   []any
	nums   []uint64 // int64s and float64s (as bits): the values point here
	strs   []string
	bins   [][]byte
	arena  []byte   // the bytes of strings and []byte values that are copied
	hashes []uint64 // the hashes of the first rows array's rows (hashRow)
	starts []uint64 // where each of them starts in the input
}

// newSlabs carves slabs for what c counts; aliased string bytes are not
// copied. keep, when not nil, is the input the aliased strings point
// into, kept alive as long as the block.
func newSlabs(c rowCounts, hashed, aliased int, keep []byte) *slabs {
	var (
		rowSize = int(unsafe.Sizeof(Row{}))
		anySize = int(unsafe.Sizeof(any(nil)))
		strSize = int(unsafe.Sizeof(""))
	)
	nums := c.ints + c.floats
	arena := c.bytes - aliased
	words := (c.rows*rowSize + c.vals*anySize + nums*8 + c.strs*strSize + c.bins*rowSize + arena + 7) / 8
	sl := &slabs{hashes: bigmem.Make[uint64](hashed), starts: bigmem.Make[uint64](hashed)}
	if words == 0 {
		return sl
	}
	block := bigmem.Make[uint64](words)
	base, off := unsafe.Pointer(unsafe.SliceData(block)), uintptr(0)
	// Every size is a multiple of 8 but the arena's, which comes last.
	sl.rows = carve[Row](base, &off, c.rows)
	sl.vals = carve[any](base, &off, c.vals)
	sl.nums = carve[uint64](base, &off, nums)
	sl.strs = carve[string](base, &off, c.strs)
	sl.bins = carve[[]byte](base, &off, c.bins)
	sl.arena = carve[byte](base, &off, arena)
	if keep != nil {
		runtime.AddCleanup(&block[0], func([]byte) {}, keep)
	}
	return sl
}

// carve returns the n Ts at offset *off of the block at base, and moves
// *off past them. None is nil: an empty slice at the block's end would
// point past it, at whatever the collector finds there.
func carve[T any](base unsafe.Pointer, off *uintptr, n int) []T {
	if n == 0 {
		return nil
	}
	s := unsafe.Slice((*T)(unsafe.Add(base, *off)), n)
	var zero T
	*off += uintptr(n) * unsafe.Sizeof(zero)
	return s
}

// readRows decodes the rows array at r into sl, which scanRows counted,
// and the rows' hashes into hashes when it is not nil.
func (r *reader) readRows(sl *slabs, hashes *[]uint64) ([]Row, error) {
	n, err := r.arrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	rows := sl.rows[:n:n]
	sl.rows = sl.rows[n:]
	var h, st []uint64
	if hashes != nil {
		h, st = sl.hashes[:n:n], sl.starts[:n:n]
		sl.hashes, sl.starts = sl.hashes[n:], sl.starts[n:]
		*hashes = h
		r.rowStarts = st
	}
	return rows, r.readRowRange(rows, sl, h, st)
}

// readRowRange decodes len(rows) rows at r into rows, their values into
// sl, and their hashes into hashes unless it is nil. A row whose bytes are
// its canonical encoding (appendRow's, as dse's encoder writes it) is
// hashed on those bytes, while they are in cache; any other (written by
// another encoder) is encoded again to be hashed.
func (r *reader) readRowRange(rows []Row, sl *slabs, hashes, starts []uint64) error {
	for i := range rows {
		start := r.pos
		if starts != nil {
			starts[i] = uint64(start)
		}
		m, err := r.arrayLen()
		if err != nil {
			return err
		}
		if m < 0 {
			rows[i] = Row{} // msgpack nil: no columns
			if hashes != nil {
				hashes[i] = hashRow(rows[i])
				r.notCanon = true // an empty row is an empty array
			}
			continue
		}
		// canon: the row is being hashed, and its bytes so far are
		// canonical (false for rows not hashed: no checks).
		canon := hashes != nil && r.pos-start == arrayLenLen(m)
		row := sl.vals[:m:m]
		sl.vals = sl.vals[m:]
		for j := range row {
			at := r.pos
			code := r.b[at]
			switch {
			case code == mpNil:
				r.pos++
			case code == mpTrue:
				r.pos++
				row[j] = true
			case code == mpFalse:
				r.pos++
				row[j] = false
			case code == mpFloat64:
				sl.nums[0] = binary.BigEndian.Uint64(r.b[r.pos+1:])
				box(&row[j], float64Type, unsafe.Pointer(&sl.nums[0]))
				sl.nums = sl.nums[1:]
				r.pos += 9
			case code == mpFloat32:
				sl.nums[0] = math.Float64bits(float64(math.Float32frombits(binary.BigEndian.Uint32(r.b[r.pos+1:]))))
				box(&row[j], float64Type, unsafe.Pointer(&sl.nums[0]))
				sl.nums = sl.nums[1:]
				r.pos += 5
				canon = false
			case code <= 0x7f || code >= 0xe0 || (code >= mpUint8 && code <= mpInt64):
				v, err := r.int()
				if err != nil {
					return err
				}
				sl.nums[0] = uint64(v)
				box(&row[j], int64Type, unsafe.Pointer(&sl.nums[0]))
				sl.nums = sl.nums[1:]
				canon = canon && canonicalInt(code, v, r.pos-at)
			default:
				r.pos++
				l, err := r.strLen(code, true)
				if err != nil {
					return err
				}
				isBin := code == mpBin8 || code == mpBin16 || code == mpBin32
				var b []byte
				if r.aliasStrs && !isBin {
					b = r.b[r.pos : r.pos+l : r.pos+l]
				} else {
					b = sl.arena[:l:l]
					sl.arena = sl.arena[l:]
					copy(b, r.b[r.pos:r.pos+l])
				}
				r.pos += l
				if isBin {
					sl.bins[0] = b
					box(&row[j], bytesType, unsafe.Pointer(&sl.bins[0]))
					sl.bins = sl.bins[1:]
					canon = canon && code == binCode(l)
					continue
				}
				sl.strs[0] = unsafe.String(unsafe.SliceData(b), l)
				box(&row[j], stringType, unsafe.Pointer(&sl.strs[0]))
				sl.strs = sl.strs[1:]
				canon = canon && code == strCode(l)
			}
		}
		rows[i] = row
		if hashes != nil {
			if canon {
				hashes[i] = hashBytes(r.b[start:r.pos])
			} else {
				hashes[i] = hashRow(row)
				r.notCanon = true
			}
		}
	}
	return nil
}

// strCode is the first byte appendString writes for a string of n bytes.
func strCode(n int) byte {
	switch {
	case n < 32:
		return 0xa0 | byte(n)
	case n <= math.MaxUint8:
		return mpStr8
	case n <= math.MaxUint16:
		return mpStr16
	}
	return mpStr32
}

// binCode is the first byte appendBytes writes for n bytes.
func binCode(n int) byte {
	switch {
	case n <= math.MaxUint8:
		return mpBin8
	case n <= math.MaxUint16:
		return mpBin16
	}
	return mpBin32
}

// canonicalInt reports whether an integer read as n bytes starting with
// code is how appendInt writes v.
func canonicalInt(code byte, v int64, n int) bool {
	if n == 1 {
		return code == byte(v) // a positive or negative fixint
	}
	if v >= 0 {
		switch {
		case v <= 0x7f:
			return false
		case v <= math.MaxUint8:
			return code == mpUint8
		case v <= math.MaxUint16:
			return code == mpUint16
		case v <= math.MaxUint32:
			return code == mpUint32
		}
		return code == mpUint64
	}
	switch {
	case v >= -32:
		return false
	case v >= math.MinInt8:
		return code == mpInt8
	case v >= math.MinInt16:
		return code == mpInt16
	case v >= math.MinInt32:
		return code == mpInt32
	}
	return code == mpInt64
}

// parallelRows is the size from which the first rows array is decoded in
// two halves at once, when the program may run two goroutines at once: a
// snapshot of a million rows took 150-260 ms to decode on one core.
const parallelRows = 1 << 16

// decodeRowArrays reads k consecutive rows arrays (a publication's Rows,
// Add and Del), checking them all first, into one set of slabs, with the
// hashes of the first array's rows into hashes.
func (r *reader) decodeRowArrays(lim Limits, hashes *[]uint64, out ...*[]Row) error {
	start := r.pos
	var c rowCounts
	var mark scanMark
	hashed, firstStrBytes := 0, 0
	for i := range out {
		m := &mark
		if i > 0 {
			m = nil
		}
		if err := r.scanRows(&c, lim, m); err != nil {
			return err
		}
		if i == 0 {
			hashed, firstStrBytes = c.rows, c.strBytes
			r.firstEnd = r.pos
		}
	}
	end := r.pos
	r.pos = start
	// An owned snapshot's strings stay in the input (8.9 MB of fresh
	// memory and a copy less for a million rows of one short string).
	alias := r.owned && hashes != nil
	aliased := 0
	if alias {
		aliased = firstStrBytes
	}
	var keep []byte
	if alias && c.strBytes > 0 {
		keep = r.b
	}
	sl := newSlabs(c, hashed, aliased, keep)
	defer func() { r.aliasStrs = false }()
	for i, dst := range out {
		r.aliasStrs = alias && i == 0
		var rows []Row
		var err error
		h := hashes
		if i > 0 {
			h = nil
		}
		if i == 0 && mark.row > 0 {
			rows, err = r.readRowsInHalves(sl, mark, h)
		} else {
			rows, err = r.readRows(sl, h)
		}
		if err != nil {
			return err
		}
		*dst = rows
	}
	if r.pos != end {
		return fmt.Errorf("rows arrays read %d bytes, checked %d", r.pos-start, end-start)
	}
	return nil
}

// readRowsInHalves is readRows for the first, big, rows array, whose
// second half scanRows marked: a goroutine decodes it while this one
// decodes the first, each into its own part of the slabs.
func (r *reader) readRowsInHalves(sl *slabs, mark scanMark, hashes *[]uint64) ([]Row, error) {
	n, err := r.arrayLen()
	if err != nil || n <= mark.row {
		return nil, fmt.Errorf("rows array of %d rows marked at row %d", n, mark.row)
	}
	rows := sl.rows[:n:n]
	var h1, h2, st1, st2 []uint64
	if hashes != nil {
		h, st := sl.hashes[:n:n], sl.starts[:n:n]
		sl.hashes, sl.starts = sl.hashes[n:], sl.starts[n:]
		*hashes = h
		r.rowStarts = st
		h1, h2 = h[:mark.row], h[mark.row:]
		st1, st2 = st[:mark.row], st[mark.row:]
	}
	b := mark.before
	nums := b.ints + b.floats
	if r.aliasStrs {
		b.bytes -= b.strBytes // the first half's strings are not in the arena
	}
	second := &slabs{vals: sl.vals[b.vals:], nums: sl.nums[nums:], strs: sl.strs[b.strs:], bins: sl.bins[b.bins:], arena: sl.arena[b.bytes:]}
	r2 := &reader{b: r.b, pos: mark.pos, aliasStrs: r.aliasStrs}
	done := make(chan error, 1)
	go func() { done <- r2.readRowRange(rows[mark.row:], second, h2, st2) }()
	first := &slabs{vals: sl.vals[:b.vals:b.vals], nums: sl.nums[:nums:nums], strs: sl.strs[:b.strs:b.strs], bins: sl.bins[:b.bins:b.bins], arena: sl.arena[:b.bytes:b.bytes]}
	err = r.readRowRange(rows[:mark.row], first, h1, st1)
	if err2 := <-done; err == nil {
		err = err2
	}
	r.notCanon = r.notCanon || r2.notCanon
	if err == nil && r.pos != mark.pos {
		err = fmt.Errorf("first half of the rows read to %d, second starts at %d", r.pos, mark.pos)
	}
	if err != nil {
		return nil, err
	}
	r.pos = r2.pos
	*sl = slabs{rows: sl.rows[n:], vals: second.vals, nums: second.nums, strs: second.strs, bins: second.bins, arena: second.arena, hashes: sl.hashes, starts: sl.starts}
	return rows, nil
}
