package dse

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
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
	if _, kind, err := openLogStore(t.TempDir(), ""); err != nil || kind != LogStoreBoltDB {
		t.Fatalf("new dir: %q, %v", kind, err)
	}
}

// TestDefaultLogStoreReopensAfterATailTruncation: a follower drops entries a
// new leader does not have (a tail truncation), takes new ones, restarts,
// and reads its whole log. raft-wal v0.4.0 fails this ("sealed segment has no
// index block"), which is why it is not the default.
func TestDefaultLogStoreReopensAfterATailTruncation(t *testing.T) {
	dir := t.TempDir()
	s, _, err := openLogStore(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: []byte("x")})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(6, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 6, Term: 2, Data: []byte("y")}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, _, err = openLogStore(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint64(1); i <= 6; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("after a tail truncation and a restart, entry %d: %v", i, err)
		}
		if want := uint64(1) + uint64(i/6); l.Term != want {
			t.Fatalf("entry %d has term %d, want %d", i, l.Term, want)
		}
	}
	if last, _ := s.LastIndex(); last != 6 {
		t.Fatalf("last index %d, want 6", last)
	}
}
