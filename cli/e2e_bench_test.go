package cli_test

import (
	"encoding/json"
	"testing"
)

// TestBenchSnapshotCLI runs `dse bench snapshot` as a user would: by
// default each node is a dse process of its own, whose RSS is reported
// apart; --in-process runs both in one.
func TestBenchSnapshotCLI(t *testing.T) {
	for _, mode := range []string{"multi-process", "in-process"} {
		args := []string{"bench", "snapshot", "--rows", "20000", "--json"}
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
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("%s: output %q is not JSON: %v", mode, r.stdout, err)
		}
		if res.Mode != mode || res.Rows != 20000 || res.Bytes < 20000*10 || res.Seconds <= 0 || res.MBPerSec <= 0 || res.Baseline <= 0 || res.RSSMB <= 0 {
			t.Fatalf("%s: got %+v", mode, res)
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
}
