package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"dse.dev/dse/internal/mpcheck"
)

// reflectPublish is Publish without its codec: what the reflective
// msgpack codec makes of the same struct tags.
type reflectPublish struct {
	Requests []PublishRequest `msgpack:"r"`
}

func reflectEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reflectDecode(b []byte) (*Publish, error) {
	var p reflectPublish
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	return &Publish{Requests: p.Requests}, nil
}

func randomPublish(rng *rand.Rand) Publish {
	var p Publish
	if rng.IntN(10) == 0 {
		return p // nil requests
	}
	num := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return uint64(rng.IntN(200))
		case 2:
			return uint64(rng.IntN(1 << 20))
		}
		return rng.Uint64()
	}
	p.Requests = make([]PublishRequest, rng.IntN(40))
	for i := range p.Requests {
		p.Requests[i] = PublishRequest{
			Service: fmt.Sprint("svc", rng.IntN(3)), Incarnation: num(), Table: fmt.Sprint("t", rng.IntN(1000)),
			Count: num(), First: num(), After: num(), Skip: num(),
		}
	}
	return p
}

// The codec writes what the reflective one reads, with its numbers in as
// few bytes as they take (the reflective codec writes every uint64 in 9),
// and reads back both encodings.
func TestPublishCodecMatchesReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		p := randomPublish(rng)
		theirs := reflectEncode(t, reflectPublish(p))
		ours := reflectEncode(t, p)
		if len(ours) > len(theirs) {
			t.Fatalf("encoded in %d bytes, the reflective codec in %d", len(ours), len(theirs))
		}
		for _, b := range [][]byte{ours, theirs} {
			back, err := decodePublish(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*back, p) {
				t.Fatalf("decoded %+v, want %+v", *back, p)
			}
			if back, err = reflectDecode(b); err != nil || !reflect.DeepEqual(*back, p) {
				t.Fatalf("the reflective decoder read %+v (%v), want %+v", back, err, p)
			}
		}
	}
}

// What the reflective decoder accepts from other writers, decodePublish
// reads the same: keys in another order, unknown keys, strings as bin,
// numbers as signed integers or nil, nil maps.
func TestPublishDecodeOtherEncodings(t *testing.T) {
	for _, v := range []any{
		map[string]any{"x": []any{1, "y", map[string]any{"z": nil}}, "r": []any{
			map[string]any{"t": []byte("tbl"), "n": int8(3), "s": "svc", "q": 1.5, "i": int64(-1), "k": nil},
			nil,
			map[string]any{},
		}},
		map[string]any{"r": nil},
		map[string]any{},
		nil,
	} {
		b := reflectEncode(t, v)
		want, werr := reflectDecode(b)
		got, gerr := decodePublish(b)
		if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%x: decoded %+v (%v), the reflective decoder %+v (%v)", b, got, gerr, want, werr)
		}
	}
}

// For any input Decode lets through (mpcheck.Check), decodePublish fails
// where the reflective decoder fails and otherwise reads the same.
func FuzzDecodePublish(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		f.Add(reflectEncode(f, randomPublish(rng)))
	}
	f.Add(reflectEncode(f, map[string]any{"r": []any{map[string]any{"t": []byte("x"), "i": int16(-300)}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if mpcheck.Check(b) != nil {
			return
		}
		want, werr := reflectDecode(b)
		got, gerr := decodePublish(b)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%x: decodePublish error %v, the reflective decoder's %v", b, gerr, werr)
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%x: decoded %+v, the reflective decoder %+v", b, got, want)
		}
	})
}
