package mpcheck

import (
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheck(t *testing.T) {
	good, _ := msgpack.Marshal(map[string]any{"a": []any{1, "x", 2.5, nil, true, []byte{1}, map[string]any{"b": int64(-1 << 40)}}})
	if err := Check(good); err != nil {
		t.Fatalf("valid input refused: %v", err)
	}
	for name, b := range map[string][]byte{
		"array32 of 2^32":  {0xdd, 0xff, 0xff, 0xff, 0xff},
		"map32 of 2^32":    {0xdf, 0xff, 0xff, 0xff, 0xff},
		"bin32 of 4GB":     {0xc6, 0xff, 0xff, 0xff, 0xff},
		"str32 of 4GB":     {0xdb, 0xff, 0xff, 0xff, 0xff},
		"truncated int64":  {0xd3, 1, 2},
		"reserved code":    {0xc1},
		"truncated fixstr": {0xa5, 'a'},
		"deep nesting":     append(make([]byte, 0), repeat(0x91, 100)...),
	} {
		if err := Check(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestLen(t *testing.T) {
	first, _ := msgpack.Marshal(map[string]any{"a": []any{1, "x", 2.5, nil, []byte{1}}})
	second, _ := msgpack.Marshal("next")
	if n, err := Len(append(first, second...)); err != nil || n != len(first) {
		t.Fatalf("Len = %d, %v; want %d", n, err, len(first))
	}
	if _, err := Len(first[:len(first)-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: got %v, want ErrMalformed", err)
	}
}

func repeat(b byte, n int) []byte {
	out := make([]byte, n+1)
	for i := range n {
		out[i] = b
	}
	out[n] = 0xc0
	return out
}

// FuzzCheck: whatever Check accepts, msgpack decodes without running away.
func FuzzCheck(f *testing.F) {
	good, _ := msgpack.Marshal(map[string]any{"a": []any{1, "x"}})
	f.Add(good)
	f.Add([]byte{0xdd, 0, 0, 0, 2, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b) != nil {
			return
		}
		var v any
		msgpack.Unmarshal(b, &v)
	})
}
