package dse

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"dse.dev/dse/dse/drivers"
	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// KindDatasource marks the service a datasource publishes its tables as.
const KindDatasource = "datasource"

// Hidden replaces secret config values when secrets are filtered.
const Hidden = "<hidden>"

// Datasource is a datasource configuration as the API shows it (Congress's
// make_datasource_dict shape).
type Datasource struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Driver      string         `json:"driver"`
	Description string         `json:"description"`
	Type        string         `json:"type"`
	Enabled     bool           `json:"enabled"`
	Config      map[string]any `json:"config"`
}

// DatasourceSpec is what adding a datasource takes.
type DatasourceSpec struct {
	Name        string
	Driver      string
	Description string
	Config      map[string]any
	Enabled     bool
}

// DatasourceStatus tells where a datasource runs and how its source is.
type DatasourceStatus struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Enabled     bool       `json:"enabled"`
	Node        string     `json:"node"`
	Incarnation uint64     `json:"incarnation"`
	Running     bool       `json:"running"`
	Healthy     bool       `json:"healthy"`
	LastError   string     `json:"last_error"`
	LastSuccess *time.Time `json:"last_success,omitempty"` // nil: no good poll yet
	Polls       int64      `json:"polls"`
	Failures    int64      `json:"failures"`
}

// DriversInfo lists every driver (get_drivers_info).
func (n *Node) DriversInfo() []drivers.Info { return drivers.All() }

// DriverInfo returns one driver's info (get_driver_info).
func (n *Node) DriverInfo(id string) (drivers.Info, error) { return driverInfo(id) }

func driverInfo(id string) (drivers.Info, error) {
	d, err := drivers.Get(id)
	if err != nil {
		return drivers.Info{}, fmt.Errorf("%w: driver %q", ErrNotFound, id)
	}
	return d.Info(), nil
}

// DriverSchema returns the tables a driver publishes (get_driver_schema).
func (n *Node) DriverSchema(id string) ([]drivers.TableSchema, error) { return driverSchema(id) }

func driverSchema(id string) ([]drivers.TableSchema, error) {
	info, err := driverInfo(id)
	return info.Tables, err
}

// MakeDatasourceDict returns the dict form of a datasource, its secrets
// hidden when filterSecret is set (make_datasource_dict).
func MakeDatasourceDict(d fsm.Datasource, filterSecret bool) Datasource {
	cfg := map[string]any{}
	var info drivers.Info
	if drv, err := drivers.Get(d.Driver); err == nil {
		info = drv.Info()
	}
	for k, v := range d.Config {
		if filterSecret && info.Secret(k) {
			v = Hidden
		}
		cfg[k] = v
	}
	return Datasource{ID: d.ID, Name: d.Name, Driver: d.Driver, Description: d.Description, Type: d.Type, Enabled: d.Enabled, Config: cfg}
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// normalizeConfig turns JSON numbers and other Go values into the canonical
// forms the registry stores.
func normalizeConfig(cfg map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(cfg))
	for k, v := range cfg {
		c, err := normalizeValue(v)
		if err != nil {
			return nil, fmt.Errorf("config key %q: %v", k, err)
		}
		out[k] = c
	}
	return out, nil
}

func normalizeValue(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		return normalizeConfig(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := normalizeValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	return table.Canonical(v)
}

func validateWithDriver(driver string, cfg map[string]any) error {
	d, err := drivers.Get(driver)
	if err != nil {
		return fmt.Errorf("%w: unknown driver %q", ErrInvalid, driver)
	}
	if err := d.Validate(cfg); err != nil {
		return fmt.Errorf("%w: driver %q rejects the config: %v", ErrInvalid, driver, err)
	}
	return nil
}

// AddDatasource registers a datasource; once enabled the leader places it
// on a live node, which publishes its tables as the service named Name.
func (n *Node) AddDatasource(ctx context.Context, spec DatasourceSpec) (Datasource, error) {
	if err := name.Check("datasource name", spec.Name); err != nil {
		return Datasource{}, err
	}
	cfg, err := normalizeConfig(spec.Config)
	if err != nil {
		return Datasource{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := validateWithDriver(spec.Driver, cfg); err != nil {
		return Datasource{}, err
	}
	if svc, ok := n.fsm.Service(spec.Name); ok && svc.Kind != KindDatasource {
		return Datasource{}, fmt.Errorf("%w: name %q is taken by a service", ErrExists, spec.Name)
	}
	for _, d := range n.fsm.Datasources() {
		if d.Name == spec.Name {
			return Datasource{}, fmt.Errorf("%w: a datasource named %q", ErrExists, spec.Name)
		}
	}
	d := fsm.Datasource{ID: newUUID(), Name: spec.Name, Driver: spec.Driver, Description: spec.Description, Type: KindDatasource, Enabled: spec.Enabled, Config: cfg}
	if err := n.applyErr(ctx, fsm.CmdDatasourceAdd, fsm.DatasourceAdd{Datasource: d}); err != nil {
		return Datasource{}, err
	}
	return MakeDatasourceDict(d, true), nil
}

// lookupDatasource finds a datasource by id or name.
func (n *Node) lookupDatasource(idOrName string) (fsm.Datasource, error) {
	if d, ok := n.fsm.Datasource(idOrName); ok {
		return d, nil
	}
	for _, d := range n.fsm.Datasources() {
		if d.Name == idOrName {
			return d, nil
		}
	}
	return fsm.Datasource{}, fmt.Errorf("%w: datasource %q", ErrNotFound, idOrName)
}

// GetDatasource returns one datasource by id or name (get_datasource).
func (n *Node) GetDatasource(idOrName string, filterSecret bool) (Datasource, error) {
	d, err := n.lookupDatasource(idOrName)
	if err != nil {
		return Datasource{}, err
	}
	return MakeDatasourceDict(d, filterSecret), nil
}

// GetDatasources lists every datasource (get_datasources).
func (n *Node) GetDatasources(filterSecret bool) []Datasource {
	out := []Datasource{}
	for _, d := range n.fsm.Datasources() {
		out = append(out, MakeDatasourceDict(d, filterSecret))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// UpdateDatasource replaces a datasource's config and/or sets enabled. A
// secret given as "<hidden>" keeps its stored value.
func (n *Node) UpdateDatasource(ctx context.Context, idOrName string, config map[string]any, enabled *bool) (Datasource, error) {
	d, err := n.lookupDatasource(idOrName)
	if err != nil {
		return Datasource{}, err
	}
	up := fsm.DatasourceUpdate{ID: d.ID, Enabled: enabled}
	if config != nil {
		cfg, err := normalizeConfig(config)
		if err != nil {
			return Datasource{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if drv, err := drivers.Get(d.Driver); err == nil {
			for k, v := range cfg {
				if drv.Info().Secret(k) && v == Hidden {
					cfg[k] = d.Config[k]
				}
			}
		}
		if err := validateWithDriver(d.Driver, cfg); err != nil {
			return Datasource{}, err
		}
		up.Config = cfg
	}
	if err := n.applyErr(ctx, fsm.CmdDatasourceUpdate, up); err != nil {
		return Datasource{}, err
	}
	return n.GetDatasource(d.ID, true)
}

// DeleteDatasource removes a datasource: it stops where it runs, its service
// leaves the registry, and subscriptions to its tables end.
func (n *Node) DeleteDatasource(ctx context.Context, idOrName string) error {
	d, err := n.lookupDatasource(idOrName)
	if err != nil {
		return err
	}
	return n.applyErr(ctx, fsm.CmdDatasourceDelete, fsm.DatasourceDelete{ID: d.ID})
}

// DatasourceStatusOf tells where a datasource runs and how its last polls
// went (asked of the node that runs it).
func (n *Node) DatasourceStatusOf(ctx context.Context, idOrName string) (DatasourceStatus, error) {
	d, err := n.lookupDatasource(idOrName)
	if err != nil {
		return DatasourceStatus{}, err
	}
	st := DatasourceStatus{ID: d.ID, Name: d.Name, Enabled: d.Enabled, Node: d.Node, Incarnation: d.Incarnation}
	if d.Node == "" {
		return st, nil
	}
	res, err := n.RPC(ctx, d.Name, "datasource_status", nil, RPCOptions{Timeout: 2 * time.Second})
	if err != nil {
		st.LastError = "status unavailable: " + err.Error()
		return st, nil
	}
	m, _ := res.(map[string]any)
	st.Running, _ = m["running"].(bool)
	st.Healthy, _ = m["healthy"].(bool)
	st.LastError, _ = m["last_error"].(string)
	st.Polls, _ = m["polls"].(int64)
	st.Failures, _ = m["failures"].(int64)
	if ns, ok := m["last_success"].(int64); ok && ns > 0 {
		at := time.Unix(0, ns).UTC()
		st.LastSuccess = &at
	}
	return st, nil
}

// placeLoop runs on every node and acts while it leads: it keeps each
// enabled datasource on exactly one live node, moving it (with a new
// incarnation) when its node goes down, and unplaces disabled ones.
func (n *Node) placeLoop() {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if n.IsLeader() {
			n.placeDatasources()
		}
	}
}

func (n *Node) placeDatasources() {
	servers, _, err := n.cluster.Configuration()
	if err != nil {
		return
	}
	member := map[string]bool{}
	for _, s := range servers {
		member[string(s.ID)] = true
	}
	live := map[string]bool{}
	var liveIDs []string
	for _, node := range n.fsm.Nodes() {
		if node.Up && member[node.ID] {
			live[node.ID] = true
			liveIDs = append(liveIDs, node.ID)
		}
	}
	dss := n.fsm.Datasources()
	load := map[string]int{}
	for _, d := range dss {
		if d.Node != "" {
			load[d.Node]++
		}
	}
	for _, d := range dss {
		place := d.Node
		switch {
		case !d.Enabled:
			place = ""
		case d.Node != "" && live[d.Node]:
		default:
			place = ""
			for _, id := range liveIDs {
				if place == "" || load[id] < load[place] {
					place = id
				}
			}
		}
		if place != d.Node {
			n.logger.Info("placing datasource", "datasource", d.Name, "from", d.Node, "to", place)
			if err := n.cluster.ApplyLeader(fsm.MustEncode(fsm.CmdDatasourcePlace, fsm.DatasourcePlace{ID: d.ID, Node: place})); err != nil {
				n.logger.Warn("placement failed", "datasource", d.Name, "error", err)
				continue
			}
			if d.Node != "" {
				load[d.Node]--
			}
			if place != "" {
				load[place]++
			}
		}
		// Instances anywhere but where it is placed would keep the
		// service ownerless, or owned by an instance that no longer runs.
		if svc, ok := n.fsm.Service(d.Name); ok && svc.Kind == KindDatasource {
			for _, inst := range svc.Instances {
				if inst != place && (!live[inst] || d.Node == place) {
					if err := n.cluster.ApplyLeader(fsm.MustEncode(fsm.CmdServiceUnregister, fsm.ServiceUnregister{ID: d.Name, Node: inst})); err != nil {
						n.logger.Warn("cannot remove a stale datasource instance", "datasource", d.Name, "node", inst, "error", err)
					}
				}
			}
		}
	}
}

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
		changed := n.fsm.Changed()
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

// The seed's datasource methods on DataService, delegating to its node.

// GetDatasource returns a datasource by id or name (get_datasource).
func (s *DataService) GetDatasource(idOrName string) (Datasource, error) {
	n := s.nodeOf()
	if n == nil {
		return Datasource{}, s.errNotRunning()
	}
	return n.GetDatasource(idOrName, false)
}

// GetDatasources lists the datasources (get_datasources).
func (s *DataService) GetDatasources(filterSecret bool) ([]Datasource, error) {
	n := s.nodeOf()
	if n == nil {
		return nil, s.errNotRunning()
	}
	return n.GetDatasources(filterSecret), nil
}

// GetDriverInfo returns a driver's info (get_driver_info).
func (s *DataService) GetDriverInfo(driver string) (drivers.Info, error) {
	return driverInfo(driver)
}

// GetDriverSchema returns the tables a driver publishes (get_driver_schema).
func (s *DataService) GetDriverSchema(driver string) ([]drivers.TableSchema, error) {
	return driverSchema(driver)
}

// GetDriversInfo lists every driver (get_drivers_info).
func (s *DataService) GetDriversInfo() []drivers.Info { return drivers.All() }
