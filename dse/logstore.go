package dse

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

// Raft log stores a node can keep its log and stable state in.
const (
	// LogStoreWAL is hashicorp/raft-wal v0.4.0: segment files with one
	// fsync per append, so commits take about half the time of boltdb's.
	// The default, with its three faults worked around (walstore.go).
	LogStoreWAL = "wal"
	// LogStoreBoltDB is hashicorp/raft-boltdb/v2: one bbolt file, whose
	// commits fsync twice (pages, then meta page).
	LogStoreBoltDB = "boltdb"
)

const (
	boltFile = "raft.db"
	walDir   = "raft-wal"
)

// logStore is a Raft log store that is also the stable store.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// existingLogStore reports which kind of Raft log dir holds, "" if none.
func existingLogStore(dir string) (string, error) {
	var found []string
	if _, err := os.Stat(filepath.Join(dir, boltFile)); err == nil {
		found = append(found, LogStoreBoltDB)
	}
	if _, err := os.Stat(filepath.Join(dir, walDir)); err == nil {
		found = append(found, LogStoreWAL)
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("dse: %s holds both a %s and a %s Raft log; remove the one not in use", dir, boltFile, walDir)
}

// openLogStore opens the node's Raft log, logging to logger (nil: nowhere).
// A data dir keeps the kind it was created with: kind "" takes it (wal for
// a new dir), and a kind that contradicts it is refused rather than
// starting from an empty log.
func openLogStore(dir, kind string, logger hclog.Logger) (logStore, string, error) {
	have, err := existingLogStore(dir)
	if err != nil {
		return nil, "", err
	}
	switch {
	case have != "" && kind != "" && kind != have:
		return nil, "", fmt.Errorf("dse: %s holds a %s Raft log, not %s: start with the log store %q or use another data dir", dir, have, kind, have)
	case have != "":
		kind = have
	case kind == "":
		kind = LogStoreWAL
	}
	switch kind {
	case LogStoreWAL:
		w, err := openWAL(filepath.Join(dir, walDir), wal.DefaultSegmentSize, logger)
		if err != nil {
			return nil, "", err
		}
		return w, kind, nil
	case LogStoreBoltDB:
		b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltFile)})
		if err != nil {
			return nil, "", fmt.Errorf("dse: open raft log: %w", err)
		}
		return b, kind, nil
	}
	return nil, "", errors.New("dse: unknown log store " + kind)
}
