package seq

import (
	"testing"

	"dse.dev/dse/dse/table"
)

// BenchmarkOfferInOrder is the subscriber's sequencing of in-order deltas.
func BenchmarkOfferInOrder(b *testing.B) {
	s := New(1000)
	n := uint64(1)
	for b.Loop() {
		s.Offer(&table.Publication{Seqnum: n}, t0)
		n++
	}
}
