package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
)

// SnapshotConfig sets up `dse bench snapshot`.
type SnapshotConfig struct {
	Dir      string
	LogStore string // dse.LogStoreWAL (default) or dse.LogStoreBoltDB
	Rows     int
	Columns  int
}

// SnapshotResult is what `dse bench snapshot --json` prints.
type SnapshotResult struct {
	Mode            string  `json:"mode"`
	LogStore        string  `json:"log_store"`
	Rows            int     `json:"rows"`
	Columns         int     `json:"columns"`
	Bytes           int     `json:"bytes"`
	Seconds         float64 `json:"seconds"`
	MBPerSec        float64 `json:"mb_per_sec"`
	BaselineSeconds float64 `json:"baseline_seconds"`
	// CodecSeconds is dse's publication codec alone on the same rows.
	CodecSeconds float64 `json:"codec_seconds"`
	RSSMB        float64 `json:"rss_mb"`
}

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

// peakRSSMB reads the process's peak resident set (all nodes run here).
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
func Snapshot(ctx context.Context, cfg SnapshotConfig) (*SnapshotResult, error) {
	if cfg.Rows < 1 || cfg.Columns < 1 {
		return nil, fmt.Errorf("--rows and --columns must be positive")
	}
	rows := makeRows(cfg.Rows, cfg.Columns)
	res := &SnapshotResult{Mode: "in-process", Rows: cfg.Rows, Columns: cfg.Columns}
	c, err := StartCluster(ctx, cfg.Dir, 2, cfg.LogStore, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res.LogStore = c.Nodes[0].LogStore()
	pub := dse.NewDataService("bench-big", dse.Hooks{})
	if err := c.Nodes[0].Register(ctx, pub); err != nil {
		return nil, err
	}
	if _, _, err := pub.Publish(ctx, "big", rows, true); err != nil {
		return nil, err
	}
	rows = nil
	var once sync.Once
	got := make(chan struct{})
	sub := dse.NewDataService("bench-snap-sub", dse.Hooks{ReceiveData: func(_, _ string, d dse.Data) {
		if d.Snapshot && len(d.Rows) == cfg.Rows {
			once.Do(func() { close(got) })
		}
	}})
	if err := c.Nodes[1].Register(ctx, sub); err != nil {
		return nil, err
	}
	// As testing.B does before a benchmark: start from a collected heap, so
	// the setup's garbage is not charged to the measurement.
	runtime.GC()
	start := time.Now()
	if err := sub.Subscribe(ctx, "bench-big", "big"); err != nil {
		return nil, err
	}
	select {
	case <-got:
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("the snapshot did not arrive in 5 minutes")
	}
	res.Seconds = time.Since(start).Seconds()
	if n := sub.Cache().Len(cache.TableID{Publisher: "bench-big", Table: "big"}); n != cfg.Rows {
		return nil, fmt.Errorf("subscriber holds %d rows, want %d", n, cfg.Rows)
	}
	// Peak RSS of the process so far: both nodes, and the generated rows
	// (which the publisher's table holds), before the floors below add
	// garbage of their own.
	res.RSSMB = peakRSSMB()
	c.Close()
	if err := snapshotFloors(res, makeRows(cfg.Rows, cfg.Columns)); err != nil {
		return nil, err
	}
	res.MBPerSec = float64(res.Bytes) / 1e6 / res.Seconds
	return res, nil
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
