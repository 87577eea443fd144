package bigmem

import (
	"io"
	"unsafe"
)

// MinSize is the smallest buffer, in bytes, that Make maps specially:
// smaller ones hold at most one whole huge page.
const MinSize = 4 << 20

// Make returns make([]T, n), populated with huge pages when it is at least
// MinSize bytes and the system lends itself to it (see the package doc).
// Its elements are zero, as make's.
func Make[T any](n int) []T {
	s := make([]T, n)
	var zero T
	if size := uintptr(n) * unsafe.Sizeof(zero); size >= MinSize {
		populate(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), size))
	}
	return s
}

// readChunk is how much ReadFull populates before each read.
const readChunk = 4 << 20

// ReadFull returns a new buffer holding the next n bytes of r. A big one is
// populated with huge pages as Make's are, but a few megabytes at a time,
// each just before it is read into: the page faults then overlap with the
// writer sending what follows, instead of all coming before the first
// byte is read while the writer stalls (a snapshot's 26 MB frame held its
// sender for 16-67 ms that way here).
func ReadFull(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if n < MinSize {
		_, err := io.ReadFull(r, b)
		return b, err
	}
	p := startPopulate(b)
	defer p.finish()
	for off := 0; off < n; {
		end := min(off+readChunk, n)
		p.upTo(end)
		if _, err := io.ReadFull(r, b[off:end]); err != nil {
			if err == io.EOF && off > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		off = end
	}
	return b, nil
}
