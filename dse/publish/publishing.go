package publish

import (
	"context"
	"fmt"

	"dse.dev/dse/dse/errdefs"
)

// Publishing is a publication on its way to its seqnum.
type Publishing struct {
	svc, table string
	done       chan Result // nil once res holds the outcome
	res        Result
	stopped    <-chan struct{} // the batcher's: closed once it has stopped
}

// Wait returns the publication's seqnum once it is committed in the
// registry and pushed to subscriber nodes, and whether it changed anything
// (a change that changed nothing is no publication: the table's current
// seqnum, false). When ctx ends first it returns errdefs.ErrUnavailable and
// the publication goes on; Wait can be called again. Not for concurrent
// use.
func (p *Publishing) Wait(ctx context.Context) (uint64, bool, error) {
	if p.done != nil {
		select {
		case r := <-p.done:
			p.res, p.done = r, nil
		case <-ctx.Done():
			return 0, false, fmt.Errorf("%w: publication of %s/%s not yet sequenced: %v", errdefs.ErrUnavailable, p.svc, p.table, ctx.Err())
		case <-p.stopped:
			select {
			case r := <-p.done: // answered as the batcher stopped
				p.res, p.done = r, nil
			default:
				return 0, false, errdefs.ErrClosed
			}
		}
	}
	return p.res.Seqnum, p.res.Changed, p.res.Err
}
