package table

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
)

// The publication codec writes and reads msgpack directly on byte slices,
// without an Encoder, a Reader or reflection: publications are the hot path
// (every delta, every snapshot). The bytes are plain msgpack, the same as
// msgpack/v5 would write for the same array, so any msgpack tool reads them.
//
// Decoding a publication's rows (its Rows, Add and Del arrays) takes two
// passes: the first checks their structure and counts values by kind, the
// second fills five slabs sized exactly (the rows, their values, the int64s
// and float64s and the string headers the values box, and one byte arena for
// every string and []byte). A snapshot of a million rows is then a few
// allocations instead of several million, which is most of what a snapshot
// used to cost (allocation and GC); a one-row delta is five. The values share
// their publication's slabs: a row kept alive keeps its publication's slabs
// alive, at most the size of that publication.

// msgpack codes used here.
const (
	mpNil     = 0xc0
	mpFalse   = 0xc2
	mpTrue    = 0xc3
	mpBin8    = 0xc4
	mpBin16   = 0xc5
	mpBin32   = 0xc6
	mpFloat32 = 0xca
	mpFloat64 = 0xcb
	mpUint8   = 0xcc
	mpUint16  = 0xcd
	mpUint32  = 0xce
	mpUint64  = 0xcf
	mpInt8    = 0xd0
	mpInt16   = 0xd1
	mpInt32   = 0xd2
	mpInt64   = 0xd3
	mpStr8    = 0xd9
	mpStr16   = 0xda
	mpStr32   = 0xdb
	mpArray16 = 0xdc
	mpArray32 = 0xdd
)

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, mpArray16, byte(n>>8), byte(n))
	}
	return append(b, mpArray32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, mpStr8, byte(n))
	case n <= math.MaxUint16:
		b = append(b, mpStr16, byte(n>>8), byte(n))
	default:
		b = append(b, mpStr32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

func appendBytes(b []byte, v []byte) []byte {
	n := len(v)
	switch {
	case n <= math.MaxUint8:
		b = append(b, mpBin8, byte(n))
	case n <= math.MaxUint16:
		b = append(b, mpBin16, byte(n>>8), byte(n))
	default:
		b = append(b, mpBin32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, v...)
}

func appendUint(b []byte, u uint64) []byte {
	switch {
	case u <= 0x7f:
		return append(b, byte(u))
	case u <= math.MaxUint8:
		return append(b, mpUint8, byte(u))
	case u <= math.MaxUint16:
		return append(b, mpUint16, byte(u>>8), byte(u))
	case u <= math.MaxUint32:
		return append(b, mpUint32, byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
	return binary.BigEndian.AppendUint64(append(b, mpUint64), u)
}

func appendInt(b []byte, i int64) []byte {
	switch {
	case i >= 0:
		return appendUint(b, uint64(i))
	case i >= -32:
		return append(b, byte(i))
	case i >= math.MinInt8:
		return append(b, mpInt8, byte(i))
	case i >= math.MinInt16:
		return append(b, mpInt16, byte(i>>8), byte(i))
	case i >= math.MinInt32:
		return append(b, mpInt32, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
	}
	return binary.BigEndian.AppendUint64(append(b, mpInt64), uint64(i))
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, mpTrue)
	}
	return append(b, mpFalse)
}

func appendRows(b []byte, rows []Row) ([]byte, error) {
	b = appendArrayLen(b, len(rows))
	for _, r := range rows {
		var err error
		if b, err = appendRow(b, r); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendRow(b []byte, r Row) ([]byte, error) {
	b = appendArrayLen(b, len(r))
	for _, v := range r {
		switch x := v.(type) {
		case nil:
			b = append(b, mpNil)
		case bool:
			b = appendBool(b, x)
		case int64:
			b = appendInt(b, x)
		case float64:
			b = binary.BigEndian.AppendUint64(append(b, mpFloat64), math.Float64bits(x))
		case string:
			b = appendString(b, x)
		case []byte:
			b = appendBytes(b, x)
		default:
			return nil, fmt.Errorf("%w: %T is not canonical", ErrBadRow, v)
		}
	}
	return b, nil
}

// errShort is returned when the input ends inside a value.
var errShort = errors.New("unexpected end of input")

// reader reads msgpack from a byte slice.
type reader struct {
	b   []byte
	pos int
	// firstEnd is where the first of the rows arrays decodeRowArrays read
	// ends; notCanon is set when a row it hashed was not in its canonical
	// encoding.
	firstEnd int
	notCanon bool
	// rowStarts, where the rows decodeRowArrays hashed start in b.
	rowStarts []uint64
	// owned: b is the decoder's to keep (DecodeOwnedBatch).
	owned bool
	// aliasStrs: the rows array being read is an owned snapshot's, whose
	// strings point into b instead of being copied (b stays alive as the
	// Packed sets' base arena anyway).
	aliasStrs bool
}

func (r *reader) left() int { return len(r.b) - r.pos }

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

// uintN reads an n-byte big-endian unsigned integer.
func (r *reader) uintN(n int) (uint64, error) {
	if r.left() < n {
		return 0, errShort
	}
	var u uint64
	for _, c := range r.b[r.pos : r.pos+n] {
		u = u<<8 | uint64(c)
	}
	r.pos += n
	return u, nil
}

// arrayLen reads an array header; msgpack nil reads as -1.
func (r *reader) arrayLen() (int, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c&0xf0 == 0x90:
		return int(c & 0x0f), nil
	case c == mpNil:
		return -1, nil
	case c == mpArray16:
		n, err = r.uintN(2)
	case c == mpArray32:
		n, err = r.uintN(4)
	default:
		return 0, fmt.Errorf("msgpack code %#x is not an array", c)
	}
	return int(n), err
}

// strLen reads a string header (str or, when bin is set, bin too) and
// checks the bytes are there.
func (r *reader) strLen(c byte, bin bool) (int, error) {
	var n uint64
	var err error
	switch {
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == mpStr8 || (bin && c == mpBin8):
		n, err = r.uintN(1)
	case c == mpStr16 || (bin && c == mpBin16):
		n, err = r.uintN(2)
	case c == mpStr32 || (bin && c == mpBin32):
		n, err = r.uintN(4)
	default:
		return 0, fmt.Errorf("msgpack code %#x is not a string", c)
	}
	if err != nil {
		return 0, err
	}
	if uint64(r.left()) < n {
		return 0, errShort
	}
	return int(n), nil
}

// stringLike reads a string, returning prev itself when it is equal (the
// publisher and table of a batch's publications repeat: no allocation).
func (r *reader) stringLike(prev string) (string, error) {
	c, err := r.byte()
	if err != nil {
		return "", err
	}
	n, err := r.strLen(c, false)
	if err != nil {
		return "", err
	}
	b := r.b[r.pos : r.pos+n]
	r.pos += n
	if string(b) == prev {
		return prev, nil
	}
	return string(b), nil
}

func (r *reader) bool() (bool, error) {
	c, err := r.byte()
	switch {
	case err != nil:
		return false, err
	case c == mpTrue:
		return true, nil
	case c == mpFalse:
		return false, nil
	}
	return false, fmt.Errorf("msgpack code %#x is not a bool", c)
}

// int reads any msgpack integer that fits an int64.
func (r *reader) int() (int64, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	}
	var u uint64
	switch c {
	case mpUint8, mpInt8:
		u, err = r.uintN(1)
	case mpUint16, mpInt16:
		u, err = r.uintN(2)
	case mpUint32, mpInt32:
		u, err = r.uintN(4)
	case mpUint64, mpInt64:
		u, err = r.uintN(8)
	default:
		return 0, fmt.Errorf("msgpack code %#x is not an integer", c)
	}
	if err != nil {
		return 0, err
	}
	switch c {
	case mpInt8:
		return int64(int8(u)), nil
	case mpInt16:
		return int64(int16(u)), nil
	case mpInt32:
		return int64(int32(u)), nil
	case mpUint64:
		if u > math.MaxInt64 {
			return 0, fmt.Errorf("integer %d overflows int64", u)
		}
	}
	return int64(u), nil
}

// uint reads a non-negative msgpack integer.
func (r *reader) uint() (uint64, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return uint64(c), nil
	case c == mpUint8:
		return r.uintN(1)
	case c == mpUint16:
		return r.uintN(2)
	case c == mpUint32:
		return r.uintN(4)
	case c == mpUint64:
		return r.uintN(8)
	}
	r.pos--
	i, err := r.int()
	if err != nil {
		return 0, err
	}
	if i < 0 {
		return 0, fmt.Errorf("negative integer %d where an unsigned one belongs", i)
	}
	return uint64(i), nil
}

// value kinds a rows array holds, counted by the first pass.
type rowCounts struct {
	rows, vals, ints, floats, strs int
	bins                           int // []byte values
	bytes                          int // of strings and []byte values
	strBytes                       int // of strings only
}

// scanMark is where a rows array's second half starts: its offset in the
// input and the counts of what comes before it.
type scanMark struct {
	row, pos int
	before   rowCounts
}

// scanRows checks the rows array at r (moving past it) and counts what it
// holds; a row over the column limit, a value that is not a scalar, or a
// length beyond the input is an error. With mark, a big array's half-way
// row is marked there, so that its two halves can be decoded at once.
func (r *reader) scanRows(c *rowCounts, lim Limits, mark *scanMark) error {
	n, err := r.arrayLen()
	if err != nil || n <= 0 {
		return err
	}
	if n > r.left() {
		return errShort // every row takes a byte at least
	}
	if n > lim.MaxRows {
		return fmt.Errorf("%w: %d rows, limit %d", ErrBadRow, n, lim.MaxRows)
	}
	c.rows += n
	half := -1
	if mark != nil && n >= parallelRows && runtime.GOMAXPROCS(0) > 1 {
		half = n / 2
	}
	for i := 0; i < n; i++ {
		if i == half {
			*mark = scanMark{row: i, pos: r.pos, before: *c}
		}
		m, err := r.arrayLen()
		if err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		if m > lim.MaxColumns {
			return fmt.Errorf("%w: row %d has %d columns, limit %d", ErrBadRow, i, m, lim.MaxColumns)
		}
		for j := 0; j < m; j++ {
			if err := r.scanScalar(c, lim); err != nil {
				return fmt.Errorf("%w: row %d column %d: %v", ErrBadRow, i, j, err)
			}
		}
		c.vals += max(m, 0)
	}
	return nil
}

func (r *reader) scanScalar(c *rowCounts, lim Limits) error {
	code, err := r.byte()
	if err != nil {
		return err
	}
	switch {
	case code == mpNil || code == mpTrue || code == mpFalse:
		return nil
	case code <= 0x7f || code >= 0xe0:
		c.ints++
		return nil
	case code == mpFloat32 || code == mpFloat64:
		c.floats++
		if code == mpFloat32 {
			return r.skip(4)
		}
		return r.skip(8)
	case code >= mpUint8 && code <= mpInt64:
		r.pos--
		_, err := r.int()
		c.ints++
		return err
	}
	isBin := code == mpBin8 || code == mpBin16 || code == mpBin32
	n, err := r.strLen(code, true)
	if err != nil {
		return fmt.Errorf("msgpack code %#x is not a scalar", code)
	}
	if n > lim.MaxString {
		return fmt.Errorf("%d bytes, limit %d", n, lim.MaxString)
	}
	if isBin {
		c.bins++
		c.bytes += n
	} else {
		c.strs++
		c.bytes += n
		c.strBytes += n
	}
	r.pos += n
	return nil
}

func (r *reader) skip(n int) error {
	if r.left() < n {
		return errShort
	}
	r.pos += n
	return nil
}
