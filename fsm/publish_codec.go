package fsm

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"dse.dev/dse/internal/mpcheck"
)

// Publish is the one command whose entries carry thousands of items (a
// request per table a batcher cycle sequences), and the reflective codec
// spent 250 ns on each on every node. EncodeMsgpack encodes what the
// struct tags would (a map of "r" to maps of s, i, t, n and, when not
// zero, f, a, k) but each number in as few bytes as it takes (the
// reflective encoder writes every uint64 in 9), and decodePublish decodes
// it, and the older entries, both without reflection.

var _ msgpack.CustomEncoder = Publish{}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (p Publish) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(1); err != nil {
		return err
	}
	if err := enc.EncodeString("r"); err != nil {
		return err
	}
	if p.Requests == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeArrayLen(len(p.Requests)); err != nil {
		return err
	}
	for i := range p.Requests {
		if err := p.Requests[i].encode(enc); err != nil {
			return err
		}
	}
	return nil
}

func (r *PublishRequest) encode(enc *msgpack.Encoder) error {
	n := 4
	for _, v := range [...]uint64{r.First, r.After, r.Skip} {
		if v != 0 {
			n++
		}
	}
	if err := enc.EncodeMapLen(n); err != nil {
		return err
	}
	for _, f := range [...]struct {
		key  string
		s    string
		u    uint64
		str  bool
		omit bool
	}{
		{key: "s", s: r.Service, str: true},
		{key: "i", u: r.Incarnation},
		{key: "t", s: r.Table, str: true},
		{key: "n", u: r.Count},
		{key: "f", u: r.First, omit: true},
		{key: "a", u: r.After, omit: true},
		{key: "k", u: r.Skip, omit: true},
	} {
		if f.omit && f.u == 0 {
			continue
		}
		if err := enc.EncodeString(f.key); err != nil {
			return err
		}
		var err error
		if f.str {
			err = enc.EncodeString(f.s)
		} else {
			err = enc.EncodeUint(f.u)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodePublish decodes a Publish entry's body as the reflective decoder
// does (a struct as a map, keys in any order and unknown keys skipped, or
// as an array of its fields in order; strings as str or bin; numbers as
// any integer or nil), straight from its bytes: the msgpack.Decoder reads
// each item through an io.Reader, and its strings cost 140 ns each.
func decodePublish(b []byte) (*Publish, error) {
	r := mpReader{b: b}
	p := &Publish{}
	_, err := r.fields(1, func(key string, i int) error {
		if key != "r" && i != 0 {
			return r.skip()
		}
		m, err := r.arrayLen()
		if err != nil {
			return err
		}
		if m < 0 {
			p.Requests = nil
			return nil
		}
		// A key given twice decodes into what the first left, as the
		// reflective decoder does.
		if old := p.Requests[:cap(p.Requests)]; len(old) >= m && old != nil {
			p.Requests = old[:m]
		} else {
			p.Requests = make([]PublishRequest, m)
			copy(p.Requests, old)
		}
		for i := range p.Requests {
			if err := r.request(&p.Requests[i], p.Requests[:i]); err != nil {
				return fmt.Errorf("request %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// requestFields are PublishRequest's fields' keys, in the struct's order.
var requestFields = [...]string{"s", "i", "t", "n", "f", "a", "k"}

// request decodes one PublishRequest; one publisher's requests share the
// string of its name with the one before (prev).
func (r *mpReader) request(q *PublishRequest, prev []PublishRequest) error {
	some, err := r.fields(len(requestFields), func(key string, i int) error {
		if i >= 0 {
			key = requestFields[i]
		}
		var u *uint64
		switch key {
		case "s", "t":
			s, err := r.str()
			if err != nil {
				return err
			}
			switch {
			case key == "t":
				q.Table = string(s)
			case len(prev) > 0 && prev[len(prev)-1].Service == string(s):
				q.Service = prev[len(prev)-1].Service
			default:
				q.Service = string(s)
			}
			return nil
		case "i":
			u = &q.Incarnation
		case "n":
			u = &q.Count
		case "f":
			u = &q.First
		case "a":
			u = &q.After
		case "k":
			u = &q.Skip
		default:
			return r.skip()
		}
		var err error
		*u, err = r.uint()
		return err
	})
	if err == nil && !some {
		*q = PublishRequest{}
	}
	return err
}

// fields reads a struct of count fields encoded as a map, calling f with
// each key (and i -1) before its value, or as an array of exactly count
// values, calling f with each position (and key ""). f reads the value.
// It returns false when the struct is nil or an empty array, which the
// reflective decoder makes a struct of zeros.
func (r *mpReader) fields(count int, f func(key string, i int) error) (bool, error) {
	if r.pos < len(r.b) && (r.b[r.pos]&0xf0 == 0x90 || r.b[r.pos] == 0xdc || r.b[r.pos] == 0xdd) {
		n, err := r.arrayLen()
		if err != nil || n == 0 {
			return false, err
		}
		if n != count {
			return false, fmt.Errorf("a struct of %d fields as an array of %d", count, n)
		}
		for i := range n {
			if err := f("", i); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	n, err := r.mapLen()
	if err != nil || n < 0 {
		return false, err
	}
	for range n {
		key, err := r.str()
		if err != nil {
			return false, err
		}
		if err := f(string(key), -1); err != nil {
			return false, fmt.Errorf("%q: %w", key, err)
		}
	}
	return true, nil
}

// mpReader reads the msgpack items decodePublish knows from b.
type mpReader struct {
	b   []byte
	pos int
}

var errShort = errors.New("unexpected end of input")

func (r *mpReader) code() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

// be reads a big-endian unsigned number of size bytes.
func (r *mpReader) be(size int) (uint64, error) {
	if len(r.b)-r.pos < size {
		return 0, errShort
	}
	var v uint64
	for _, c := range r.b[r.pos : r.pos+size] {
		v = v<<8 | uint64(c)
	}
	r.pos += size
	return v, nil
}

// length reads a map's or an array's length: -1 for nil.
func (r *mpReader) length(fix, fixMask byte, c16, c32 byte, what string) (int, error) {
	c, err := r.code()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c == 0xc0:
		return -1, nil
	case c&^fixMask == fix:
		n = uint64(c & fixMask)
	case c == c16:
		n, err = r.be(2)
	case c == c32:
		n, err = r.be(4)
	default:
		return 0, fmt.Errorf("code %#x where %s was expected", c, what)
	}
	if err != nil {
		return 0, err
	}
	if n > uint64(len(r.b)-r.pos) { // each item takes a byte at least
		return 0, fmt.Errorf("%s of %d items in %d bytes", what, n, len(r.b)-r.pos)
	}
	return int(n), nil
}

func (r *mpReader) mapLen() (int, error)   { return r.length(0x80, 0x0f, 0xde, 0xdf, "a map") }
func (r *mpReader) arrayLen() (int, error) { return r.length(0x90, 0x0f, 0xdc, 0xdd, "an array") }

// str reads a string (str or bin; nil is empty); the bytes are b's.
func (r *mpReader) str() ([]byte, error) {
	c, err := r.code()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case c == 0xc0:
		return nil, nil
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		n, err = r.be(1)
	case c == 0xda || c == 0xc5:
		n, err = r.be(2)
	case c == 0xdb || c == 0xc6:
		n, err = r.be(4)
	default:
		return nil, fmt.Errorf("code %#x where a string was expected", c)
	}
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.pos) {
		return nil, errShort
	}
	s := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s, nil
}

// uint reads an integer as msgpack.Decoder.DecodeUint64 does: nil is 0, a
// negative one its two's complement.
func (r *mpReader) uint() (uint64, error) {
	c, err := r.code()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return uint64(c), nil
	case c >= 0xe0:
		return uint64(int64(int8(c))), nil
	case c == 0xc0:
		return 0, nil
	case c >= 0xcc && c <= 0xcf: // uint8 to uint64
		return r.be(1 << (c - 0xcc))
	case c >= 0xd0 && c <= 0xd3: // int8 to int64
		size := 1 << (c - 0xd0)
		v, err := r.be(size)
		if err != nil {
			return 0, err
		}
		shift := 64 - 8*size // sign-extend
		return uint64(int64(v<<shift) >> shift), nil
	}
	return 0, fmt.Errorf("code %#x where an integer was expected", c)
}

// skip skips one value of any kind.
func (r *mpReader) skip() error {
	n, err := mpcheck.Len(r.b[r.pos:])
	if err != nil {
		return err
	}
	r.pos += n
	return nil
}
