package table

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Row is one tuple of canonical scalars.
type Row []any

// MarshalJSON writes the row as a JSON array whose numbers keep their kind:
// a float with an integral value gets a fraction (1.0, not 1), so that the
// JSON read back (FromJSON: integers as int64, others as float64) is the
// same row. Through encoding/json's own, a table read with `dse get` and
// published again changed. Floats are otherwise formatted as encoding/json
// formats them, and strings are not HTML-escaped (rows are data, not
// markup; the API's encoders do not escape either).
func (r Row) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 16*len(r)+2)
	b = append(b, '[')
	for i, v := range r {
		if i > 0 {
			b = append(b, ',')
		}
		switch x := v.(type) {
		case nil:
			b = append(b, "null"...)
		case bool:
			b = strconv.AppendBool(b, x)
		case int64:
			b = strconv.AppendInt(b, x, 10)
		case float64:
			var err error
			if b, err = appendJSONFloat(b, x); err != nil {
				return nil, fmt.Errorf("column %d: %v", i, err)
			}
		case string:
			b = appendJSONString(b, x)
		default:
			e, err := json.Marshal(v) // []byte: base64, as before
			if err != nil {
				return nil, fmt.Errorf("column %d: %v", i, err)
			}
			b = append(b, e...)
		}
	}
	return append(b, ']'), nil
}

// appendJSONFloat formats f as encoding/json does, with ".0" after an
// integral value.
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%v has no JSON form", f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
		return b, nil
	}
	if !slices.Contains(b[start:], '.') {
		b = append(b, ".0"...)
	}
	return b, nil
}

// appendJSONString quotes s as encoding/json does without HTML escaping:
// quotes, backslashes and control characters escaped, invalid UTF-8 as
// U+FFFD, U+2028 and U+2029 escaped (JavaScript line terminators).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ErrBadRow is returned for a row that is not a tuple of scalars.
var ErrBadRow = errors.New("bad row")

// Limits bound rows accepted from outside.
type Limits struct {
	MaxRows    int // rows in one table or delta
	MaxColumns int // values in one row
	MaxString  int // bytes in one string or []byte value
}

// DefaultLimits are the bounds applied to rows from outside (the API, the
// cluster port, drivers); the agent sets them from its flags at start.
var DefaultLimits = Limits{MaxRows: 10_000_000, MaxColumns: 1024, MaxString: 1 << 20}

// Canonical returns v as a canonical scalar: integers as int64, floats as
// float64, json.Number as int64 when integral else float64.
func Canonical(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string, int64, float64, []byte:
		return x, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d overflows int64", x)
		}
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d overflows int64", x)
		}
		return int64(x), nil
	case float32:
		return float64(x), nil
	case json.Number:
		i, err := x.Int64()
		if err == nil {
			return i, nil
		}
		if !strings.ContainsAny(string(x), ".eE") {
			// An integer literal: made a float, it would lose digits.
			return nil, fmt.Errorf("integer %s overflows int64", x)
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s: %v", x, err)
		}
		return f, nil
	case map[string]any:
		return nil, errors.New("an object is not a scalar")
	case []any:
		return nil, errors.New("a nested array is not a scalar")
	}
	return nil, fmt.Errorf("%T is not a scalar", v)
}

// CanonicalRow canonicalizes every value of r in place; values already
// canonical are left unwritten, so that rows the node already holds (a
// delta's deleted rows, often the rows a previous publication added) can be
// checked again while others read them.
func CanonicalRow(r Row, lim Limits) error {
	if len(r) > lim.MaxColumns {
		return fmt.Errorf("%d columns, limit %d", len(r), lim.MaxColumns)
	}
	for i, v := range r {
		switch x := v.(type) {
		case nil, bool, int64, float64:
			continue
		case string:
			if len(x) > lim.MaxString {
				return fmt.Errorf("column %d: string of %d bytes, limit %d", i, len(x), lim.MaxString)
			}
			continue
		case []byte:
			if len(x) > lim.MaxString {
				return fmt.Errorf("column %d: bytes of %d, limit %d", i, len(x), lim.MaxString)
			}
			continue
		}
		// Other numbers become int64 or float64 (never a string or bytes).
		c, err := Canonical(v)
		if err != nil {
			return fmt.Errorf("column %d: %v", i, err)
		}
		r[i] = c
	}
	return nil
}

// CanonicalRows canonicalizes rows in place, naming the first bad one.
func CanonicalRows(rows []Row, lim Limits) error {
	if len(rows) > lim.MaxRows {
		return fmt.Errorf("%w: %d rows, limit %d", ErrBadRow, len(rows), lim.MaxRows)
	}
	for i, r := range rows {
		if err := CanonicalRow(r, lim); err != nil {
			return fmt.Errorf("%w: row %d: %v", ErrBadRow, i, err)
		}
	}
	return nil
}

// FromJSON parses a JSON array of rows, each a JSON array of scalars. It
// names the first row or value that is not.
func FromJSON(data []byte, lim Limits) ([]Row, error) {
	if !utf8.Valid(data) {
		// encoding/json would make each bad byte U+FFFD, and so merge rows
		// that differ.
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrBadRow)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrBadRow, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: more than one JSON value", ErrBadRow)
	}
	return FromValue(raw, lim)
}

// FromValue converts a decoded JSON value (an array of arrays) into rows.
func FromValue(raw any, lim Limits) ([]Row, error) {
	arr, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: want a JSON array of rows, got %s", ErrBadRow, jsonKind(raw))
	}
	rows := make([]Row, len(arr))
	for i, r := range arr {
		cols, ok := r.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: row %d: want an array of scalars, got %s", ErrBadRow, i, jsonKind(r))
		}
		rows[i] = Row(cols)
	}
	if err := CanonicalRows(rows, lim); err != nil {
		return nil, err
	}
	return rows, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

// Key returns the canonical encoding of a canonical row: equal rows, equal
// keys. Value tags keep 1 and 1.0 and "1" apart.
func Key(r Row) string {
	var small [64]byte
	return string(AppendKey(small[:0], r))
}

// AppendKey appends r's key to b.
func AppendKey(b []byte, r Row) []byte {
	for _, v := range r {
		switch x := v.(type) {
		case nil:
			b = append(b, 'n')
		case bool:
			if x {
				b = append(b, 't')
			} else {
				b = append(b, 'f')
			}
		case int64:
			b = append(b, 'i')
			b = binary.BigEndian.AppendUint64(b, uint64(x))
		case float64:
			b = append(b, 'd')
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(x))
		case string:
			b = append(b, 's')
			b = binary.AppendUvarint(b, uint64(len(x)))
			b = append(b, x...)
		case []byte:
			b = append(b, 'b')
			b = binary.AppendUvarint(b, uint64(len(x)))
			b = append(b, x...)
		default:
			// Not canonical: encode its text so the key is still stable.
			s := fmt.Sprint(x)
			b = append(b, '?')
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

// Compare orders canonical rows lexicographically, value by value (nil <
// bool < numbers < strings < bytes); a prefix sorts first.
func Compare(a, b Row) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := compareValue(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

func rank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case int64, float64:
		return 2
	case string:
		return 3
	case []byte:
		return 4
	}
	return 5
}

func compareValue(a, b any) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return ra - rb
	}
	switch x := a.(type) {
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case int64:
		switch y := b.(type) {
		case int64:
			return cmp3(x < y, x > y)
		case float64:
			return cmp3(float64(x) < y, float64(x) > y)
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return cmp3(x < float64(y), x > float64(y))
		case float64:
			return cmp3(x < y, x > y)
		}
	case string:
		return strings.Compare(x, b.(string))
	case []byte:
		return slices.Compare(x, b.([]byte))
	}
	return 0
}

func cmp3(less, more bool) int {
	switch {
	case less:
		return -1
	case more:
		return 1
	}
	return 0
}

// Sort sorts rows in place by Compare.
func Sort(rows []Row) { slices.SortFunc(rows, Compare) }
