package drivers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dse.dev/dse/dse/table"
)

// sink records publications and statuses.
type sink struct {
	mu     sync.Mutex
	tables map[string][]table.Row
	pubs   int
	last   error
	fails  int
}

func newSink() *sink { return &sink{tables: map[string][]table.Row{}} }

func (s *sink) Publish(_ context.Context, t string, rows []table.Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	table.Sort(rows)
	s.tables[t] = rows
	s.pubs++
	return nil
}

func (s *sink) Status(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = err
	if err != nil {
		s.fails++
	}
}

func (s *sink) get(t string) ([]table.Row, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.tables[t]
	return r, ok
}

func (s *sink) failing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last != nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func run(t *testing.T, d Driver, config map[string]any) *sink {
	t.Helper()
	if err := d.Validate(config); err != nil {
		t.Fatalf("config refused: %v", err)
	}
	s := newSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx, config, s); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func write(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileJSONFollowsChangesAndKeepsLastGood(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	write(t, p, `{"hosts": [["web1", "up"], ["db1", "up"]], "ports": [[80]]}`)
	s := run(t, fileDriver{}, map[string]any{"path": p, "poll_interval": "50ms"})
	waitFor(t, "first read", func() bool { r, _ := s.get("hosts"); return len(r) == 2 })
	write(t, p, `{"hosts": [["web1", "down"]]}`)
	waitFor(t, "change", func() bool {
		r, _ := s.get("hosts")
		p, ok := s.get("ports")
		return reflect.DeepEqual(r, []table.Row{{"web1", "down"}}) && ok && len(p) == 0
	})
	// A broken file and a missing file keep the last good tables.
	write(t, p, `{"hosts": [["web1",`)
	waitFor(t, "failure reported", s.failing)
	os.Remove(p)
	time.Sleep(100 * time.Millisecond)
	if r, _ := s.get("hosts"); !reflect.DeepEqual(r, []table.Row{{"web1", "down"}}) {
		t.Fatalf("a failed read changed the table to %v", r)
	}
	write(t, p, `{"hosts": [["x", 1]]}`)
	waitFor(t, "recovery", func() bool {
		r, _ := s.get("hosts")
		return reflect.DeepEqual(r, []table.Row{{"x", int64(1)}}) && !s.failing()
	})
}

func TestFileCSV(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users.csv")
	write(t, p, "alice,admin\nbob,user\n")
	s := run(t, fileDriver{}, map[string]any{"path": p, "poll_interval": "50ms"})
	waitFor(t, "csv table", func() bool {
		r, _ := s.get("users")
		return reflect.DeepEqual(r, []table.Row{{"alice", "admin"}, {"bob", "user"}})
	})
}

func TestFileValidate(t *testing.T) {
	for name, cfg := range map[string]map[string]any{
		"no path":       {},
		"empty path":    {"path": ""},
		"bad format":    {"path": "/x.txt"},
		"unknown key":   {"path": "/x.json", "bogus": 1},
		"bad interval":  {"path": "/x.json", "poll_interval": "soon"},
		"path not text": {"path": 5},
	} {
		if err := (fileDriver{}).Validate(cfg); err == nil {
			t.Errorf("%s: accepted %v", name, cfg)
		}
	}
}

func TestHTTPPollsWithBasicAuth(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var body atomic.Value
	body.Store(`{"data": {"items": [{"name": "a", "n": 1, "x": {"y": 2}}, {"name": "b", "n": 2}]}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "svc" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if code := int(status.Load()); code != 200 {
			w.WriteHeader(code)
			return
		}
		w.Write([]byte(body.Load().(string)))
	}))
	defer srv.Close()
	cfg := map[string]any{"url": srv.URL, "table": "items", "path": "/data/items", "columns": []any{"name", "n", "x"},
		"username": "svc", "password": "s3cret", "poll_interval": "50ms"}
	s := run(t, httpDriver{client: srv.Client()}, cfg)
	waitFor(t, "items", func() bool {
		r, _ := s.get("items")
		return reflect.DeepEqual(r, []table.Row{{"a", int64(1), `{"y":2}`}, {"b", int64(2), nil}})
	})
	status.Store(500)
	waitFor(t, "HTTP 500 reported", s.failing)
	if r, _ := s.get("items"); len(r) != 2 {
		t.Fatalf("HTTP 500 changed the table: %v", r)
	}
	status.Store(200)
	body.Store(`{"data": {"items": []}}`)
	waitFor(t, "empty table after recovery", func() bool { r, _ := s.get("items"); return len(r) == 0 && !s.failing() })
}

func TestHTTPTimeoutAndBadJSON(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-block:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte(`[[1], [2`))
	}))
	defer srv.Close()
	defer close(block)
	for _, path := range []string{"/slow", "/bad"} {
		s := run(t, httpDriver{client: srv.Client()}, map[string]any{"url": srv.URL + path, "timeout": "50ms", "poll_interval": "50ms"})
		waitFor(t, path+" failure", s.failing)
		if _, ok := s.get("data"); ok {
			t.Fatalf("%s: published despite failing", path)
		}
	}
}

func TestHTTPValidate(t *testing.T) {
	for name, cfg := range map[string]map[string]any{
		"no url":         {},
		"not http":       {"url": "ftp://x"},
		"bad pointer":    {"url": "http://x", "path": "data"},
		"password alone": {"url": "http://x", "password": "p"},
		"columns type":   {"url": "http://x", "columns": "a,b"},
		"url password":   {"url": "http://bob:URLPASS-abc@x/items"},
		"poll too often": {"url": "http://x", "poll_interval": "1ns"},
		"bad url":        {"url": "http://bob:URLPASS%zz@x/items"},
	} {
		err := (httpDriver{}).Validate(cfg)
		if err == nil {
			t.Errorf("%s: accepted %v", name, cfg)
		} else if strings.Contains(err.Error(), "URLPASS") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	if err := (httpDriver{}).Validate(map[string]any{"url": "http://bob@x/items"}); err != nil {
		t.Errorf("a user name alone in the url: %v", err)
	}
	if !(httpDriver{}).Info().Secret("password") || (httpDriver{}).Info().Secret("url") {
		t.Fatal("secret fields wrong")
	}
	if got := redact(&url.URL{Scheme: "http", User: url.UserPassword("u", "p"), Host: "h", Path: "/x"}); strings.Contains(got, "p@") {
		t.Fatalf("redact kept the password: %s", got)
	}
}
