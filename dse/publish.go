package dse

import (
	"context"
	"fmt"

	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/publish"
	"dse.dev/dse/dse/table"
)

// Publishing is a publication on its way to its seqnum (package publish):
// its Wait returns the seqnum once it is committed in the registry and
// pushed to subscriber nodes.
type Publishing = publish.Publishing

// pubTable returns the service's table name, created on first use.
func (s *DataService) pubTable(name string) *publish.Table {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	if !ok {
		hist := DefaultConfig().HistorySize
		var ret *publish.Retention
		if s.node != nil {
			hist, ret = s.node.cfg.HistorySize, s.node.retention
		}
		t = publish.NewTable(name, hist, ret)
		s.tables[name] = t
	}
	return t
}

func (s *DataService) existingTable(name string) (*publish.Table, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	return t, ok
}

// Publish sets a table's full new content (publish). The node computes the
// delta against the last publication and sends that, or the whole table when
// useSnapshot is set (or the table's first publication under this owner).
// Nothing changed means nothing is sent and no seqnum used: it returns
// (current seqnum, false). Otherwise it returns the publication's seqnum
// once it is committed in the registry and pushed to subscriber nodes.
// rows, the slice and its Rows, are the node's from the call on: the caller
// must not modify them.
func (s *DataService) Publish(ctx context.Context, tableName string, rows []Row, useSnapshot bool) (uint64, bool, error) {
	if err := table.CanonicalRows(rows, table.DefaultLimits); err != nil {
		return 0, false, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s.publish(ctx, tableName, func(set *table.Set) (add, del, content []Row) {
		// The new content, indexed once; the delta falls out of it.
		add, del = set.Replace(rows)
		if set.Len() == len(rows) {
			content = rows // no duplicates: a snapshot needs no copy
		}
		return add, del, content
	}, useSnapshot)
}

// PublishDelta publishes a change the caller already knows (rows added and
// deleted), without diffing a big table. Rows already present (added) or
// absent (deleted) are no change. As with Publish, the rows of add and del
// are the node's from the call on: the caller must not modify them (the
// node keeps them in its table and its history, and sends them later to
// subscribers catching up).
func (s *DataService) PublishDelta(ctx context.Context, tableName string, add, del []Row) (uint64, bool, error) {
	if err := s.checkDelta(tableName, add, del); err != nil {
		return 0, false, err
	}
	return s.publish(ctx, tableName, deltaChange(add, del), false)
}

// checkDelta refuses a delta with bad rows, or one for a table this instance
// has not published in full since it took the service over.
func (s *DataService) checkDelta(tableName string, add, del []Row) error {
	if err := table.CanonicalRows(add, table.DefaultLimits); err != nil {
		return fmt.Errorf("%w: add: %v", ErrInvalid, err)
	}
	if err := table.CanonicalRows(del, table.DefaultLimits); err != nil {
		return fmt.Errorf("%w: del: %v", ErrInvalid, err)
	}
	if n := s.nodeOf(); n != nil {
		if t, ok := s.existingTable(tableName); (!ok || !t.Published()) && n.fsm.Seqnum(s.id, tableName) > 0 {
			return fmt.Errorf("%w: %s/%s was published before this instance owned it: publish its full content first", ErrInvalid, s.id, tableName)
		}
	}
	return nil
}

// deltaChange applies a known delta; Set.Apply reports what actually
// changed, and that is the publication.
func deltaChange(add, del []Row) publish.Change {
	return func(set *table.Set) ([]Row, []Row, []Row) {
		added, deleted := set.Apply(add, del)
		return added, deleted, nil
	}
}

// PublishDeltaAsync is PublishDelta without the wait, for a publisher that
// keeps many publications in flight (as NATS's PublishAsync): it returns
// once the change is applied to the table and queued for its seqnum, and
// the Publishing says what it came to. Publications of one table are
// sequenced in the order their calls returned; when one fails, those queued
// behind it fail too, and the table's next publication is a snapshot. The
// rows of add and del are the node's from the call on, as with
// PublishDelta. A node holds at most 1,048,576 publications waiting for
// seqnums: one more is refused (ErrUnavailable) before it changes its
// table, as NATS refuses an async publish with too many pending.
func (s *DataService) PublishDeltaAsync(tableName string, add, del []Row) (*Publishing, error) {
	if err := s.checkDelta(tableName, add, del); err != nil {
		return nil, err
	}
	return s.startPublish(tableName, deltaChange(add, del), false)
}

// publish runs change on the table's content and waits for the seqnum.
func (s *DataService) publish(ctx context.Context, tableName string, change publish.Change, useSnapshot bool) (uint64, bool, error) {
	p, err := s.startPublish(tableName, change, useSnapshot)
	if err != nil {
		return 0, false, err
	}
	return p.Wait(ctx)
}

// startPublish queues change for the table, on behalf of this instance if
// it owns the service: the batcher applies it to the content and answers
// once it is sequenced. The service counts as busy (Wait) until then.
func (s *DataService) startPublish(tableName string, change publish.Change, useSnapshot bool) (*Publishing, error) {
	if err := name.Check("table name", tableName); err != nil {
		return nil, err
	}
	n, ok := s.enter()
	if !ok {
		return nil, s.errNotRunning()
	}
	owner, inc, ok := n.fsm.Owner(s.id)
	switch {
	case !ok:
		s.leave()
		return nil, fmt.Errorf("%w: %q", ErrServiceNotFound, s.id)
	case owner != n.id:
		s.leave()
		return nil, fmt.Errorf("%w: service %q is standing by on node %q; node %q owns it", ErrFenced, s.id, n.id, owner)
	}
	// The batcher calls Done (leave) once it has answered.
	return n.batcher.Publish(publisher{s}, s.pubTable(tableName), inc, change, useSnapshot)
}

// publisher is a DataService as the batcher sees it.
type publisher struct{ s *DataService }

func (p publisher) ID() string      { return p.s.id }
func (p publisher) Done()           { p.s.leave() }
func (p publisher) Heal(tbl string) { p.s.heal(tbl) }

// heal republishes a table as a snapshot after a failed publication, unless
// a publication since has done it.
func (s *DataService) heal(tableName string) {
	n := s.nodeOf()
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
	defer cancel()
	noChange := func(*table.Set) (add, del, content []Row) { return nil, nil, nil }
	if _, changed, err := s.publish(ctx, tableName, noChange, true); err == nil && changed {
		n.logger.Info("table healed with a snapshot after a failed publication", "service", s.id, "table", tableName)
	}
}

// seed returns, for a table never published, the snapshot at seqnum 0 that
// subscribers start from: the GetSnapshot hook's rows (Congress gives a new
// subscriber of such a table seqnum 0 and get_snapshot(table)). It returns
// nil when the table has been published, or the service has no hook, or
// the hook fails or returns rows that are not canonical (logged).
func (s *DataService) seed(tableName string) *table.Publication {
	n := s.nodeOf()
	if s.hooks.GetSnapshot == nil || n == nil || n.fsm.Seqnum(s.id, tableName) > 0 {
		return nil
	}
	if t, ok := s.existingTable(tableName); ok && t.Published() {
		return nil
	}
	rows, err := s.hooks.GetSnapshot(tableName)
	if err == nil {
		err = table.CanonicalRows(rows, table.DefaultLimits)
	}
	if err != nil {
		n.logger.Warn("GetSnapshot hook failed: subscribers of the table get nothing until it is published", "service", s.id, "table", tableName, "error", err)
		return nil
	}
	return &table.Publication{Publisher: s.id, Table: tableName, Snapshot: true, Rows: rows}
}

// GetSnapshot returns a table's current content (get_snapshot), or what the
// GetSnapshot hook says.
func (s *DataService) GetSnapshot(tableName string) ([]Row, error) {
	if s.hooks.GetSnapshot != nil {
		return s.hooks.GetSnapshot(tableName)
	}
	_, rows, err := s.GetLastPublishedDataWithSeqnum(tableName)
	return rows, err
}

// GetLastPublishedDataWithSeqnum returns a table's last sequenced content and
// its seqnum, consistently (get_last_published_data_with_seqnum). A table
// never published has seqnum 0 and what the GetSnapshot hook returns (no
// rows without a hook), as in Congress.
func (s *DataService) GetLastPublishedDataWithSeqnum(tableName string) (uint64, []Row, error) {
	if seed := s.seed(tableName); seed != nil {
		return 0, seed.Rows, nil
	}
	t, ok := s.existingTable(tableName)
	if !ok {
		return 0, []Row{}, nil
	}
	return t.Last()
}
