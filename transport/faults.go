package transport

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Faults injects network faults into a node's one-way frames, for tests
// and chaos runs: rules, added and removed at any time while the node runs
// (every method is safe for concurrent use), each drop, duplicate or delay
// (which reorders) the frames it matches with its probabilities, drawn from
// a seeded source so that a failing run can be replayed. A rule matches by
// peer, and by publisher and table for publications (package dse asks
// Publication for each publication it pushes; the transport asks for each
// one-way frame), for a number of frames or until removed. Requests (Call)
// are left alone, except that the replies this node sends can be lost with
// their connections (LoseReplies); Raft traffic always is.
type Faults struct {
	mu     sync.Mutex
	rng    *rand.Rand
	rules  []*faultRule
	nextID int
	// loseReplies is how many of the next requests this node answers
	// lose their replies: the node handles the request, then closes the
	// connection instead of replying, as when a connection breaks
	// between the two. The caller cannot know whether it was handled.
	loseReplies int
}

// Rule is one fault: what it matches, and what it does to a frame it
// matches. When several rules match a frame, the first added decides.
type Rule struct {
	// Peer is the peer's cluster address the frame goes to ("": any).
	Peer string
	// Publisher and Table restrict the rule to publications of that
	// publisher and table ("": any). A rule that names either applies to
	// the publications pushed to a peer, each one counting as a frame; a
	// rule that names neither, to the one-way frames that carry them.
	Publisher, Table string
	// Frames is how many matching frames the rule applies to before it
	// ends (0: until removed).
	Frames int
	// Drop, Dup and Delay are the probabilities that a frame is lost, sent
	// twice, or held back for up to MaxDelay.
	Drop, Dup, Delay float64
	MaxDelay         time.Duration
}

type faultRule struct {
	id   int
	r    Rule
	left int // frames left, when r.Frames > 0
}

// NewFaults returns a fault injector with no rules, its random source
// seeded with seed.
func NewFaults(seed uint64) *Faults {
	return &Faults{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Add adds a rule and returns its id, for Remove.
func (f *Faults) Add(r Rule) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.rules = append(f.rules, &faultRule{id: f.nextID, r: r, left: r.Frames})
	return f.nextID
}

// Remove removes the rule with id (a rule whose frames ran out is gone
// already).
func (f *Faults) Remove(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = slices.DeleteFunc(f.rules, func(r *faultRule) bool { return r.id == id })
}

// Clear removes every rule and stops losing replies.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules, f.loseReplies = nil, 0
}

// Active reports how many rules are in force.
func (f *Faults) Active() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rules)
}

// Frame decides the fate of a one-way frame to peer: how many copies to
// send (0, 1 or 2) and how long to hold them, by the rules that name no
// publisher or table.
func (f *Faults) Frame(peer string) (copies int, delay time.Duration) {
	return f.decide(peer, "", "", false)
}

// Publication decides the fate of one publication of publisher's table
// pushed to peer, as Frame does for a frame, by the rules that name a
// publisher or a table.
func (f *Faults) Publication(peer, publisher, table string) (copies int, delay time.Duration) {
	return f.decide(peer, publisher, table, true)
}

func (f *Faults) decide(peer, publisher, table string, publication bool) (int, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, fr := range f.rules {
		r := fr.r
		named := r.Publisher != "" || r.Table != ""
		switch {
		case named != publication,
			r.Peer != "" && r.Peer != peer,
			r.Publisher != "" && r.Publisher != publisher,
			r.Table != "" && r.Table != table:
			continue
		}
		if r.Frames > 0 {
			if fr.left--; fr.left == 0 {
				f.rules = slices.Delete(f.rules, i, i+1)
			}
		}
		if f.rng.Float64() < r.Drop {
			return 0, 0
		}
		copies := 1
		if f.rng.Float64() < r.Dup {
			copies = 2
		}
		var delay time.Duration
		if r.MaxDelay > 0 && f.rng.Float64() < r.Delay {
			delay = time.Duration(f.rng.Int64N(int64(r.MaxDelay)))
		}
		return copies, delay
	}
	return 1, 0
}

// LoseReplies makes the next n replies this node sends be lost with their
// connections (n = 0 stops it).
func (f *Faults) LoseReplies(n int) {
	f.mu.Lock()
	f.loseReplies = n
	f.mu.Unlock()
}

// replyLost decides whether to lose a reply.
func (f *Faults) replyLost() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loseReplies > 0 {
		f.loseReplies--
		return true
	}
	return false
}
