package subscribe

import (
	"context"
	"time"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
)

// Request asks a publisher's owner node for what follows After: the body
// of a wire.Catchup request.
type Request struct {
	Publisher string `msgpack:"p"`
	Table     string `msgpack:"t"`
	After     uint64 `msgpack:"a"`
}

// CatchUp starts a catch-up of the node's subscription to id, if it has
// one: the deltas after what it applied, from the publisher's history, or
// a snapshot when the history no longer reaches back.
func (e *Engine) CatchUp(id cache.TableID) {
	e.mu.RLock()
	st := e.subs[id]
	e.mu.RUnlock()
	if st != nil {
		e.cfg.Go(func() { e.catchup(st) })
	}
}

// catchup fetches, from the publisher's owner node, the deltas after what
// this node applied, or a snapshot when its history no longer reaches back,
// and queues them for delivery.
func (e *Engine) catchup(st *State) {
	st.mu.Lock()
	if st.catchingUp {
		st.mu.Unlock()
		return
	}
	if st.replyQueued {
		st.catchupWanted = true // after the reply queued is delivered
		st.mu.Unlock()
		return
	}
	st.catchingUp = true
	after := st.seq.Last()
	st.seq.CatchupStarted(time.Now())
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		st.catchingUp = false
		again := st.restarted
		st.restarted = false
		st.mu.Unlock()
		if again {
			// The subscription started over while this one ran: what it
			// asked for no longer fits.
			e.cfg.Go(func() { e.catchup(st) })
		}
	}()
	owner, _, ok := e.cfg.Registry.Owner(st.id.Publisher)
	st.mu.Lock()
	st.noOwner = !ok || owner == ""
	st.mu.Unlock()
	if !ok || owner == "" {
		return // no publisher yet: CheckResub catches up once it has one
	}
	e.count(e.cfg.Catchups, 1)
	ctx, cancel := context.WithTimeout(e.cfg.Context, 30*time.Second)
	body, err := e.cfg.Fetcher.Fetch(ctx, owner, Request{Publisher: st.id.Publisher, Table: st.id.Table, After: after})
	cancel()
	if err != nil {
		e.cfg.Logger.Debug("catch-up failed", "publisher", st.id.Publisher, "table", st.id.Table, "error", err)
		return
	}
	pubs, err := table.DecodeOwnedBatch(body) // the reply's buffer is its own
	if err != nil {
		e.cfg.Logger.Warn("malformed catch-up reply", "publisher", st.id.Publisher, "error", err)
		return
	}
	st.mu.Lock()
	st.replyQueued = true
	st.mu.Unlock()
	e.enqueue(delivery{pubs: pubs, receipt: time.Now(), size: len(body), catchup: st})
}

// resubLoop is check_resub_all for the whole node: it catches up every
// subscription whose gap, or whose lag behind the registry's seqnum, has
// lasted the resubscribe timeout.
func (e *Engine) resubLoop() {
	tick := time.NewTicker(max(e.cfg.ResubTimeout/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-e.cfg.Context.Done():
			return
		case <-tick.C:
			e.CheckResub(nil)
		}
	}
}

// CheckResub catches up the subscriptions in only (all if nil) whose gap or
// lag has outlasted the resubscribe timeout, and those whose publisher had
// no owner at their last catch-up and has one now.
func (e *Engine) CheckResub(only map[cache.TableID]bool) {
	now := time.Now()
	e.mu.RLock()
	all := make([]*State, 0, len(e.subs))
	for id, st := range e.subs {
		if only == nil || only[id] {
			all = append(all, st)
		}
	}
	e.mu.RUnlock()
	var due []*State
	for _, st := range all {
		committed := e.cfg.Registry.Seqnum(st.id.Publisher, st.id.Table)
		owner, _, owned := e.cfg.Registry.Owner(st.id.Publisher)
		st.mu.Lock()
		if !st.catchingUp && !st.replyQueued && (st.seq.NeedsCatchup(now, committed, e.cfg.ResubTimeout) || st.noOwner && owned && owner != "") {
			due = append(due, st)
		}
		st.mu.Unlock()
	}
	for _, st := range due {
		e.cfg.Go(func() { e.catchup(st) })
	}
}
