package drivers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"dse.dev/dse/dse/table"
)

// ConfigField describes one config key of a driver.
type ConfigField struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // string, duration, list, enum
	Required    bool   `json:"required"`
	Secret      bool   `json:"secret"`
	Description string `json:"description"`
}

// TableSchema describes a table a driver publishes; Columns is empty when
// they come from the source or the config.
type TableSchema struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
}

// Info is what `dse drivers show` prints.
type Info struct {
	ID          string        `json:"id"`
	Description string        `json:"description"`
	Config      []ConfigField `json:"config"`
	Tables      []TableSchema `json:"tables"`
}

// Secret reports whether a config key is secret.
func (i Info) Secret(key string) bool {
	for _, f := range i.Config {
		if f.Name == key {
			return f.Secret
		}
	}
	return false
}

// Sink is where a running driver sends its tables and its health.
type Sink interface {
	// Publish sets a table's full content.
	Publish(ctx context.Context, table string, rows []table.Row) error
	// Status records the outcome of one poll (nil: success). A run's first
	// successful poll must have published every table the source has: the
	// datasource's other tables are then published empty.
	Status(err error)
}

// Driver turns an external source into tables.
type Driver interface {
	Info() Info
	// Validate checks a config, naming the first bad key.
	Validate(config map[string]any) error
	// Run polls the source and publishes until ctx ends.
	Run(ctx context.Context, config map[string]any, sink Sink)
}

// MinPollInterval is the shortest poll_interval a config may ask for.
const MinPollInterval = 50 * time.Millisecond

// ErrUnknownDriver is returned for a driver id no driver has.
var ErrUnknownDriver = errors.New("unknown driver")

var (
	mu       sync.RWMutex
	registry = map[string]Driver{}
)

// Register adds a driver; drivers register themselves in init.
func Register(d Driver) {
	mu.Lock()
	defer mu.Unlock()
	registry[d.Info().ID] = d
}

// Get returns the driver with id.
func Get(id string) (Driver, error) {
	mu.RLock()
	defer mu.RUnlock()
	d, ok := registry[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDriver, id)
	}
	return d, nil
}

// All returns every driver's info, sorted by id.
func All() []Info {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Info, 0, len(registry))
	for _, d := range registry {
		out = append(out, d.Info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// checkFields validates config against fields: required keys present,
// unknown keys refused, types right.
func checkFields(info Info, config map[string]any) error {
	known := map[string]ConfigField{}
	for _, f := range info.Config {
		known[f.Name] = f
		if _, ok := config[f.Name]; f.Required && !ok {
			return fmt.Errorf("config key %q is required by driver %q", f.Name, info.ID)
		}
	}
	keys := make([]string, 0, len(config))
	for k := range config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := known[k]
		if !ok {
			return fmt.Errorf("config key %q is not known to driver %q", k, info.ID)
		}
		v := config[k]
		switch f.Type {
		case "string", "enum":
			if _, ok := v.(string); !ok {
				return fmt.Errorf("config key %q must be a string, got %T", k, v)
			}
		case "duration":
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("config key %q must be a duration string like \"5s\", got %T", k, v)
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return fmt.Errorf("config key %q: %q is not a positive duration", k, s)
			}
			if k == "poll_interval" && d < MinPollInterval {
				// "1ns" polled millions of times a second: a busy node, and
				// for the http driver a flood at its URL.
				return fmt.Errorf("config key %q: %s is shorter than the least, %s", k, s, MinPollInterval)
			}
		case "list":
			l, ok := v.([]any)
			if !ok {
				return fmt.Errorf("config key %q must be a list of strings, got %T", k, v)
			}
			for i, e := range l {
				if _, ok := e.(string); !ok {
					return fmt.Errorf("config key %q item %d must be a string, got %T", k, i, e)
				}
			}
		}
	}
	return nil
}

func str(config map[string]any, key, def string) string {
	if s, ok := config[key].(string); ok && s != "" {
		return s
	}
	return def
}

func duration(config map[string]any, key string, def time.Duration) time.Duration {
	if s, ok := config[key].(string); ok {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return d
		}
	}
	return def
}

// poller runs fetch every interval, backing off (to 32x, at most a minute)
// while it fails, and reports each outcome.
func poller(ctx context.Context, interval time.Duration, sink Sink, fetch func(ctx context.Context) error) {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := fetch(ctx)
		if ctx.Err() != nil {
			return
		}
		sink.Status(err)
		if err == nil {
			wait = interval
		} else {
			wait = min(max(2*wait, interval), 32*interval, time.Minute)
		}
	}
}
