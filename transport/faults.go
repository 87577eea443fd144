package transport

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Faults injects network faults into one-way frames (Send), for tests and
// chaos runs: each frame is dropped, duplicated, or delayed (which reorders
// it behind later frames) with the given probabilities, drawn from a seeded
// source so a failing run can be replayed. Requests (Call) are left alone,
// except that replies can be lost with their connections (LoseReplies);
// Raft traffic always is.
type Faults struct {
	Drop     float64       // probability a frame is lost
	Dup      float64       // probability a frame is sent twice
	Delay    float64       // probability a frame is held back
	MaxDelay time.Duration // how long at most
	// loseReplies is how many of the next requests this node answers
	// lose their replies: the node handles the request, then closes the
	// connection instead of replying, as when a connection breaks
	// between the two. The caller cannot know whether it was handled.
	loseReplies int

	mu  sync.Mutex
	rng *rand.Rand
}

// NewFaults returns a fault injector seeded with seed.
func NewFaults(seed uint64, drop, dup, delay float64, maxDelay time.Duration) *Faults {
	return &Faults{Drop: drop, Dup: dup, Delay: delay, MaxDelay: maxDelay, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// decide returns how many copies of a frame to send (0, 1 or 2) and how long
// to hold them.
func (f *Faults) decide() (copies int, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.Float64() < f.Drop {
		return 0, 0
	}
	copies = 1
	if f.rng.Float64() < f.Dup {
		copies = 2
	}
	if f.MaxDelay > 0 && f.rng.Float64() < f.Delay {
		delay = time.Duration(f.rng.Int64N(int64(f.MaxDelay)))
	}
	return copies, delay
}

// LoseReplies makes the next n replies this node sends be lost with their
// connections (n = 0 stops it). It may be called while the transport runs.
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
