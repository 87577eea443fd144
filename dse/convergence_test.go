package dse_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/dsetest"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/transport"
)

// seqChecker records, per table, the seqnums a subscriber applied and fails
// on any that does not increase.
type seqChecker struct {
	mu   sync.Mutex
	last map[string]uint64
	errs []string
	n    int
}

func (c *seqChecker) hooks() dse.Hooks {
	c.last = map[string]uint64{}
	return dse.Hooks{ReceiveDataSequenced: func(pub, tbl string, _ dse.Data, seq uint64, _ time.Time) {
		c.mu.Lock()
		defer c.mu.Unlock()
		k := pub + "/" + tbl
		if seq <= c.last[k] {
			c.errs = append(c.errs, fmt.Sprintf("%s: seqnum %d after %d", k, seq, c.last[k]))
		}
		c.last[k] = seq
		c.n++
	}}
}

// TestRandomizedConvergence publishes random contents of several tables
// through a network that drops, duplicates, reorders and delays pushes (a
// seeded random source), restarts the publisher twice, and checks that every
// subscriber ends with exactly the publisher's tables, having applied
// strictly increasing seqnums.
func TestRandomizedConvergence(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) { runConvergence(t, seed) })
	}
}

func runConvergence(t *testing.T, seed uint64) {
	c := dsetest.NewWith(t, 3, func(i int, cfg *dse.Config, deps *dse.Deps) {
		deps.Faults = transport.NewFaults(seed*10 + uint64(i))
		deps.Faults.Add(transport.Rule{Drop: 0.15, Dup: 0.1, Delay: 0.2, MaxDelay: 30 * time.Millisecond})
	})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 99))
	tables := []string{"a", "b", "c"}
	var checkers [4]seqChecker
	var subs []*dse.DataService
	for i, node := range []*dse.Node{c.Nodes[1], c.Nodes[2], c.Nodes[1], c.Nodes[0]} {
		s := register(t, node, fmt.Sprintf("sub%d", i), checkers[i].hooks())
		for _, tb := range tables {
			if err := s.Subscribe(ctx, "pub", tb); err != nil {
				t.Fatal(err)
			}
		}
		subs = append(subs, s)
	}
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	final := map[string][]dse.Row{}
	randomRows := func() []dse.Row {
		var rs []dse.Row
		for v := range int64(30) {
			if rng.IntN(3) == 0 {
				rs = append(rs, dse.Row{v, rng.IntN(2) == 0})
			}
		}
		return rs
	}
	for round := range 3 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, tb := range tables {
			contents := make([][]dse.Row, 60)
			for i := range contents {
				contents[i] = randomRows()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, rs := range contents {
					if _, _, err := pub.Publish(ctx, tb, rs, rng2(len(rs)) == 0); err != nil {
						t.Errorf("publish %s: %v", tb, err)
						return
					}
				}
				mu.Lock()
				final[tb] = contents[len(contents)-1]
				mu.Unlock()
			}()
		}
		wg.Wait()
		if round == 2 {
			break
		}
		// The publisher restarts: in place (new incarnation), or with its
		// whole node.
		if round == 0 {
			pub.Stop(ctx)
			pub = register(t, c.Nodes[0], "pub", dse.Hooks{})
		} else {
			pub.Stop(ctx)
			n := c.Restart(0)
			c.WaitLeader()
			pub = dse.NewDataService("pub", dse.Hooks{})
			dsetest.WaitFor(t, 10*time.Second, "publisher re-registered", func() bool {
				return n.Register(ctx, pub) == nil
			})
			// The subscriber that lived there comes back with its
			// subscriptions, which the registry kept.
			subs[3] = dse.NewDataService("sub3", checkers[3].hooks())
			if err := n.Register(ctx, subs[3]); err != nil {
				t.Fatal(err)
			}
		}
		// A restarted publisher starts empty; it republishes from scratch.
	}
	for _, tb := range tables {
		want := append([]dse.Row(nil), final[tb]...)
		table.Sort(want)
		for _, s := range subs {
			id := cache.TableID{Publisher: "pub", Table: tb}
			dsetest.WaitFor(t, 20*time.Second, fmt.Sprintf("%s converges on %s", s.ID(), tb), func() bool {
				got, _, ok := s.Cache().Rows(id)
				return ok && (reflect.DeepEqual(got, want) || (len(got) == 0 && len(want) == 0))
			})
		}
	}
	for i := range checkers {
		ch := &checkers[i]
		ch.mu.Lock()
		if len(ch.errs) > 0 {
			t.Errorf("subscriber %d: %v", i, ch.errs)
		}
		t.Logf("subscriber %d applied %d publications", i, ch.n)
		ch.mu.Unlock()
	}
}

// rng2 is a package-level coin for snapshot publications (independent of the
// per-table content generator, which ran before the goroutines).
func rng2(n int) int { return n % 7 }

// Every push from the publisher's node is lost: subscribers learn of new
// publications only from the registry's seqnum (the lost-final-update rule),
// and catch up from the publisher's history, or from a snapshot once the
// history no longer reaches back to them.
func TestCatchupWithoutPushes(t *testing.T) {
	c := dsetest.NewWith(t, 2, func(i int, cfg *dse.Config, deps *dse.Deps) {
		if i == 0 {
			deps.Faults = transport.NewFaults(1)
			deps.Faults.Add(transport.Rule{Drop: 1})
			cfg.HistorySize = 16
		}
		cfg.ResubTimeout = time.Second
	})
	ctx := context.Background()
	pub := register(t, c.Nodes[0], "pub", dse.Hooks{})
	var r recorder
	sub := register(t, c.Nodes[1], "sub", r.hooks())
	if err := sub.Subscribe(ctx, "pub", "t"); err != nil {
		t.Fatal(err)
	}
	pub.Publish(ctx, "t", rows(1), false)
	waitRows(t, sub, "pub", "t", rows(1))
	// A few deltas: caught up from history, as deltas.
	for i := int64(2); i <= 5; i++ {
		pub.PublishDelta(ctx, "t", rows(i), nil)
	}
	waitRows(t, sub, "pub", "t", rows(1, 2, 3, 4, 5))
	r.mu.Lock()
	snaps := r.snaps
	r.mu.Unlock()
	if snaps != 1 {
		t.Fatalf("caught up with %d snapshots, want only the first one (deltas from history)", snaps)
	}
	// More deltas than the history holds (16 here), faster than the
	// subscriber's resubscribe timeout: a snapshot.
	var wg sync.WaitGroup
	for g := range int64(8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range int64(25) {
				if _, _, err := pub.PublishDelta(ctx, "t", rows(1000+g*1000+i), nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := rows(1, 2, 3, 4, 5)
	for g := range int64(8) {
		for i := range int64(25) {
			want = append(want, rows(1000+g*1000+i)...)
		}
	}
	waitRows(t, sub, "pub", "t", want)
	r.increasing(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snaps < 2 {
		t.Fatalf("no snapshot catch-up after the history was exceeded (%d snapshots)", r.snaps)
	}
}
