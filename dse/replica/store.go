package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"dse.dev/dse/dse/table"
)

// The store keeps a node's replicas on disk, in one bbolt file: for each
// replicated service a marker, for each table its last snapshot (with its
// seqnum) and the deltas that followed it, in seqnum order. A replica's
// table is its snapshot with the deltas applied; a snapshot written for a
// table drops the deltas before it (compaction).

var (
	bucketServices  = []byte("services")
	bucketSnapshots = []byte("snapshots")
	bucketDeltas    = []byte("deltas")
)

// FileName is the store's file in a node's data dir.
const FileName = "replicas.db"

// legacyFile is the store of external services before replication
// (one node's copy of each, a snapshot per table, no seqnum): imported at
// open, then renamed legacyFile+".imported".
const legacyFile = "services.db"

type store struct {
	db *bolt.DB
}

// openStore opens (or creates) the store in dir, importing a pre-replication
// store it finds there.
func openStore(dir string) (*store, error) {
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("dse: open replica store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketServices, bucketSnapshots, bucketDeltas} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("dse: init replica store: %w", err)
	}
	s := &store{db: db}
	if err := s.importLegacy(dir); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *store) close() error { return s.db.Close() }

func tableKey(svc, tbl string) []byte { return []byte(svc + "\x00" + tbl) }

func deltaKey(svc, tbl string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(tableKey(svc, tbl+"\x00"), seq)
}

// op is one change written in a commit.
type op struct {
	kind    opKind
	svc     string
	tbl     string
	seq     uint64
	encoded []byte // the publication, for putSnapshot and putDelta
}

type opKind uint8

const (
	opAddService opKind = iota + 1
	opDeleteService
	opSnapshot // a table's snapshot; its deltas go
	opDelta
)

// commit writes ops in order, in one transaction (fsynced when it returns).
func (s *store) commit(ops []op) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		svcs, snaps, deltas := tx.Bucket(bucketServices), tx.Bucket(bucketSnapshots), tx.Bucket(bucketDeltas)
		for _, o := range ops {
			var err error
			switch o.kind {
			case opAddService:
				err = svcs.Put([]byte(o.svc), []byte{1})
			case opDeleteService:
				err = errors.Join(svcs.Delete([]byte(o.svc)), deletePrefix(snaps, []byte(o.svc+"\x00")), deletePrefix(deltas, []byte(o.svc+"\x00")))
			case opSnapshot:
				err = errors.Join(snaps.Put(tableKey(o.svc, o.tbl), o.encoded), deletePrefix(deltas, tableKey(o.svc, o.tbl+"\x00")))
			case opDelta:
				err = deltas.Put(deltaKey(o.svc, o.tbl, o.seq), o.encoded)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// loadedTable is one table as the store holds it.
type loadedTable struct {
	seq    uint64
	set    *table.Set
	deltas int // deltas since the snapshot
	bytes  int // their encoded bytes
}

// load returns every service the store holds, with its tables.
func (s *store) load() (map[string]map[string]*loadedTable, error) {
	out := map[string]map[string]*loadedTable{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketServices).ForEach(func(k, _ []byte) error {
			out[string(k)] = map[string]*loadedTable{}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
			p, err := decodeOne(v)
			if err != nil {
				return fmt.Errorf("stored snapshot %q: %w", k, err)
			}
			if tables, ok := out[p.Publisher]; ok {
				tables[p.Table] = &loadedTable{seq: p.Seqnum, set: table.NewSet(p.Rows)}
			}
			return nil
		}); err != nil {
			return err
		}
		// Deltas in key order: by service, table, then seqnum.
		return tx.Bucket(bucketDeltas).ForEach(func(k, v []byte) error {
			p, err := decodeOne(v)
			if err != nil {
				return fmt.Errorf("stored delta %q: %w", k, err)
			}
			tables, ok := out[p.Publisher]
			if !ok {
				return nil
			}
			t := tables[p.Table]
			if t == nil {
				t = &loadedTable{set: table.NewSet(nil)}
				tables[p.Table] = t
			}
			if p.Seqnum <= t.seq {
				return nil // before the snapshot (a compaction cut short)
			}
			p.ApplyTo(t.set)
			t.seq = p.Seqnum
			t.deltas++
			t.bytes += len(v)
			return nil
		})
	})
	return out, err
}

func decodeOne(v []byte) (*table.Publication, error) {
	pubs, err := table.DecodeBatch(append(table.AppendBatch(nil, 1), v...))
	if err != nil {
		return nil, err
	}
	return pubs[0], nil
}

// importLegacy imports the pre-replication store of dir, if there is one:
// each service with its tables as snapshots at seqnum 0 (its owner
// republishes them under a new seqnum when it starts).
func (s *store) importLegacy(dir string) error {
	path := filepath.Join(dir, legacyFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	old, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("dse: open %s to import it: %w", path, err)
	}
	var ops []op
	err = old.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("services")); b != nil {
			b.ForEach(func(k, _ []byte) error {
				ops = append(ops, op{kind: opAddService, svc: string(k)})
				return nil
			})
		}
		if b := tx.Bucket([]byte("tables")); b != nil {
			return b.ForEach(func(k, v []byte) error {
				svc, tbl, ok := strings.Cut(string(k), "\x00")
				if !ok {
					return nil
				}
				ops = append(ops, op{kind: opSnapshot, svc: svc, tbl: tbl, encoded: bytes.Clone(v)})
				return nil
			})
		}
		return nil
	})
	old.Close()
	if err == nil {
		err = s.commit(ops)
	}
	if err == nil {
		err = os.Rename(path, path+".imported")
	}
	if err != nil {
		return fmt.Errorf("dse: import %s: %w", path, err)
	}
	return nil
}
