package api_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/dsetest"
)

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fake answers every request with status and body, recording what it got.
type fake struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies []string
	url    string
}

func newFake(t *testing.T, status int, body string) *fake {
	t.Helper()
	f := &fake{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, r)
		f.bodies = append(f.bodies, string(b))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// got returns request i and its body.
func (f *fake) got(i int) (*http.Request, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[i], f.bodies[i]
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// TestClientErrorCodes: each error code the API answers comes back as an
// *api.Error with the status, which errors.Is matches against its dse
// sentinel (and no other).
func TestClientErrorCodes(t *testing.T) {
	sentinels := map[string]error{
		"invalid":           dse.ErrInvalid,
		"not_found":         dse.ErrNotFound,
		"service_not_found": dse.ErrServiceNotFound,
		"member_not_found":  dse.ErrMemberNotFound,
		"no_such_method":    dse.ErrNoSuchMethod,
		"exists":            dse.ErrExists,
		"service_exists":    dse.ErrServiceExists,
		"quorum":            dse.ErrQuorum,
		"fenced":            dse.ErrFenced,
		"unauthorized":      dse.ErrUnauthorized,
		"forbidden":         dse.ErrForbidden,
		"unavailable":       dse.ErrUnavailable,
		"no_leader":         dse.ErrNoLeader,
		"not_leader":        dse.ErrNotLeader,
		"closed":            dse.ErrClosed,
		"remote":            dse.ErrRemote,
	}
	for code, sentinel := range sentinels {
		t.Run(code, func(t *testing.T) {
			f := newFake(t, 418, `{"error":{"code":"`+code+`","message":"the message of `+code+`"}}`)
			cl := api.NewClient(api.ClientConfig{Addr: f.url})
			_, err := cl.Services(context.Background())
			if !errors.Is(err, sentinel) {
				t.Fatalf("got %v, want errors.Is %v", err, sentinel)
			}
			for other, s := range sentinels {
				if other != code && errors.Is(err, s) {
					t.Errorf("got %v, which also matches %s", err, other)
				}
			}
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != 418 || ae.Code != code || ae.Msg != "the message of "+code {
				t.Fatalf("got %#v, want an *api.Error with status 418, code %s and the message", err, code)
			}
			if err.Error() != "the message of "+code {
				t.Errorf("got message %q, want the server's", err.Error())
			}
		})
	}

	// An answer that is not the error body: code internal, the body quoted.
	f := newFake(t, http.StatusBadGateway, "upstream broke\n")
	_, err := api.NewClient(api.ClientConfig{Addr: f.url}).Status(context.Background())
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "internal" || ae.Msg != "HTTP 502: upstream broke" {
		t.Fatalf("non-JSON error: got %#v, want status 502, code internal, message \"HTTP 502: upstream broke\"", err)
	}
	for code, s := range sentinels {
		if errors.Is(err, s) {
			t.Errorf("non-JSON error %v matches %s", err, code)
		}
	}

	// No server: unavailable, naming the address.
	addr := deadAddr(t)
	_, err = api.NewClient(api.ClientConfig{Addr: addr}).Status(context.Background())
	if !errors.Is(err, dse.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("no server: got %v, want dse.ErrUnavailable naming %s", err, addr)
	}
	// A context that ends: its error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := api.NewClient(api.ClientConfig{Addr: addr}).Status(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: got %v, want context.Canceled", err)
	}
	// A 200 that is not JSON: a decode error, not success.
	f = newFake(t, http.StatusOK, "<html>")
	if _, err := api.NewClient(api.ClientConfig{Addr: f.url}).Status(context.Background()); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("a 200 that is not JSON: got %v, want a decode error", err)
	}
}

// TestClientRequests: what the client sends, its token and its paths with
// ids escaped.
func TestClientRequests(t *testing.T) {
	f := newFake(t, http.StatusOK, `{}`)
	cl := api.NewClient(api.ClientConfig{Addr: f.url + "/", Token: "tok-123"})
	ctx := context.Background()
	cl.DeleteService(ctx, "a b")
	cl.Publish(ctx, "s", "t:1", []byte(`[[1]]`), true)
	cl.Remove(ctx, "n/2", true)
	cl.RPC(ctx, "s", "act", api.RPCRequest{Args: map[string]any{"a": 1}, Timeout: "2s"})
	if f.count() != 4 {
		t.Fatalf("got %d requests, want 4", f.count())
	}
	for i, want := range []struct{ method, uri, body string }{
		{"DELETE", "/v1/services/a%20b", ""},
		{"PUT", "/v1/services/s/tables/t:1?snapshot=true", `[[1]]`},
		{"DELETE", "/v1/members/n%2F2?force=true", ""},
		{"POST", "/v1/rpc/s/act", `{"args":{"a":1},"timeout":"2s"}`},
	} {
		r, body := f.got(i)
		if r.Method != want.method || r.RequestURI != want.uri || body != want.body {
			t.Errorf("request %d: got %s %s %q, want %s %s %q", i, r.Method, r.RequestURI, body, want.method, want.uri, want.body)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer tok-123" {
			t.Errorf("request %d: got Authorization %q, want Bearer tok-123", i, got)
		}
	}
}

// TestClient drives every Client method against a real node, and checks
// the errors come back as dse's sentinels.
func TestClient(t *testing.T) {
	node, base := openNode(t)
	ctx := context.Background()
	cl := api.NewClient(api.ClientConfig{Addr: strings.TrimPrefix(base, "http://"), Timeout: 20 * time.Second})
	goService(t, node, "svc", dse.Endpoint{"fail": func(context.Context, map[string]any) (any, error) {
		return nil, errors.New("it failed")
	}})

	st, err := cl.Status(ctx)
	if err != nil || st.ID != node.ID() || st.State != "leader" {
		t.Fatalf("Status: got %+v, %v; want %s leading", st, err, node.ID())
	}
	ms, err := cl.Members(ctx)
	if err != nil || len(ms) != 1 || ms[0].ID != node.ID() || !ms[0].Leader {
		t.Fatalf("Members: got %+v, %v; want %s alone, leading", ms, err, node.ID())
	}

	info, err := cl.CreateService(ctx, "ext", 0)
	if err != nil || info.ServiceID != "ext" || info.NodeID != node.ID() {
		t.Fatalf("CreateService: got %+v, %v", info, err)
	}
	res, err := cl.Publish(ctx, "ext", "t", []byte(`[[2],[1]]`), false)
	if err != nil || !res.Changed || res.Seqnum != 1 {
		t.Fatalf("Publish: got %+v, %v; want seqnum 1, changed", res, err)
	}
	raw, err := cl.Get(ctx, "ext", "t")
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "Get", raw, `{"seqnum":1,"rows":[[1],[2]]}`)
	svcs, err := cl.Services(ctx)
	if err != nil || len(svcs) != 2 || svcs[0].ServiceID != "ext" || svcs[1].ServiceID != "svc" {
		t.Fatalf("Services: got %+v, %v; want ext and svc", svcs, err)
	}

	// Watch: lines go to fn until it returns an error, which Watch returns.
	stop := errors.New("enough")
	var lines []string
	err = cl.Watch(ctx, "ext", "t", func(l []byte) error {
		lines = append(lines, string(l))
		if len(lines) == 1 {
			if _, err := cl.Publish(ctx, "ext", "t", []byte(`[[1],[3]]`), false); err != nil {
				return err
			}
			return nil
		}
		return stop
	})
	if !errors.Is(err, stop) || len(lines) != 2 {
		t.Fatalf("Watch: got %v after %q, want fn's error after two lines", err, lines)
	}
	wantJSON(t, "watch line 2", []byte(lines[1]), `{"seqnum":2,"snapshot":false,"add":[[3]],"del":[[2]]}`)
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = cl.Watch(wctx, "ext", "t", func([]byte) error { return nil })
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch until its context ends: got %v, want context.DeadlineExceeded", err)
	}

	out, err := cl.RPC(ctx, "ext", "ping", api.RPCRequest{Args: map[string]any{"a": 1}})
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "RPC ping", out, `{"a":1}`)

	drivers, err := cl.Drivers(ctx)
	if err != nil || !slices.ContainsFunc(drivers, func(d api.DriverSummary) bool { return d.ID == "http" }) {
		t.Fatalf("Drivers: got %+v, %v; want http among them", drivers, err)
	}
	if raw, err := cl.Driver(ctx, "http"); err != nil || !strings.Contains(string(raw), `"id":"http"`) {
		t.Fatalf("Driver(http): got %s, %v", raw, err)
	}
	off := false
	ds, err := cl.AddDatasource(ctx, api.AddDatasourceRequest{Name: "web", Driver: "http", Enabled: &off,
		Config: map[string]any{"url": "http://127.0.0.1:1/", "username": "u", "password": "pw"}})
	if err != nil || ds.Name != "web" || ds.Enabled || ds.Config["password"] != dse.Hidden {
		t.Fatalf("AddDatasource: got %+v, %v; want web, disabled, password hidden", ds, err)
	}
	if dss, err := cl.Datasources(ctx, true); err != nil || len(dss) != 1 || dss[0].Config["password"] != "pw" {
		t.Fatalf("Datasources(show secrets): got %+v, %v", dss, err)
	}
	if d, err := cl.Datasource(ctx, ds.ID, false); err != nil || d.Name != "web" || d.Config["password"] != dse.Hidden {
		t.Fatalf("Datasource(id): got %+v, %v", d, err)
	}
	if s, err := cl.DatasourceStatus(ctx, "web"); err != nil || s.ID != ds.ID || s.Enabled {
		t.Fatalf("DatasourceStatus: got %+v, %v", s, err)
	}
	if d, err := cl.UpdateDatasource(ctx, "web", api.UpdateDatasourceRequest{Config: map[string]any{"url": "http://127.0.0.1:2/"}}); err != nil || d.Config["url"] != "http://127.0.0.1:2/" {
		t.Fatalf("UpdateDatasource: got %+v, %v", d, err)
	}
	if err := cl.DeleteDatasource(ctx, "web"); err != nil {
		t.Fatalf("DeleteDatasource: %v", err)
	}
	if err := cl.DeleteService(ctx, "ext"); err != nil {
		t.Fatalf("DeleteService: %v", err)
	}

	// Each refusal as its sentinel.
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"CreateService exists", func() error { _, err := cl.CreateService(ctx, "svc", 0); return err }, dse.ErrServiceExists},
		{"CreateService ..", func() error { _, err := cl.CreateService(ctx, "..", 0); return err }, dse.ErrInvalid},
		{"DeleteService nosuch", func() error { return cl.DeleteService(ctx, "nosuch") }, dse.ErrServiceNotFound},
		{"Publish bad rows", func() error { _, err := cl.Publish(ctx, "svc", "t", []byte(`[1]`), false); return err }, dse.ErrInvalid},
		{"Publish nosuch", func() error { _, err := cl.Publish(ctx, "nosuch", "t", []byte(`[]`), false); return err }, dse.ErrServiceNotFound},
		{"Get nosuch", func() error { _, err := cl.Get(ctx, "nosuch", "t"); return err }, dse.ErrServiceNotFound},
		{"Watch nosuch", func() error { return cl.Watch(ctx, "nosuch", "t", func([]byte) error { return nil }) }, dse.ErrServiceNotFound},
		{"RPC no method", func() error { _, err := cl.RPC(ctx, "svc", "nosuch", api.RPCRequest{}); return err }, dse.ErrNoSuchMethod},
		{"RPC remote", func() error { _, err := cl.RPC(ctx, "svc", "fail", api.RPCRequest{}); return err }, dse.ErrRemote},
		{"RPC bad timeout", func() error { _, err := cl.RPC(ctx, "svc", "ping", api.RPCRequest{Timeout: "soon"}); return err }, dse.ErrInvalid},
		{"Driver nosuch", func() error { _, err := cl.Driver(ctx, "nosuch"); return err }, dse.ErrNotFound},
		{"AddDatasource unknown driver", func() error {
			_, err := cl.AddDatasource(ctx, api.AddDatasourceRequest{Name: "x", Driver: "nosuch"})
			return err
		}, dse.ErrInvalid},
		{"AddDatasource a service's name", func() error {
			_, err := cl.AddDatasource(ctx, api.AddDatasourceRequest{Name: "svc", Driver: "http", Config: map[string]any{"url": "http://x/"}})
			return err
		}, dse.ErrExists},
		{"Datasource nosuch", func() error { _, err := cl.Datasource(ctx, "nosuch", false); return err }, dse.ErrNotFound},
		{"DatasourceStatus nosuch", func() error { _, err := cl.DatasourceStatus(ctx, "nosuch"); return err }, dse.ErrNotFound},
		{"UpdateDatasource nosuch", func() error {
			_, err := cl.UpdateDatasource(ctx, "nosuch", api.UpdateDatasourceRequest{Enabled: &off})
			return err
		}, dse.ErrNotFound},
		{"DeleteDatasource nosuch", func() error { return cl.DeleteDatasource(ctx, "nosuch") }, dse.ErrNotFound},
		{"Join bad", func() error { return cl.Join(ctx, dse.JoinRequest{ID: "..", Addr: "x"}) }, dse.ErrInvalid},
		{"Remove the last voter", func() error { return cl.Remove(ctx, node.ID(), true) }, dse.ErrQuorum},
		{"Remove nosuch", func() error { return cl.Remove(ctx, "nosuch", false) }, dse.ErrMemberNotFound},
		{"Promote nosuch", func() error { return cl.Promote(ctx, "nosuch") }, dse.ErrMemberNotFound},
		{"TransferLeadership nosuch", func() error { _, err := cl.TransferLeadership(ctx, "nosuch"); return err }, dse.ErrMemberNotFound},
		{"Leave the last voter", func() error { return cl.Leave(ctx) }, dse.ErrQuorum},
		{"RevokeToken nosuch", func() error { return cl.RevokeToken(ctx, "nosuch") }, dse.ErrNotFound},
		{"CreateToken bad role", func() error { _, err := cl.CreateToken(ctx, "x", "root"); return err }, dse.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want errors.Is %v", err, tc.want)
			}
		})
	}

	// Tokens, last: the first one makes the cluster require them.
	tok, err := cl.CreateToken(ctx, "first", dse.RoleAdmin)
	if err != nil || tok.Role != dse.RoleAdmin || tok.Token == "" {
		t.Fatalf("CreateToken: got %+v, %v", tok, err)
	}
	if _, err := cl.Services(ctx); !errors.Is(err, dse.ErrUnauthorized) {
		t.Fatalf("Services without a token once one exists: got %v, want dse.ErrUnauthorized", err)
	}
	admin := api.NewClient(api.ClientConfig{Addr: base, Token: tok.Token})
	if toks, err := admin.Tokens(ctx); err != nil || len(toks) != 1 || toks[0].ID != tok.ID {
		t.Fatalf("Tokens: got %+v, %v; want the one made", toks, err)
	}
	reader, err := admin.CreateToken(ctx, "reader", dse.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	rc := api.NewClient(api.ClientConfig{Addr: base, Token: reader.Token})
	if _, err := rc.CreateService(ctx, "x", 0); !errors.Is(err, dse.ErrForbidden) {
		t.Fatalf("CreateService as read: got %v, want dse.ErrForbidden", err)
	}
	if err := admin.RevokeToken(ctx, tok.ID); !errors.Is(err, dse.ErrInvalid) {
		t.Fatalf("RevokeToken of the last admin: got %v, want dse.ErrInvalid", err)
	}
	if err := admin.RevokeToken(ctx, reader.ID); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if _, err := rc.Status(ctx); !errors.Is(err, dse.ErrUnauthorized) {
		t.Fatalf("a revoked token: got %v, want dse.ErrUnauthorized", err)
	}
}

// TestJoinClusterInTurn: JoinCluster asks each address in turn until one
// accepts, passing over the unreachable and the unavailable; a refusal
// (4xx) ends it at once; with no taker it gives up when its context ends.
func TestJoinClusterInTurn(t *testing.T) {
	ctx := context.Background()
	req := dse.JoinRequest{ID: "n9", Addr: "127.0.0.1:9", HTTPAddr: "127.0.0.1:10", Voter: true}
	unavailable := newFake(t, http.StatusServiceUnavailable, `{"error":{"code":"no_leader","message":"no cluster leader"}}`)
	accepts := newFake(t, http.StatusOK, `{"joined":"n9"}`)
	if err := api.JoinCluster(ctx, []string{deadAddr(t), unavailable.url, accepts.url}, nil, "tok-9", req); err != nil {
		t.Fatalf("JoinCluster: %v", err)
	}
	if unavailable.count() != 1 || accepts.count() != 1 {
		t.Fatalf("requests: got %d to the unavailable node and %d to the accepting one, want 1 and 1", unavailable.count(), accepts.count())
	}
	r, body := accepts.got(0)
	if r.Method != "POST" || r.URL.Path != "/v1/members" || r.Header.Get("Authorization") != "Bearer tok-9" {
		t.Errorf("join request: got %s %s with Authorization %q, want POST /v1/members with the token", r.Method, r.URL.Path, r.Header.Get("Authorization"))
	}
	wantJSON(t, "join body", []byte(body), `{"id":"n9","address":"127.0.0.1:9","http":"127.0.0.1:10","voter":true}`)

	refuses := newFake(t, http.StatusForbidden, `{"error":{"code":"forbidden","message":"forbidden: role read"}}`)
	after := newFake(t, http.StatusOK, `{}`)
	err := api.JoinCluster(ctx, []string{refuses.url, after.url}, nil, "", req)
	if !errors.Is(err, dse.ErrForbidden) || !strings.Contains(err.Error(), refuses.url) {
		t.Fatalf("JoinCluster refused: got %v, want dse.ErrForbidden naming %s", err, refuses.url)
	}
	if after.count() != 0 {
		t.Fatalf("JoinCluster went on after a refusal: %d requests to the next address", after.count())
	}

	// Nobody takes it: retried, in turn, until the context ends.
	cctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = api.JoinCluster(cctx, []string{deadAddr(t), unavailable.url}, nil, "", req)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no cluster leader") {
		t.Fatalf("JoinCluster with no taker: got %v, want context.DeadlineExceeded with the last error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("JoinCluster took %s after its context ended", d)
	}
	if n := unavailable.count(); n < 3 {
		t.Errorf("JoinCluster asked the unavailable node %d times in 700ms, want retries", n-1)
	}
}

// TestJoinClusterNode: a new node joins a real cluster through JoinCluster,
// past an address that does not answer.
func TestJoinClusterNode(t *testing.T) {
	c := dsetest.New(t, 1)
	base := serve(t, c.Nodes[0], api.ServerConfig{})
	cfg, deps := dsetest.Config(t, "j1", t.TempDir())
	j1, err := dse.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j1.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := dse.JoinRequest{ID: j1.ID(), Addr: j1.Addr(), HTTPAddr: "127.0.0.1:1", Voter: true}
	if err := api.JoinCluster(ctx, []string{deadAddr(t), strings.TrimPrefix(base, "http://")}, nil, "", req); err != nil {
		t.Fatalf("JoinCluster: %v", err)
	}
	ms, err := api.NewClient(api.ClientConfig{Addr: base}).Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"j1", c.Nodes[0].ID()}) {
		t.Fatalf("members after the join: got %v, want [j1 %s]", ids, c.Nodes[0].ID())
	}
	dsetest.WaitFor(t, 10*time.Second, "j1 to know the leader", func() bool {
		id, _ := j1.Leader()
		return id == c.Nodes[0].ID()
	})
}
