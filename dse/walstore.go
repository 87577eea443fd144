package dse

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// raft-wal v0.4.0, the only release the module proxy serves, has three
// faults that lose a node's log. walStore works around each, from outside,
// through the options raft-wal takes (its segment filer and meta store):
//
//  1. A tail truncation (a follower dropping entries a new leader does not
//     have) marks the open segment sealed in the meta store without the
//     segment writer writing the index block sealed segments are read
//     through, so the next start cannot read the log ("sealed segment has no
//     index block", hashicorp/raft-wal#31; fixed by #33, unreleased).
//     Before the WAL opens, indexSegments rewrites such a segment, with
//     raft-wal's own segment writer, into a new segment sealed with its
//     index.
//  2. The append that fills a segment writes its index block, and the
//     rotation (sealing it in the meta store, then a new segment) runs later
//     on a goroutine of the WAL's own. A crash, or Close, in between leaves a
//     tail that is sealed on disk and open in the meta store: after a
//     restart every append fails ("segment is sealed"). openWAL sees the
//     recovered tail sealed, completes the rotation in the meta store
//     (completeRotation), which leaves that segment sealed without an
//     index, as in 1, and opens the WAL again.
//  3. A DeleteRange in that same window acts on the state before the
//     rotation, and the rotation then seals the wrong segment and starts the
//     next one at index 1. walStore serializes appends and deletes and
//     waits for the rotation an append started before it returns.
//
// Each has a test that fails without its workaround (logstore_test.go).

// openWAL opens (or creates) the raft-wal log in dir, with segment files of
// segmentSize bytes, logging to logger (nil: nowhere).
func openWAL(dir string, segmentSize int, logger hclog.Logger) (logStore, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dse: raft log: %w", err)
	}
	for attempt := 0; ; attempt++ {
		rot := &walRotation{}
		filer := &walFiler{SegmentFiler: segment.NewFiler(dir, walfs.New()), rot: rot}
		if err := indexSegments(dir, filer.SegmentFiler); err != nil {
			return nil, fmt.Errorf("dse: open raft log %s: %w", dir, err)
		}
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentFiler(filer), wal.WithSegmentSize(segmentSize), wal.WithLogger(logger.Named("wal")))
		if err != nil {
			// wal.Open leaves the segment files it opened before failing
			// open; a node that cannot open its log exits.
			meta.Close()
			return nil, fmt.Errorf("dse: open raft log %s: %w", dir, err)
		}
		s := &walStore{WAL: w, meta: meta, rot: rot}
		if !filer.sealedTail {
			return s, nil
		}
		if attempt > 0 {
			s.Close()
			return nil, fmt.Errorf("dse: open raft log %s: its tail segment is still sealed after completing its rotation", dir)
		}
		if err := errors.Join(s.Close(), completeRotation(dir, filer.SegmentFiler)); err != nil {
			return nil, fmt.Errorf("dse: open raft log %s: %w", dir, err)
		}
	}
}

// walStore is the raft-wal log with appends and deletes serialized, each
// append returning only once a rotation it started is done, and Close
// closing the meta database too, which WAL.Close leaves open (its file lock
// would make a reopen in the same process wait).
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	rot  *walRotation
	mu   sync.Mutex // held across StoreLogs and DeleteRange
}

func (s *walStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *walStore) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.WAL.StoreLogs(logs); err != nil {
		return err
	}
	s.rot.wait()
	return nil
}

func (s *walStore) DeleteRange(min, max uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.WAL.DeleteRange(min, max)
}

func (s *walStore) Close() error {
	err := s.WAL.Close()
	s.rot.created() // a rotation the close cut short will not come
	return errors.Join(err, s.meta.Close())
}

// walRotation tracks a segment an append has sealed until the WAL has
// created the next one, the last step of its rotation.
type walRotation struct {
	mu      sync.Mutex
	pending chan struct{} // closed when the rotation is done; nil if none
}

func (r *walRotation) sealed() {
	r.mu.Lock()
	if r.pending == nil {
		r.pending = make(chan struct{})
	}
	r.mu.Unlock()
}

func (r *walRotation) created() {
	r.mu.Lock()
	if r.pending != nil {
		close(r.pending)
		r.pending = nil
	}
	r.mu.Unlock()
}

// wait returns once no rotation is pending. A rotation is one meta store
// commit and a file creation; one that has not finished in rotationWait has
// failed (the WAL logs why, and the next append reports the sealed
// segment), and is no longer waited for.
func (r *walRotation) wait() {
	r.mu.Lock()
	ch := r.pending
	r.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(rotationWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		r.mu.Lock()
		if r.pending == ch {
			r.pending = nil
		}
		r.mu.Unlock()
	}
}

var rotationWait = 10 * time.Second // a var for tests

// walFiler is raft-wal's segment filer, with the sealing of segments
// reported to rot (fault 3 above), and a tail recovered sealed noted (fault
// 2).
type walFiler struct {
	types.SegmentFiler
	rot        *walRotation
	sealedTail bool // RecoverTail found the tail sealed on disk
}

func (f *walFiler) Create(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.SegmentFiler.Create(info)
	f.rot.created()
	if err != nil {
		return nil, err
	}
	return sealWatch{SegmentWriter: w, rot: f.rot}, nil
}

func (f *walFiler) RecoverTail(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.SegmentFiler.RecoverTail(info)
	if err != nil {
		return nil, err
	}
	if sealed, _, _ := w.Sealed(); sealed {
		f.sealedTail = true
	}
	return sealWatch{SegmentWriter: w, rot: f.rot}, nil
}

// sealWatch reports to rot when the append it made sealed its segment.
type sealWatch struct {
	types.SegmentWriter
	rot *walRotation
}

func (w sealWatch) Sealed() (bool, uint64, error) {
	sealed, indexStart, err := w.SegmentWriter.Sealed()
	if sealed {
		w.rot.sealed()
	}
	return sealed, indexStart, err
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
