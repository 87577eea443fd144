package table

import (
	"bytes"
	"encoding/json"
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
	if a, b := (Row{int64(5), "x"}), (Row{int64(5), "x"}); Key(a) != Key(b) {
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

// TestFromJSONRefusesWhatItWouldAlter: bytes that are not UTF-8 (which
// encoding/json replaces, merging distinct rows), and integers beyond
// int64 (which became lossy floats), are refused.
func TestFromJSONRefusesWhatItWouldAlter(t *testing.T) {
	for _, in := range []string{"[[\"a\xffb\"],[\"a\xfeb\"]]", `[[12345678901234567890123]]`, `[[9223372036854775808]]`, `[[-9223372036854775809]]`} {
		if rows, err := FromJSON([]byte(in), DefaultLimits); !errors.Is(err, ErrBadRow) {
			t.Errorf("%q: got %v, %v; want a bad row", in, rows, err)
		}
	}
	rows, err := FromJSON([]byte(`[[9223372036854775807, -9223372036854775808, 1e30, 12345678901234567890.0]]`), DefaultLimits)
	if err != nil || rows[0][0] != int64(math.MaxInt64) || rows[0][1] != int64(math.MinInt64) || rows[0][2] != 1e30 {
		t.Fatalf("the int64 bounds and floats: %v, %v", rows, err)
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
	for _, p := range got {
		checkRowHashes(t, p)
		p.rowHashes, p.hashedRows, p.rawRows, p.rowStarts = nil, nil, nil, nil
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
		// What decodes re-encodes, and decodes to the same; its rows'
		// hashes are those a set computes.
		for _, p := range pubs {
			checkRowHashes(t, p)
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

// checkRowHashes checks that a decoded snapshot's row hashes are the ones
// a Set computes for its rows: a set loaded with a wrong one would
// miss rows and keep duplicates.
func checkRowHashes(t *testing.T, p *Publication) {
	t.Helper()
	if !p.Snapshot {
		if p.rowHashes != nil {
			t.Fatalf("a delta's rows were hashed")
		}
		return
	}
	if len(p.rowHashes) != len(p.Rows) {
		t.Fatalf("%d row hashes for %d rows", len(p.rowHashes), len(p.Rows))
	}
	var canon []byte
	for i, r := range p.Rows {
		if got, want := p.rowHashes[i], hashRow(r); got != want {
			t.Fatalf("row %d %#v: decoded hash %x, hashRow %x", i, r, got, want)
		}
		if p.rawRows != nil && p.rowStarts[i] != uint64(len(canon)) {
			t.Fatalf("row %d: kept as starting at %d, its encoding starts at %d", i, p.rowStarts[i], len(canon))
		}
		canon, _ = appendRow(canon, r)
	}
	// The encodings kept are the rows' canonical ones, when they came so.
	if p.rawRows != nil && !bytes.Equal(p.rawRows, canon) {
		t.Fatalf("kept encodings %x, the rows' canonical ones %x", p.rawRows, canon)
	}
}

// TestDecodedHashesOfOtherEncodings: rows written by another msgpack
// encoder, in encodings other than dse's own (wide integers, float32,
// str8 for a short string, array16 for a short row, bin16 for short bytes,
// a nil row), decode with the hashes of their canonical rows, so a set
// loaded with them finds the same rows published by dse.
func TestDecodedHashesOfOtherEncodings(t *testing.T) {
	head := []byte{0x98, 0xa1, 'p', 0xa1, 't', 1, 0xc3}
	rows := [][]byte{
		{0x91, 0xd3, 0, 0, 0, 0, 0, 0, 0, 5},       // int64 5 as int 64
		{0x91, 0xcd, 0, 7},                         // 7 as uint 16
		{0x91, 0xd1, 0x01, 0x2c},                   // 300 as int 16 (dse: uint 16)
		{0x91, 0xd0, 0xff},                         // -1 as int 8 (dse: fixint)
		{0x91, 0xca, 0x3f, 0xc0, 0, 0},             // 1.5 as float 32
		{0x91, 0xd9, 1, 'x'},                       // "x" as str 8
		{0xdc, 0, 1, 0xa1, 'x'},                    // a one-column row as array 16
		{0x91, 0xc5, 0, 1, 9},                      // bytes{9} as bin 16
		{0xc0},                                     // a nil row
		{0x92, 0x05, 0xa1, 'x'},                    // dse's own: {5, "x"}
		{0x91, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}, // 1.5 as float 64
	}
	body := append(AppendBatch(nil, 1), head...)
	body = append(body, 0x90|byte(len(rows)))
	for _, r := range rows {
		body = append(body, r...)
	}
	body = append(body, 0xc0, 0xc0, 0) // Add, Del, SentAt
	pubs, err := DecodeBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	checkRowHashes(t, pubs[0])
	s := NewSet(nil)
	pubs[0].ApplyTo(s)
	for _, r := range []Row{{int64(5)}, {int64(7)}, {int64(300)}, {int64(-1)}, {1.5}, {"x"}, {[]byte{9}}, {}, {int64(5), "x"}} {
		if !s.Has(r) {
			t.Errorf("the set loaded from other encodings lacks %#v", r)
		}
	}
	if s.Len() != 9 { // {"x"} and {1.5} come twice
		t.Errorf("the set holds %d rows, want 9", s.Len())
	}
}

// TestDecodedHashesOfABigSnapshot: a snapshot big enough to be decoded in
// two halves and loaded in slot order carries the right hash for every
// row, and the set it loads finds each row, and changes like any other.
func TestDecodedHashesOfABigSnapshot(t *testing.T) {
	rows := make([]Row, 100_000)
	for i := range rows {
		rows[i] = Row{int64(i - 50_000), fmt.Sprint("r", i), float64(i) / 3, []byte{byte(i)}, i%2 == 0, nil}
	}
	p := decodedSnapshot(t, rows)
	checkRowHashes(t, p)
	s := NewSet(nil)
	if added, _ := p.ApplyTo(s); len(added) != len(rows) {
		t.Fatalf("%d rows added, want %d", len(added), len(rows))
	}
	for _, r := range rows {
		if !s.Has(r) {
			t.Fatalf("the set lacks %v", r)
		}
	}
	// Changes copy the shared rows and hashes first: the publication's
	// own stay as decoded.
	if _, del := s.Apply([]Row{{"new"}}, rows[:10]); len(del) != 10 || s.Len() != len(rows)-9 {
		t.Fatalf("apply: deleted %d, %d rows", len(del), s.Len())
	}
	checkRowHashes(t, p)
	if !reflect.DeepEqual(p.Rows[:10], rows[:10]) {
		t.Fatal("a change to the set changed the publication's rows")
	}
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

// TestJSONRoundTrip: rows written as JSON and read back (what `dse get`
// prints, published again) are the same rows, integers and floats apart.
func TestJSONRoundTrip(t *testing.T) {
	in := []Row{
		{int64(1), 1.0, 1e3, 1.5, -0.25, 1e21, 1e-7, float64(math.MaxInt64)},
		{"1", true, false, nil, int64(math.MinInt64), "quote \" <tag>"},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[[1,1.0,1000.0,1.5,-0.25,1e+21,1e-7,9223372036854776000.0],`; !strings.HasPrefix(string(b), want) {
		t.Fatalf("JSON %s, want it to start with %s", b, want)
	}
	back, err := FromJSON(b, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !Equal(in[i], back[i]) {
			t.Fatalf("row %d: %#v came back as %#v (JSON %s)", i, in[i], back[i], b)
		}
	}
	if _, err := json.Marshal(Row{math.NaN()}); err == nil {
		t.Fatal("NaN encoded")
	}
	// Strings and non-integral floats as encoding/json writes them, without
	// HTML escaping.
	for _, v := range []any{"<a&b>", "quote \" back \\ slash", "ctl \x00\x01\b\f\n\r\t\x1f end", "bad \xff\xfe utf8", "sep \u2028 \u2029", "é ü 日本", "", 1.5e6, 1.234567890125e11, 1e-5, 1e-6, 123.456, -1e300, 5e-324} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.Encode([]any{v})
		got, err := Row{v}.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		w := strings.TrimSpace(want.String())
		if f, ok := v.(float64); ok && f == math.Trunc(f) && !strings.ContainsAny(w, ".e") {
			w = strings.TrimSuffix(w, "]") + ".0]"
		}
		var out bytes.Buffer
		enc = json.NewEncoder(&out)
		enc.SetEscapeHTML(false)
		enc.Encode(Row{v}) // as the API writes rows
		if string(got) != w || strings.TrimSpace(out.String()) != w {
			t.Errorf("%q: got %s (encoder: %s), want %s", v, got, strings.TrimSpace(out.String()), w)
		}
	}
}
