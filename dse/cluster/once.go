package cluster

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/fsm"
)

// onceIDs numbers the commands this node sends through leaderDo, so that
// resending one is harmless (fsm.Once): the FSM applies each (origin, seq)
// once and answers a resend with the first result. The origin is the node's
// id and a random incarnation, so a restarted node never reuses an id.
type onceIDs struct {
	origin string
	mu     sync.Mutex
	next   uint64
	open   map[uint64]struct{} // sent and not yet answered or given up
}

func newOnceIDs(nodeID string) *onceIDs {
	return &onceIDs{origin: fmt.Sprintf("%s/%016x", nodeID, rand.Uint64()), next: 1, open: map[uint64]struct{}{}}
}

// wrap gives cmd the next id and returns the entry to send, and the
// function to call once its answer is in (or given up).
func (o *onceIDs) wrap(cmd []byte) ([]byte, func(), error) {
	o.mu.Lock()
	seq := o.next
	o.next++
	o.open[seq] = struct{}{}
	low := seq
	for s := range o.open {
		low = min(low, s)
	}
	o.mu.Unlock()
	done := func() {
		o.mu.Lock()
		delete(o.open, seq)
		o.mu.Unlock()
	}
	data, err := fsm.Encode(fsm.CmdOnce, fsm.Once{Origin: o.origin, Seq: seq, Low: low, Cmd: cmd})
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("%w: %v", errdefs.ErrInvalid, err)
	}
	return data, done, nil
}
