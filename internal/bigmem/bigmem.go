package bigmem

import "unsafe"

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
