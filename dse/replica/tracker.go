package replica

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// The owner's side: a publication of a replicated service is answered once
// every in-sync replica (the owner among them, and the replicas it is
// adding) holds it on disk, and at least a majority of the replica set
// does. A replica that holds up the oldest publication for LagTimeout
// leaves the in-sync set (the owner says so in the registry, fenced by its
// incarnation); a replica out of sync that has caught up with what the
// owner acknowledged joins it again. A publication not durable within
// AckTimeout fails, its outcome unknown.

type tracker struct {
	e  *Engine
	mu sync.Mutex
	by map[string]*owned // by service
}

// owned is what an owner tracks of one service, under one incarnation.
type owned struct {
	inc     uint64
	waiters map[string][]*waiter         // by table, in seqnum order
	acked   map[string]map[string]uint64 // by replica, by table: on its disk
	heard   map[string]time.Time         // by replica: its last acknowledgement
	done    map[string]uint64            // by table: the last seqnum answered durable
	base    map[string]uint64            // by table: what the owner held when it took over
	joining map[string]time.Time         // replicas being added to the in-sync set
	shrink  bool                         // a shrink of the in-sync set is being written
}

type waiter struct {
	seq  uint64
	at   time.Time
	done func(error)
}

func newTracker(e *Engine) *tracker { return &tracker{e: e, by: map[string]*owned{}} }

// Needs reports whether publications of service wait to be durable on its
// replicas before they are answered: it is replicated, and this node owns
// it.
func (e *Engine) Needs(service string) bool {
	rec, ok := e.cfg.Registry.Service(service)
	return ok && rec.Owner == e.cfg.Node && Replicated(rec)
}

// Await calls done once publication p (sequenced, and offered to this
// node's replica) is durable where the service's rules say, or with the
// error that says it may not be.
func (e *Engine) Await(p *table.Publication, done func(error)) {
	t := e.tr
	rec, ok := e.cfg.Registry.Service(p.Publisher)
	if !ok || rec.Owner != e.cfg.Node {
		done(fmt.Errorf("%w: %s is no longer owned by node %q: publication %d of table %q may or may not be kept", errdefs.ErrUnavailable, p.Publisher, e.cfg.Node, p.Seqnum, p.Table))
		return
	}
	t.mu.Lock()
	o, ready := t.stateLocked(p.Publisher, rec.Incarnation)
	o.waiters[p.Table] = append(o.waiters[p.Table], &waiter{seq: p.Seqnum, at: time.Now(), done: done})
	ready = append(ready, t.evaluateLocked(p.Publisher, o, rec)...)
	t.mu.Unlock()
	run(ready)
}

// CanPublish returns nil if service's owner may take a publication now: at
// least a majority of its replicas is in sync. Else the error says why,
// before the publication changes anything.
func (e *Engine) CanPublish(service string) error {
	rec, ok := e.cfg.Registry.Service(service)
	if !ok || !Replicated(rec) {
		return nil
	}
	replicas, inSync := replicasOf(rec)
	if need := fsm.MinInSync(len(replicas)); len(inSync) < need {
		return fmt.Errorf("%w: %s has %d of %d replicas in sync, %d needed to acknowledge a publication; the others are catching up", errdefs.ErrUnavailable, service, len(inSync), len(replicas), need)
	}
	return nil
}

// stateLocked returns what the tracker holds of svc under incarnation inc,
// starting afresh (the baseline: what this node's replica holds) when the
// incarnation is new; the answers to give the waiters of an earlier one
// come with it.
func (t *tracker) stateLocked(svc string, inc uint64) (*owned, []answer) {
	o := t.by[svc]
	if o != nil && o.inc == inc {
		return o, nil
	}
	var stale []answer
	if o != nil {
		for _, ws := range o.waiters {
			for _, w := range ws {
				stale = append(stale, answer{w.done, fmt.Errorf("%w: %s changed hands: publication %d may or may not be kept", errdefs.ErrUnavailable, svc, w.seq)})
			}
		}
	}
	o = &owned{inc: inc, waiters: map[string][]*waiter{}, acked: map[string]map[string]uint64{}, heard: map[string]time.Time{}, done: map[string]uint64{}, base: map[string]uint64{}, joining: map[string]time.Time{}}
	t.e.mu.Lock()
	if h := t.e.svcs[svc]; h != nil {
		for name, tb := range h.tables {
			o.base[name] = tb.seq
		}
	}
	t.e.mu.Unlock()
	t.by[svc] = o
	return o, stale
}

// ack records a replica's acknowledgement.
func (t *tracker) ack(a Ack) {
	rec, ok := t.e.cfg.Registry.Service(a.Service)
	if !ok || rec.Owner != t.e.cfg.Node {
		return
	}
	if replicas, _ := replicasOf(rec); !slices.Contains(replicas, a.Node) {
		return
	}
	t.mu.Lock()
	o, ready := t.stateLocked(a.Service, rec.Incarnation)
	m := o.acked[a.Node]
	if m == nil {
		m = map[string]uint64{}
		o.acked[a.Node] = m
	}
	for name, seq := range a.Tables {
		m[name] = max(m[name], seq)
	}
	o.heard[a.Node] = time.Now()
	ready = append(ready, t.evaluateLocked(a.Service, o, rec)...)
	t.mu.Unlock()
	run(ready)
}

type answer struct {
	done func(error)
	err  error
}

func run(as []answer) {
	for _, a := range as {
		a.done(a.err)
	}
}

// required returns the replicas whose acknowledgements a publication
// needs: the in-sync set, and the replicas being added to it.
func (o *owned) required(inSync []string) []string {
	req := slices.Clone(inSync)
	for r := range o.joining {
		if !slices.Contains(req, r) {
			req = append(req, r)
		}
	}
	return req
}

// evaluateLocked answers the waiters of svc now durable, in order per
// table.
func (t *tracker) evaluateLocked(svc string, o *owned, rec fsm.Service) []answer {
	replicas, inSync := replicasOf(rec)
	required := o.required(inSync)
	need := fsm.MinInSync(len(replicas))
	var out []answer
	for name, ws := range o.waiters {
		k := 0
		for ; k < len(ws); k++ {
			w := ws[k]
			holders, all := 0, true
			for _, r := range replicas {
				if o.acked[r][name] >= w.seq {
					holders++
				} else if slices.Contains(required, r) {
					all = false
				}
			}
			if !all || holders < need {
				break
			}
			o.done[name] = max(o.done[name], w.seq)
			out = append(out, answer{done: w.done})
		}
		if k == len(ws) {
			delete(o.waiters, name)
		} else {
			o.waiters[name] = ws[k:]
		}
	}
	return out
}

// failAll fails every publication waiting to be durable (the node closes).
func (t *tracker) failAll(err error) {
	t.mu.Lock()
	var out []answer
	for _, o := range t.by {
		for _, ws := range o.waiters {
			for _, w := range ws {
				out = append(out, answer{w.done, err})
			}
		}
	}
	t.by = map[string]*owned{}
	t.mu.Unlock()
	run(out)
}

// tick fails publications past AckTimeout, takes laggards out of the
// in-sync set, and adds replicas that caught up.
func (t *tracker) tick() {
	now := time.Now()
	cfg := t.e.cfg
	var out []answer
	type change struct {
		svc    string
		inc    uint64
		inSync []string
		shrink bool
	}
	var changes []change
	t.mu.Lock()
	for svc, o := range t.by {
		rec, ok := cfg.Registry.Service(svc)
		if !ok || rec.Owner != cfg.Node || rec.Incarnation != o.inc {
			for _, ws := range o.waiters {
				for _, w := range ws {
					out = append(out, answer{w.done, fmt.Errorf("%w: %s changed hands: publication %d may or may not be kept", errdefs.ErrUnavailable, svc, w.seq)})
				}
			}
			delete(t.by, svc)
			continue
		}
		out = append(out, t.evaluateLocked(svc, o, rec)...)
		replicas, inSync := replicasOf(rec)
		for r, since := range o.joining {
			if slices.Contains(inSync, r) || now.Sub(since) > 10*time.Second {
				delete(o.joining, r)
			}
		}
		var oldest *waiter
		var oldestTable string
		for name, ws := range o.waiters {
			kept := ws[:0]
			for _, w := range ws {
				if now.Sub(w.at) > cfg.AckTimeout {
					out = append(out, answer{w.done, fmt.Errorf("%w: publication %d of %s/%s was not on enough replicas' disks within %s (%d of %d in sync, %d needed): it may or may not be kept", errdefs.ErrUnavailable, w.seq, svc, name, cfg.AckTimeout, len(inSync), len(replicas), fsm.MinInSync(len(replicas)))})
					continue
				}
				kept = append(kept, w)
			}
			if len(kept) == 0 {
				delete(o.waiters, name)
				continue
			}
			o.waiters[name] = kept
			if oldest == nil || kept[0].at.Before(oldest.at) {
				oldest, oldestTable = kept[0], name
			}
		}
		if len(rec.Replicas) == 0 || o.shrink {
			continue // made before replication: its one replica
		}
		if oldest != nil && now.Sub(oldest.at) > cfg.LagTimeout {
			keep := []string{cfg.Node}
			lag := false
			for _, r := range inSync {
				if r == cfg.Node {
					continue
				}
				if o.acked[r][oldestTable] >= oldest.seq {
					keep = append(keep, r)
				} else {
					lag = true
				}
			}
			for r := range o.joining {
				if o.acked[r][oldestTable] < oldest.seq {
					delete(o.joining, r) // not caught up after all
				}
			}
			if lag {
				o.shrink = true
				changes = append(changes, change{svc, o.inc, keep, true})
				continue
			}
		}
		for _, r := range replicas {
			if slices.Contains(inSync, r) || !o.joining[r].IsZero() || !t.caughtUpLocked(o, r) {
				continue
			}
			// Only a replica heard from lately, on a node up: one whose
			// node is down, or that went quiet, holds nothing new.
			if node, ok := cfg.Registry.Node(r); !ok || !node.Up || now.Sub(o.heard[r]) > 2*time.Second {
				continue
			}
			// From now on its acknowledgements count: whatever is answered
			// from here waits for it too.
			o.joining[r] = now
			changes = append(changes, change{svc, o.inc, append(slices.Clone(inSync), r), false})
		}
	}
	t.mu.Unlock()
	run(out)
	for _, c := range changes {
		cfg.Go(func() {
			ctx, cancel := context.WithTimeout(cfg.Context, 5*time.Second)
			err := cfg.Writer.Write(ctx, fsm.CmdReplicaSync, fsm.ReplicaSync{Service: c.svc, Incarnation: c.inc, InSync: c.inSync})
			cancel()
			if err != nil {
				cfg.Logger.Warn("cannot change the in-sync replicas", "service", c.svc, "in-sync", c.inSync, "error", err)
			} else if c.shrink {
				cfg.Logger.Info("replicas fell behind: out of the in-sync set", "service", c.svc, "in-sync", c.inSync)
			} else {
				cfg.Logger.Info("a replica caught up: in the in-sync set", "service", c.svc, "in-sync", c.inSync)
			}
			if c.shrink {
				t.mu.Lock()
				if o := t.by[c.svc]; o != nil {
					o.shrink = false
				}
				t.mu.Unlock()
			}
		})
	}
}

// caughtUpLocked reports whether replica r holds, of every table of svc,
// at least what the owner acknowledged last, or held when it took over.
func (t *tracker) caughtUpLocked(o *owned, r string) bool {
	for name, seq := range o.base {
		if o.acked[r][name] < max(seq, o.done[name]) {
			return false
		}
	}
	for name, seq := range o.done {
		if o.acked[r][name] < seq {
			return false
		}
	}
	return true
}
