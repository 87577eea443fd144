package raftlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
)

// The log stores a node can keep its Raft log and stable state in.
const (
	// WAL is hashicorp/raft-wal: segment files with one fsync per append,
	// so commits take about half the time of boltdb's. The default, with
	// the repairs of wal.go.
	WAL = "wal"
	// BoltDB is hashicorp/raft-boltdb/v2: one bbolt file, whose commits
	// fsync twice (pages, then meta page).
	BoltDB = "boltdb"
)

const (
	boltFile = "raft.db"
	walDir   = "raft-wal"
)

// Store is a Raft log store that is also the stable store.
type Store interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// Existing reports which kind of Raft log dir holds, "" if none.
func Existing(dir string) (string, error) {
	var found []string
	if _, err := os.Stat(filepath.Join(dir, boltFile)); err == nil {
		found = append(found, BoltDB)
	}
	if _, err := os.Stat(filepath.Join(dir, walDir)); err == nil {
		found = append(found, WAL)
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("raftlog: %s holds both a %s and a %s Raft log; remove the one not in use", dir, boltFile, walDir)
}

// Open opens the Raft log kept in dir, logging to logger (nil: nowhere),
// and returns it with its kind. A dir keeps the kind it was created with:
// kind "" takes it (WAL for a new dir), and a kind that contradicts it is
// refused rather than starting from an empty log.
func Open(dir, kind string, logger hclog.Logger) (Store, string, error) {
	have, err := Existing(dir)
	if err != nil {
		return nil, "", err
	}
	switch {
	case have != "" && kind != "" && kind != have:
		return nil, "", fmt.Errorf("raftlog: %s holds a %s Raft log, not %s: start with the log store %q or use another data dir", dir, have, kind, have)
	case have != "":
		kind = have
	case kind == "":
		kind = WAL
	}
	switch kind {
	case WAL:
		w, err := openWAL(filepath.Join(dir, walDir), wal.DefaultSegmentSize, logger)
		if err != nil {
			return nil, "", err
		}
		return w, kind, nil
	case BoltDB:
		b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltFile)})
		if err != nil {
			return nil, "", fmt.Errorf("raftlog: open %s: %w", filepath.Join(dir, boltFile), err)
		}
		return b, kind, nil
	}
	return nil, "", errors.New("raftlog: unknown log store " + kind)
}
