package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/dsetest"
)

// The trailers that end a watch's stream (CLI.md: the CLI names the cause).
const (
	endCode  = "Dse-Watch-End-Code"
	endError = "Dse-Watch-End-Error"
)

// serve runs node's API on a loopback test server and returns its base URL.
func serve(t *testing.T, node *dse.Node, cfg api.ServerConfig) string {
	t.Helper()
	srv := httptest.NewServer(api.NewServer(node, cfg))
	t.Cleanup(srv.Close)
	return srv.URL
}

// openNode starts a one-node cluster without tokens and serves its API.
func openNode(t *testing.T) (*dse.Node, string) {
	t.Helper()
	c := dsetest.New(t, 1)
	return c.Nodes[0], serve(t, c.Nodes[0], api.ServerConfig{})
}

// rawClient does not follow redirects: a test sees what the server answered.
var rawClient = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// response is a whole HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// req is one request to send.
type req struct {
	method, path, body string
	token              string // sent as "Bearer <token>" unless auth is set
	auth               string // the Authorization header as it is
}

// do sends r to base and reads the whole answer.
func do(t *testing.T, base string, r req) response {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case r.auth != "":
		hr.Header.Set("Authorization", r.auth)
	case r.token != "":
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := rawClient.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", r.method, r.path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// get, post, put, patch and del are do for one method, without a token.
func get(t *testing.T, base, path string) response {
	t.Helper()
	return do(t, base, req{method: http.MethodGet, path: path})
}

func post(t *testing.T, base, path, body string) response {
	t.Helper()
	return do(t, base, req{method: http.MethodPost, path: path, body: body})
}

func put(t *testing.T, base, path, body string) response {
	t.Helper()
	return do(t, base, req{method: http.MethodPut, path: path, body: body})
}

func patch(t *testing.T, base, path, body string) response {
	t.Helper()
	return do(t, base, req{method: http.MethodPatch, path: path, body: body})
}

func del(t *testing.T, base, path string) response {
	t.Helper()
	return do(t, base, req{method: http.MethodDelete, path: path})
}

// wantStatus fails the test unless r has the status, and returns its body.
func wantStatus(t *testing.T, what string, r response, status int) []byte {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got status %d, want %d (body %s)", what, r.status, status, bytes.TrimSpace(r.body))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: got Content-Type %q, want application/json", what, ct)
	}
	return r.body
}

// decode unmarshals a JSON answer strictly (unknown fields are an error).
func decode(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: decode %s: %v", what, bytes.TrimSpace(b), err)
	}
}

// apiError is the body of every error answer.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// wantError fails the test unless r is an error answer with the status and
// code, {"error":{"code","message"}} exactly and a message; it returns the
// message.
func wantError(t *testing.T, what string, r response, status int, code string) string {
	t.Helper()
	b := wantStatus(t, what, r, status)
	if got := keysOf(t, what, b); !slices.Equal(got, []string{"error"}) {
		t.Fatalf("%s: got keys %v, want [error]", what, got)
	}
	var outer map[string]json.RawMessage
	decode(t, what, b, &outer)
	if got := keysOf(t, what, outer["error"]); !slices.Equal(got, []string{"code", "message"}) {
		t.Fatalf("%s: error object has keys %v, want [code message]", what, got)
	}
	var e apiError
	decode(t, what, b, &e)
	if e.Error.Code != code {
		t.Fatalf("%s: got code %q, want %q (message %q)", what, e.Error.Code, code, e.Error.Message)
	}
	if e.Error.Message == "" {
		t.Fatalf("%s: error with code %q has no message", what, code)
	}
	return e.Error.Message
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(t *testing.T, what string, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %s is not a JSON object: %v", what, bytes.TrimSpace(b), err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// wantKeys fails unless the JSON object b has exactly the keys want.
func wantKeys(t *testing.T, what string, b []byte, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	if got := keysOf(t, what, b); !slices.Equal(got, want) {
		t.Fatalf("%s: got keys %v, want %v (in %s)", what, got, want, bytes.TrimSpace(b))
	}
}

// wantJSON fails unless b and want are the same JSON value.
func wantJSON(t *testing.T, what string, b []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %s is not JSON: %v", what, bytes.TrimSpace(b), err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want %s: %v", what, want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("%s: got %s, want %s", what, gb, wb)
	}
}

// stream is a watch's answer read line by line.
type stream struct {
	resp  *http.Response
	lines chan []byte // closed at the end of the body
	err   error       // the read error, once lines is closed
}

// openWatch starts GET /v1/watch/{service}/{table} and fails unless it
// answers 200 with an NDJSON stream.
func openWatch(t *testing.T, base, service, tbl, token string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/watch/"+service+"/"+tbl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		hr.Header.Set("Authorization", "Bearer "+token)
	}
	// The answer's head comes with the first line (or an error): bounded,
	// so a watch that never starts fails the test instead of hanging it.
	timer := time.AfterFunc(10*time.Second, cancel)
	resp, err := http.DefaultClient.Do(hr)
	if !timer.Stop() || err != nil {
		cancel()
		t.Fatalf("watch %s/%s: no answer in 10s (%v)", service, tbl, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("watch %s/%s: got status %d, want 200 (body %s)", service, tbl, resp.StatusCode, bytes.TrimSpace(b))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("watch %s/%s: got Content-Type %q, want application/x-ndjson", service, tbl, ct)
	}
	s := &stream{resp: resp, lines: make(chan []byte, 64)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- slices.Clone(sc.Bytes())
		}
		s.err = sc.Err()
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return s
}

// next returns the stream's next line, failing the test if none comes in
// 10 s or the stream ends.
func (s *stream) next(t *testing.T) []byte {
	t.Helper()
	select {
	case l, ok := <-s.lines:
		if !ok {
			t.Fatalf("watch ended (read error %v, trailer %v), want another line", s.err, s.resp.Trailer)
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for a watch line")
	}
	return nil
}

// end waits (10 s at most) for the stream to end after no more lines, and
// returns its trailers.
func (s *stream) end(t *testing.T) http.Header {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				if s.err != nil {
					t.Fatalf("watch stream: read error %v, want a clean end", s.err)
				}
				return s.resp.Trailer
			}
			t.Fatalf("watch: got line %s, want the end of the stream", l)
		case <-timeout:
			t.Fatal("timed out after 10s waiting for the watch to end")
		}
	}
}

// goService registers a Go service with endpoint on node.
func goService(t *testing.T, node *dse.Node, id string, ep dse.Endpoint) *dse.DataService {
	t.Helper()
	s := dse.NewDataService(id, dse.Hooks{})
	if ep != nil {
		s.AddRPCEndpoint(ep)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.Register(ctx, s); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	return s
}

// serviceIDs lists the ids the node's registry holds, as the API lists them.
func serviceIDs(node *dse.Node) []string {
	var out []string
	for _, s := range node.ServicesInfo() {
		out = append(out, s.ServiceID)
	}
	return out
}
