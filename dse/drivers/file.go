package drivers

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"dse.dev/dse/dse/table"
)

func init() { Register(fileDriver{}) }

// maxFileSize bounds what one read of a followed file takes.
const maxFileSize = 64 << 20

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("over %d bytes", maxFileSize)
	}
	return data, nil
}

// fileDriver follows a JSON or CSV file as it changes.
type fileDriver struct{}

func (fileDriver) Info() Info {
	return Info{
		ID:          "file",
		Description: "follows a local file: JSON (an object mapping table names to arrays of rows) or CSV (one table whose rows are its records)",
		Config: []ConfigField{
			{Name: "path", Type: "string", Required: true, Description: "the file to follow"},
			{Name: "format", Type: "enum", Description: "json or csv (default: from the file's extension)"},
			{Name: "table", Type: "string", Description: "CSV only: the table's name (default: the file's base name)"},
			{Name: "poll_interval", Type: "duration", Description: "how often to look at the file (default 1s)"},
		},
		Tables: []TableSchema{{Name: "<each key of the JSON object, or the CSV table>", Columns: []string{}}},
	}
}

func fileFormat(config map[string]any) string {
	return str(config, "format", strings.TrimPrefix(strings.ToLower(filepath.Ext(str(config, "path", ""))), "."))
}

func csvTable(config map[string]any) string {
	p := str(config, "path", "")
	return str(config, "table", strings.TrimSuffix(filepath.Base(p), filepath.Ext(p)))
}

func (d fileDriver) Validate(config map[string]any) error {
	if err := checkFields(d.Info(), config); err != nil {
		return err
	}
	if str(config, "path", "") == "" {
		return fmt.Errorf("config key \"path\" must not be empty")
	}
	switch f := fileFormat(config); f {
	case "json":
	case "csv":
		if t := csvTable(config); t == "" || len(t) > 128 {
			return fmt.Errorf("config key \"table\": %q is not a usable table name", t)
		}
	default:
		return fmt.Errorf("config key \"format\": %q is not json or csv", f)
	}
	return nil
}

func (d fileDriver) Run(ctx context.Context, config map[string]any, sink Sink) {
	path := str(config, "path", "")
	format := fileFormat(config)
	var lastMod time.Time
	var lastSize int64 = -1
	var published map[string]bool
	poller(ctx, duration(config, "poll_interval", time.Second), sink, func(ctx context.Context) error {
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("read %s: not a regular file", path)
		}
		if st.Size() > maxFileSize {
			return fmt.Errorf("read %s: %d bytes, limit %d", path, st.Size(), maxFileSize)
		}
		if st.ModTime().Equal(lastMod) && st.Size() == lastSize {
			return nil // unchanged since the last good read
		}
		data, err := readBounded(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		tables, err := parseFile(data, format, csvTable(config))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, name := range slices.Sorted(maps.Keys(tables)) {
			if err := sink.Publish(ctx, name, tables[name]); err != nil {
				return fmt.Errorf("publish %s: %w", name, err)
			}
		}
		// A table the file no longer has is now empty: the file says so.
		for name := range published {
			if _, ok := tables[name]; !ok {
				if err := sink.Publish(ctx, name, nil); err != nil {
					return fmt.Errorf("publish %s: %w", name, err)
				}
			}
		}
		published = map[string]bool{}
		for name := range tables {
			published[name] = true
		}
		lastMod, lastSize = st.ModTime(), st.Size()
		return nil
	})
}

// parseFile turns a file's content into tables.
func parseFile(data []byte, format, csvName string) (map[string][]table.Row, error) {
	switch format {
	case "json":
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf("not a JSON object of tables: %v", err)
		}
		out := map[string][]table.Row{}
		for name, v := range obj {
			rows, err := table.FromValue(v, table.DefaultLimits)
			if err != nil {
				return nil, fmt.Errorf("table %q: %v", name, err)
			}
			out[name] = rows
		}
		return out, nil
	case "csv":
		r := csv.NewReader(bytes.NewReader(data))
		r.FieldsPerRecord = -1
		recs, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("bad CSV: %v", err)
		}
		rows := make([]table.Row, len(recs))
		for i, rec := range recs {
			row := make(table.Row, len(rec))
			for j, f := range rec {
				row[j] = f
			}
			rows[i] = row
		}
		return map[string][]table.Row{csvName: rows}, nil
	}
	return nil, fmt.Errorf("unknown format %q", format)
}
