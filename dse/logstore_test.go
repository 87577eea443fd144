package dse

import (
	"strings"
	"testing"
)

func TestOpenLogStoreKeepsTheDirsKind(t *testing.T) {
	for _, kind := range []string{LogStoreWAL, LogStoreBoltDB} {
		dir := t.TempDir()
		s, got, err := openLogStore(dir, kind)
		if err != nil || got != kind {
			t.Fatalf("open %s: %v, %q", kind, err, got)
		}
		if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
			t.Fatal(err)
		}
		s.Close()
		// No kind named: the dir's own.
		s, got, err = openLogStore(dir, "")
		if err != nil || got != kind {
			t.Fatalf("reopen %s: %v, %q", kind, err, got)
		}
		if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
			t.Fatalf("reopen %s: term %d, %v", kind, v, err)
		}
		s.Close()
		// The other kind named: refused, nothing created.
		other := LogStoreWAL
		if kind == LogStoreWAL {
			other = LogStoreBoltDB
		}
		if _, _, err := openLogStore(dir, other); err == nil || !strings.Contains(err.Error(), "holds a "+kind) {
			t.Fatalf("open %s dir as %s: %v", kind, other, err)
		}
		if have, err := existingLogStore(dir); err != nil || have != kind {
			t.Fatalf("after refusal: %q, %v", have, err)
		}
	}
	if _, kind, err := openLogStore(t.TempDir(), ""); err != nil || kind != LogStoreWAL {
		t.Fatalf("new dir: %q, %v", kind, err)
	}
}
