package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/dsetest"
)

const adminSecret = "api-test-admin-token-0001"

// secureNode is a one-node cluster that requires tokens, with a token of
// each role.
type secureNode struct {
	node               *dse.Node
	base               string
	ctx                context.Context
	admin, write, read string // the tokens' secrets
	adminID, readID    string
}

func newSecureNode(t *testing.T) *secureNode {
	t.Helper()
	c := dsetest.NewWith(t, 1, func(_ int, cfg *dse.Config, _ *dse.Deps) { cfg.BootstrapToken = adminSecret })
	node := c.Nodes[0]
	dsetest.WaitFor(t, 10*time.Second, "the bootstrap token", node.AuthReady)
	s := &secureNode{node: node, base: serve(t, node, api.ServerConfig{}), admin: adminSecret, ctx: context.Background()}
	for _, tk := range node.Tokens() {
		s.adminID = tk.ID
	}
	w, err := node.CreateToken(s.ctx, "w", dse.RoleWrite)
	if err != nil {
		t.Fatal(err)
	}
	r, err := node.CreateToken(s.ctx, "r", dse.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	s.write, s.read, s.readID = w.Token, r.Token, r.ID
	// A service with a table, and a datasource of each driver (disabled).
	if _, err := node.CreateService(s.ctx, "ext", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Publish(s.ctx, "ext", "t", []dse.Row{{int64(1)}}, false); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []dse.DatasourceSpec{
		{Name: "web", Driver: "http", Config: map[string]any{"url": "http://127.0.0.1:1/", "username": "u", "password": "s3cret"}},
		{Name: "files", Driver: "file", Config: map[string]any{"path": "/nonexistent/tables.json"}},
	} {
		if _, err := node.AddDatasource(s.ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var roleRank = map[string]int{"": 0, dse.RoleRead: 1, dse.RoleWrite: 2, dse.RoleAdmin: 3}

// TestRouteRoles: every route, asked with no token and with a token of each
// role, answers 401 (with WWW-Authenticate) without one, 403 with a role
// below the one it needs, and its own answer from that role up.
func TestRouteRoles(t *testing.T) {
	s := newSecureNode(t)
	routes := []struct {
		method, path, body string
		need               string
		status             int // the route's own answer
	}{
		{"GET", "/v1/status", "", dse.RoleRead, 200},
		{"HEAD", "/v1/status", "", dse.RoleRead, 200},
		{"GET", "/v1/members", "", dse.RoleRead, 200},
		{"GET", "/v1/services", "", dse.RoleRead, 200},
		{"GET", "/v1/services/ext/tables/t", "", dse.RoleRead, 200},
		{"GET", "/v1/watch/nosuch/t", "", dse.RoleRead, 404},
		{"GET", "/v1/drivers", "", dse.RoleRead, 200},
		{"GET", "/v1/drivers/http", "", dse.RoleRead, 200},
		{"GET", "/v1/datasources", "", dse.RoleRead, 200},
		{"GET", "/v1/datasources?show_secrets=false", "", dse.RoleRead, 200},
		{"GET", "/v1/datasources/web", "", dse.RoleRead, 200},
		{"GET", "/v1/datasources/web/status", "", dse.RoleRead, 200},
		{"GET", "/metrics", "", dse.RoleRead, 200},
		{"GET", "/nosuch", "", dse.RoleRead, 404},

		{"POST", "/v1/services", `{"id":".."}`, dse.RoleWrite, 400},
		{"DELETE", "/v1/services/nosuch", "", dse.RoleWrite, 404},
		{"PUT", "/v1/services/ext/tables/t", `[[1]]`, dse.RoleWrite, 200},
		{"POST", "/v1/rpc/ext/ping", `{"args":{"a":1}}`, dse.RoleWrite, 200},
		{"POST", "/v1/datasources", `{"name":"..","driver":"http"}`, dse.RoleWrite, 400},
		{"PATCH", "/v1/datasources/web", `{"enabled":false}`, dse.RoleWrite, 200},
		{"PATCH", "/v1/datasources/web", `{"config":{"url":"http://127.0.0.1:1/","username":"u","password":"s3cret"}}`, dse.RoleWrite, 200},
		{"PATCH", "/v1/datasources/files", `{"enabled":false}`, dse.RoleWrite, 200},
		{"DELETE", "/v1/datasources/nosuch", "", dse.RoleWrite, 404},

		{"POST", "/v1/members", `{}`, dse.RoleAdmin, 400},
		{"DELETE", "/v1/members/nosuch", "", dse.RoleAdmin, 404},
		{"POST", "/v1/members/nosuch/promote", "", dse.RoleAdmin, 404},
		{"POST", "/v1/leave", "", dse.RoleAdmin, 409}, // the last voter
		{"POST", "/v1/leader/transfer", `{"to":"nosuch"}`, dse.RoleAdmin, 404},
		{"POST", "/v1/tokens", `{"role":"bogus"}`, dse.RoleAdmin, 400},
		{"GET", "/v1/tokens", "", dse.RoleAdmin, 200},
		{"DELETE", "/v1/tokens/nosuch", "", dse.RoleAdmin, 404},
		{"GET", "/v1/datasources?show_secrets=true", "", dse.RoleAdmin, 200},
		{"GET", "/v1/datasources/web?show_secrets=true", "", dse.RoleAdmin, 200},
		{"GET", "/v1/datasources?show_secrets=x", "", dse.RoleAdmin, 400},
		// The file driver reads the node's own files; a kept secret
		// ("<hidden>") with a new config could send it elsewhere.
		{"POST", "/v1/datasources", `{"name":"f2","driver":"file","config":{}}`, dse.RoleAdmin, 400},
		{"PATCH", "/v1/datasources/files", `{"config":{"path":"/nonexistent/tables.json"}}`, dse.RoleAdmin, 200},
		{"PATCH", "/v1/datasources/web", `{"config":{"url":"http://127.0.0.1:1/","username":"u","password":"<hidden>"}}`, dse.RoleAdmin, 200},
	}
	tokens := []struct{ role, secret string }{{"", ""}, {dse.RoleRead, s.read}, {dse.RoleWrite, s.write}, {dse.RoleAdmin, s.admin}}
	for _, rt := range routes {
		for _, tk := range tokens {
			name := rt.method + " " + rt.path + " as " + tk.role
			if tk.role == "" {
				name = rt.method + " " + rt.path + " without a token"
			}
			t.Run(name, func(t *testing.T) {
				r := do(t, s.base, req{method: rt.method, path: rt.path, body: rt.body, token: tk.secret})
				switch {
				case tk.role == "":
					if r.status != http.StatusUnauthorized {
						t.Fatalf("got status %d, want 401 (body %s)", r.status, r.body)
					}
					if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="dse"` {
						t.Errorf("got WWW-Authenticate %q, want Bearer realm=\"dse\"", got)
					}
					if rt.method != "HEAD" {
						wantError(t, name, r, http.StatusUnauthorized, "unauthorized")
					}
				case roleRank[tk.role] < roleRank[rt.need]:
					if r.status != http.StatusForbidden {
						t.Fatalf("got status %d, want 403 (body %s)", r.status, r.body)
					}
					if rt.method != "HEAD" {
						msg := wantError(t, name, r, http.StatusForbidden, "forbidden")
						if !strings.Contains(msg, "forbidden") {
							t.Errorf("got message %q, want it to say forbidden", msg)
						}
					}
				default:
					if r.status != rt.status {
						t.Fatalf("got status %d, want %d (body %s)", r.status, rt.status, r.body)
					}
				}
			})
		}
	}
	// What the refused requests asked for did not happen.
	if got := serviceIDs(s.node); !slices.Equal(got, []string{"ext"}) {
		t.Errorf("services: got %v, want [ext]", got)
	}
	if len(s.node.Tokens()) != 3 {
		t.Errorf("tokens: got %v, want the three made", s.node.Tokens())
	}
	if d, _ := s.node.GetDatasource("web", false); d.Config["password"] != "s3cret" || d.Enabled {
		t.Errorf("datasource web: got %+v, want it as configured", d)
	}
}

// TestBearerScheme: the Authorization header's scheme is case-insensitive,
// a bare token is taken, and anything else is refused.
func TestBearerScheme(t *testing.T) {
	s := newSecureNode(t)
	for _, tc := range []struct {
		auth   string
		status int
	}{
		{"Bearer " + s.read, 200},
		{"bearer " + s.read, 200},
		{"BEARER " + s.read, 200},
		{"Bearer   " + s.read + "  ", 200},
		{s.read, 200},
		{"Bearer wrong-token-0000000000", 401},
		{"Bearer " + s.read + "x", 401},
		{"Bearer ", 401},
		{"Basic dTpwYXNzd29yZA==", 401},
		{"Token " + s.read, 401},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			r := do(t, s.base, req{method: "GET", path: "/v1/status", auth: tc.auth})
			if r.status != tc.status {
				t.Fatalf("got status %d, want %d (body %s)", r.status, tc.status, r.body)
			}
			if tc.status == 401 {
				wantError(t, tc.auth, r, http.StatusUnauthorized, "unauthorized")
			}
		})
	}
}

// TestTokens: create, list and revoke, and their refusals; a revoked token
// is refused from then on; the last admin token cannot be revoked.
func TestTokens(t *testing.T) {
	s := newSecureNode(t)
	as := func(method, path, body string) response {
		return do(t, s.base, req{method: method, path: path, body: body, token: s.admin})
	}

	b := wantStatus(t, "create", as("POST", "/v1/tokens", `{"role":"read","name":"ci"}`), http.StatusCreated)
	wantKeys(t, "create", b, "id", "name", "role", "token")
	var nt dse.NewToken
	decode(t, "create", b, &nt)
	if nt.ID == "" || nt.Name != "ci" || nt.Role != "read" || len(nt.Token) < 16 {
		t.Fatalf("create: got %s, want a read token named ci with an id and a secret", b)
	}
	wantStatus(t, "the new token reads", do(t, s.base, req{method: "GET", path: "/v1/services", token: nt.Token}), http.StatusOK)
	wantError(t, "the new token writes", do(t, s.base, req{method: "POST", path: "/v1/services", body: `{"id":"x"}`, token: nt.Token}), http.StatusForbidden, "forbidden")

	b = wantStatus(t, "list", as("GET", "/v1/tokens", ""), http.StatusOK)
	var raw []json.RawMessage
	decode(t, "list", b, &raw)
	var names []string
	for _, r := range raw {
		wantKeys(t, "a listed token", r, "id", "name", "role")
		var ti dse.TokenInfo
		decode(t, "a listed token", r, &ti)
		names = append(names, ti.Name+":"+ti.Role)
	}
	slices.Sort(names)
	if want := []string{"bootstrap:admin", "ci:read", "r:read", "w:write"}; !slices.Equal(names, want) {
		t.Fatalf("list: got %v, want %v", names, want)
	}
	for _, secret := range []string{s.admin, s.read, s.write, nt.Token} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("list: got %s, which holds a token's secret", b)
		}
	}

	for _, tc := range []struct{ name, body, want string }{
		{"bad role", `{"role":"root"}`, "role"},
		{"no role", `{"name":"x"}`, "role"},
		{"role wrong type", `{"role":1}`, "role"},
		{"name too long", `{"role":"read","name":"` + strings.Repeat("n", 129) + `"}`, "name"},
		{"unknown key", `{"role":"read","token":"chosen-secret-000000"}`, "token"},
		{"malformed", `{"role":`, "JSON"},
		{"empty body", ``, "role"},
	} {
		t.Run("create "+tc.name, func(t *testing.T) {
			msg := wantError(t, tc.name, as("POST", "/v1/tokens", tc.body), http.StatusBadRequest, "invalid")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("got message %q, want it to say %q", msg, tc.want)
			}
		})
	}
	if n := len(s.node.Tokens()); n != 4 {
		t.Fatalf("tokens after refused creates: got %d, want 4", n)
	}

	b = wantStatus(t, "revoke", as("DELETE", "/v1/tokens/"+nt.ID, ""), http.StatusOK)
	wantJSON(t, "revoke", b, `{"revoked":"`+nt.ID+`"}`)
	wantError(t, "a revoked token", do(t, s.base, req{method: "GET", path: "/v1/services", token: nt.Token}), http.StatusUnauthorized, "unauthorized")
	wantError(t, "revoke again", as("DELETE", "/v1/tokens/"+nt.ID, ""), http.StatusNotFound, "not_found")

	// The last admin token stays; with another admin it may go.
	msg := wantError(t, "revoke the last admin", as("DELETE", "/v1/tokens/"+s.adminID, ""), http.StatusBadRequest, "invalid")
	if !strings.Contains(msg, "last admin") {
		t.Errorf("got message %q, want it to say last admin", msg)
	}
	wantStatus(t, "the admin token still works", as("GET", "/v1/tokens", ""), http.StatusOK)
	decode(t, "create admin", wantStatus(t, "create admin", as("POST", "/v1/tokens", `{"role":"admin"}`), http.StatusCreated), &nt)
	wantStatus(t, "revoke the first admin", do(t, s.base, req{method: "DELETE", path: "/v1/tokens/" + s.adminID, token: nt.Token}), http.StatusOK)
	wantError(t, "the revoked admin", as("GET", "/v1/tokens", ""), http.StatusUnauthorized, "unauthorized")
}

// TestWatchTokenRevoked: a watch lasts only as long as its token; revoked,
// the stream ends and its trailers say why, and Client.Watch returns
// dse.ErrUnauthorized.
func TestWatchTokenRevoked(t *testing.T) {
	s := newSecureNode(t)
	wantError(t, "watch without a token", get(t, s.base, "/v1/watch/ext/t"), http.StatusUnauthorized, "unauthorized")

	w := openWatch(t, s.base, "ext", "t", s.read)
	wantJSON(t, "snapshot", w.next(t), `{"seqnum":1,"snapshot":true,"rows":[[1]]}`)
	cl := api.NewClient(api.ClientConfig{Addr: s.base, Token: s.read})
	first := make(chan struct{}, 1)
	watched := make(chan error, 1)
	go func() {
		watched <- cl.Watch(s.ctx, "ext", "t", func([]byte) error {
			select {
			case first <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the client's watch got no line in 10s")
	}

	wantStatus(t, "revoke", do(t, s.base, req{method: "DELETE", path: "/v1/tokens/" + s.readID, token: s.admin}), http.StatusOK)
	tr := w.end(t)
	if code := tr.Get(endCode); code != "unauthorized" || !strings.Contains(tr.Get(endError), "revoked") {
		t.Errorf("trailers: got %s %q, %s %q; want unauthorized, saying the token was revoked", endCode, code, endError, tr.Get(endError))
	}
	select {
	case err := <-watched:
		if !errors.Is(err, dse.ErrUnauthorized) {
			t.Errorf("Client.Watch: got %v, want dse.ErrUnauthorized", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Client.Watch still runs 10s after its token was revoked")
	}
	// Watches with other tokens go on.
	w2 := openWatch(t, s.base, "ext", "t", s.write)
	w2.next(t)
}

// TestAuthNotReady: a node that requires tokens but has not caught up with
// the cluster's (here, one that will join with a token and has not) answers
// every request 503, with or without a token, rather than let anyone in.
func TestAuthNotReady(t *testing.T) {
	cfg, deps := dsetest.Config(t, "j1", t.TempDir())
	cfg.JoinsWithToken = true
	node, err := dse.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	base := serve(t, node, api.ServerConfig{})
	for _, r := range []req{
		{method: "GET", path: "/v1/status"},
		{method: "GET", path: "/v1/services", token: adminSecret},
		{method: "POST", path: "/v1/tokens", body: `{"role":"admin"}`},
		{method: "POST", path: "/v1/tokens", body: `{"role":"admin"}`, token: adminSecret},
		{method: "POST", path: "/v1/members", body: `{"id":"x","address":"127.0.0.1:1"}`},
		{method: "GET", path: "/nosuch"},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			msg := wantError(t, r.method+" "+r.path, do(t, base, r), http.StatusServiceUnavailable, "unavailable")
			if !strings.Contains(msg, "caught up") {
				t.Errorf("got message %q, want it to say the node has not caught up", msg)
			}
		})
	}
	if n := len(node.Tokens()); n != 0 {
		t.Fatalf("tokens: got %d, want none made", n)
	}
}
