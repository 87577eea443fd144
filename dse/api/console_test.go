package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/dsetest"
	"dse.dev/dse/dse/ui"
)

// serve runs node's API on a test server.
func serveConsole(t *testing.T, node *dse.Node) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(api.NewServer(node, api.ServerConfig{}))
	t.Cleanup(srv.Close)
	return srv
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

// call sends a request with token (if any) and returns status and body.
func request(t *testing.T, method, url, token string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

func decodeAuth(t *testing.T, b []byte) api.AuthInfo {
	t.Helper()
	var a api.AuthInfo
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("GET /v1/auth: %q: %v", b, err)
	}
	return a
}

// securedNode starts a one-node cluster with a bootstrap admin token, and
// read and write tokens.
func securedNode(t *testing.T) (node *dse.Node, admin, read, write string) {
	t.Helper()
	admin = "console-admin-token-0001"
	cfg, deps := dsetest.Config(t, "s1", t.TempDir())
	cfg.Bootstrap, cfg.BootstrapToken = true, admin
	node, err := dse.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	dsetest.WaitFor(t, 15*time.Second, "the bootstrap token", node.AuthReady)
	ctx := context.Background()
	r, err := node.CreateToken(ctx, "dashboards", dse.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	w, err := node.CreateToken(ctx, "", dse.RoleWrite)
	if err != nil {
		t.Fatal(err)
	}
	return node, admin, r.Token, w.Token
}

func TestAuthInfoOpenCluster(t *testing.T) {
	c := dsetest.New(t, 1)
	srv := serveConsole(t, c.Nodes[0])
	status, _, b := request(t, "GET", srv.URL+"/v1/auth", "")
	if status != 200 {
		t.Fatalf("status %d (%s), want 200", status, b)
	}
	// A cluster without tokens lets anyone do anything: as an admin.
	if got, want := decodeAuth(t, b), (api.AuthInfo{Role: "admin"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestAuthInfoSecured(t *testing.T) {
	node, admin, read, write := securedNode(t)
	srv := serveConsole(t, node)
	for _, tc := range []struct {
		name, token string
		status      int
		role        string
	}{
		{"no token", "", 200, ""}, // tells no more than a 401 would
		{"read", read, 200, "read"},
		{"write", write, 200, "write"},
		{"admin", admin, 200, "admin"},
		{"unknown token", "not-a-token-of-this-cluster", 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, b := request(t, "GET", srv.URL+"/v1/auth", tc.token)
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, b, tc.status)
			}
			if status != 200 {
				return
			}
			a := decodeAuth(t, b)
			if !a.AuthRequired || a.Role != tc.role {
				t.Fatalf("got %+v, want auth_required and role %q", a, tc.role)
			}
			if tc.name == "read" && a.TokenName != "dashboards" {
				t.Errorf("token name %q, want dashboards", a.TokenName)
			}
			if strings.Contains(string(b), tc.token) && tc.token != "" {
				t.Errorf("the answer holds the token's secret: %s", b)
			}
		})
	}
	// Only GET is exempt from the token, and only without one.
	if status, _, _ := request(t, "POST", srv.URL+"/v1/auth", ""); status != 401 {
		t.Errorf("POST /v1/auth without a token: %d, want 401", status)
	}
}

// TestConsoleWithoutToken: a secured node serves the console's files to
// anyone (they hold no data), but nothing else, whatever the path says.
func TestConsoleWithoutToken(t *testing.T) {
	node, admin, _, _ := securedNode(t)
	srv := serveConsole(t, node)
	for _, p := range []string{"/ui/", "/ui/js/app.js", "/ui/css/console.css"} {
		status, hd, _ := request(t, "GET", srv.URL+p, "")
		if status != 200 {
			t.Errorf("GET %s without a token: %d, want 200", p, status)
		}
		if hd.Get("Content-Security-Policy") != ui.ContentSecurityPolicy {
			t.Errorf("GET %s: CSP %q", p, hd.Get("Content-Security-Policy"))
		}
	}
	if status, hd, _ := request(t, "GET", srv.URL+"/ui", ""); status != 301 || hd.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want 301 to /ui/", status, hd.Get("Location"))
	}
	if status, _, _ := request(t, "POST", srv.URL+"/ui/", ""); status != 405 {
		t.Errorf("POST /ui/: %d, want 405", status)
	}
	// Paths that start with /ui/ but lead elsewhere reach no data: the
	// mux redirects to the cleaned path, which needs a token as ever.
	for _, p := range []string{"/ui/../v1/tokens", "/ui/%2e%2e/v1/tokens", "/ui%2F..%2Fv1/tokens", "/ui/..%2Fv1%2Ftokens", "/ui//v1/tokens"} {
		status, _, b := request(t, "GET", srv.URL+p, "")
		if status == 200 || strings.Contains(string(b), "dashboards") {
			t.Errorf("GET %s without a token: %d %s", p, status, b)
		}
	}
	for _, p := range []string{"/v1/services", "/v1/tokens", "/metrics", "/v1/services/x"} {
		if status, _, _ := request(t, "GET", srv.URL+p, ""); status != 401 {
			t.Errorf("GET %s without a token: %d, want 401", p, status)
		}
	}
	if status, _, _ := request(t, "GET", srv.URL+"/v1/tokens", admin); status != 200 {
		t.Errorf("GET /v1/tokens as admin: %d, want 200", status)
	}
}

func TestServiceDetail(t *testing.T) {
	c := dsetest.New(t, 2)
	ctx := context.Background()
	owner := dse.NewDataService("ha", dse.Hooks{})
	if err := c.Nodes[0].Register(ctx, owner); err != nil {
		t.Fatal(err)
	}
	standby := dse.NewDataService("ha", dse.Hooks{})
	if err := c.Nodes[1].Register(ctx, standby); err != nil {
		t.Fatal(err)
	}
	sub := dse.NewDataService("sub", dse.Hooks{})
	if err := c.Nodes[1].Register(ctx, sub); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe(ctx, "ha", "t"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, _, err := owner.Publish(ctx, "t", []dse.Row{{int64(i), "x"}}, false); err != nil {
			t.Fatal(err)
		}
	}
	srv := serveConsole(t, c.Nodes[1])
	var got dse.ServiceDetail
	dsetest.WaitFor(t, 10*time.Second, "the detail replicated", func() bool {
		status, _, b := request(t, "GET", srv.URL+"/v1/services/ha", "")
		if status != 200 {
			t.Fatalf("GET /v1/services/ha: %d %s", status, b)
		}
		got = dse.ServiceDetail{}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return len(got.Instances) == 2 && len(got.Tables) == 1 && got.Tables[0].Seqnum == 2
	})
	n1, n2 := c.Nodes[0].ID(), c.Nodes[1].ID()
	want := dse.ServiceDetail{
		ServiceID: "ha", NodeID: n1, Incarnation: got.Incarnation, Kind: dse.KindGo,
		Instances: []string{n1, n2}, Standbys: []string{n2}, Endpoints: got.Endpoints,
		Tables:   []dse.TableDetail{{Table: "t", Seqnum: 2, Subscribers: 1}},
		Replicas: []dse.ReplicaDetail{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got.Incarnation == 0 {
		t.Errorf("incarnation 0, want the owner's")
	}
	// Lists are lists, never null (a service with nothing).
	status, _, b := request(t, "GET", srv.URL+"/v1/services/sub", "")
	if status != 200 || strings.Contains(string(b), "null") {
		t.Errorf("GET /v1/services/sub: %d %s, want 200 without null", status, b)
	}
	status, _, b = request(t, "GET", srv.URL+"/v1/services/nope", "")
	if status != 404 || !strings.Contains(string(b), "service_not_found") {
		t.Errorf("GET /v1/services/nope: %d %s, want 404 service_not_found", status, b)
	}
}
