package main

import (
	"strings"
	"testing"
)

func TestCheckFindsArrowsThatPointTheWrongWay(t *testing.T) {
	graph := map[string][]string{
		"dse.dev/dse":                 {"dse.dev/dse/cli"},
		"dse.dev/dse/cli":             {"dse.dev/dse/dse", "dse.dev/dse/bench", "dse.dev/dse/dse/api"},
		"dse.dev/dse/bench":           {"dse.dev/dse/dse", "dse.dev/dse/cli"},
		"dse.dev/dse/fsm":             {"dse.dev/dse/internal/mpcheck", "dse.dev/dse/dse/table", "dse.dev/dse/transport"},
		"dse.dev/dse/transport":       {"github.com/hashicorp/raft"},
		"dse.dev/dse/dse":             {"dse.dev/dse/fsm", "dse.dev/dse/dse/publish", "dse.dev/dse/cli"},
		"dse.dev/dse/dse/publish":     {"dse.dev/dse/dse/table", "dse.dev/dse/dse"},
		"dse.dev/dse/dse/api":         {"dse.dev/dse/dse"},
		"dse.dev/dse/dse/api_test":    {"dse.dev/dse/dse/api", "dse.dev/dse/dse/dsetest"},
		"dse.dev/dse/internal/bigmem": {"dse.dev/dse/fsm"},
	}
	want := []string{
		"dse.dev/dse/bench imports dse.dev/dse/cli",
		"dse.dev/dse/dse imports dse.dev/dse/cli",
		"dse.dev/dse/dse/publish imports dse.dev/dse/dse:",
		"dse.dev/dse/fsm imports dse.dev/dse/dse/table",
		"dse.dev/dse/fsm imports dse.dev/dse/transport",
		"dse.dev/dse/internal/bigmem imports dse.dev/dse/fsm",
	}
	got := check(graph)
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("finding %d: got %q, want %q...", i, got[i], w)
		}
	}
}
