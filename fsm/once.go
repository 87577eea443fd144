package fsm

import (
	"errors"
	"maps"
	"slices"
)

// Once carries a command that a node sends to the leader, with an id that
// makes a resend harmless: the FSM applies each (Origin, Seq) at most once
// and answers a repeat with the first application's result. A node resends
// when it cannot know whether the leader committed what it sent (the reply
// was lost with its connection, or leadership moved after the leader
// accepted the entry); without the id, the resend would apply the command a
// second time (a service registered twice is refused as taken, a publish
// entry granted twice burns the first grant's seqnums). This is the client
// session of the Raft dissertation (§6.3), with nodes as the clients.
//
// Origin names one run of one node (its id and a random incarnation), Seq
// numbers its commands, and Low is the lowest Seq the origin still waits
// for: every Seq below Low was answered or given up, so the FSM forgets
// their results and refuses them as answered (a copy of a given-up command
// that commits late is not applied, which its sender, told the outcome was
// unknown, must allow for anyway).
type Once struct {
	Origin string `msgpack:"o"`
	Seq    uint64 `msgpack:"s"`
	Low    uint64 `msgpack:"l"`
	Cmd    []byte `msgpack:"c"`

	decoded command // filled by Decode
}

// ErrAnswered is the result of a Once the FSM will not apply: its Seq is
// below its origin's Low (the origin had its answer, or gave up on it, or
// held more than maxOnceHeld results at once), or it was applied and this
// node has restored a snapshot since, which keeps the ids, not the results.
var ErrAnswered = errors.New("fsm: command already answered; its result is no longer held")

// Bounds on what the FSM remembers of origins. Both are far above what a
// cluster uses (an origin per node run; a handful of commands in flight per
// node), and evicting is deterministic (by log index), as all of Apply.
const (
	maxOrigins  = 1024
	maxOnceHeld = 4096 // results held per origin; more raise its Low
)

// origin is what the FSM remembers of one Origin.
type origin struct {
	low  uint64                // every Seq below is answered
	last uint64                // log index of its latest command
	done map[uint64]onceResult // Seq (>= low) -> result
}

type onceResult struct {
	res   any
	known bool // false after a restore: snapshots keep the Seqs, not results
}

func (c *Once) apply(s *state, index uint64) any {
	o := s.origin(c.Origin, index)
	if c.Low > o.low {
		o.raiseLow(c.Low)
	}
	if c.Seq < o.low {
		return ErrAnswered
	}
	if r, ok := o.done[c.Seq]; ok {
		if !r.known {
			return ErrAnswered
		}
		return r.res
	}
	res := s.applyCmd(c.decoded, index)
	o.done[c.Seq] = onceResult{res: res, known: true}
	if len(o.done) > maxOnceHeld {
		o.raiseLow(slices.Min(slices.Collect(maps.Keys(o.done))) + 1)
	}
	return res
}

// raiseLow forgets the results below low.
func (o *origin) raiseLow(low uint64) {
	o.low = low
	for seq := range o.done {
		if seq < low {
			delete(o.done, seq)
		}
	}
}

// origin returns name's record, creating it (and evicting the origin idle
// longest when there are too many), and marks it seen at index.
func (s *state) origin(name string, index uint64) *origin {
	o, ok := s.origins[name]
	if !ok {
		if len(s.origins) >= maxOrigins {
			oldest, at := "", uint64(0)
			for n, x := range s.origins {
				if oldest == "" || x.last < at || (x.last == at && n < oldest) {
					oldest, at = n, x.last
				}
			}
			delete(s.origins, oldest)
		}
		o = &origin{done: map[uint64]onceResult{}}
		s.origins[name] = o
	}
	o.last = index
	return o
}

// OriginState is an origin as snapshots persist it: the Seqs it holds
// results for, sorted, without the results.
type OriginState struct {
	Origin string   `msgpack:"o"`
	Low    uint64   `msgpack:"l"`
	Last   uint64   `msgpack:"i"`
	Done   []uint64 `msgpack:"d"`
}

func (o *origin) clone() *origin {
	return &origin{low: o.low, last: o.last, done: maps.Clone(o.done)}
}

func (o *origin) persist(name string) OriginState {
	return OriginState{Origin: name, Low: o.low, Last: o.last, Done: slices.Sorted(maps.Keys(o.done))}
}

func restoreOrigin(st OriginState) *origin {
	o := &origin{low: st.Low, last: st.Last, done: make(map[uint64]onceResult, len(st.Done))}
	for _, seq := range st.Done {
		o.done[seq] = onceResult{}
	}
	return o
}
