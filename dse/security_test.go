package dse_test

import (
	"context"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
)

// TestTokensRequiredBeforeTheyReplicate: a node started with the cluster's
// first token, or joining with a token, serves no request without one
// from its start, before its registry holds any token (anyone could take
// the first admin token, or create one through the joining node, before);
// a node that joined an open cluster with a token opens once it has
// caught up.
func TestTokensRequiredBeforeTheyReplicate(t *testing.T) {
	ctx := context.Background()
	// A bootstrap node checked at once, before its first token exists.
	cfg, deps := dsetest.Config(t, "b1", t.TempDir())
	cfg.Bootstrap, cfg.BootstrapToken = true, "operator-admin-token-02"
	b1, err := dse.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	if !b1.AuthRequired() {
		t.Fatal("a node bootstrapping with a token served requests without one before the token existed")
	}
	dsetest.WaitFor(t, 10*time.Second, "the bootstrap token", func() bool { return b1.AuthReady() })
	if _, err := b1.Authenticate("operator-admin-token-02"); err != nil {
		t.Fatalf("the bootstrap token: %v", err)
	}

	// A node joining with a token: closed until it has caught up; then as
	// open as its cluster.
	open := dsetest.New(t, 1)
	cfg, deps = dsetest.Config(t, "j1", t.TempDir())
	cfg.JoinsWithToken = true
	j1, err := dse.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer j1.Close()
	if !j1.AuthRequired() {
		t.Fatal("a node joining with a token served requests without one before it caught up")
	}
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := open.Nodes[0].Join(jctx, dse.JoinRequest{ID: j1.ID(), Addr: j1.Addr(), HTTPAddr: j1.HTTPAddr(), Voter: true}); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 10*time.Second, "the joined node to open, as its cluster is", func() bool { return !j1.AuthRequired() })
}

// TestBootstrapTokenAddedLater: the bootstrap node of an open cluster,
// restarted with a bootstrap token while another node leads, adds it (only
// the leader did, so the node answered 503 for good, as a follower).
func TestBootstrapTokenAddedLater(t *testing.T) {
	c := dsetest.New(t, 3)
	ctx := context.Background()
	if _, err := c.Nodes[0].TransferLeadership(ctx, c.Nodes[1].ID()); err != nil {
		t.Fatal(err)
	}
	old := c.Nodes[0]
	old.Close()
	cfg, deps := dsetest.Config(t, "", c.Dir(0))
	cfg.Bind, cfg.Bootstrap, cfg.BootstrapToken = old.Addr(), true, "operator-admin-token-03"
	var n *dse.Node
	dsetest.WaitFor(t, 5*time.Second, "the restart", func() bool {
		var err error
		n, err = dse.New(cfg, deps)
		return err == nil
	})
	defer n.Close()
	dsetest.WaitFor(t, 15*time.Second, "the token added", func() bool { return n.AuthReady() })
	if _, err := n.Authenticate("operator-admin-token-03"); err != nil {
		t.Fatalf("the bootstrap token: %v", err)
	}
	if n.IsLeader() {
		t.Log("the restarted node leads again: the token was added by a leader")
	}
}
