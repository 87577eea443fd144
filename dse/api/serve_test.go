package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// apiNode is one node with the external service calc, and its HTTP API.
func apiNode(t *testing.T) (*dse.Node, *httptest.Server) {
	t.Helper()
	c := dsetest.New(t, 1)
	n := c.Nodes[0]
	if _, err := n.CreateService(context.Background(), "calc", 0); err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(n, api.ServerConfig{})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return n, hs
}

func postStream(t *testing.T, url, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	return resp, ""
}

// stream reads a serve stream's lines.
type serveStream struct {
	t     *testing.T
	resp  *http.Response
	lines chan map[string]any
}

func openStream(t *testing.T, hs *httptest.Server, service, body string) (*serveStream, map[string]any) {
	t.Helper()
	resp, msg := postStream(t, hs.URL+"/v1/serve/"+service, "", body)
	if msg != "" {
		t.Fatalf("attach: %d %s", resp.StatusCode, msg)
	}
	s := &serveStream{t: t, resp: resp, lines: make(chan map[string]any, 64)}
	t.Cleanup(func() { resp.Body.Close() })
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("a serve line is not JSON: %q", sc.Text())
				return
			}
			s.lines <- m
		}
	}()
	return s, s.next()
}

// next returns the next line that is not a heartbeat.
func (s *serveStream) next() map[string]any {
	s.t.Helper()
	for {
		select {
		case m, ok := <-s.lines:
			if !ok {
				s.t.Fatal("the serve stream ended")
			}
			if m["heartbeat"] == true {
				continue
			}
			return m
		case <-time.After(10 * time.Second):
			s.t.Fatal("no serve line in 10 s")
		}
	}
}

func reply(t *testing.T, hs *httptest.Server, service, session, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(hs.URL+"/v1/serve/"+service+"/"+session, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type rpcResult struct {
	v   any
	err error
}

func call(n *dse.Node, action string, args map[string]any, timeout time.Duration) chan rpcResult {
	out := make(chan rpcResult, 1)
	go func() {
		v, err := n.RPC(context.Background(), "calc", action, args, dse.RPCOptions{Timeout: timeout})
		out <- rpcResult{v, err}
	}()
	return out
}

// TestServeStream: the stream's first line names the session, each call
// comes as a line with its args and time left, and the POSTed replies are
// the calls' results or remote errors; closing the stream detaches and
// fails the call it left unanswered.
func TestServeStream(t *testing.T) {
	n, hs := apiNode(t)
	s, hello := openStream(t, hs, "calc", `{"actions":["add","mul"],"concurrency":3,"heartbeat_ms":100}`)
	session, _ := hello["session"].(string)
	if session == "" || hello["node"] != n.ID() || fmt.Sprint(hello["actions"]) != "[add mul]" || hello["concurrency"] != 3.0 || hello["heartbeat_ms"] != 100.0 {
		t.Fatalf("first line %v", hello)
	}
	// Heartbeats come every 100 ms.
	select {
	case m := <-s.lines:
		if m["heartbeat"] != true {
			t.Fatalf("got %v, want a heartbeat", m)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no heartbeat in 2 s")
	}
	if info, _ := n.ServiceInfo("calc"); !slices.Contains(info.RPCEndpointsInfo, "add") || !slices.Contains(info.RPCEndpointsInfo, "mul") {
		t.Fatalf("rpc_endpoints_info %v lacks the attached actions", info.RPCEndpointsInfo)
	}

	res := call(n, "add", map[string]any{"a": int64(1), "b": 2.5}, 5*time.Second)
	line := s.next()
	if line["action"] != "add" || fmt.Sprint(line["args"]) != "map[a:1 b:2.5]" || line["timeout_ms"].(float64) <= 0 || line["timeout_ms"].(float64) > 5000 {
		t.Fatalf("call line %v", line)
	}
	id := line["id"].(string)
	if code, body := reply(t, hs, "calc", session, fmt.Sprintf(`{"id":%q,"result":{"sum":3.5,"n":[1,2]}}`, id)); code != 200 {
		t.Fatalf("reply: %d %s", code, body)
	}
	if r := <-res; r.err != nil || fmt.Sprint(r.v) != "map[n:[1 2] sum:3.5]" {
		t.Fatalf("rpc got %v %v", r.v, r.err)
	}
	if code, body := reply(t, hs, "calc", session, fmt.Sprintf(`{"id":%q,"result":1}`, id)); code != 404 || !strings.Contains(body, "not_found") {
		t.Fatalf("a second reply: %d %s, want 404", code, body)
	}

	res = call(n, "mul", nil, 5*time.Second)
	id = s.next()["id"].(string)
	if code, body := reply(t, hs, "calc", session, fmt.Sprintf(`{"id":%q,"error":"no can do"}`, id)); code != 200 {
		t.Fatalf("error reply: %d %s", code, body)
	}
	if r := <-res; !errors.Is(r.err, dse.ErrRemote) || r.err.Error() != "no can do" {
		t.Fatalf("rpc got %v %v, want the remote error", r.v, r.err)
	}

	// A reply after the caller gave up: expired.
	res = call(n, "add", nil, 200*time.Millisecond)
	id = s.next()["id"].(string)
	if r := <-res; !errors.Is(r.err, dse.ErrUnavailable) {
		t.Fatalf("unanswered call: %v, want unavailable", r.err)
	}
	if code, body := reply(t, hs, "calc", session, fmt.Sprintf(`{"id":%q,"result":1}`, id)); code != 409 || !strings.Contains(body, `"expired"`) {
		t.Fatalf("a late reply: %d %s, want 409 expired", code, body)
	}

	// Bad replies change nothing.
	for body, want := range map[string]string{
		`{"result":1}`:                      "needs the call's",
		`{"id":"1","result":1,"error":"x"}`: "not both",
		`{"id":"1","extra":1}`:              "unknown field",
		`{"id":"1","result":[1,`:            "malformed",
		`{"id":"1","result":1e400}`:         "result",
	} {
		if code, got := reply(t, hs, "calc", session, body); code != 400 || !strings.Contains(got, want) {
			t.Errorf("reply %s: %d %s, want 400 mentioning %q", body, code, got, want)
		}
	}
	if code, body := reply(t, hs, "calc", "nosuch", `{"id":"1","result":1}`); code != 404 || !strings.Contains(body, "node holding") {
		t.Fatalf("a reply to an unknown session: %d %s", code, body)
	}

	// The stream closes with a call pending: it fails as unavailable, and
	// the session leaves the registry.
	res = call(n, "add", nil, 10*time.Second)
	s.next()
	s.resp.Body.Close()
	select {
	case r := <-res:
		if !errors.Is(r.err, dse.ErrUnavailable) || !strings.Contains(r.err.Error(), "went away") {
			t.Fatalf("pending call: %v, want unavailable (went away)", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pending call outlived its stream by 5 s")
	}
	dsetest.WaitFor(t, 5*time.Second, "the detach", func() bool { return len(n.FSM().Attachments()) == 0 })
	if _, err := n.RPC(context.Background(), "calc", "add", nil, dse.RPCOptions{}); !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("after the detach: %v, want unavailable", err)
	}

	// With the default heartbeat (5 s) too, the node notices at once that
	// the client went away.
	s, _ = openStream(t, hs, "calc", `{"actions":["add"]}`)
	res = call(n, "add", nil, 10*time.Second)
	s.next()
	start := time.Now()
	s.resp.Body.Close()
	if r := <-res; !errors.Is(r.err, dse.ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("pending call: %v after %s, want unavailable at once", r.err, time.Since(start))
	}
}

// TestServeRefusals: bad attaches get the error naming why, before any
// stream; a stream whose service is deleted ends with a line saying so.
func TestServeRefusals(t *testing.T) {
	n, hs := apiNode(t)
	for _, tc := range []struct {
		service, body string
		status        int
		want          string
	}{
		{"nope", `{"actions":["add"]}`, 404, "service_not_found"},
		{"calc", `{"actions":[]}`, 400, "1 to 64 actions"},
		{"calc", `{"actions":["ping"]}`, 400, "built into every service"},
		{"calc", `{"actions":["add"],"concurrency":0.5}`, 400, "malformed"},
		{"calc", `{"actions":["add"],"heartbeat_ms":5}`, 400, "heartbeat_ms 5"},
		{"calc", `{"actions":["add"],"bogus":true}`, 400, "unknown field"},
	} {
		resp, body := postStream(t, hs.URL+"/v1/serve/"+tc.service, "", tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("attach %s %s: %d %s, want %d mentioning %q", tc.service, tc.body, resp.StatusCode, body, tc.status, tc.want)
		}
	}
	if m := n.FSM().Attachments(); len(m) != 0 {
		t.Fatalf("refused attaches left %v", m)
	}

	s, _ := openStream(t, hs, "calc", `{"actions":["add"]}`)
	if err := n.DeleteService(context.Background(), "calc"); err != nil {
		t.Fatal(err)
	}
	end := s.next()
	e, _ := end["error"].(map[string]any)
	if e["code"] != "service_not_found" || !strings.Contains(fmt.Sprint(e["message"]), "deleted") {
		t.Fatalf("last line %v, want the session's end: service deleted", end)
	}
}

// TestServeClient: the Go client's Attach, Next and Reply, and the
// subscribers list.
func TestServeClient(t *testing.T) {
	n, hs := apiNode(t)
	cl := api.NewClient(api.ClientConfig{Addr: hs.URL})
	ctx := context.Background()
	st, err := cl.Attach(ctx, "calc", api.AttachRequest{Actions: []string{"echo"}, HeartbeatMS: 100})
	if err != nil {
		t.Fatal(err)
	}
	res := call(n, "echo", map[string]any{"x": "y"}, 5*time.Second)
	c, err := st.Next()
	if err != nil || c.Action != "echo" || string(c.Args) != `{"x":"y"}` {
		t.Fatalf("Next: %+v %v", c, err)
	}
	if err := cl.Reply(ctx, "calc", st.Hello.Session, c.ID, c.Args, nil); err != nil {
		t.Fatal(err)
	}
	if r := <-res; r.err != nil || fmt.Sprint(r.v) != "map[x:y]" {
		t.Fatalf("rpc: %v %v", r.v, r.err)
	}
	if err := cl.Reply(ctx, "calc", st.Hello.Session, c.ID, nil, nil); !errors.Is(err, api.ErrNoCall) {
		t.Fatalf("a second reply: %v, want ErrNoCall", err)
	}
	st.Close()
	if _, err := st.Next(); !errors.Is(err, dse.ErrUnavailable) {
		t.Fatalf("Next after Close: %v, want unavailable", err)
	}

	subs, err := cl.Subscribers(ctx, "calc")
	if err != nil || len(subs) != 0 {
		t.Fatalf("subscribers: %v %v", subs, err)
	}
	watcher := dse.NewDataService("w", dse.Hooks{})
	if err := n.Register(ctx, watcher); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Subscribe(ctx, "calc", "t"); err != nil {
		t.Fatal(err)
	}
	if subs, err = cl.Subscribers(ctx, "calc"); err != nil || fmt.Sprint(subs) != "[{w calc t}]" {
		t.Fatalf("subscribers: %v %v", subs, err)
	}
	if _, err := cl.Subscribers(ctx, "nope"); !errors.Is(err, dse.ErrServiceNotFound) {
		t.Fatalf("subscribers of nope: %v", err)
	}
}

// TestServeNeedsWrite: with tokens, a read token cannot attach.
func TestServeNeedsWrite(t *testing.T) {
	n, hs := apiNode(t)
	ctx := context.Background()
	admin, err := n.CreateToken(ctx, "admin", dse.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	read, err := n.CreateToken(ctx, "r", dse.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 5*time.Second, "tokens required", func() bool { return n.AuthReady() })
	if resp, body := postStream(t, hs.URL+"/v1/serve/calc", read.Token, `{"actions":["add"]}`); resp.StatusCode != 403 || !strings.Contains(body, "forbidden") {
		t.Fatalf("a read token: %d %s, want 403", resp.StatusCode, body)
	}
	if resp, body := postStream(t, hs.URL+"/v1/serve/calc", "", `{"actions":["add"]}`); resp.StatusCode != 401 {
		t.Fatalf("no token: %d %s, want 401", resp.StatusCode, body)
	}
	resp, body := postStream(t, hs.URL+"/v1/serve/calc", admin.Token, `{"actions":["add"]}`)
	if body != "" {
		t.Fatalf("an admin token: %d %s", resp.StatusCode, body)
	}
	resp.Body.Close()
}
