package drivers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"dse.dev/dse/dse/table"
)

func init() { Register(httpDriver{client: &http.Client{}}) }

// maxHTTPBody bounds what one poll reads.
const maxHTTPBody = 64 << 20

// httpDriver polls a JSON endpoint and publishes the array found at a JSON
// pointer as rows.
type httpDriver struct{ client *http.Client }

func (httpDriver) Info() Info {
	return Info{
		ID:          "http",
		Description: "polls a JSON endpoint and publishes the array found at path as rows of the given columns",
		Config: []ConfigField{
			{Name: "url", Type: "string", Required: true, Description: "the http or https URL to GET"},
			{Name: "table", Type: "string", Description: "the table's name (default \"data\")"},
			{Name: "path", Type: "string", Description: "JSON pointer (RFC 6901) to the array in the answer (default: the whole answer)"},
			{Name: "columns", Type: "list", Description: "fields of each object element to make the row's columns (array elements are taken as they are)"},
			{Name: "poll_interval", Type: "duration", Description: "how often to poll (default 5s)"},
			{Name: "timeout", Type: "duration", Description: "bound on one request (default 10s)"},
			{Name: "username", Type: "string", Description: "basic-auth user"},
			{Name: "password", Type: "string", Secret: true, Description: "basic-auth password"},
		},
		Tables: []TableSchema{{Name: "<table>", Columns: []string{"<columns>"}}},
	}
}

func (d httpDriver) Validate(config map[string]any) error {
	if err := checkFields(d.Info(), config); err != nil {
		return err
	}
	u, err := url.Parse(str(config, "url", ""))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		if err != nil {
			// Not echoed: it may hold a password.
			return fmt.Errorf("config key \"url\": not a URL")
		}
		return fmt.Errorf("config key \"url\": %q is not an http(s) URL", u.Redacted())
	}
	if _, ok := u.User.Password(); ok {
		// The url is not a secret field: read tokens would see it.
		return fmt.Errorf("config key \"url\": %q holds a password; give it as \"username\" and \"password\", which are kept secret", u.Redacted())
	}
	if p := str(config, "path", ""); p != "" && !strings.HasPrefix(p, "/") {
		return fmt.Errorf("config key \"path\": %q is not a JSON pointer (it starts with /)", p)
	}
	if _, hasPass := config["password"]; hasPass && str(config, "username", "") == "" {
		return fmt.Errorf("config key \"password\" needs \"username\"")
	}
	return nil
}

func columns(config map[string]any) []string {
	l, _ := config["columns"].([]any)
	out := make([]string, 0, len(l))
	for _, c := range l {
		if s, ok := c.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (d httpDriver) Run(ctx context.Context, config map[string]any, sink Sink) {
	tbl := str(config, "table", "data")
	timeout := duration(config, "timeout", 10*time.Second)
	poller(ctx, duration(config, "poll_interval", 5*time.Second), sink, func(ctx context.Context) error {
		rows, err := d.fetch(ctx, config, timeout)
		if err != nil {
			return err
		}
		return sink.Publish(ctx, tbl, rows)
	})
}

func (d httpDriver) fetch(ctx context.Context, config map[string]any, timeout time.Duration) ([]table.Row, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, str(config, "url", ""), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if user := str(config, "username", ""); user != "" {
		req.SetBasicAuth(user, str(config, "password", ""))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", redact(req.URL), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", redact(req.URL), err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("GET %s: HTTP %d", redact(req.URL), resp.StatusCode)
	}
	if len(body) > maxHTTPBody {
		return nil, fmt.Errorf("GET %s: answer over %d bytes", redact(req.URL), maxHTTPBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("GET %s: not JSON: %v", redact(req.URL), err)
	}
	v, err := pointer(doc, str(config, "path", ""))
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("path %q: want an array, got %T", str(config, "path", ""), v)
	}
	cols := columns(config)
	raw := make([]any, len(arr))
	for i, e := range arr {
		switch x := e.(type) {
		case map[string]any:
			if len(cols) == 0 {
				return nil, fmt.Errorf("element %d is an object: set \"columns\" to pick its fields", i)
			}
			row := make([]any, len(cols))
			for j, c := range cols {
				row[j] = flatten(x[c])
			}
			raw[i] = row
		case []any:
			row := make([]any, len(x))
			for j, c := range x {
				row[j] = flatten(c)
			}
			raw[i] = row
		default:
			raw[i] = []any{x}
		}
	}
	return table.FromValue(raw, table.DefaultLimits)
}

// flatten keeps scalars and turns nested values into their JSON text.
func flatten(v any) any {
	switch v.(type) {
	case map[string]any, []any:
		b, _ := json.Marshal(v)
		return string(b)
	}
	return v
}

// pointer resolves an RFC 6901 JSON pointer.
func pointer(doc any, p string) (any, error) {
	if p == "" {
		return doc, nil
	}
	cur := doc
	for _, tok := range strings.Split(p[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := cur.(type) {
		case map[string]any:
			v, ok := x[tok]
			if !ok {
				return nil, fmt.Errorf("path %q: no key %q", p, tok)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, fmt.Errorf("path %q: no index %q", p, tok)
			}
			cur = x[i]
		default:
			return nil, fmt.Errorf("path %q: %q goes into a scalar", p, tok)
		}
	}
	return cur, nil
}

// redact drops credentials from a URL for messages.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
