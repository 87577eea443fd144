package dse

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"dse.dev/dse/dse/drivers"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// Running the datasources placed on this node: each as a DataService whose
// driver publishes its tables.

// dsRunner is a datasource running on this node.
type dsRunner struct {
	n      *Node
	d      fsm.Datasource
	svc    *DataService
	ctx    context.Context // the run's
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	lastErr     error
	lastSuccess time.Time
	polls       int64
	failures    int64
	// fresh holds the tables this run has published; swept, once the
	// run's first good poll has published what the source has, the
	// datasource's other tables (of an earlier run, on this node or
	// another, or of an earlier config) were emptied.
	fresh map[string]bool
	swept bool
}

// Publish is the driver's Sink.
func (r *dsRunner) Publish(ctx context.Context, tbl string, rows []table.Row) error {
	r.mu.Lock()
	r.fresh[tbl] = true
	r.mu.Unlock()
	_, _, err := r.svc.Publish(ctx, tbl, rows, false)
	return err
}

// Status is the driver's Sink. A driver's first good poll of a run has
// published every table its source has (drivers.Sink): the registry's
// other tables of the datasource are no longer in the source, and are
// published empty, as the file driver does within a run for a table its
// file drops. Without that, their subscribers kept an earlier run's rows
// for good.
func (r *dsRunner) Status(err error) {
	r.mu.Lock()
	sweep := err == nil && !r.swept
	var stale []string
	if sweep {
		for _, t := range r.n.fsm.PublishedTables(r.d.Name) {
			if !r.fresh[t] {
				stale = append(stale, t)
			}
		}
	}
	r.mu.Unlock()
	for _, t := range stale {
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		_, _, perr := r.svc.Publish(ctx, t, nil, false)
		cancel()
		if perr != nil && err == nil {
			err = fmt.Errorf("empty table %s, which the source no longer has: %w", t, perr)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if sweep && err == nil {
		r.swept = true
	}
	r.polls++
	r.lastErr = err
	if err != nil {
		r.failures++
	} else {
		r.lastSuccess = time.Now()
	}
}

func (r *dsRunner) statusRPC(context.Context, map[string]any) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := map[string]any{"running": true, "healthy": r.lastErr == nil && r.polls > 0, "polls": r.polls, "failures": r.failures, "last_error": ""}
	if r.lastErr != nil {
		st["last_error"] = r.lastErr.Error()
	}
	if !r.lastSuccess.IsZero() {
		st["last_success"] = r.lastSuccess.UnixNano()
	}
	return st, nil
}

// runLoop runs on every node: it starts the datasources placed here and
// stops those placed elsewhere, disabled, changed or deleted.
func (n *Node) runLoop() {
	running := map[string]*dsRunner{}
	defer func() {
		for _, r := range running {
			n.stopDatasource(r, true)
		}
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		changed := n.fsm.Reshaped()
		want := map[string]fsm.Datasource{}
		inContact := n.cluster.InContact()
		for _, d := range n.fsm.Datasources() {
			if d.Enabled && d.Node == n.id && inContact {
				want[d.ID] = d
			}
		}
		for id, r := range running {
			w, ok := want[id]
			// Also restart one whose service left the registry under it
			// (deleted, or unregistered after a failed stop).
			gone := r.svc.Status() != "running"
			if svc, ok := n.fsm.Service(r.d.Name); !ok || !slices.Contains(svc.Instances, n.id) {
				gone = true
			}
			if !ok || gone || w.Incarnation != r.d.Incarnation || w.Name != r.d.Name || !reflect.DeepEqual(w.Config, r.d.Config) {
				if !inContact {
					n.logger.Warn("stopping a datasource: no word from a leader for an election and the liveness grace; it moves to a live node", "datasource", r.d.Name, "after", n.cluster.OutOfContactAfter())
				}
				n.stopDatasource(r, inContact)
				delete(running, id)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(want)) {
			if _, ok := running[id]; ok {
				continue
			}
			if r, err := n.startDatasource(want[id]); err != nil {
				n.logger.Warn("cannot start datasource", "datasource", want[id].Name, "error", err)
			} else {
				running[id] = r
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

func (n *Node) startDatasource(d fsm.Datasource) (*dsRunner, error) {
	drv, err := drivers.Get(d.Driver)
	if err != nil {
		return nil, err
	}
	r := &dsRunner{n: n, d: d, done: make(chan struct{}), fresh: map[string]bool{}}
	r.svc = NewDataService(d.Name, Hooks{})
	r.svc.kind = KindDatasource
	r.svc.AddRPCEndpoint(Endpoint{"datasource_status": r.statusRPC})
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	err = n.Register(ctx, r.svc)
	cancel()
	if err != nil {
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(n.ctx)
	n.logger.Info("datasource started", "datasource", d.Name, "driver", d.Driver, "incarnation", d.Incarnation)
	go func() {
		defer close(r.done)
		drv.Run(r.ctx, d.Config, r)
	}()
	return r, nil
}

// stopDatasource stops r's driver and takes its service out of the
// registry; with unregister false (the cluster is out of reach), out of
// this node only.
func (n *Node) stopDatasource(r *dsRunner, unregister bool) {
	r.cancel()
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n.ctx.Err() == nil && unregister {
		if err := r.svc.Stop(ctx); err != nil && !errors.Is(err, ErrServiceNotFound) {
			n.logger.Warn("cannot unregister datasource service", "datasource", r.d.Name, "error", err)
		}
	} else {
		r.svc.stopLocal()
	}
	n.logger.Info("datasource stopped", "datasource", r.d.Name)
}
