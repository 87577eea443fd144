package mpcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxDepth bounds nesting of arrays and maps.
const MaxDepth = 64

// ErrMalformed is returned for input that is not sound msgpack.
var ErrMalformed = errors.New("malformed msgpack")

// Check reports whether b holds one or more complete msgpack values whose
// lengths all fit in b.
func Check(b []byte) error {
	c := checker{b: b}
	for c.pos < len(c.b) {
		if err := c.value(0); err != nil {
			return err
		}
	}
	return nil
}

type checker struct {
	b   []byte
	pos int
}

func (c *checker) fail(format string, a ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrMalformed, c.pos, fmt.Sprintf(format, a...))
}

func (c *checker) need(n uint64) error {
	if n > uint64(len(c.b)-c.pos) {
		return c.fail("%d bytes declared, %d left", n, len(c.b)-c.pos)
	}
	return nil
}

func (c *checker) uint(size int) (uint64, error) {
	if err := c.need(uint64(size)); err != nil {
		return 0, err
	}
	var v uint64
	switch size {
	case 1:
		v = uint64(c.b[c.pos])
	case 2:
		v = uint64(binary.BigEndian.Uint16(c.b[c.pos:]))
	case 4:
		v = uint64(binary.BigEndian.Uint32(c.b[c.pos:]))
	}
	c.pos += size
	return v, nil
}

func (c *checker) skip(n uint64) error {
	if err := c.need(n); err != nil {
		return err
	}
	c.pos += int(n)
	return nil
}

func (c *checker) items(n uint64, depth int) error {
	// Every item takes at least one byte: a count beyond what is left is a
	// lie, found before anything is allocated for it.
	if err := c.need(n); err != nil {
		return err
	}
	for range n {
		if err := c.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) value(depth int) error {
	if depth > MaxDepth {
		return c.fail("nested deeper than %d", MaxDepth)
	}
	if err := c.need(1); err != nil {
		return err
	}
	code := c.b[c.pos]
	c.pos++
	switch {
	case code <= 0x7f || code >= 0xe0: // fixint
		return nil
	case code >= 0x80 && code <= 0x8f: // fixmap
		return c.items(2*uint64(code&0x0f), depth)
	case code >= 0x90 && code <= 0x9f: // fixarray
		return c.items(uint64(code&0x0f), depth)
	case code >= 0xa0 && code <= 0xbf: // fixstr
		return c.skip(uint64(code & 0x1f))
	}
	switch code {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return nil
	case 0xcc, 0xd0:
		return c.skip(1)
	case 0xcd, 0xd1:
		return c.skip(2)
	case 0xca, 0xce, 0xd2:
		return c.skip(4)
	case 0xcb, 0xcf, 0xd3:
		return c.skip(8)
	case 0xc4, 0xd9: // bin8, str8
		n, err := c.uint(1)
		if err != nil {
			return err
		}
		return c.skip(n)
	case 0xc5, 0xda:
		n, err := c.uint(2)
		if err != nil {
			return err
		}
		return c.skip(n)
	case 0xc6, 0xdb:
		n, err := c.uint(4)
		if err != nil {
			return err
		}
		return c.skip(n)
	case 0xdc, 0xdd: // array16, array32
		size := 2
		if code == 0xdd {
			size = 4
		}
		n, err := c.uint(size)
		if err != nil {
			return err
		}
		return c.items(n, depth)
	case 0xde, 0xdf: // map16, map32
		size := 2
		if code == 0xdf {
			size = 4
		}
		n, err := c.uint(size)
		if err != nil {
			return err
		}
		return c.items(2*n, depth)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return c.skip(1 + (1 << (code - 0xd4)))
	case 0xc7, 0xc8, 0xc9: // ext8, 16, 32
		size := 1 << (code - 0xc7)
		n, err := c.uint(size)
		if err != nil {
			return err
		}
		return c.skip(1 + n)
	}
	return c.fail("reserved code %#x", code)
}

// Len returns the length of the one msgpack value b starts with, checked
// as Check checks: what a decoder of a known shape skips of what it does
// not know.
func Len(b []byte) (int, error) {
	c := checker{b: b}
	if err := c.value(0); err != nil {
		return 0, err
	}
	return c.pos, nil
}
