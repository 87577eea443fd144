package dse_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/dsetest"
)

// TestRegistryWritesBatch sends many concurrent registry writes from a
// follower: they share Raft entries, and each caller still gets its own
// result (the revocations of unknown tokens fail, nothing else does).
func TestRegistryWritesBatch(t *testing.T) {
	c := dsetest.New(t, 3)
	leader := c.WaitLeader()
	n := c.Nodes[(leader+1)%3]
	ctx := context.Background()
	before := n.FSM().Index()
	const writers = 48
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 == 3 {
				errs[i] = n.RevokeToken(ctx, fmt.Sprintf("no-such-token-%d", i))
				return
			}
			errs[i] = n.Register(ctx, dse.NewDataService(fmt.Sprintf("batch-%d", i), dse.Hooks{}))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i%4 == 3 && !errors.Is(err, dse.ErrNotFound):
			t.Errorf("revoke %d: %v, want not found", i, err)
		case i%4 != 3 && err != nil:
			t.Errorf("register %d: %v", i, err)
		}
	}
	for i := range writers {
		_, ok := n.FSM().Service(fmt.Sprintf("batch-%d", i))
		if ok != (i%4 != 3) {
			t.Errorf("service batch-%d registered: %v", i, ok)
		}
	}
	// Every write returned after the local FSM applied it, in fewer entries
	// than writes.
	if entries := n.FSM().Index() - before; entries >= writers {
		t.Errorf("%d writes took %d Raft entries: not batched", writers, entries)
	} else {
		t.Logf("%d writes in %d Raft entries", writers, entries)
	}
}
