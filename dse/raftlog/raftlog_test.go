package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

func TestOpenLogStoreKeepsTheDirsKind(t *testing.T) {
	for _, kind := range []string{WAL, BoltDB} {
		dir := t.TempDir()
		s, got, err := Open(dir, kind, nil)
		if err != nil || got != kind {
			t.Fatalf("open %s: %v, %q", kind, err, got)
		}
		if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
			t.Fatal(err)
		}
		s.Close()
		// No kind named: the dir's own.
		s, got, err = Open(dir, "", nil)
		if err != nil || got != kind {
			t.Fatalf("reopen %s: %v, %q", kind, err, got)
		}
		if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
			t.Fatalf("reopen %s: term %d, %v", kind, v, err)
		}
		s.Close()
		// The other kind named: refused, nothing created.
		other := WAL
		if kind == WAL {
			other = BoltDB
		}
		if _, _, err := Open(dir, other, nil); err == nil || !strings.Contains(err.Error(), "holds a "+kind) {
			t.Fatalf("open %s dir as %s: %v", kind, other, err)
		}
		if have, err := Existing(dir); err != nil || have != kind {
			t.Fatalf("after refusal: %q, %v", have, err)
		}
	}
	if _, kind, err := Open(t.TempDir(), "", nil); err != nil || kind != WAL {
		t.Fatalf("new dir: %q, %v", kind, err)
	}
}

// TestLogStoresReopenAfterATailTruncation: a follower drops entries a new
// leader does not have (a tail truncation), takes new ones, restarts, and
// reads its whole log. Stock raft-wal v0.4.0 fails this (see
// TestStockRaftWALCannotReopenAfterATailTruncation); indexSegments is what
// makes the wal kind pass, and leaves a log stock raft-wal reads.
func TestLogStoresReopenAfterATailTruncation(t *testing.T) {
	for _, kind := range []string{BoltDB, WAL} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			s, _, err := Open(dir, kind, nil)
			if err != nil {
				t.Fatal(err)
			}
			storeTerms(t, s, 1, 10, 1)
			if err := s.DeleteRange(6, 10); err != nil {
				t.Fatal(err)
			}
			storeTerms(t, s, 6, 6, 2)
			s.Close()
			for restart := 0; restart < 2; restart++ {
				s, _, err = Open(dir, "", nil)
				if err != nil {
					t.Fatalf("restart %d: %v", restart, err)
				}
				for i := uint64(1); i <= 6; i++ {
					var l raft.Log
					if err := s.GetLog(i, &l); err != nil {
						t.Fatalf("restart %d: entry %d: %v", restart, i, err)
					}
					if want := uint64(1) + uint64(i/6); l.Term != want {
						t.Fatalf("restart %d: entry %d has term %d, want %d", restart, i, l.Term, want)
					}
				}
				var l raft.Log
				if err := s.GetLog(7, &l); !errors.Is(err, raft.ErrLogNotFound) {
					t.Fatalf("restart %d: truncated entry 7: %v", restart, err)
				}
				if last, _ := s.LastIndex(); last != 6 {
					t.Fatalf("restart %d: last index %d, want 6", restart, last)
				}
				s.Close()
			}
			if kind == WAL {
				// The segment dse rewrote is an ordinary one again.
				stockReads(t, filepath.Join(dir, walDir), 1, 6)
			}
		})
	}
}

// stockReads checks that stock raft-wal opens the log in dir and reads
// entries first to last.
func stockReads(t *testing.T, dir string, first, last uint64) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	w, err := wal.Open(dir, wal.WithMetaStore(meta))
	if err != nil {
		t.Fatalf("stock raft-wal: %v", err)
	}
	defer w.Close()
	gotFirst, err1 := w.FirstIndex()
	gotLast, err2 := w.LastIndex()
	if err := errors.Join(err1, err2); err != nil || gotFirst != first || gotLast != last {
		t.Fatalf("stock raft-wal: bounds %d-%d (%v), want %d-%d", gotFirst, gotLast, err, first, last)
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil || l.Index != i {
			t.Fatalf("stock raft-wal: entry %d: %v", i, err)
		}
	}
}

// TestStockRaftWALReopensAfterATailTruncation pins a fault fixed upstream:
// raft-wal v0.4.0 sealed a truncated tail without its index block and could
// not read the log after a restart (hashicorp/raft-wal#31); v0.4.1 seals it
// with its index (#33). dse's repair of such segments stays for the data
// dirs v0.4.0 wrote (TestWALOpensADataDirV040Wrote).
func TestStockRaftWALReopensAfterATailTruncation(t *testing.T) {
	dir := t.TempDir()
	open := func() *wal.WAL {
		w, err := wal.Open(dir, wal.WithMetaStore(&metadb.BoltMetaDB{}))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := open()
	storeTerms(t, w, 1, 10, 1)
	if err := w.DeleteRange(6, 10); err != nil {
		t.Fatal(err)
	}
	storeTerms(t, w, 6, 6, 2)
	w.Close()
	w = open()
	defer w.Close()
	for i := uint64(1); i <= 6; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			t.Fatalf("stock raft-wal: entry %d after a tail truncation and a restart: %v (the upstream fix regressed)", i, err)
		}
	}
}

// storeTerms stores entries first..last with the given term, one per call.
func storeTerms(t *testing.T, s raft.LogStore, first, last, term uint64) {
	t.Helper()
	for i := first; i <= last; i++ {
		if err := s.StoreLogs([]*raft.Log{{Index: i, Term: term, Data: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLogStoresAgreeWithAModel drives each log store through the calls Raft
// makes (batched appends, tail truncations after leader changes, head
// truncations after snapshots, the whole log dropped for an installed
// snapshot) and restarts, with segments small enough that raft-wal seals and
// rotates one every few appends, and checks every entry against a model after
// each step.
func TestLogStoresAgreeWithAModel(t *testing.T) {
	for _, kind := range []string{BoltDB, WAL} {
		t.Run(kind, func(t *testing.T) {
			for seed := int64(1); seed <= 4; seed++ {
				checkLogStoreModel(t, kind, seed)
			}
		})
	}
}

func checkLogStoreModel(t *testing.T, kind string, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	open := func() Store {
		if kind == WAL {
			s, err := openWAL(filepath.Join(dir, walDir), 8<<10, nil)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			return s
		}
		s, _, err := Open(dir, kind, nil)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		return s
	}
	s := open()
	defer func() { s.Close() }()
	model := map[uint64][]byte{}
	var first, last, term uint64 = 0, 0, 1
	entry := func() []byte {
		b := make([]byte, 40+rng.Intn(600))
		rng.Read(b)
		return b
	}
	for step := 0; step < 400; step++ {
		op := rng.Intn(100)
		switch {
		case op < 60 || last == 0: // an append of 1 to 40 entries
			n := 1 + uint64(rng.Intn(40))
			var logs []*raft.Log
			for i := last + 1; i <= last+n; i++ {
				d := entry()
				model[i] = d
				logs = append(logs, &raft.Log{Index: i, Term: term, Data: d})
			}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatalf("seed %d step %d: append %d-%d: %v", seed, step, last+1, last+n, err)
			}
			if first == 0 {
				first = last + 1
			}
			last += n
		case op < 75 && len(model) > 1: // a tail truncation: a new leader's log differs
			min := first + 1 + uint64(rng.Int63n(int64(last-first)))
			if err := s.DeleteRange(min, last); err != nil {
				t.Fatalf("seed %d step %d: tail truncation %d-%d: %v", seed, step, min, last, err)
			}
			for i := min; i <= last; i++ {
				delete(model, i)
			}
			last, term = min-1, term+1
		case op < 85 && len(model) > 1: // a head truncation after a snapshot
			max := first + uint64(rng.Int63n(int64(last-first)))
			if err := s.DeleteRange(first, max); err != nil {
				t.Fatalf("seed %d step %d: head truncation %d-%d: %v", seed, step, first, max, err)
			}
			for i := first; i <= max; i++ {
				delete(model, i)
			}
			first = max + 1
		case op < 88 && len(model) > 0: // an installed snapshot drops the whole log; it goes on further up
			if err := s.DeleteRange(first, last); err != nil {
				t.Fatalf("seed %d step %d: drop %d-%d: %v", seed, step, first, last, err)
			}
			clear(model)
			first, last = 0, last+uint64(rng.Intn(100))
		default:
			if err := s.Close(); err != nil {
				t.Fatalf("seed %d step %d: close: %v", seed, step, err)
			}
			s = open()
		}
		checkLogStore(t, s, model, first, last, fmt.Sprintf("seed %d step %d", seed, step))
	}
	if kind == WAL && len(model) > 0 {
		// Reopened by dse, then by stock raft-wal: what dse repaired is an
		// ordinary log.
		s.Close()
		s = open()
		s.Close()
		stockReads(t, filepath.Join(dir, walDir), first, last)
		s = open()
	}
}

// checkLogStore compares s with the model: its bounds, and every entry.
func checkLogStore(t *testing.T, s Store, model map[uint64][]byte, first, last uint64, at string) {
	t.Helper()
	gotFirst, err1 := s.FirstIndex()
	gotLast, err2 := s.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("%s: %v", at, err)
	}
	if len(model) == 0 {
		if gotFirst != 0 || gotLast != 0 {
			t.Fatalf("%s: empty log has bounds %d-%d", at, gotFirst, gotLast)
		}
		return
	}
	if gotFirst != first || gotLast != last {
		t.Fatalf("%s: bounds %d-%d, want %d-%d", at, gotFirst, gotLast, first, last)
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("%s: entry %d: %v", at, i, err)
		}
		if l.Index != i || !bytes.Equal(l.Data, model[i]) {
			t.Fatalf("%s: entry %d reads as index %d with other data", at, i, l.Index)
		}
	}
	// Past the end, nothing. (Below the start, raft-wal may still read an
	// entry a head truncation dropped from its open segment: Raft checks its
	// snapshot before reading that low, and the entry was committed.)
	var l raft.Log
	if err := s.GetLog(last+1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("%s: entry %d after the last: %v", at, last+1, err)
	}
}

// TestWALCompletesARotationACrashInterrupted: a crash between the append
// that seals a segment and the rotation that follows leaves a tail sealed on
// disk and open in the meta store. Stock raft-wal v0.4.0 then fails every
// append ("segment is sealed"); openWAL completes the rotation.
func TestWALCompletesARotationACrashInterrupted(t *testing.T) {
	dir := t.TempDir()
	s, err := openWAL(dir, 8<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	filer := segment.NewFiler(dir, walfs.New())
	data := bytes.Repeat([]byte("r"), 500)
	var last uint64
	for {
		last++
		if err := s.StoreLogs([]*raft.Log{{Index: last, Term: 1, Data: data}}); err != nil {
			t.Fatal(err)
		}
		if rotated(t, filer, 2, 50*time.Millisecond) {
			break // the append sealed the first segment, and the rotation is done
		}
	}
	s.Close()

	undoLastRotation(t, dir)

	// Stock raft-wal cannot append. If it can, the raft-wal in go.mod has a
	// fix and completeRotation can go.
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	err = w.StoreLogs([]*raft.Log{{Index: last + 1, Term: 1, Data: data}})
	w.Close()
	meta.Close()
	if err == nil || !strings.Contains(err.Error(), "sealed") {
		t.Fatalf("stock raft-wal appended to a segment sealed on disk: %v", err)
	}

	model := map[uint64][]byte{}
	for i := uint64(1); i <= last; i++ {
		model[i] = data
	}
	last = appendAcrossRestarts(t, dir, model, last, 20, 300)
	stockReads(t, dir, 1, last)
}

// TestWALTruncatesRightAfterASeal: Raft may truncate the tail the moment an
// append that sealed a segment returns. raft-wal rotates on a goroutine of
// its own, and v0.4.0 truncated before the rotation, leaving the log with a
// segment starting at index 1 again; v0.4.2's DeleteRange waits for the
// rotation. Run on dse's store and on stock raft-wal, so that a regression
// upstream shows.
func TestWALTruncatesRightAfterASeal(t *testing.T) {
	ours, err := openWAL(t.TempDir(), 8<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	truncateRightAfterSeals(t, ours)
}

func TestStockRaftWALTruncatesRightAfterASeal(t *testing.T) {
	w, err := wal.Open(t.TempDir(), wal.WithMetaStore(&metadb.BoltMetaDB{}), wal.WithSegmentSize(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	truncateRightAfterSeals(t, w)
}

func truncateRightAfterSeals(t *testing.T, s Store) {
	model := map[uint64][]byte{}
	var last uint64
	for i := 0; i < 200; i++ {
		// Append one entry of 5 KB, then one more, which fills the 8 KiB
		// segment and seals it; drop that one at once (a new leader never had
		// it). The truncation starts a new segment, and so on.
		for _, keep := range []bool{true, false} {
			d := bytes.Repeat([]byte{byte(i)}, 5000+i)
			if err := s.StoreLogs([]*raft.Log{{Index: last + 1, Term: uint64(i + 1), Data: d}}); err != nil {
				t.Fatalf("append %d: %v", last+1, err)
			}
			if keep {
				last++
				model[last] = d
			} else if err := s.DeleteRange(last+1, last+1); err != nil {
				t.Fatalf("truncate %d: %v", last+1, err)
			}
		}
		checkLogStore(t, s, model, 1, last, fmt.Sprintf("after %d", last))
	}
}

// TestWALCompletesARotationWhoseOnlyCommitIsTorn: the batch that sealed a
// segment was its first, and a crash tore it (it was never acknowledged).
// The segment holds no entry, yet reads as sealed; openWAL replaces it.
func TestWALCompletesARotationWhoseOnlyCommitIsTorn(t *testing.T) {
	dir := t.TempDir()
	s, err := openWAL(dir, 8<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: bytes.Repeat([]byte("t"), 12<<10)}}); err != nil {
		t.Fatal(err)
	}
	if !rotated(t, segment.NewFiler(dir, walfs.New()), 2, 5*time.Second) {
		t.Fatal("the append that sealed the segment was not followed by a rotation")
	}
	s.Close()
	sealed := undoLastRotation(t, dir)
	f, err := os.OpenFile(filepath.Join(dir, segment.FileName(sealed)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte("T"), 6000) // inside the entry: the commit's CRC fails
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	last := appendAcrossRestarts(t, dir, map[uint64][]byte{}, 0, 10, 700)
	stockReads(t, dir, 1, last)
}

// appendAcrossRestarts opens the log in dir with openWAL twice, each time
// appending n entries of size bytes after last, as model records, and
// checking the whole log against model (an empty model is checked as it is
// first opened, too). It returns the new last index.
func appendAcrossRestarts(t *testing.T, dir string, model map[uint64][]byte, last uint64, n, size int) uint64 {
	t.Helper()
	for restart := 0; restart < 2; restart++ {
		s, err := openWAL(dir, 8<<10, nil)
		if err != nil {
			t.Fatalf("restart %d: %v", restart, err)
		}
		if restart == 0 && len(model) == 0 {
			checkLogStore(t, s, model, 0, 0, "as first opened")
		}
		for range n {
			last++
			model[last] = bytes.Repeat([]byte{byte(last)}, size)
			if err := s.StoreLogs([]*raft.Log{{Index: last, Term: 2, Data: model[last]}}); err != nil {
				t.Fatalf("restart %d: append %d: %v", restart, last, err)
			}
		}
		checkLogStore(t, s, model, 1, last, fmt.Sprintf("restart %d", restart))
		s.Close()
	}
	return last
}

// rotated reports whether the WAL's segment files number want within d: the
// rotation that follows the append that sealed a segment runs on a
// goroutine of raft-wal's own, and creates the next segment's file last.
func rotated(t *testing.T, filer types.SegmentFiler, want int, d time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		segs, err := filer.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(segs) >= want {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// undoLastRotation puts the meta store in dir back as it was before the last
// segment rotation, as a crash before the rotation would have left it, and
// returns the segment that rotation sealed.
func undoLastRotation(t *testing.T, dir string) types.SegmentInfo {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	ps, err := meta.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := len(ps.Segments)
	if n < 2 || ps.Segments[n-2].SealTime.IsZero() {
		t.Fatalf("no rotation to undo: %+v", ps.Segments)
	}
	next := ps.Segments[n-1]
	ps.Segments = ps.Segments[:n-1]
	tail := &ps.Segments[n-2]
	tail.SealTime, tail.MaxIndex, tail.IndexStart = time.Time{}, 0, 0
	ps.NextSegmentID--
	filer := segment.NewFiler(dir, walfs.New())
	if err := errors.Join(meta.CommitState(ps), filer.Delete(next.BaseIndex, next.ID), meta.Close()); err != nil {
		t.Fatal(err)
	}
	return *tail
}

// legacyDir is a raft-wal dir written by dse with raft-wal v0.4.0, its
// repairs included (testdata/README.md says how): entries 1-5 of term 1,
// 6-28 of term 2 and 29-31 of term 3, in a segment the repair rewrote (1-5),
// two sealed with their index (6-16, 17-27), one a tail truncation sealed
// without an index (28), and the open tail (29-31).
const legacyDir = "testdata/wal-v0.4.0"

func legacyTerm(i uint64) uint64 {
	switch {
	case i <= 5:
		return 1
	case i <= 28:
		return 2
	}
	return 3
}

// copyLegacy copies legacyDir into a new temp dir.
func copyLegacy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(legacyDir)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWALOpensADataDirV040Wrote: the log of a node upgraded from raft-wal
// v0.4.0 opens and reads whole, entries appended after it too; stock
// raft-wal v0.4.2 cannot read its segment sealed without an index, which
// indexSegments rewrites.
func TestWALOpensADataDirV040Wrote(t *testing.T) {
	dir := copyLegacy(t)
	w, err := wal.Open(dir, wal.WithMetaStore(&metadb.BoltMetaDB{}), wal.WithSegmentSize(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	err = w.GetLog(28, &l)
	w.Close()
	if err == nil || !strings.Contains(err.Error(), "no index block") {
		t.Fatalf("stock raft-wal read entry 28 of a segment sealed without an index: %v; indexSegments would be unneeded", err)
	}

	dir = copyLegacy(t)
	s, err := openWAL(dir, 8<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 31; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Term != legacyTerm(i) || len(l.Data) != 700 || l.Data[0] != byte(i) {
			t.Fatalf("entry %d: term %d, %d bytes, %v", i, l.Term, len(l.Data), err)
		}
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 32, Term: 4, Data: []byte("after the upgrade")}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	stockReads(t, dir, 1, 32)
}

// TestWALIndexesASegmentAgainAfterACrash: a crash while dse rewrote a
// segment sealed without an index, after the new file was written and
// before the meta store named it, leaves that file behind; the next start
// rewrites the segment again in its place.
func TestWALIndexesASegmentAgainAfterACrash(t *testing.T) {
	dir := copyLegacy(t)
	meta := &metadb.BoltMetaDB{}
	ps, err := meta.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	meta.Close()
	var unindexed *types.SegmentInfo
	for i := range ps.Segments {
		if si := &ps.Segments[i]; !si.SealTime.IsZero() && si.IndexStart == 0 {
			unindexed = si
		}
	}
	if unindexed == nil {
		t.Fatalf("%s has no segment sealed without an index: %+v", legacyDir, ps.Segments)
	}
	filer := segment.NewFiler(dir, walfs.New())
	if _, err := indexSegment(filer, *unindexed, ps.NextSegmentID); err != nil { // then the crash
		t.Fatal(err)
	}
	s, err := openWAL(dir, 8<<10, nil)
	if err != nil {
		t.Fatalf("open after a crash in the rewrite: %v", err)
	}
	for i := uint64(1); i <= 31; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Term != legacyTerm(i) {
			t.Fatalf("entry %d: term %d, %v", i, l.Term, err)
		}
	}
	s.Close()
	stockReads(t, dir, 1, 31)
}
