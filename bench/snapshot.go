package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/table"
)

// SnapshotConfig sets up `dse bench snapshot`.
type SnapshotConfig struct {
	Dir      string
	LogStore string // dse.LogStoreWAL (default) or dse.LogStoreBoltDB
	Rows     int
	Columns  int
	// Rounds is how many new subscribers take the snapshot in turn on the
	// same node (0 means 1); Seconds is the first one's.
	Rounds int
	// Spawn, when set, runs each node in a process of its own (see
	// RunSnapshotNode); without it both nodes run in this process.
	Spawn Spawn
	// NoBaseline skips the bare msgpack encode and decode of the rows
	// (baseline_seconds, codec_seconds), which takes longer than the
	// snapshot (the curve over rows does without it).
	NoBaseline bool
	// Progress, when set, is told each stage of the run as it starts.
	Progress func(stage string)
}

// Validate checks the configuration, and fills in the default rounds; its
// errors wrap ErrConfig.
func (c *SnapshotConfig) Validate() error {
	switch {
	case c.Rows < 1:
		return configErr("--rows %d: want at least 1", c.Rows)
	case c.Columns < 1:
		return configErr("--columns %d: want at least 1", c.Columns)
	case c.Rounds < 0:
		return configErr("--rounds %d: want at least 1", c.Rounds)
	}
	c.Rounds = max(c.Rounds, 1)
	return checkDir(c.Dir)
}

func (c *SnapshotConfig) stage(format string, a ...any) {
	if c.Progress != nil {
		c.Progress(fmt.Sprintf(format, a...))
	}
}

// SnapshotResult is what `dse bench snapshot --json` prints.
type SnapshotResult struct {
	Mode     string `json:"mode"`
	LogStore string `json:"log_store"`
	Rows     int    `json:"rows"`
	Columns  int    `json:"columns"`
	Bytes    int    `json:"bytes"`
	// Seconds is the first snapshot the subscriber node takes.
	Seconds float64 `json:"seconds"`
	// Rounds, with --rounds over 1: the seconds of each round, the first
	// included. A later round's snapshot comes again from the publisher,
	// into memory the subscriber node's heap already holds.
	Rounds          []float64 `json:"round_seconds,omitempty"`
	MBPerSec        float64   `json:"mb_per_sec"`
	BaselineSeconds float64   `json:"baseline_seconds"`
	// CodecSeconds is dse's publication codec alone on the same rows.
	CodecSeconds float64 `json:"codec_seconds"`
	// RSSMB is the peak resident set of the nodes: the larger of
	// NodeRSSMB's with a process per node, the one process's otherwise.
	RSSMB     float64            `json:"rss_mb"`
	NodeRSSMB map[string]float64 `json:"node_rss_mb,omitempty"`
	// CacheBytesPerRow is the Go heap in use that the subscriber's cache
	// of the table took, per row (HeapInuse after a GC, once the snapshot
	// is in, less before the subscribe, in the subscriber node's process);
	// CacheLiveBytesPerRow the same in live bytes (HeapAlloc).
	CacheBytesPerRow     float64 `json:"cache_bytes_per_row"`
	CacheLiveBytesPerRow float64 `json:"cache_live_bytes_per_row"`
}

func (r *SnapshotResult) setCache(m *cacheMem) {
	if m != nil && r.Rows > 0 {
		r.CacheBytesPerRow = float64(m.InuseBytes) / float64(r.Rows)
		r.CacheLiveBytesPerRow = float64(m.LiveBytes) / float64(r.Rows)
	}
}

// The big table's publisher and name.
const (
	bigPublisher = "bench-big"
	bigTable     = "big"
)

func makeRows(n, cols int) []dse.Row {
	rows := make([]dse.Row, n)
	for i := range rows {
		r := make(dse.Row, cols)
		for c := range r {
			switch c % 3 {
			case 0:
				r[c] = int64(i)
			case 1:
				r[c] = "row-" + strconv.Itoa(i)
			default:
				r[c] = float64(i) / 7
			}
		}
		rows[i] = r
	}
	return rows
}

// peakRSSMB reads this process's peak resident set.
func peakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return float64(kb) / 1024
		}
	}
	return 0
}

// Snapshot measures a new subscriber on another node taking a snapshot of a
// big table, against a bare msgpack encode and decode of the same rows.
func Snapshot(ctx context.Context, cfg SnapshotConfig) (_ *SnapshotResult, err error) {
	defer func() { err = orInterrupted(ctx, err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	res := &SnapshotResult{Mode: "in-process", Rows: cfg.Rows, Columns: cfg.Columns}
	if cfg.Spawn != nil {
		res.Mode = "multi-process"
		err = snapshotProcesses(ctx, cfg, res)
	} else {
		err = snapshotInProcess(ctx, cfg, res)
	}
	if err != nil {
		return nil, err
	}
	if cfg.NoBaseline {
		enc, err := (&table.Publication{Publisher: "p", Table: "t", Seqnum: 1, Snapshot: true, Rows: makeRows(cfg.Rows, cfg.Columns)}).Encode()
		if err != nil {
			return nil, err
		}
		res.Bytes = len(enc)
	} else {
		cfg.stage("bare msgpack encode and decode of the same rows (the baseline)")
		if err := snapshotFloors(res, makeRows(cfg.Rows, cfg.Columns)); err != nil {
			return nil, err
		}
	}
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	res.MBPerSec = float64(res.Bytes) / 1e6 / res.Seconds
	return res, nil
}

func snapshotInProcess(ctx context.Context, cfg SnapshotConfig, res *SnapshotResult) error {
	c, err := StartCluster(ctx, cfg.Dir, 2, cfg.LogStore, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	res.LogStore = c.Nodes[0].LogStore()
	cfg.stage("publishing %d rows on node 1", cfg.Rows)
	pub := dse.NewDataService(bigPublisher, dse.Hooks{})
	if err := c.Nodes[0].Register(ctx, pub); err != nil {
		return err
	}
	if _, _, err := pub.Publish(ctx, bigTable, makeRows(cfg.Rows, cfg.Columns), true); err != nil {
		return err
	}
	// Peak RSS of the process after the first round: both nodes, and the
	// generated rows (which the publisher's table holds), before the
	// floors add garbage of their own.
	cfg.stage("node 2 taking the snapshot (%d round(s))", cfg.Rounds)
	rounds, cache, err := snapshotRounds(ctx, c.Nodes[1], cfg.Rows, cfg.Rounds, func() { res.RSSMB = peakRSSMB() })
	if err != nil {
		return err
	}
	res.setCache(cache)
	res.Seconds = rounds[0]
	if len(rounds) > 1 {
		res.Rounds = rounds
	}
	return nil
}

// snapshotFloors measures what the snapshot is compared with, on the same
// rows: a bare msgpack encode and decode (the library, reflection and all,
// no dse), and dse's own codec alone.
func snapshotFloors(res *SnapshotResult, rows []dse.Row) error {
	start := time.Now()
	raw, err := msgpack.Marshal(rows)
	if err != nil {
		return err
	}
	var back [][]any
	if err := msgpack.Unmarshal(raw, &back); err != nil {
		return err
	}
	res.BaselineSeconds = time.Since(start).Seconds()
	raw, back = nil, nil
	start = time.Now()
	enc, err := (&table.Publication{Publisher: "p", Table: "t", Seqnum: 1, Snapshot: true, Rows: rows}).Encode()
	if err != nil {
		return err
	}
	if _, err := table.DecodeBatch(append(table.AppendBatch(nil, 1), enc...)); err != nil {
		return err
	}
	res.CodecSeconds = time.Since(start).Seconds()
	res.Bytes = len(enc)
	return nil
}
