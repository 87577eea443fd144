package dse

import (
	"context"
	"errors"
	"testing"
	"time"

	"dse.dev/dse/dse/table"
)

func TestHistoryNeedsAnUnbrokenRun(t *testing.T) {
	tb := newPubTable("t", 1024)
	for _, s := range []uint64{1, 2, 4, 5} { // 3 granted twice, never published
		tb.recordLocked(&table.Publication{Seqnum: s})
	}
	tb.seqnum = 5
	if got, ok := tb.sinceLocked(3); !ok || len(got) != 2 || got[0].Seqnum != 4 {
		t.Fatalf("after 3: got %v %v", got, ok)
	}
	if _, ok := tb.sinceLocked(2); ok {
		t.Fatal("history with a hole after 2 served as deltas")
	}
	if _, ok := tb.sinceLocked(0); ok {
		t.Fatal("history with a hole after 0 served as deltas")
	}
	if got, ok := tb.sinceLocked(5); !ok || len(got) != 0 {
		t.Fatalf("after 5: got %v %v", got, ok)
	}
}

func TestHistoryKeepsTheLastRun(t *testing.T) {
	tb := newPubTable("t", 100)
	for s := uint64(1); s <= 5000; s++ {
		tb.recordLocked(&table.Publication{Seqnum: s})
		if n := len(tb.history); n < min(int(s), 100) || n > 200 || tb.history[n-1].Seqnum != s {
			t.Fatalf("after %d: %d entries ending at %d", s, n, tb.history[n-1].Seqnum)
		}
	}
	tb.seqnum = 5000
	if got, ok := tb.sinceLocked(4900); !ok || len(got) != 100 || got[0].Seqnum != 4901 {
		t.Fatalf("after 4900: %d entries, %v", len(got), ok)
	}
	if _, ok := tb.sinceLocked(4000); ok {
		t.Fatal("served deltas from further back than the history holds")
	}
}

func TestLeaderRefusesUndecodableCommands(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Bind, cfg.HTTPAddr, cfg.Bootstrap = "n1", t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", true
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.WaitLeader(context.Background()); err != nil {
		t.Fatal(err)
	}
	for !n.IsLeader() {
		time.Sleep(5 * time.Millisecond)
	}
	rep := n.runLeaderOp(context.Background(), leaderOp{Op: "apply", Cmd: []byte{0x99, 1}})
	if !errors.Is(FromCode(rep.Code, rep.Msg), ErrInvalid) {
		t.Fatalf("got %+v, want invalid", rep)
	}
	if n.FSM().Index() > n.raft.LastIndex() {
		t.Fatal("index moved")
	}
}
