package cli_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchSnapshotCLI runs `dse bench snapshot` as a user would: by
// default each node is a dse process of its own, whose RSS is reported
// apart; --in-process runs both in one. With --rounds, each round's new
// subscriber has the whole table again.
func TestBenchSnapshotCLI(t *testing.T) {
	for _, mode := range []string{"multi-process", "in-process"} {
		args := []string{"bench", "snapshot", "--rows", "20000", "--rounds", "2", "--json"}
		if mode == "in-process" {
			args = append(args, "--in-process")
		}
		r := run(t, args...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", mode, r.code, r.stderr)
		}
		var res struct {
			Mode      string             `json:"mode"`
			Rows      int                `json:"rows"`
			Bytes     int                `json:"bytes"`
			Seconds   float64            `json:"seconds"`
			MBPerSec  float64            `json:"mb_per_sec"`
			Baseline  float64            `json:"baseline_seconds"`
			RSSMB     float64            `json:"rss_mb"`
			NodeRSSMB map[string]float64 `json:"node_rss_mb"`
			Rounds    []float64          `json:"round_seconds"`
			CacheRow  float64            `json:"cache_bytes_per_row"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("%s: output %q is not JSON: %v", mode, r.stdout, err)
		}
		if res.Mode != mode || res.Rows != 20000 || res.Bytes < 20000*10 || res.Seconds <= 0 || res.MBPerSec <= 0 || res.Baseline <= 0 || res.RSSMB <= 0 || res.CacheRow <= 10 {
			t.Fatalf("%s: got %+v", mode, res)
		}
		if len(res.Rounds) != 2 || res.Rounds[0] != res.Seconds || res.Rounds[1] <= 0 {
			t.Fatalf("%s: rounds %v, seconds %v", mode, res.Rounds, res.Seconds)
		}
		if mode == "multi-process" {
			pub, sub := res.NodeRSSMB["publisher"], res.NodeRSSMB["subscriber"]
			if pub <= 0 || sub <= 0 || res.RSSMB != max(pub, sub) {
				t.Fatalf("per-node RSS %v, rss_mb %v", res.NodeRSSMB, res.RSSMB)
			}
		} else if res.NodeRSSMB != nil {
			t.Fatalf("in-process run reports per-node RSS %v", res.NodeRSSMB)
		}
	}
	wantFail(t, 2, []string{"--rows"}, "bench", "snapshot", "--rows", "0")
	wantFail(t, 2, []string{"--rounds"}, "bench", "snapshot", "--rounds", "0")
	// The summary lists the rounds.
	r := run(t, "bench", "snapshot", "--rows", "5000", "--rounds", "3", "--in-process")
	if r.code != 0 || !strings.Contains(r.stdout, "rounds:") || strings.Count(strings.SplitAfter(r.stdout, "rounds:")[1], "s ") < 3 {
		t.Fatalf("exit %d, summary %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestBenchPublishCLI runs `dse bench publish` at a fixed rate with
// --baseline: the JSON has the fixed fields, the same load's figures with
// seqnums from a local counter, and hashicorp/raft's own commit latency
// at that rate.
func TestBenchPublishCLI(t *testing.T) {
	r := run(t, "bench", "publish", "--duration", "1s", "--rate", "200", "--baseline", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var res struct {
		PubsPerSec       float64                    `json:"pubs_per_sec"`
		DeliveriesPerSec float64                    `json:"deliveries_per_sec"`
		Failed           *int                       `json:"failed"`
		Latency          struct{ P50, P99 float64 } `json:"latency_us"`
		Baseline         float64                    `json:"baseline_pubs_per_sec"`
		RaftFloorP50     float64                    `json:"raft_floor_p50_us"`
		Publications     int                        `json:"publications"`
		Deliveries       int                        `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("output %q is not JSON: %v", r.stdout, err)
	}
	if res.PubsPerSec <= 0 || res.DeliveriesPerSec <= 0 || res.Failed == nil || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 ||
		res.Baseline <= 0 || res.RaftFloorP50 <= 0 || res.Deliveries != 2*res.Publications {
		t.Fatalf("got %+v from %s", res, r.stdout)
	}
	for _, c := range []struct{ flag, args string }{
		{"--clients", "--clients 3"},
		{"--window", "--external --window 3"},
		{"--via", "--external --via nowhere"},
		{"--services", "--services 0"},
		{"--voters", "--voters 4"},
	} {
		wantFail(t, 2, []string{c.flag}, append([]string{"bench", "publish"}, strings.Fields(c.args)...)...)
	}
}

// TestBenchExternalCLI runs `dse bench publish --external`: HTTP clients
// publish to a replicated external service, through its owner's node and
// spread over the nodes.
func TestBenchExternalCLI(t *testing.T) {
	for _, via := range []string{"owner", "spread"} {
		r := run(t, "bench", "publish", "--external", "--clients", "3", "--via", via, "--duration", "1s", "--json")
		if r.code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", via, r.code, r.stderr)
		}
		var res struct {
			Mode         string                     `json:"mode"`
			Replicas     int                        `json:"replicas"`
			Clients      int                        `json:"clients"`
			Publications int                        `json:"publications"`
			PubsPerSec   float64                    `json:"pubs_per_sec"`
			Deliveries   *float64                   `json:"deliveries_per_sec"`
			Failed       *int                       `json:"failed"`
			Commits      int                        `json:"raft_commits"`
			PerCommit    float64                    `json:"pubs_per_commit"`
			CPUPerPub    float64                    `json:"cpu_us_per_pub"`
			Latency      struct{ P50, P99 float64 } `json:"latency_us"`
			ByNode       []struct{ Ops int }        `json:"by_node"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("%s: output %q is not JSON: %v", via, r.stdout, err)
		}
		if res.Mode != "external" || res.Replicas != 3 || res.Clients != 3 || res.Publications == 0 || res.PubsPerSec <= 0 ||
			res.Deliveries == nil || res.Failed == nil || *res.Failed != 0 || res.Latency.P50 <= 0 || (via == "spread") != (len(res.ByNode) == 3) ||
			res.Commits == 0 || res.Commits > res.Publications || res.PerCommit < 1 || res.CPUPerPub <= 0 {
			t.Fatalf("%s: got %+v from %s", via, res, r.stdout)
		}
	}
}

// TestBenchJoinCLI runs `dse bench join` on a small registry: the new node
// (a process of its own) catches up, and the JSON has the fixed fields.
func TestBenchJoinCLI(t *testing.T) {
	r := run(t, "bench", "join", "--services", "50", "--tables-per-service", "4", "--subscriptions", "60", "--datasources", "5", "--no-fill", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var res struct {
		Mode          string  `json:"mode"`
		Tables        int     `json:"tables"`
		Seconds       float64 `json:"seconds"`
		SnapshotBytes int64   `json:"snapshot_bytes"`
		BytesPerTable float64 `json:"bytes_per_table"`
		RSSMB         float64 `json:"rss_mb"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("output %q is not JSON: %v", r.stdout, err)
	}
	if res.Mode != "multi-process" || res.Tables != 200 || res.Seconds <= 0 || res.SnapshotBytes < 200*20 || res.BytesPerTable != float64(res.SnapshotBytes)/200 || res.RSSMB <= 0 {
		t.Fatalf("got %+v from %s", res, r.stdout)
	}
	wantFail(t, 2, []string{"--subscriptions"}, "bench", "join", "--services", "1", "--subscriptions", "5")
}

// TestBenchScaleCLI sweeps one dimension over two points: a JSON line per
// point, and the SVG of the curves.
func TestBenchScaleCLI(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "services.svg")
	r := run(t, "bench", "scale", "--dim", "services", "--points", "1,2", "--duration", "500ms", "--plot", svg)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %q", len(lines), r.stdout)
	}
	for i, l := range lines {
		var p struct {
			Dim        string                 `json:"dim"`
			X          int                    `json:"x"`
			PubsPerSec float64                `json:"pubs_per_sec"`
			Result     struct{ Services int } `json:"result"`
		}
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		if p.Dim != "services" || p.X != i+1 || p.PubsPerSec <= 0 || p.Result.Services != i+1 {
			t.Fatalf("line %d: got %+v", i+1, p)
		}
	}
	if b, err := os.ReadFile(svg); err != nil || !strings.Contains(string(b), "<svg") {
		t.Fatalf("plot: %v", err)
	}
	wantFail(t, 2, []string{"--dim"}, "bench", "scale", "--dim", "bogus")
	wantFail(t, 2, []string{"--points"}, "bench", "scale", "--dim", "nodes", "--points", "3,x")
}

// TestBenchRegistryCLI runs `dse bench registry` as a user would: the JSON
// counts every write once, on the node its client used, and the Raft
// entries they took; the summary shows each node's latency.
func TestBenchRegistryCLI(t *testing.T) {
	r := run(t, "bench", "registry", "--clients", "6", "--ops", "600", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var res struct {
		LogStore    string  `json:"log_store"`
		Clients     int     `json:"clients"`
		Ops         int     `json:"ops"`
		OpsPerSec   float64 `json:"ops_per_sec"`
		RaftEntries uint64  `json:"raft_entries"`
		OpsPerEntry float64 `json:"ops_per_entry"`
		ByNode      []struct {
			Node   string `json:"node"`
			Leader bool   `json:"leader"`
			Ops    int    `json:"ops"`
		} `json:"by_node"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("output %q is not JSON: %v", r.stdout, err)
	}
	if res.LogStore != "wal" || res.Clients != 6 || res.Ops != 600 || res.OpsPerSec <= 0 || res.RaftEntries == 0 || res.OpsPerEntry <= 0 || len(res.ByNode) != 3 {
		t.Fatalf("got %+v", res)
	}
	total, leaders := 0, 0
	for _, n := range res.ByNode {
		total += n.Ops
		if n.Leader {
			leaders++
		}
	}
	if total != res.Ops || leaders != 1 {
		t.Fatalf("by node: %+v (%d writes, %d leaders)", res.ByNode, total, leaders)
	}
	r = run(t, "bench", "registry", "--clients", "3", "--ops", "120", "--log-store", "boltdb")
	if r.code != 0 || !strings.Contains(r.stdout, "boltdb log") || !strings.Contains(r.stdout, "Raft entries") || !strings.Contains(r.stdout, "(leader)") {
		t.Fatalf("exit %d, summary %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestBenchBadInputCLI checks that every `dse bench` refuses bad input
// before it starts anything: a bad value is bad usage (exit 2) naming the
// flag, a --dir that holds files is left as it is, and a --plot file that
// cannot be written fails the command before its (hour-long) run.
func TestBenchBadInputCLI(t *testing.T) {
	for _, c := range []struct {
		flag string
		args []string
	}{
		{"--nodes", []string{"publish", "--nodes", "1"}},
		{"--duration", []string{"publish", "--duration", "0"}},
		{"--rows-per-delta", []string{"publish", "--rows-per-delta", "-5"}},
		{"--window", []string{"publish", "--window", "10", "--writers", "2"}},
		{"--clients", []string{"registry", "--clients", "0"}},
		{"--ops", []string{"registry", "--ops", "3"}},
		{"--callers", []string{"rpc", "--callers", "0"}},
		{"--duration", []string{"rpc", "--duration", "-1s"}},
		{"--columns", []string{"snapshot", "--columns", "0"}},
	} {
		wantFail(t, 2, []string{c.flag}, append([]string{"bench"}, c.args...)...)
	}
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep")
	if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sub := range [][]string{
		{"publish", "--duration", "1h"},
		{"registry", "--ops", "100000000"},
		{"rpc", "--duration", "1h"},
		{"snapshot", "--rows", "1000"},
	} {
		wantFail(t, 2, []string{"--dir", "not empty"}, append(append([]string{"bench"}, sub...), "--dir", dir)...)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("--dir now holds %d entries, want only the file put there", len(entries))
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "mine" {
		t.Fatalf("the file in --dir changed: %q, %v", b, err)
	}
	for _, sub := range []string{"publish", "rpc"} {
		wantFail(t, 1, []string{"--plot"}, "bench", sub, "--duration", "1h", "--plot", filepath.Join(dir, "missing", "p.svg"))
	}
}

// TestBenchInterruptedCLI stops a run with SIGINT, as Ctrl-C does: the
// partial run is a failure (exit 1, one line on stderr), with no JSON
// whose figures would mislead, and its temporary folder is removed.
func TestBenchInterruptedCLI(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(dseBin, "bench", "publish", "--duration", "1h", "--json")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The nodes' folder exists once the run starts its cluster; a few
	// seconds later it is publishing (an interruption before that fails
	// the same way).
	eventually(t, time.Minute, "the run to start", func() bool {
		entries, _ := os.ReadDir(tmp)
		return len(entries) > 0
	})
	time.Sleep(3 * time.Second)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1 (stderr %q)", err, stderr.String())
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "interrupted") || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
		t.Fatalf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("the run left %d entries in its temporary folder's parent", len(entries))
	}
}
