package dse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"dse.dev/dse/dse/cache"
)

// WatchEvent is one line of `dse watch`: the table as a snapshot first, then
// each change as rows added and deleted.
type WatchEvent struct {
	Seqnum   uint64
	Snapshot bool
	Rows     []Row // snapshot only
	Add      []Row
	Del      []Row
}

// ErrWatchTooSlow ends a watch whose reader fell too far behind.
var ErrWatchTooSlow = errors.New("watcher fell behind")

// Watch subscribes to publisher's table through this node and sends events
// until ctx ends; it then removes its subscriber. It returns ctx's error, or
// ErrWatchTooSlow when events stays full; ErrServiceNotFound at once when
// the registry has no such publisher (service or datasource).
func (n *Node) Watch(ctx context.Context, publisher, tbl string, events chan<- WatchEvent) error {
	if err := checkTableID(publisher, tbl); err != nil {
		return err
	}
	if !n.publisherKnown(publisher) {
		if !n.syncRead(ctx) {
			return errNotCurrent(n.id, publisher)
		}
		if !n.publisherKnown(publisher) {
			// A typo would otherwise wait for a publisher that never
			// comes.
			return fmt.Errorf("%w: %q", ErrServiceNotFound, publisher)
		}
	}
	if open := n.watches.Add(1); open > int64(n.cfg.MaxWatches) {
		n.watches.Add(-1)
		return fmt.Errorf("%w: node %q has %d watches open, its limit (--max-watches)", ErrUnavailable, n.id, n.cfg.MaxWatches)
	}
	defer n.watches.Add(-1)
	s := NewDataService(newWatchID(n.id), Hooks{})
	s.kind = KindWatch
	overflow := make(chan struct{})
	ended := make(chan struct{})
	var endOnce sync.Once
	first := true
	id := cache.TableID{Publisher: publisher, Table: tbl}
	s.cache.OnChange(func(ch cache.Change) {
		if ch.TableID != id {
			return
		}
		if ch.Removed {
			// The subscription ended (its publisher was deleted).
			endOnce.Do(func() { close(ended) })
			return
		}
		var ev WatchEvent
		if first {
			rows, _, _ := s.cache.Rows(id)
			ev = WatchEvent{Seqnum: ch.Seqnum, Snapshot: true, Rows: rows}
			first = false
		} else {
			if ch.Empty() {
				return
			}
			// Copies: the reader may sort them, and a snapshot's Added is
			// the publication's own rows.
			ev = WatchEvent{Seqnum: ch.Seqnum, Add: slices.Clone(ch.Added), Del: slices.Clone(ch.Deleted)}
		}
		select {
		case events <- ev:
		default:
			select {
			case <-overflow:
			default:
				close(overflow)
			}
		}
	})
	if err := n.Register(ctx, s); err != nil {
		return err
	}
	defer func() {
		// Its subscriber leaves the registry. When the watch ends because
		// its server or node shuts down (cause ErrClosed), that is tried
		// briefly: without a quorum it would hold the shutdown, and the
		// node's restart removes the watches its last process left.
		timeout := n.cfg.ApplyTimeout
		if errors.Is(context.Cause(ctx), ErrClosed) {
			timeout = min(timeout, time.Second)
		}
		cctx, cancel := context.WithTimeout(n.ctx, timeout)
		defer cancel()
		if err := s.Stop(cctx); err != nil {
			n.logger.Warn("cannot remove watch subscriber", "service", s.id, "error", err)
		}
	}()
	if err := s.Subscribe(ctx, publisher, tbl); err != nil {
		return err
	}
	// A publisher deleted under the watch ends it, as one unknown at the
	// start fails it (two checks in a row: a service re-registering
	// under its id is not a deletion).
	check := time.NewTicker(time.Second)
	defer check.Stop()
	missing := 0
	for {
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrClosed) {
				return fmt.Errorf("%w: the node is shutting down", ErrClosed)
			}
			return ctx.Err()
		case <-overflow:
			return fmt.Errorf("%w: %w: more than %d events unread", ErrUnavailable, ErrWatchTooSlow, cap(events))
		case <-ended:
			return fmt.Errorf("%w: the subscription to %s/%s ended (its publisher was deleted)", ErrNotFound, publisher, tbl)
		case <-check.C:
			if n.publisherKnown(publisher) {
				missing = 0
			} else if missing++; missing == 2 {
				return fmt.Errorf("%w: %q was deleted", ErrServiceNotFound, publisher)
			}
		case <-n.ctx.Done():
			return ErrClosed
		}
	}
}

// publisherKnown reports whether the registry has publisher: a service, or
// a datasource whose service is still being placed.
func (n *Node) publisherKnown(publisher string) bool {
	if _, ok := n.fsm.Service(publisher); ok {
		return true
	}
	_, ok := n.fsm.DatasourceByName(publisher)
	return ok
}
