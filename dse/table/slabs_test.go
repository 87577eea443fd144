package table

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"
)

// TestDecodedRowsOutliveTheirInput: decoded rows, whose values live in a
// block the collector does not scan, keep everything they point at alive
// on their own: with only the rows (or one row, or one value) held,
// collections and fresh garbage over the freed memory leave them intact,
// for snapshots and deltas, from lent and owned bodies.
func TestDecodedRowsOutliveTheirInput(t *testing.T) {
	want := func(i int) Row {
		return Row{int64(i), "s-" + strconv.Itoa(i), float64(i) / 7, []byte("b-" + strconv.Itoa(i)), i%2 == 0, nil}
	}
	type held struct {
		rows []Row
		row  Row // rows[len/2], held alone
		str  any // rows[len/3][1], held alone
	}
	var all []held
	for _, n := range []int{1, 10, parallelRows + 3} {
		for _, snapshot := range []bool{false, true} {
			for _, owned := range []bool{false, true} {
				rows := make([]Row, n)
				for i := range rows {
					rows[i] = want(i)
				}
				enc, err := (&Publication{Publisher: "p", Table: "t", Seqnum: 1, Snapshot: snapshot, Rows: rows}).Encode()
				if err != nil {
					t.Fatal(err)
				}
				decode := DecodeBatch
				if owned {
					decode = DecodeOwnedBatch
				}
				pubs, err := decode(append(AppendBatch(nil, 1), enc...))
				if err != nil {
					t.Fatal(err)
				}
				got := pubs[0].Rows
				all = append(all, held{rows: got}, held{row: got[n/2]}, held{str: got[n/3][1]})
			}
		}
	}
	for range 3 {
		runtime.GC()
		// Garbage over what the collection freed: values that point
		// into freed memory read it back as this.
		junk := make([][]byte, 0, 1<<12)
		for range 1 << 12 {
			junk = append(junk, bytes.Repeat([]byte{0xaa}, 1<<10))
		}
		runtime.KeepAlive(junk)
	}
	for k, h := range all {
		switch {
		case h.rows != nil:
			for i, r := range h.rows {
				if Key(r) != Key(want(i)) {
					t.Fatalf("held %d: row %d is %v, want %v", k, i, r, want(i))
				}
			}
		case h.row != nil:
			if i := int(h.row[0].(int64)); Key(h.row) != Key(want(i)) {
				t.Fatalf("held %d: row is %v, want %v", k, h.row, want(i))
			}
		default:
			if s, ok := h.str.(string); !ok || len(s) < 2 || s[:2] != "s-" {
				t.Fatalf("held %d: string is %q", k, h.str)
			}
		}
	}
}
