package table

import (
	"fmt"
	"strings"
	"testing"
)

func rowsN(n int) []Row {
	out := make([]Row, n)
	for i := range out {
		out[i] = Row{int64(i), fmt.Sprintf("row-%d", i), float64(i) / 3}
	}
	return out
}

// BenchmarkDiff10k diffs a 10,000-row table where one row changed, without
// changing the set.
func BenchmarkDiff10k(b *testing.B) {
	rows := rowsN(10000)
	s := NewSet(rows)
	next := append([]Row(nil), rows...)
	next[5000] = Row{int64(-1), "changed", 0.5}
	for b.Loop() {
		add, del := s.Diff(next)
		if len(add) != 1 || len(del) != 1 {
			b.Fatal("wrong diff")
		}
	}
}

// BenchmarkReplace10k is the publisher's delta computation for Publish: a
// 10,000-row table whose new content has one row changed (and back).
func BenchmarkReplace10k(b *testing.B) {
	rows := rowsN(10000)
	next := append([]Row(nil), rows...)
	next[5000] = Row{int64(-1), "changed", 0.5}
	s := NewSet(rows)
	for i := 0; b.Loop(); i++ {
		want := next
		if i%2 == 1 {
			want = rows
		}
		if add, del := s.Replace(want); len(add) != 1 || len(del) != 1 {
			b.Fatal("wrong delta")
		}
	}
}

func BenchmarkEncodeDecodeDelta(b *testing.B) {
	p := &Publication{Publisher: "p", Table: "t", Seqnum: 7, Add: []Row{{int64(1), string(make([]byte, 92))}}}
	for b.Loop() {
		enc, _ := p.Encode()
		if _, err := DecodeBatch(append(AppendBatch(nil, 1), enc...)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeDecodeSnapshot10k(b *testing.B) {
	p := &Publication{Publisher: "p", Table: "t", Seqnum: 7, Snapshot: true, Rows: rowsN(10000)}
	enc, _ := p.Encode()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		enc, _ := p.Encode()
		if _, err := DecodeBatch(append(AppendBatch(nil, 1), enc...)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewSet1M indexes a million rows (a publisher's first publish, a
// subscriber's first snapshot), then lists them as a snapshot reply does:
// the listing walks the rows' values in the set's order.
func BenchmarkNewSet1M(b *testing.B) {
	rows := rowsN(1_000_000)
	for b.Loop() {
		s := NewSet(rows)
		if _, err := (&Publication{Publisher: "p", Table: "t", Snapshot: true, Rows: s.Unsorted()}).Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// snapshotBody1M is a batch of one snapshot of a million rows of 3
// columns, as a new subscriber receives it.
func snapshotBody1M(b *testing.B) []byte {
	enc, err := (&Publication{Publisher: "p", Table: "t", Snapshot: true, Rows: rowsN(1_000_000)}).Encode()
	if err != nil {
		b.Fatal(err)
	}
	body := append(AppendBatch(nil, 1), enc...)
	b.SetBytes(int64(len(body)))
	return body
}

// BenchmarkDecodeSnapshot1M decodes a million-row snapshot as a new
// subscriber does (in two halves at once when GOMAXPROCS allows).
func BenchmarkDecodeSnapshot1M(b *testing.B) {
	body := snapshotBody1M(b)
	for b.Loop() {
		if _, err := DecodeBatch(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceiveSnapshot1M is a new subscriber's whole work on a
// million-row snapshot: decode it, then index it into its empty set.
func BenchmarkReceiveSnapshot1M(b *testing.B) {
	body := snapshotBody1M(b)
	for b.Loop() {
		pubs, err := DecodeBatch(body)
		if err != nil {
			b.Fatal(err)
		}
		if added, _ := pubs[0].ApplyTo(NewSet(nil)); len(added) != 1_000_000 {
			b.Fatal("rows missing")
		}
	}
}

// windowRows are rows of an int and 80 bytes, as bench publish's deltas.
func windowRows(n int) []Row {
	rows := make([]Row, n)
	pad := strings.Repeat("x", 80)
	for i := range rows {
		rows[i] = Row{int64(i), pad}
	}
	return rows
}

// BenchmarkDeltaWindow: a 4,096-row table under deltas that each add a
// row and delete the one added 4,096 before (dse bench publish's load on
// a subscriber's cache), in a Set and in a Packed set.
func BenchmarkDeltaWindow(b *testing.B) {
	const window = 4096
	b.Run("set", func(b *testing.B) {
		rows := windowRows(b.N + window)
		s := NewSet(rows[:window])
		b.ResetTimer()
		for i := range b.N {
			s.Apply(rows[window+i:window+i+1], rows[i:i+1])
		}
	})
	b.Run("packed", func(b *testing.B) {
		rows := windowRows(b.N + window)
		s := &Packed{}
		s.Replace(rows[:window])
		b.ResetTimer()
		for i := range b.N {
			s.Apply(rows[window+i:window+i+1], rows[i:i+1])
		}
	})
}
