package fsm

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// FSM is the replicated state machine. Reads take a read lock on the local
// copy and never touch the network.
type FSM struct {
	mu       sync.RWMutex
	s        *state
	changed  chan struct{} // closed and replaced after every applied entry
	reshaped chan struct{} // closed and replaced after an entry that changes more than seqnums
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an empty FSM.
func New() *FSM {
	return &FSM{s: newState(), changed: make(chan struct{}), reshaped: make(chan struct{})}
}

// Apply applies one committed log entry. It returns the command's result: nil,
// a business error, or a command-specific value ([]PublishGrant for Publish,
// []any for Batch).
func (f *FSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	r, reshaped := f.applyLocked(l)
	f.notifyLocked(reshaped)
	f.mu.Unlock()
	return r
}

// ApplyBatch applies several committed entries under one lock.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	reshaped := false
	f.mu.Lock()
	for i, l := range logs {
		r, re := f.applyLocked(l)
		out[i], reshaped = r, reshaped || re
	}
	f.notifyLocked(reshaped)
	f.mu.Unlock()
	return out
}

// applyLocked applies one entry; reshaped says whether it may have
// changed more than seqnums.
func (f *FSM) applyLocked(l *raft.Log) (result any, reshaped bool) {
	if l.Index > f.s.index {
		f.s.index = l.Index
	}
	if l.Type != raft.LogCommand {
		return nil, false
	}
	_, cmd, err := Decode(l.Data)
	if err != nil {
		// A committed entry this node cannot decode means it diverged from
		// the cluster (or runs older code): stop rather than guess.
		panic(fmt.Sprintf("fsm: cannot apply entry %d: %v", l.Index, err))
	}
	reshaped, unsub := touches(cmd)
	if unsub {
		f.s.unsubscribed++
	}
	return f.s.applyCmd(cmd, l.Index), reshaped
}

// touches reports what cmd may change: more than seqnums (anything but
// publications, which come at thousands a second and only number them),
// and, of subscriptions, more than adding some (anything but publications
// and subscribes, the bulk of a big registry's making).
func touches(cmd command) (reshape, unsub bool) {
	switch c := cmd.(type) {
	case *Publish:
		return false, false
	case *Subscribe:
		return true, false
	case *Once:
		return touches(c.decoded)
	case *Batch:
		for _, sub := range c.decoded {
			r, u := touches(sub)
			reshape, unsub = reshape || r, unsub || u
		}
		return reshape, unsub
	}
	return true, true
}

func (f *FSM) notifyLocked(reshaped bool) {
	close(f.changed)
	f.changed = make(chan struct{})
	if reshaped {
		close(f.reshaped)
		f.reshaped = make(chan struct{})
	}
}

// Changed returns a channel closed the next time an entry is applied or the
// state is restored. Callers re-read what they need and call Changed again.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Reshaped returns a channel closed the next time an applied entry changes
// more than seqnums (nodes, services, subscriptions, datasources, tokens,
// attachments, replica sets) or the state is restored: what watchers of
// the registry's records wait on, so that publications, which come at
// thousands a second, do not wake them.
func (f *FSM) Reshaped() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.reshaped
}

// Index returns the log index of the last applied entry.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.index
}

// Node returns a copy of one node's record.
func (f *FSM) Node(id string) (Node, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.s.nodes[id]
	if !ok {
		return Node{}, false
	}
	return *n, true
}

// Nodes returns every node, sorted by id.
func (f *FSM) Nodes() []Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Node, 0, len(f.s.nodes))
	for _, id := range sortedKeys(f.s.nodes) {
		out = append(out, *f.s.nodes[id])
	}
	return out
}

// Service returns a copy of one service's record.
func (f *FSM) Service(id string) (Service, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.s.services[id]
	if !ok {
		return Service{}, false
	}
	return *s.clone(), true
}

// Owner returns a service's owner node and incarnation without copying the
// record (the publish path asks on every publication).
func (f *FSM) Owner(id string) (node string, incarnation uint64, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.s.services[id]
	if !ok {
		return "", 0, false
	}
	return s.Owner, s.Incarnation, true
}

// Services returns every service, sorted by id.
func (f *FSM) Services() []Service {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Service, 0, len(f.s.services))
	for _, id := range sortedKeys(f.s.services) {
		out = append(out, *f.s.services[id].clone())
	}
	return out
}

// Subscribers returns the services subscribed to publisher's table, sorted.
func (f *FSM) Subscribers(publisher, table string) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Sorted(maps.Keys(f.s.subs[publisher][table]))
}

// Subscribed reports whether subscriber subscribes to publisher's table.
func (f *FSM) Subscribed(publisher, table, subscriber string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.s.subs[publisher][table][subscriber]
	return ok
}

// Unsubscribed returns a number that changes whenever a subscription may
// have been removed (by any entry but publications and subscribes, or the
// state restored): a watcher of removals compares it with the one it last
// saw rather than scan every subscription.
func (f *FSM) Unsubscribed() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.unsubscribed
}

// Destinations returns the nodes a publication of publisher's table goes
// to, sorted: those that host an instance of a subscriber of it, and the
// publisher's replicas (a replicated external service).
func (f *FSM) Destinations(publisher, table string) []string {
	return f.destinations(publisher, table, true)
}

// SubscriberNodes returns the nodes that host an instance of a subscriber
// of publisher's table, sorted: Destinations without the publisher's
// replicas.
func (f *FSM) SubscriberNodes(publisher, table string) []string {
	return f.destinations(publisher, table, false)
}

func (f *FSM) destinations(publisher, table string, replicas bool) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []string
	for sub := range f.s.subs[publisher][table] {
		if svc, ok := f.s.services[sub]; ok {
			out = append(out, svc.Instances...)
		}
	}
	if svc, ok := f.s.services[publisher]; ok && replicas {
		out = append(out, svc.Replicas...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ReplicaNodes returns the nodes of publisher's replica set (none when it
// is not replicated).
func (f *FSM) ReplicaNodes(publisher string) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if svc, ok := f.s.services[publisher]; ok {
		return slices.Clone(svc.Replicas)
	}
	return nil
}

// Subscriptions returns every subscription, sorted by publisher, table and
// subscriber.
func (f *FSM) Subscriptions() []Subscription {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.subscriptions(func(Subscription) bool { return true })
}

// SubscriptionsOf returns the subscriptions held by one subscriber, sorted
// by publisher and table.
func (f *FSM) SubscriptionsOf(subscriber string) []Subscription {
	f.mu.RLock()
	defer f.mu.RUnlock()
	mine := f.s.bySub[subscriber]
	out := make([]Subscription, 0, len(mine))
	for pt := range mine {
		out = append(out, Subscription{Subscriber: subscriber, Publisher: pt.publisher, Table: pt.table})
	}
	slices.SortFunc(out, func(a, b Subscription) int {
		return cmp.Or(cmp.Compare(a.Publisher, b.Publisher), cmp.Compare(a.Table, b.Table))
	})
	return out
}

// SubscriptionsTo returns the subscriptions to one publisher's tables.
func (f *FSM) SubscriptionsTo(publisher string) []Subscription {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Subscription
	tables := f.s.subs[publisher]
	for _, t := range sortedKeys(tables) {
		for _, sub := range sortedKeys(tables[t]) {
			out = append(out, Subscription{Subscriber: sub, Publisher: publisher, Table: t})
		}
	}
	return out
}

func (s *state) subscriptions(keep func(Subscription) bool) []Subscription {
	var out []Subscription
	for _, p := range sortedKeys(s.subs) {
		tables := s.subs[p]
		for _, t := range sortedKeys(tables) {
			for _, sub := range sortedKeys(tables[t]) {
				if x := (Subscription{Subscriber: sub, Publisher: p, Table: t}); keep(x) {
					out = append(out, x)
				}
			}
		}
	}
	return out
}

// Seqnum returns the latest committed seqnum of a table; 0 if never published.
func (f *FSM) Seqnum(publisher, table string) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.seqnums[publisher][table]
}

// PublishedTables returns the tables a service has published, sorted.
func (f *FSM) PublishedTables(publisher string) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return sortedKeys(f.s.seqnums[publisher])
}

// Datasource returns a copy of one datasource by id.
func (f *FSM) Datasource(id string) (Datasource, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	d, ok := f.s.datasources[id]
	if !ok {
		return Datasource{}, false
	}
	return *d.clone(), true
}

// Datasources returns every datasource, sorted by id.
func (f *FSM) Datasources() []Datasource {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Datasource, 0, len(f.s.datasources))
	for _, id := range sortedKeys(f.s.datasources) {
		out = append(out, *f.s.datasources[id].clone())
	}
	return out
}

// Tokens returns every API token (hashes, no secrets), sorted by id.
func (f *FSM) Tokens() []Token {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Token, 0, len(f.s.tokens))
	for _, id := range sortedKeys(f.s.tokens) {
		out = append(out, *f.s.tokens[id])
	}
	return out
}

// TokenExists reports whether the token with id exists (not revoked).
func (f *FSM) TokenExists(id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.s.tokens[id]
	return ok
}

// TokenByHash finds the token whose secret hashes to hash.
func (f *FSM) TokenByHash(hash string) (Token, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, t := range f.s.tokens {
		if t.Hash == hash {
			return *t, true
		}
	}
	return Token{}, false
}

// AuthEnabled reports whether the cluster holds any token: then every API
// request must carry one.
func (f *FSM) AuthEnabled() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.s.tokens) > 0
}

// Snapshot captures the state for Persist. It clones metadata only.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{s: f.s.clone()}, nil
}

// Restore replaces the state with one read from a snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	s.unsubscribed = f.s.unsubscribed + 1 // it may have dropped some
	f.s = s
	f.notifyLocked(true)
	f.mu.Unlock()
	return nil
}
