package raftlog

import (
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// raft-wal v0.4.0, dse's log store until 2026-12, had three faults that
// lost a node's log; v0.4.2 fixes two of them, and the WAL is opened with
// the repairs the third, and data dirs v0.4.0 wrote, still need:
//
//  1. A tail truncation (a follower dropping entries a new leader does not
//     have) marked the open segment sealed in the meta store without the
//     index block sealed segments are read through ("sealed segment has no
//     index block", hashicorp/raft-wal#31). v0.4.1 seals the segment with
//     its index (#33), but a data dir v0.4.0 wrote may hold such a segment
//     (dse repaired them when it next opened the log, so the run before an
//     upgrade may have left one): before the WAL opens, indexSegments
//     rewrites it, with raft-wal's own segment writer, into a new segment
//     sealed with its index (testdata/wal-v0.4.0 holds such a dir).
//  2. The append that fills a segment writes its index block, and the
//     rotation (sealing it in the meta store, then a new segment) runs later
//     on a goroutine of the WAL's own. A crash, or Close, in between leaves a
//     tail that is sealed on disk and open in the meta store: after a
//     restart every append fails ("segment is sealed"). Still so in v0.4.2.
//     openWAL sees the recovered tail sealed, completes the rotation in the
//     meta store (completeRotation), which leaves that segment sealed
//     without an index, as in 1, and opens the WAL again.
//  3. A DeleteRange in that same window acted on the state before the
//     rotation, which then sealed the wrong segment and started the next one
//     at index 1. v0.4.2's DeleteRange waits for a queued rotation
//     (TestStockRaftWALTruncatesRightAfterASeal).
//
// Each repair has a test that fails without it (raftlog_test.go).

// openWAL opens (or creates) the raft-wal log in dir, with segment files of
// segmentSize bytes, logging to logger (nil: nowhere).
func openWAL(dir string, segmentSize int, logger hclog.Logger) (*wal.WAL, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	for attempt := 0; ; attempt++ {
		filer := &tailFiler{SegmentFiler: segment.NewFiler(dir, walfs.New())}
		if err := indexSegments(dir, filer.SegmentFiler); err != nil {
			return nil, fmt.Errorf("raftlog: open %s: %w", dir, err)
		}
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentFiler(filer), wal.WithSegmentSize(segmentSize), wal.WithLogger(logger.Named("wal")))
		if err != nil {
			// wal.Open leaves the meta store, and the segment files it
			// opened before failing, open; a node that cannot open its log
			// exits.
			meta.Close()
			return nil, fmt.Errorf("raftlog: open %s: %w", dir, err)
		}
		if !filer.sealedTail {
			return w, nil
		}
		if attempt > 0 {
			w.Close()
			return nil, fmt.Errorf("raftlog: open %s: its tail segment is still sealed after completing its rotation", dir)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("raftlog: open %s: %w", dir, err)
		}
		if err := completeRotation(dir, filer.SegmentFiler); err != nil {
			return nil, fmt.Errorf("raftlog: open %s: %w", dir, err)
		}
	}
}

// tailFiler is raft-wal's segment filer, noting a tail that RecoverTail
// found sealed on disk (fault 2).
type tailFiler struct {
	types.SegmentFiler
	sealedTail bool
}

func (f *tailFiler) RecoverTail(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.SegmentFiler.RecoverTail(info)
	if err != nil {
		return nil, err
	}
	if sealed, _, _ := w.Sealed(); sealed {
		f.sealedTail = true
	}
	return w, nil
}

// completeRotation commits to the meta store in dir what the rotation of
// its tail segment, sealed on disk, would have: the tail sealed, up to the
// last entry its commits hold, and a new tail segment after it, whose file
// the WAL creates when it finds it missing. The sealed segment gets no index
// start, so indexSegments rewrites it: its index block is not trusted, as
// the commit after it may be torn. If no commit of the segment
// survived (the sealing batch was its first, and torn), the tail is replaced
// by an empty one with a new id and the same base index; the WAL deletes the
// old file.
func completeRotation(dir string, filer types.SegmentFiler) error {
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	ps, err := meta.Load(dir)
	if err != nil {
		return err
	}
	if len(ps.Segments) == 0 {
		return nil
	}
	tail := &ps.Segments[len(ps.Segments)-1]
	if !tail.SealTime.IsZero() {
		return nil
	}
	w, err := filer.RecoverTail(*tail)
	if err != nil {
		return fmt.Errorf("raft log segment %d: %w", tail.ID, err)
	}
	sealed, _, _ := w.Sealed()
	last := w.LastIndex()
	if err := w.Close(); err != nil || !sealed {
		return err
	}
	now := time.Now()
	next := types.SegmentInfo{
		ID:         ps.NextSegmentID,
		BaseIndex:  last + 1,
		MinIndex:   last + 1,
		Codec:      tail.Codec,
		CreateTime: now,
		SizeLimit:  tail.SizeLimit,
	}
	if last < tail.BaseIndex {
		next.BaseIndex, next.MinIndex = tail.BaseIndex, tail.MinIndex
		ps.Segments = ps.Segments[:len(ps.Segments)-1]
	} else {
		tail.SealTime, tail.MaxIndex, tail.IndexStart = now, last, 0
	}
	ps.Segments = append(ps.Segments, next)
	ps.NextSegmentID++
	if err := meta.CommitState(ps); err != nil {
		return fmt.Errorf("completing raft log segment %d's rotation: %w", tail.ID, err)
	}
	return nil
}

// indexSegments rewrites each segment the meta store in dir has sealed
// without an index (faults 1 and 2 above) into a new segment file holding
// the same entries, MinIndex to MaxIndex, written by raft-wal's own segment
// writer in one append that seals it (a size limit of 1 byte), with its
// index. The old segment is read the way the WAL reads its open tail:
// RecoverTail scans its frames and checks the last commit's CRC. The new
// file is synced before the meta store, in one commit, names it in the old
// one's place; the WAL deletes the old file, which nothing names any more,
// when it opens. A crash before that commit leaves an unnamed new file and
// the work to do again; the next try deletes that file first. A segment's
// entries are held in memory while it is rewritten (with the writer's
// buffer, up to about four times the segment's 64 MiB, once, at start).
func indexSegments(dir string, filer types.SegmentFiler) error {
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	ps, err := meta.Load(dir)
	if err != nil {
		return err
	}
	changed := false
	for i := range ps.Segments {
		old := ps.Segments[i]
		if old.SealTime.IsZero() || old.IndexStart != 0 {
			continue
		}
		indexed, err := indexSegment(filer, old, ps.NextSegmentID)
		if err != nil {
			return fmt.Errorf("raft log segment %d (entries %d-%d, sealed without an index): %w", old.ID, old.MinIndex, old.MaxIndex, err)
		}
		ps.Segments[i] = indexed
		ps.NextSegmentID++
		changed = true
	}
	if !changed {
		return nil
	}
	return meta.CommitState(ps)
}

// indexSegment writes old's entries into a new segment, id, sealed with its
// index, and returns the new segment's meta data.
func indexSegment(filer types.SegmentFiler, old types.SegmentInfo, id uint64) (types.SegmentInfo, error) {
	if old.MaxIndex < old.MinIndex || old.MinIndex < old.BaseIndex {
		return types.SegmentInfo{}, fmt.Errorf("%w: bad bounds", types.ErrCorrupt)
	}
	open := old
	open.SealTime, open.MaxIndex = time.Time{}, 0
	r, err := filer.RecoverTail(open)
	if err != nil {
		return types.SegmentInfo{}, err
	}
	defer r.Close()
	if last := r.LastIndex(); last < old.MaxIndex {
		return types.SegmentInfo{}, fmt.Errorf("%w: it holds entries up to %d", types.ErrCorrupt, last)
	}
	entries := make([]types.LogEntry, 0, old.MaxIndex-old.MinIndex+1)
	for idx := old.MinIndex; idx <= old.MaxIndex; idx++ {
		buf, err := r.GetLog(idx)
		if err != nil {
			return types.SegmentInfo{}, fmt.Errorf("entry %d: %w", idx, err)
		}
		entries = append(entries, types.LogEntry{Index: idx, Data: append([]byte(nil), buf.Bs...)})
		buf.Close()
	}
	// A file with this id is what a crash before the meta store's commit
	// left of an earlier try: nothing names it (ids from NextSegmentID up
	// are unused), and the file to create has its name.
	if segs, err := filer.List(); err != nil {
		return types.SegmentInfo{}, err
	} else if base, ok := segs[id]; ok {
		if err := filer.Delete(base, id); err != nil {
			return types.SegmentInfo{}, err
		}
	}
	now := time.Now()
	info := types.SegmentInfo{
		ID:         id,
		BaseIndex:  old.MinIndex,
		MinIndex:   old.MinIndex,
		Codec:      old.Codec,
		CreateTime: now,
		SizeLimit:  1, // the one append seals it
	}
	w, err := filer.Create(info)
	if err != nil {
		return types.SegmentInfo{}, err
	}
	defer w.Close()
	if err := w.Append(entries); err != nil {
		return types.SegmentInfo{}, err
	}
	sealed, indexStart, err := w.Sealed()
	if err != nil {
		return types.SegmentInfo{}, err
	}
	if !sealed || indexStart == 0 {
		return types.SegmentInfo{}, fmt.Errorf("the new segment %d was not sealed", id)
	}
	info.MaxIndex, info.IndexStart, info.SealTime = old.MaxIndex, indexStart, now
	return info, nil
}
