package dse

import (
	"context"
	"crypto/rand"
	"fmt"
	"sort"
	"time"

	"dse.dev/dse/dse/drivers"
	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/fsm"
)

// KindDatasource marks the service a datasource publishes its tables as.
const KindDatasource = "datasource"

// Hidden replaces secret config values when secrets are filtered. One rule
// holds on every path: a datasource's secret config fields (those its
// driver marks secret) read as Hidden unless the reader asks for them
// (filterSecret false in Go; show_secrets=true on the HTTP API and
// --show-secrets in the CLI, both for admin tokens only), and what a write
// (add, update) returns has them hidden.
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
	if _, ok := n.fsm.DatasourceByName(spec.Name); ok {
		return Datasource{}, fmt.Errorf("%w: a datasource named %q", ErrExists, spec.Name)
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
	if d, ok := n.fsm.DatasourceByName(idOrName); ok {
		return d, nil
	}
	return fsm.Datasource{}, fmt.Errorf("%w: datasource %q", ErrNotFound, idOrName)
}

// GetDatasource returns one datasource by id or name (get_datasource), its
// secrets hidden when filterSecret is set.
func (n *Node) GetDatasource(idOrName string, filterSecret bool) (Datasource, error) {
	d, err := n.lookupDatasource(idOrName)
	if err != nil {
		return Datasource{}, err
	}
	return MakeDatasourceDict(d, filterSecret), nil
}

// GetDatasources lists every datasource (get_datasources), their secrets
// hidden when filterSecret is set.
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

// The seed's datasource methods on DataService, delegating to its node.

// GetDatasource returns a datasource by id or name (get_datasource), its
// secrets hidden when filterSecret is set, as every datasource read takes
// them.
func (s *DataService) GetDatasource(idOrName string, filterSecret bool) (Datasource, error) {
	n := s.nodeOf()
	if n == nil {
		return Datasource{}, s.errNotRunning()
	}
	return n.GetDatasource(idOrName, filterSecret)
}

// GetDatasources lists the datasources (get_datasources), their secrets
// hidden when filterSecret is set.
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
