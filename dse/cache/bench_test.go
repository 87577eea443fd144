package cache

import (
	"testing"

	"dse.dev/dse/dse/table"
)

// BenchmarkApplyDelta is a subscriber's cache applying one-row deltas.
func BenchmarkApplyDelta(b *testing.B) {
	c := New()
	c.OnChange(func(Change) {})
	var i int64
	for b.Loop() {
		c.Apply(&table.Publication{Publisher: "p", Table: "t", Seqnum: uint64(i + 1), Add: []table.Row{{i}}, Del: []table.Row{{i - 100}}})
		i++
	}
}
