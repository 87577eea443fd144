package dse

import (
	"context"
	"slices"
	"time"

	"dse.dev/dse/dse/cache"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// A DataService's subscriptions: the registry holds them, the node's
// subscriber engine (package subscribe) sequences and delivers their
// publications, and the service's cache and hooks receive them.

// subscriber is a DataService as the subscriber engine sees it.
type subscriber struct{ s *DataService }

func (sb subscriber) ID() string { return sb.s.id }

func (sb subscriber) Deliver(p *table.Publication, receipt time.Time) { sb.s.deliver(p, receipt) }

func (sb subscriber) Cached(id cache.TableID) ([]Row, uint64, bool) { return sb.s.cache.Unsorted(id) }

// Subscribe subscribes the service to a table of another service, wherever
// it runs; the publisher need not exist yet (subscribe). The service first
// receives the table as a snapshot, then its deltas in order.
func (s *DataService) Subscribe(ctx context.Context, publisher, tableName string) error {
	if err := checkTableID(publisher, tableName); err != nil {
		return err
	}
	n, ok := s.enter()
	if !ok {
		return s.errNotRunning()
	}
	defer s.leave()
	id := cache.TableID{Publisher: publisher, Table: tableName}
	existed, already := n.subs.Attach(subscriber{s}, id)
	if err := n.applyErr(ctx, fsm.CmdSubscribe, fsm.Subscribe{Subscriber: s.id, Publisher: publisher, Table: tableName}); err != nil {
		if !already {
			s.dropSub(id)
		}
		return err
	}
	s.recordSub(id)
	if !existed {
		// Registered with the publisher's node: now fetch what it has.
		n.subs.CatchUp(id)
	}
	return nil
}

// recordSub notes, on the service, a subscription the registry holds.
func (s *DataService) recordSub(id cache.TableID) {
	s.mu.Lock()
	s.subs[id] = true
	s.mu.Unlock()
}

// resumeSubscriptions attaches a newly registered service to the
// subscriptions the registry already holds for it: subscriptions outlive
// restarts.
func (n *Node) resumeSubscriptions(s *DataService) {
	for _, sub := range n.fsm.SubscriptionsOf(s.id) {
		id := cache.TableID{Publisher: sub.Publisher, Table: sub.Table}
		existed, _ := n.subs.Attach(subscriber{s}, id)
		s.recordSub(id)
		if !existed {
			n.subs.CatchUp(id)
		}
	}
}

// Unsubscribe ends the service's subscription to one table (unsubscribe);
// its other subscriptions go on.
func (s *DataService) Unsubscribe(ctx context.Context, publisher, tableName string) error {
	n := s.nodeOf()
	if n == nil {
		return s.errNotRunning()
	}
	if err := n.applyErr(ctx, fsm.CmdUnsubscribe, fsm.Unsubscribe{Subscriber: s.id, Publisher: publisher, Table: tableName}); err != nil {
		return err
	}
	s.dropSub(cache.TableID{Publisher: publisher, Table: tableName})
	return nil
}

func (s *DataService) dropSub(id cache.TableID) {
	n := s.nodeOf()
	s.mu.Lock()
	delete(s.subs, id)
	s.mu.Unlock()
	n.subs.Detach(s.id, id)
	if q := s.hookq.Load(); q != nil {
		q.Drop(id)
	}
	s.cache.Remove(id)
}

// deliver hands one ordered publication to the service: its cache, then
// (on their own goroutine, through the service's hook queue) its hooks.
// Called from the node's delivery loop, in order per table.
func (s *DataService) deliver(p *table.Publication, receipt time.Time) {
	if _, ok := s.enter(); !ok {
		return
	}
	defer s.leave()
	s.cache.Apply(p)
	if q := s.hookq.Load(); q != nil {
		q.Push(p, receipt)
	}
}

// runHooks calls the service's hooks with one publication (the hook
// queue's goroutine only, in order per table; the goroutine itself counts
// as work in flight, and ends once Stop closed its queue).
func (s *DataService) runHooks(p *table.Publication, receipt time.Time) {
	// Shared with the node's other subscribers and their caches, as Data
	// says: a copy of a snapshot's rows for each hook cost a new
	// subscriber of a million rows 24 MB and 55-70 ms.
	d := Data{Snapshot: p.Snapshot, Rows: p.Rows, Add: p.Add, Del: p.Del}
	if p.SentAt != 0 {
		d.Published = time.Unix(0, p.SentAt)
	}
	if s.hooks.ReceiveDataSequenced != nil {
		s.hooks.ReceiveDataSequenced(p.Publisher, p.Table, d, p.Seqnum, receipt)
	}
	if s.hooks.ReceiveData != nil {
		s.hooks.ReceiveData(p.Publisher, p.Table, d)
	}
}

// CheckResubAll checks every subscription of the service now and catches up
// those whose gap or lag has outlasted the resubscribe timeout
// (check_resub_all). The node also does this on its own, continuously.
func (s *DataService) CheckResubAll() {
	n := s.nodeOf()
	if n == nil {
		return
	}
	s.mu.Lock()
	only := make(map[cache.TableID]bool, len(s.subs))
	for id := range s.subs {
		only[id] = true
	}
	s.mu.Unlock()
	n.subs.CheckResub(only)
}

// watchRegistry follows the registry for the local services: it tells
// them when their ownership changes, and publishers when a table gains its
// first subscriber or loses its last.
func (n *Node) watchRegistry() {
	for {
		changed := n.fsm.Reshaped() // publications do not wake it
		n.stopRemoved()
		n.startExternals()
		for _, s := range n.local.all() {
			s.syncOwnership()
			s.syncSubscriberHooks()
			s.dropEndedSubscriptions()
		}
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
		case <-time.After(time.Second): // and what waits for the node to catch up
		}
		// Registry changes come in bursts under load: look at most every
		// few milliseconds.
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *DataService) syncSubscriberHooks() {
	if s.hooks.OnFirstSubscriber == nil && s.hooks.OnLastUnsubscriber == nil {
		return
	}
	now := map[string]bool{}
	for _, sub := range s.SubscriberList() {
		now[sub.Table] = true
	}
	s.mu.Lock()
	var gained, lost []string
	for t := range now {
		if !s.withSubs[t] {
			gained = append(gained, t)
		}
	}
	for t := range s.withSubs {
		if !now[t] {
			lost = append(lost, t)
		}
	}
	s.withSubs = now
	s.mu.Unlock()
	slices.Sort(gained)
	slices.Sort(lost)
	for _, t := range gained {
		if s.hooks.OnFirstSubscriber != nil {
			s.hooks.OnFirstSubscriber(t)
		}
	}
	for _, t := range lost {
		if s.hooks.OnLastUnsubscriber != nil {
			s.hooks.OnLastUnsubscriber(t)
		}
	}
}

// dropEndedSubscriptions forgets local subscriptions the registry no longer
// has (their publisher's datasource was deleted, say).
func (s *DataService) dropEndedSubscriptions() {
	n := s.nodeOf()
	if n == nil || s.Status() != "running" {
		return
	}
	// Only a removal ends one: skip the scan while none happened.
	seen := n.fsm.Unsubscribed()
	s.mu.Lock()
	if seen == s.unsubSeen {
		s.mu.Unlock()
		return
	}
	s.unsubSeen = seen
	var ended []cache.TableID
	for id := range s.subs {
		if !n.fsm.Subscribed(id.Publisher, id.Table, s.id) {
			ended = append(ended, id)
		}
	}
	s.mu.Unlock()
	for _, id := range ended {
		s.dropSub(id)
	}
}
