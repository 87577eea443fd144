package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/dsetest"
)

// member is one element of GET /v1/members, decoded strictly.
type member struct {
	ID        string `json:"id"`
	Address   string `json:"address"`
	HTTP      string `json:"http"`
	Voter     bool   `json:"voter"`
	Leader    bool   `json:"leader"`
	State     string `json:"state"`
	Reachable bool   `json:"reachable"`
	LastIndex uint64 `json:"last_index"`
}

func members(t *testing.T, base string) []member {
	t.Helper()
	b := wantStatus(t, "GET /v1/members", get(t, base, "/v1/members"), http.StatusOK)
	var raw []json.RawMessage
	decode(t, "GET /v1/members", b, &raw)
	for _, m := range raw {
		wantKeys(t, "a member", m, "id", "address", "http", "voter", "leader", "state", "reachable", "last_index")
	}
	var ms []member
	decode(t, "GET /v1/members", b, &ms)
	return ms
}

func memberIDs(ms []member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// TestStatus: GET /v1/status has the keys CLI.md fixes and this node's view.
func TestStatus(t *testing.T) {
	node, base := openNode(t)
	b := wantStatus(t, "GET /v1/status", get(t, base, "/v1/status"), http.StatusOK)
	got := keysOf(t, "status", b)
	for _, k := range []string{"id", "state", "leader", "term", "commit_index", "applied_index", "members"} {
		if !slices.Contains(got, k) {
			t.Errorf("status: got keys %v, want %q among them", got, k)
		}
	}
	var st dse.StatusReport
	decode(t, "status", b, &st)
	if st.ID != node.ID() || st.State != "leader" || st.Leader != node.ID() || st.Members != 1 || st.Term == 0 || st.AppliedIndex == 0 {
		t.Errorf("status: got %s, want id, leader %s, state leader, 1 member, a term", b, node.ID())
	}

	// HEAD is answered as GET, without a body.
	r := do(t, base, req{method: http.MethodHead, path: "/v1/status"})
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Errorf("HEAD /v1/status: got status %d and %d bytes, want 200 and none", r.status, len(r.body))
	}
}

// TestUnknownRoutes: a path or method no route has gets the JSON 404.
func TestUnknownRoutes(t *testing.T) {
	_, base := openNode(t)
	for _, r := range []req{
		{method: "GET", path: "/"},
		{method: "GET", path: "/v1"},
		{method: "GET", path: "/v2/status"},
		{method: "PUT", path: "/v1/status"},
		{method: "POST", path: "/v1/services/x/tables/t", body: "[]"},
		{method: "DELETE", path: "/v1/services"},
		{method: "PATCH", path: "/v1/tokens"},
		{method: "GET", path: "/v1/rpc/x/ping"},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			msg := wantError(t, r.method+" "+r.path, do(t, base, r), http.StatusNotFound, "not_found")
			if !strings.Contains(msg, r.path) {
				t.Errorf("got message %q, want it to name %s", msg, r.path)
			}
		})
	}
}

// TestMetrics: GET /metrics serves the node's Prometheus registry.
func TestMetrics(t *testing.T) {
	_, base := openNode(t)
	// An RPC, so the rpc counter has a sample.
	wantStatus(t, "rpc", post(t, base, "/v1/rpc/none/ping", ""), http.StatusNotFound)
	r := get(t, base, "/metrics")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: got %d %q, want 200 text/plain", r.status, r.header.Get("Content-Type"))
	}
	if !strings.Contains(string(r.body), "# TYPE ") || !strings.Contains(string(r.body), "go_goroutines") {
		t.Errorf("GET /metrics: got %.300s..., want Prometheus text with the Go collector", r.body)
	}
}

// TestMembership drives every membership route on a three-node cluster:
// list, join (through a follower), promote, remove, leader transfer and
// leave, with their errors.
func TestMembership(t *testing.T) {
	c := dsetest.New(t, 3)
	lead := c.WaitLeader()
	fol := (lead + 1) % 3
	bases := make([]string, 3)
	for i, n := range c.Nodes {
		bases[i] = serve(t, n, api.ServerConfig{})
	}
	base := bases[fol]

	ms := members(t, base)
	if got := memberIDs(ms); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("members: got %v, want [n1 n2 n3] sorted", got)
	}
	for _, m := range ms {
		if !m.Voter || m.Address == "" || m.Leader != (m.ID == c.Nodes[lead].ID()) {
			t.Errorf("member %+v: want a voter with an address, leader only if %s", m, c.Nodes[lead].ID())
		}
	}

	// A new node joins as a non-voter through a follower.
	cfg, deps := dsetest.Config(t, "n4", t.TempDir())
	n4, err := dse.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n4.Close() })
	body, _ := json.Marshal(map[string]any{"id": "n4", "address": n4.Addr(), "http": "127.0.0.1:1", "voter": false})
	b := wantStatus(t, "join n4", post(t, base, "/v1/members", string(body)), http.StatusOK)
	wantJSON(t, "join n4", b, `{"joined":"n4"}`)
	ms = members(t, base)
	if i := slices.IndexFunc(ms, func(m member) bool { return m.ID == "n4" }); i < 0 || ms[i].Voter {
		t.Fatalf("members after join: got %+v, want n4 as a non-voter", ms)
	}

	t.Run("join errors", func(t *testing.T) {
		for _, tc := range []struct{ name, body, code string }{
			{"no id", `{"address":"127.0.0.1:1"}`, "invalid"},
			{"bad id", `{"id":"a/b","address":"127.0.0.1:1"}`, "invalid"},
			{"dot id", `{"id":"..","address":"127.0.0.1:1"}`, "invalid"},
			{"no address", `{"id":"n9"}`, "invalid"},
			{"unknown key", `{"id":"n9","address":"127.0.0.1:1","addr":"x"}`, "invalid"},
			{"wrong type", `{"id":"n9","address":"127.0.0.1:1","voter":"yes"}`, "invalid"},
			{"malformed", `{"id":"n9",`, "invalid"},
			{"two values", `{"id":"n9","address":"127.0.0.1:1"} {}`, "invalid"},
			{"empty body", ``, "invalid"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, "join", post(t, base, "/v1/members", tc.body), http.StatusBadRequest, tc.code)
			})
		}
		// A node that does not answer on its address is not added.
		wantError(t, "join a dead address", post(t, base, "/v1/members", `{"id":"n9","address":"127.0.0.1:1"}`), http.StatusServiceUnavailable, "unavailable")
		if got := memberIDs(members(t, base)); !slices.Equal(got, []string{"n1", "n2", "n3", "n4"}) {
			t.Fatalf("members after refused joins: got %v, want [n1 n2 n3 n4]", got)
		}
	})

	t.Run("promote", func(t *testing.T) {
		wantError(t, "promote nosuch", post(t, base, "/v1/members/nosuch/promote", ""), http.StatusNotFound, "member_not_found")
		wantError(t, "promote a voter", post(t, base, "/v1/members/n1/promote", ""), http.StatusBadRequest, "invalid")
		b := wantStatus(t, "promote n4", post(t, base, "/v1/members/n4/promote", ""), http.StatusOK)
		wantJSON(t, "promote n4", b, `{"promoted":"n4"}`)
		ms := members(t, base)
		if i := slices.IndexFunc(ms, func(m member) bool { return m.ID == "n4" }); i < 0 || !ms[i].Voter {
			t.Fatalf("members after promote: got %+v, want n4 a voter", ms)
		}
	})

	t.Run("remove", func(t *testing.T) {
		wantError(t, "force=maybe", del(t, base, "/v1/members/n4?force=maybe"), http.StatusBadRequest, "invalid")
		wantError(t, "remove nosuch", del(t, base, "/v1/members/nosuch"), http.StatusNotFound, "member_not_found")
		if got := memberIDs(members(t, base)); !slices.Contains(got, "n4") {
			t.Fatalf("members after refused removals: got %v, want n4 still", got)
		}
		b := wantStatus(t, "remove n4", del(t, base, "/v1/members/n4"), http.StatusOK)
		wantJSON(t, "remove n4", b, `{"removed":"n4"}`)
		dsetest.WaitFor(t, 10*time.Second, "n4 gone from the members", func() bool {
			return !slices.Contains(memberIDs(members(t, base)), "n4")
		})
	})

	t.Run("transfer", func(t *testing.T) {
		for _, tc := range []struct {
			name, body string
			status     int
			code       string
		}{
			{"nosuch", `{"to":"nosuch"}`, http.StatusNotFound, "member_not_found"},
			{"wrong type", `{"to":1}`, http.StatusBadRequest, "invalid"},
			{"unknown key", `{"id":"n1"}`, http.StatusBadRequest, "invalid"},
			{"malformed", `{"to"`, http.StatusBadRequest, "invalid"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, "transfer", post(t, base, "/v1/leader/transfer", tc.body), tc.status, tc.code)
			})
		}
		old := c.WaitLeader()
		to := c.Nodes[(old+2)%3].ID()
		b := wantStatus(t, "transfer to "+to, post(t, base, "/v1/leader/transfer", `{"to":"`+to+`"}`), http.StatusOK)
		wantJSON(t, "transfer", b, `{"leader":"`+to+`"}`)
		if got := c.Nodes[c.WaitLeader()].ID(); got != to {
			t.Fatalf("leader after transfer: got %s, want %s", got, to)
		}
		// No body: any other voter.
		b = wantStatus(t, "transfer to any", post(t, base, "/v1/leader/transfer", ""), http.StatusOK)
		var got struct{ Leader string }
		decode(t, "transfer", b, &got)
		if got.Leader == "" || got.Leader == to {
			t.Fatalf("transfer to any: got leader %q, want one other than %s", got.Leader, to)
		}
	})

	t.Run("leave", func(t *testing.T) {
		i := (c.WaitLeader() + 1) % 3
		id := c.Nodes[i].ID()
		b := wantStatus(t, "leave "+id, post(t, bases[i], "/v1/leave", ""), http.StatusOK)
		wantJSON(t, "leave", b, `{"left":"`+id+`"}`)
		select {
		case <-c.Nodes[i].Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still runs 10s after it left", id)
		}
		other := bases[(i+1)%3]
		dsetest.WaitFor(t, 10*time.Second, id+" gone from the members", func() bool {
			return !slices.Contains(memberIDs(members(t, other)), id)
		})
	})
}

// TestLastVoter: the last voter may not be removed, nor leave, even forced;
// the node keeps running.
func TestLastVoter(t *testing.T) {
	node, base := openNode(t)
	id := node.ID()
	wantError(t, "remove the last voter", del(t, base, "/v1/members/"+id), http.StatusConflict, "quorum")
	wantError(t, "force-remove the last voter", del(t, base, "/v1/members/"+id+"?force=true"), http.StatusConflict, "quorum")
	wantError(t, "the last voter leaves", post(t, base, "/v1/leave", ""), http.StatusConflict, "quorum")
	select {
	case <-node.Done():
		t.Fatal("the node stopped after a refused leave")
	default:
	}
	if got := memberIDs(members(t, base)); !slices.Equal(got, []string{id}) {
		t.Fatalf("members: got %v, want [%s]", got, id)
	}
}

// TestPathSegments: a path with a ".", ".." or empty segment (an id the
// client put in the path as it is) is refused with 400; before, the mux
// redirected it to another route, where the client's request went on:
// `drivers show .` got the list of drivers, `datasources status ""` the
// config of a datasource named status.
func TestPathSegments(t *testing.T) {
	node, base := openNode(t)
	ctx := context.Background()
	if _, err := node.CreateService(ctx, "ext", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := node.AddDatasource(ctx, dse.DatasourceSpec{Name: "status", Driver: "http", Config: map[string]any{"url": "http://127.0.0.1:1/"}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []req{
		{method: "GET", path: "/v1/drivers/."},
		{method: "GET", path: "/v1/datasources/./status"},
		{method: "GET", path: "/v1/datasources//status"},
		{method: "GET", path: "/v1/datasources/.."},
		{method: "GET", path: "/v1//status"},
		{method: "GET", path: "/v1/services/ext/tables/.."},
		{method: "GET", path: "/v1/watch/ext/."},
		{method: "PUT", path: "/v1/services/ext/tables/..", body: `[[1]]`},
		{method: "PUT", path: "/v1/services/ext/tables/.", body: `[[1]]`},
		{method: "DELETE", path: "/v1/services/ext/.."},
		{method: "DELETE", path: "/v1/members/.."},
		{method: "POST", path: "/v1/rpc/ext/.", body: `{}`},
		{method: "PATCH", path: "/v1/datasources/./", body: `{"enabled":true}`},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			wantError(t, r.method+" "+r.path, do(t, base, r), http.StatusBadRequest, "invalid")
		})
	}
	if got := node.FSM().PublishedTables("ext"); len(got) != 0 {
		t.Errorf("ext's tables after refused publications: got %v, want none", got)
	}
	if got := serviceIDs(node); !slices.Equal(got, []string{"ext"}) {
		t.Errorf("services after refused requests: got %v, want [ext]", got)
	}

	// Through the client, which puts ids in paths as they are.
	cl := api.NewClient(api.ClientConfig{Addr: base})
	if got, err := cl.Driver(ctx, "."); !errors.Is(err, dse.ErrInvalid) {
		t.Errorf("Driver(.): got %.80s, %v; want dse.ErrInvalid", got, err)
	}
	if got, err := cl.DatasourceStatus(ctx, ""); !errors.Is(err, dse.ErrInvalid) {
		t.Errorf("DatasourceStatus(\"\"): got %+v, %v; want dse.ErrInvalid", got, err)
	}
	if _, err := cl.Publish(ctx, "ext", "..", []byte(`[[1]]`), false); !errors.Is(err, dse.ErrInvalid) {
		t.Errorf("Publish(ext, ..): got %v, want dse.ErrInvalid", err)
	}
	// A trailing slash is no empty name: the JSON 404 as before.
	wantError(t, "GET /v1/services/", get(t, base, "/v1/services/"), http.StatusNotFound, "not_found")
}

// TestBodyNotUTF8: a JSON body that is not valid UTF-8 is refused with 400
// naming it, on every route that takes one; the JSON decoder would make
// each bad byte U+FFFD and go on with a value the client never sent.
func TestBodyNotUTF8(t *testing.T) {
	node, base := openNode(t)
	var calls atomic.Int64
	goService(t, node, "svc", dse.Endpoint{"count": func(context.Context, map[string]any) (any, error) {
		return calls.Add(1), nil
	}})
	ctx := context.Background()
	ds, err := node.AddDatasource(ctx, dse.DatasourceSpec{Name: "web", Driver: "http", Config: map[string]any{"url": "http://127.0.0.1:1/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []req{
		{method: "POST", path: "/v1/services", body: "{\"id\":\"a\xffb\"}"},
		{method: "POST", path: "/v1/rpc/svc/count", body: "{\"args\":{\"s\":\"a\xff\"}}"},
		{method: "POST", path: "/v1/datasources", body: "{\"name\":\"d2\",\"driver\":\"http\",\"description\":\"caf\xe9\",\"config\":{\"url\":\"http://127.0.0.1:1/\"}}"},
		{method: "PATCH", path: "/v1/datasources/web", body: "{\"config\":{\"url\":\"http://127.0.0.1:1/\",\"username\":\"\xc3\"}}"},
		{method: "POST", path: "/v1/members", body: "{\"id\":\"n\xff\",\"address\":\"127.0.0.1:1\"}"},
		{method: "POST", path: "/v1/leader/transfer", body: "{\"to\":\"\xfe\"}"},
		{method: "POST", path: "/v1/tokens", body: "{\"role\":\"admin\",\"name\":\"\xff\"}"},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			msg := wantError(t, r.method+" "+r.path, do(t, base, r), http.StatusBadRequest, "invalid")
			if !strings.Contains(msg, "UTF-8") {
				t.Errorf("got message %q, want it to say the body is not UTF-8", msg)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the method ran %d times, want 0", n)
	}
	if got := node.GetDatasources(false); len(got) != 1 || !jsonEqual(got[0].Config, ds.Config) {
		t.Errorf("datasources: got %+v, want web as it was", got)
	}
	if got := node.Tokens(); len(got) != 0 {
		t.Errorf("tokens: got %+v, want none", got)
	}
	if got := serviceIDs(node); !slices.Equal(got, []string{"svc"}) {
		t.Errorf("services: got %v, want [svc]", got)
	}
}

// TestClosedNode: the API of a node that has shut down answers reads from
// what it holds and refuses writes with 503, code closed.
func TestClosedNode(t *testing.T) {
	node, base := openNode(t)
	if _, err := node.CreateService(context.Background(), "ext", 0); err != nil {
		t.Fatal(err)
	}
	node.Close()
	var st dse.StatusReport
	decode(t, "status", wantStatus(t, "status", get(t, base, "/v1/status"), http.StatusOK), &st)
	if st.State != "shutdown" {
		t.Errorf("status of a closed node: got state %q, want shutdown", st.State)
	}
	if got := listServices(t, base); len(got) != 1 {
		t.Errorf("services of a closed node: got %+v, want ext", got)
	}
	for _, r := range []req{
		{method: "GET", path: "/v1/watch/ext/t"},
		{method: "POST", path: "/v1/datasources", body: `{"name":"d","driver":"http","config":{"url":"http://127.0.0.1:1/"}}`},
		{method: "POST", path: "/v1/tokens", body: `{"role":"admin"}`},
		{method: "POST", path: "/v1/leader/transfer"},
		{method: "POST", path: "/v1/leave"},
		{method: "DELETE", path: "/v1/services/ext"},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			wantError(t, r.method+" "+r.path, do(t, base, r), http.StatusServiceUnavailable, "closed")
		})
	}
}
