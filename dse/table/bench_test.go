package table

import (
	"fmt"
	"testing"
)

func rowsN(n int) []Row {
	out := make([]Row, n)
	for i := range out {
		out[i] = Row{int64(i), fmt.Sprintf("row-%d", i), float64(i) / 3}
	}
	return out
}

// BenchmarkDiff10k is the publisher's delta computation: a 10,000-row table
// where one row changed.
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
