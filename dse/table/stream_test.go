package table

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// randomValue draws values of every kind and every encoded width.
func randomValue(rng *rand.Rand, long bool) any {
	ints := []int64{0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, math.MinInt8, math.MinInt8 - 1, math.MinInt16, math.MinInt16 - 1, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	lens := []int{0, 1, 31, 32, 255, 256}
	if long {
		lens = append(lens, 65535, 65536)
	}
	switch rng.IntN(6) {
	case 0:
		return nil
	case 1:
		return rng.IntN(2) == 0
	case 2:
		return ints[rng.IntN(len(ints))] + int64(rng.IntN(3)) - 1
	case 3:
		return rng.NormFloat64()
	case 4:
		return strings.Repeat("s", lens[rng.IntN(len(lens))])
	}
	return bytes.Repeat([]byte{7}, lens[rng.IntN(len(lens))])
}

// TestStreamMatchesEncode: EncodedLen is the exact length of Encode's
// bytes, and StreamTo writes those same bytes, whatever the chunk buffer.
func TestStreamMatchesEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	counts := []int{0, 1, 15, 16, 300}
	for i := range 40 {
		p := &Publication{Publisher: strings.Repeat("p", 1+rng.IntN(40)), Table: "t", Seqnum: rng.Uint64() >> rng.IntN(64), Snapshot: i%2 == 0, SentAt: rng.Int64() - rng.Int64()}
		for _, rows := range []*[]Row{&p.Rows, &p.Add, &p.Del} {
			n := counts[rng.IntN(len(counts))]
			if i == 0 && rows == &p.Rows {
				n = 70000 // an array32 header
			}
			for range n {
				r := make(Row, rng.IntN(18)>>(n/1000))
				for c := range r {
					r[c] = randomValue(rng, n < 100)
				}
				*rows = append(*rows, r)
			}
		}
		want, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		n, err := p.EncodedLen()
		if err != nil || n != len(want) {
			t.Fatalf("publication %d: EncodedLen %d, %v; Encode wrote %d bytes", i, n, err, len(want))
		}
		var out bytes.Buffer
		written, err := p.StreamTo(&out, make([]byte, 0, rng.IntN(1024)))
		if err != nil || written != int64(len(want)) || !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("publication %d: StreamTo wrote %d bytes (%v), differing from Encode's %d", i, written, err, len(want))
		}
	}
	bad := &Publication{Rows: []Row{{int64(1)}, {struct{}{}}}}
	if _, err := bad.EncodedLen(); !errors.Is(err, ErrBadRow) {
		t.Fatalf("EncodedLen of a bad row: %v", err)
	}
	// In either half of a big array, measured at once.
	for _, at := range []int{0, 69_999} {
		big := &Publication{Rows: make([]Row, 70_000)}
		for i := range big.Rows {
			big.Rows[i] = Row{int64(i)}
		}
		big.Rows[at] = Row{struct{}{}}
		if _, err := big.EncodedLen(); !errors.Is(err, ErrBadRow) {
			t.Fatalf("EncodedLen of a bad row %d of %d: %v", at, len(big.Rows), err)
		}
	}
	if _, err := bad.StreamTo(&bytes.Buffer{}, nil); !errors.Is(err, ErrBadRow) {
		t.Fatalf("StreamTo of a bad row: %v", err)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(b []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("connection gone")
	}
	w.after--
	return len(b), nil
}

func TestStreamStopsAtAWriteError(t *testing.T) {
	p := &Publication{Rows: rowsN(100_000)}
	if _, err := p.StreamTo(&failWriter{after: 2}, nil); err == nil || err.Error() != "connection gone" {
		t.Fatalf("got %v, want the writer's error", err)
	}
}

// TestBigRowsDecodeInHalves: a rows array big enough to be decoded in two
// halves at once decodes to the rows encoded, and the arrays after it too,
// snapshot or not, from a lent body or an owned one (whose snapshot's
// strings point into it, its []byte values not).
func TestBigRowsDecodeInHalves(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	rnd := func(n int) []Row {
		rows := make([]Row, n)
		for i := range rows {
			rows[i] = make(Row, rng.IntN(5))
			for c := range rows[i] {
				rows[i][c] = randomValue(rng, false)
			}
		}
		return rows
	}
	for _, n := range []int{parallelRows, parallelRows + 1, 3*parallelRows + 7} {
		for _, snapshot := range []bool{false, true} {
			for _, owned := range []bool{false, true} {
				p := &Publication{Publisher: "p", Table: "t", Seqnum: 9, Snapshot: snapshot, Rows: rnd(n), Add: rnd(100), Del: rnd(3)}
				enc, err := p.Encode()
				if err != nil {
					t.Fatal(err)
				}
				body := append(AppendBatch(nil, 1), enc...)
				decode := DecodeBatch
				if owned {
					decode = DecodeOwnedBatch
				}
				got, err := decode(body)
				if err != nil {
					t.Fatalf("%d rows: %v", n, err)
				}
				for name, pair := range map[string][2][]Row{"rows": {p.Rows, got[0].Rows}, "add": {p.Add, got[0].Add}, "del": {p.Del, got[0].Del}} {
					want, have := pair[0], pair[1]
					if len(want) != len(have) {
						t.Fatalf("%d rows: %s has %d rows, want %d", n, name, len(have), len(want))
					}
					for i := range want {
						if Key(want[i]) != Key(have[i]) {
							t.Fatalf("%d rows: %s row %d is %v, want %v", n, name, i, have[i], want[i])
						}
					}
				}
				aliased := 0
				for _, r := range got[0].Rows {
					for _, v := range r {
						var data *byte
						switch x := v.(type) {
						case string:
							data = unsafe.StringData(x)
						case []byte:
							data = unsafe.SliceData(x)
						}
						if data == nil {
							continue
						}
						in := uintptr(unsafe.Pointer(data))-uintptr(unsafe.Pointer(&body[0])) < uintptr(len(body))
						_, isStr := v.(string)
						if in != (owned && snapshot && isStr) {
							t.Fatalf("%d rows, snapshot %v, owned %v: a %T in the body: %v", n, snapshot, owned, v, in)
						}
						if in {
							aliased++
						}
					}
				}
				if owned && snapshot && aliased == 0 {
					t.Fatalf("%d rows: no string of an owned snapshot points into its body", n)
				}
			}
		}
	}
}

// TestBatchStreamOfASmallTable: a streamed batch writes EncodeBatch's
// bytes, and a small one takes a buffer of its size, not a whole chunk (a
// joining subscriber of thousands of small tables asks for one each).
func TestBatchStreamOfASmallTable(t *testing.T) {
	for _, rows := range []int{1, 100_000} {
		pubs := []*Publication{{Publisher: "s", Table: "t", Seqnum: 9, Snapshot: true, Rows: rowsN(rows)}}
		want, err := EncodeBatch(pubs)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewBatchStream(pubs)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if n, err := s.WriteTo(&out); err != nil || n != int64(len(want)) || !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%d rows: WriteTo wrote %d bytes (%v), differing from EncodeBatch's %d", rows, n, err, len(want))
		}
	}
	s, err := NewBatchStream([]*Publication{{Publisher: "s", Table: "t", Seqnum: 9, Snapshot: true, Rows: rowsN(1)}})
	if err != nil {
		t.Fatal(err)
	}
	// The least of three rounds: the counts are the whole process's.
	least := uint64(math.MaxUint64)
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const n = 100
		for range n {
			if _, err := s.WriteTo(io.Discard); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		least = min(least, (after.TotalAlloc-before.TotalAlloc)/n)
	}
	if least > 4<<10 {
		t.Fatalf("streaming a one-row table allocated %d bytes a time", least)
	}
}
