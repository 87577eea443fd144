package replica

import (
	"context"
	"maps"
	"slices"
	"time"

	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// The engine's side that follows the registry: which replicas this node
// keeps, which tables it must pull from their owner, when it leaves the
// in-sync set.

// loop follows the registry: it forgets replicas this node no longer
// holds, takes on new ones, leaves the in-sync set where it knows it is
// behind, catches up tables its owner has moved ahead of it, tells a new
// owner what it holds, and runs the owner's tracking.
func (e *Engine) loop() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	started := false
	for {
		changed := e.cfg.Registry.Changed()
		if e.cfg.Ready() {
			e.reconcile(!started)
			started = true
		}
		e.tr.tick()
		select {
		case <-e.cfg.Context.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// pullAfter is how long a replica's table may lag its owner's seqnum
// without progress before the replica asks the owner to catch it up.
const pullAfter = 200 * time.Millisecond

func (e *Engine) reconcile(first bool) {
	now := time.Now()
	want := map[string]fsm.Service{}
	for _, rec := range e.cfg.Registry.ReplicasOn(e.cfg.Node) {
		if replicas, _ := replicasOf(rec); slices.Contains(replicas, e.cfg.Node) {
			want[rec.ID] = rec
		}
	}
	var w write
	e.mu.Lock()
	for svc := range e.svcs {
		if _, ok := want[svc]; !ok {
			delete(e.svcs, svc) // deleted, or moved off this node
			w.ops = append(w.ops, op{kind: opDeleteService, svc: svc})
		}
	}
	type pull struct {
		svc, tbl, owner string
		after           uint64
	}
	var pulls []pull
	var resign []string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		rec := want[id]
		_, isNew := e.svcs[id]
		isNew = !isNew
		h := e.heldLocked(id, &w)
		_, inSync := replicasOf(rec)
		behind := false
		for _, name := range e.cfg.Registry.PublishedTables(id) {
			t := h.tables[name]
			if t == nil {
				t = &replTable{set: table.NewSet(nil), progress: now}
				if !isNew {
					t.progress = time.Time{} // a table it never had: at once
				}
				h.tables[name] = t
			}
			committed := e.cfg.Registry.Seqnum(id, name)
			if t.seq < committed {
				behind = true
				if rec.Owner != "" && rec.Owner != e.cfg.Node && !t.pulling && now.Sub(t.progress) >= pullAfter {
					t.pulling = true
					pulls = append(pulls, pull{id, name, rec.Owner, t.seq})
				}
			}
		}
		// A replica that starts (a restart, a new one, its data dir gone)
		// behind the registry leaves the in-sync set: it may lack
		// publications the owner acknowledged without it. The owner
		// holding nothing of tables it published hands the service over.
		if (first || isNew) && behind && !h.resigned && slices.Contains(inSync, e.cfg.Node) && len(rec.Replicas) > 0 {
			if rec.Owner != e.cfg.Node || len(h.tables) == 0 || e.emptyLocked(h) {
				h.resigned = true
				resign = append(resign, id)
			}
		}
	}
	e.mu.Unlock()
	if len(w.ops) > 0 {
		e.queue(w)
	}
	for _, id := range resign {
		e.cfg.Logger.Info("leaving the in-sync replicas: this node is behind", "service", id)
		e.cfg.Go(func() {
			ctx, cancel := context.WithTimeout(e.cfg.Context, 5*time.Second)
			defer cancel()
			if err := e.cfg.Writer.Write(ctx, fsm.CmdReplicaResign, fsm.ReplicaResign{Service: id, Node: e.cfg.Node}); err != nil {
				e.cfg.Logger.Warn("cannot leave the in-sync replicas", "service", id, "error", err)
			}
		})
	}
	for _, p := range pulls {
		e.cfg.Go(func() { e.pull(p.svc, p.tbl, p.owner, p.after) })
	}
	for id := range want {
		e.acknowledge(id, true, nil)
		e.reacknowledge(id, now)
	}
}

// emptyLocked reports whether h holds no rows at all (its data dir gone).
func (e *Engine) emptyLocked(h *held) bool {
	for _, t := range h.tables {
		if t.seq > 0 || t.set.Len() > 0 {
			return false
		}
	}
	return true
}

// reacknowledge sends again, while a service's tables moved lately, what
// this node holds of them: acknowledgements are one-way frames, and one
// lost to a full queue would hold the owner's publications until its lag
// timeout, then keep this replica out of the in-sync set until the table
// moved again. Every reackEvery, of every table; in between, of those that
// moved lately (a service of thousands of tables of which one moves costs
// an entry, not thousands, 20 times a second).
func (e *Engine) reacknowledge(svc string, now time.Time) {
	e.mu.Lock()
	h := e.svcs[svc]
	if h == nil || now.Sub(h.changed) >= reackFor {
		e.mu.Unlock()
		return
	}
	var recent map[string]bool // nil: every table
	if now.Sub(h.resentAt) < reackEvery {
		recent = map[string]bool{}
		for name, t := range h.tables {
			if now.Sub(t.progress) < reackFor {
				recent[name] = true
			}
		}
	} else {
		h.resentAt = now
	}
	e.mu.Unlock()
	if recent == nil || len(recent) > 0 {
		e.acknowledge(svc, false, recent)
	}
}

// reackFor is how long after a service's table moved acknowledgements are
// sent again; reackEvery, how often they are of every table.
const (
	reackFor   = 2 * time.Second
	reackEvery = time.Second
)

// pull catches a replica's table up from its owner.
func (e *Engine) pull(svc, tbl, owner string, after uint64) {
	defer func() {
		e.mu.Lock()
		if h := e.svcs[svc]; h != nil {
			if t := h.tables[tbl]; t != nil {
				t.pulling = false
				t.progress = time.Now()
			}
		}
		e.mu.Unlock()
	}()
	if e.cfg.Catchups != nil {
		e.cfg.Catchups.Inc()
	}
	ctx, cancel := context.WithTimeout(e.cfg.Context, 30*time.Second)
	body, err := e.cfg.Fetcher.FetchTable(ctx, owner, svc, tbl, after)
	cancel()
	if err != nil {
		e.cfg.Logger.Debug("replica catch-up failed", "service", svc, "table", tbl, "owner", owner, "error", err)
		return
	}
	pubs, err := table.DecodeBatch(body)
	if err != nil {
		e.cfg.Logger.Warn("malformed replica catch-up", "service", svc, "error", err)
		return
	}
	e.Offer(pubs, false)
}
