package table

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestKeyDistinguishesTypes(t *testing.T) {
	rows := []Row{{int64(1)}, {1.0}, {"1"}, {true}, {nil}, {[]byte("1")}, {int64(1), nil}, {"a", "b"}, {"ab"}, {}}
	seen := map[string]int{}
	for i, r := range rows {
		k := Key(r)
		if j, ok := seen[k]; ok {
			t.Fatalf("rows %d and %d share a key", i, j)
		}
		seen[k] = i
	}
	if Key(Row{int64(5), "x"}) != Key(Row{int64(5), "x"}) {
		t.Fatal("equal rows, different keys")
	}
}

func TestCanonical(t *testing.T) {
	for _, c := range []struct {
		in   any
		want any
	}{
		{int(3), int64(3)}, {int8(-3), int64(-3)}, {uint16(9), int64(9)}, {uint64(7), int64(7)},
		{float32(1.5), 1.5}, {"s", "s"}, {nil, nil}, {true, true},
	} {
		got, err := Canonical(c.in)
		if err != nil || got != c.want {
			t.Errorf("Canonical(%#v) got %#v, %v; want %#v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []any{uint64(math.MaxUint64), map[string]any{}, []any{1}, struct{}{}} {
		if _, err := Canonical(bad); err == nil {
			t.Errorf("Canonical(%#v) accepted", bad)
		}
	}
}

// TestCanonicalRowLeavesCanonicalValues: a row already canonical is not
// written, so that rows the node holds can be checked again while others
// read them (the race detector, which make test runs, would see a write).
func TestCanonicalRowLeavesCanonicalValues(t *testing.T) {
	held := Row{int64(1), "s", 2.5, true, nil, []byte("b")}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			_ = fmt.Sprint(held)
		}
	}()
	for range 100 {
		if err := CanonicalRow(held, DefaultLimits); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	mixed := Row{int(1), float32(0.5), "s"}
	if err := CanonicalRow(mixed, DefaultLimits); err != nil || !reflect.DeepEqual(mixed, Row{int64(1), 0.5, "s"}) {
		t.Fatalf("got %#v, %v", mixed, err)
	}
}

func TestFromJSON(t *testing.T) {
	rows, err := FromJSON([]byte(`[[1, "a", 2.5, true, null], [-7]]`), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{{int64(1), "a", 2.5, true, nil}, {int64(-7)}}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("got %#v, want %#v", rows, want)
	}
	for in, mention := range map[string]string{
		`{"a": 1}`:          "an object",
		`[[1], {"a": 1}]`:   "row 1",
		`[[1, [2]]]`:        "column 1",
		`[[1, {"x": 2}]]`:   "an object is not a scalar",
		`[1, 2]`:            "row 0",
		`[[1]] [[2]]`:       "more than one",
		`not json`:          "not JSON",
		`[[1,2,3,4,5,6]]`:   "columns",
		`[[1],[2],[3],[4]]`: "rows",
	} {
		_, err := FromJSON([]byte(in), Limits{MaxRows: 3, MaxColumns: 5, MaxString: 10})
		if !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), mention) {
			t.Errorf("FromJSON(%s): got %v, want ErrBadRow mentioning %q", in, err, mention)
		}
	}
}

func TestSetOperations(t *testing.T) {
	s := NewSet([]Row{{int64(1)}, {int64(2)}})
	add, del := s.Diff([]Row{{int64(2)}, {int64(3)}, {int64(3)}})
	if len(add) != 1 || len(del) != 1 || add[0][0] != int64(3) || del[0][0] != int64(1) {
		t.Fatalf("Diff got +%v -%v", add, del)
	}
	added, deleted := s.Apply([]Row{{int64(3)}, {int64(2)}}, []Row{{int64(1)}, {int64(9)}})
	if len(added) != 1 || len(deleted) != 1 {
		t.Fatalf("Apply reported +%v -%v, want one each", added, deleted)
	}
	added, deleted = s.Replace([]Row{{int64(4)}, {int64(3)}})
	if len(added) != 1 || added[0][0] != int64(4) || len(deleted) != 1 || deleted[0][0] != int64(2) {
		t.Fatalf("Replace got +%v -%v", added, deleted)
	}
	if got := s.Rows(); !reflect.DeepEqual(got, []Row{{int64(3)}, {int64(4)}}) {
		t.Fatalf("Rows got %v", got)
	}
}

func TestCompareSorts(t *testing.T) {
	rows := []Row{{"b"}, {int64(2)}, {1.5}, {nil}, {true}, {"a", int64(1)}, {"a"}}
	Sort(rows)
	want := []Row{{nil}, {true}, {1.5}, {int64(2)}, {"a"}, {"a", int64(1)}, {"b"}}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("got %v, want %v", rows, want)
	}
}

func TestPublicationRoundTrip(t *testing.T) {
	pubs := []*Publication{
		{Publisher: "p", Table: "t", Seqnum: 7, Snapshot: true, Rows: []Row{{int64(1), "x", 2.5, nil, true, []byte{1}}, {int64(math.MaxInt64)}, {int64(math.MinInt64)}}, SentAt: 99},
		{Publisher: "p", Table: "u", Seqnum: 8, Add: []Row{{int64(300)}}, Del: []Row{{int64(-1), int64(70000)}}},
	}
	var body []byte
	body = AppendBatch(body, len(pubs))
	for _, p := range pubs {
		b, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		body = append(body, b...)
	}
	got, err := DecodeBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, pubs) {
		t.Fatalf("got %#v\nwant %#v", got[0], pubs[0])
	}
	if _, err := (&Publication{Rows: []Row{{int8(1)}}}).Encode(); !errors.Is(err, ErrBadRow) {
		t.Fatalf("non-canonical row encoded: %v", err)
	}
	if _, err := DecodeBatch(body[:len(body)-3]); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("truncated batch: got %v", err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	p := &Publication{Publisher: "p", Table: "t", Seqnum: 1, Add: []Row{{int64(1), "a"}}}
	b, _ := p.Encode()
	f.Add(append(AppendBatch(nil, 1), b...))
	f.Add([]byte{0x91, 0x98})
	f.Fuzz(func(t *testing.T, data []byte) {
		pubs, err := DecodeBatch(data)
		if err != nil {
			return
		}
		// What decodes re-encodes, and decodes to the same.
		for _, p := range pubs {
			b, err := p.Encode()
			if err != nil {
				t.Fatalf("decoded publication does not encode: %v", err)
			}
			again, err := DecodeBatch(append(AppendBatch(nil, 1), b...))
			if err != nil {
				t.Fatalf("re-encoded publication does not decode: %v", err)
			}
			// Compared as bytes: NaN != NaN for DeepEqual.
			if b2, err := again[0].Encode(); err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("round trip changed %#v", p)
			}
		}
	})
}

func FuzzFromJSON(f *testing.F) {
	f.Add([]byte(`[[1,"a",null,true,2.5]]`))
	f.Add([]byte(`[{"a":1}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := FromJSON(data, DefaultLimits)
		if err != nil {
			return
		}
		for _, r := range rows {
			for _, v := range r {
				if c, err := Canonical(v); err != nil || !reflect.DeepEqual(c, v) {
					t.Fatalf("non-canonical value %#v", v)
				}
			}
		}
	})
}

// TestDecodeBatchBoundsWhatACountClaims: a header claiming many
// publications, with little behind it, is refused without allocating for
// the claim.
func TestDecodeBatchBoundsWhatACountClaims(t *testing.T) {
	body := append(AppendBatch(nil, 100_000), make([]byte, 1<<20)...) // then no publication
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := DecodeBatch(body); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("got %v", err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("a 1 MB batch claiming 100k publications allocated %d bytes", grew)
	}
	tooMany := AppendBatch(nil, 1)
	tooMany = append(tooMany, 0x98, 0xa1, 'p', 0xa1, 't', 1, 0xc3)
	tooMany = append(tooMany, 0xdd, 0xff, 0xff, 0xff, 0xf0) // 4 billion rows
	if _, err := DecodeBatch(append(tooMany, make([]byte, 64)...)); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("rows over the input: %v", err)
	}
}
