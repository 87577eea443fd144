package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/wire"
	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

// single starts a one-member cluster that leads.
func single(t *testing.T) *Membership {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	trans, err := transport.New(transport.Config{Bind: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: "n1", DataDir: t.TempDir(), Bootstrap: true, HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, ApplyTimeout: 5 * time.Second, LivenessGrace: time.Second, SnapshotRetain: 1, SnapshotThreshold: 8192}
	c, err := New(ctx, cfg, trans, fsm.New(), prometheus.NewRegistry(), hclog.NewNullLogger())
	if err != nil {
		cancel()
		trans.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		c.ShutdownRaft()
		c.Close()
		trans.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if _, err := c.WaitLeader(wctx); err != nil {
		t.Fatal(err)
	}
	for !c.IsLeader() {
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

func TestLeaderRefusesUndecodableCommands(t *testing.T) {
	c := single(t)
	rep := c.runLeaderOp(context.Background(), leaderOp{Op: "apply", Cmd: []byte{0x99, 1}})
	if !errors.Is(errdefs.FromCode(rep.Code, rep.Msg), errdefs.ErrInvalid) {
		t.Fatalf("got %+v, want invalid", rep)
	}
	if c.FSM().Index() > c.raft.LastIndex() {
		t.Fatal("index moved")
	}
}

// TestSequenceOnTheLeaderKeepsTheSentinels: the leader's own publish entry
// is read as the FSM answered it, and a refused request's error is still
// the errdefs sentinel (the FSM's own errors are not).
func TestSequenceOnTheLeaderKeepsTheSentinels(t *testing.T) {
	c := single(t)
	ctx := context.Background()
	if err := c.Write(ctx, fsm.CmdNodeUpsert, fsm.NodeUpsert{ID: "n1", Addr: "x:1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, fsm.CmdServiceRegister, fsm.ServiceRegister{ID: "s", Node: "n1", Kind: "go"}); err != nil {
		t.Fatal(err)
	}
	_, inc, _ := c.FSM().Owner("s")
	grants, err := c.Sequence(ctx, fsm.Publish{Requests: []fsm.PublishRequest{
		{Service: "s", Incarnation: inc, Table: "t", Count: 3},
		{Service: "s", Incarnation: inc + 1, Table: "t", Count: 1},
		{Service: "nope", Incarnation: 1, Table: "t", Count: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if grants[0].Err != nil || grants[0].First != 1 {
		t.Fatalf("grant 0: %+v, want first 1", grants[0])
	}
	if !errors.Is(grants[1].Err, errdefs.ErrFenced) {
		t.Fatalf("grant 1: %v, want fenced", grants[1].Err)
	}
	if !errors.Is(grants[2].Err, errdefs.ErrServiceNotFound) {
		t.Fatalf("grant 2: %v, want service not found", grants[2].Err)
	}
	if got := c.FSM().Seqnum("s", "t"); got != 3 {
		t.Fatalf("seqnum %d, want 3", got)
	}
}

// FuzzLeaderOp feeds arbitrary bodies to the decoder of a follower's leader
// operation: it must fail cleanly, never panic.
func FuzzLeaderOp(f *testing.F) {
	op, _ := wire.Encode(leaderOp{Op: "apply", Cmd: []byte{1, 2}})
	f.Add(op)
	f.Fuzz(func(t *testing.T, body []byte) {
		var o leaderOp
		wire.Decode(body, &o, "leader operation")
	})
}
