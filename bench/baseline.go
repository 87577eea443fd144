package bench

import (
	"context"
	"fmt"
	"sync"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/publish"
	"dse.dev/dse/fsm"
)

// localSequencer numbers publications from a counter in memory, as the
// registry would (the owner's incarnation checked against the node's
// registry copy), without Raft: `--baseline`.
type localSequencer struct {
	mu       sync.Mutex
	next     map[string]uint64 // by "service/table": the last seqnum given
	registry interface {
		Owner(service string) (node string, incarnation uint64, ok bool)
	}
}

var _ publish.Sequencer = (*localSequencer)(nil)

func newLocalSequencer() *localSequencer { return &localSequencer{next: map[string]uint64{}} }

// Sequence grants every request of cmd its seqnums.
func (l *localSequencer) Sequence(_ context.Context, cmd fsm.Publish) ([]fsm.PublishGrant, error) {
	grants := make([]fsm.PublishGrant, len(cmd.Requests))
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, r := range cmd.Requests {
		if _, inc, ok := l.registry.Owner(r.Service); !ok {
			grants[i].Err = fmt.Errorf("%w: %q", dse.ErrServiceNotFound, r.Service)
			continue
		} else if inc != r.Incarnation {
			grants[i].Err = fmt.Errorf("%w: service %q incarnation %d, current %d", dse.ErrFenced, r.Service, r.Incarnation, inc)
			continue
		}
		key := r.Service + "/" + r.Table
		grants[i].First = l.next[key] + 1
		l.next[key] += r.Count
	}
	return grants, nil
}
