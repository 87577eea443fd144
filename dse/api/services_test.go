package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/dsetest"
)

// serviceInfo is one element of GET /v1/services, decoded strictly.
type serviceInfo struct {
	ServiceID        string   `json:"service_id"`
	NodeID           string   `json:"node_id"`
	PublishedTables  []string `json:"published_tables"`
	SubscribedTables []string `json:"subscribed_tables"`
	RPCEndpointsInfo []string `json:"rpc_endpoints_info"`
}

// listServices reads GET /v1/services, checking each element has exactly
// the five DataServiceInfo keys and lists, never null.
func listServices(t *testing.T, base string) []serviceInfo {
	t.Helper()
	b := wantStatus(t, "GET /v1/services", get(t, base, "/v1/services"), http.StatusOK)
	var raw []map[string]json.RawMessage
	decode(t, "GET /v1/services", b, &raw)
	if raw == nil {
		t.Fatalf("GET /v1/services: got %s, want a list", b)
	}
	for _, m := range raw {
		var keys []string
		for k, v := range m {
			keys = append(keys, k)
			if k != "service_id" && k != "node_id" && !strings.HasPrefix(string(v), "[") {
				t.Errorf("service %s: %s is %s, want a list", m["service_id"], k, v)
			}
		}
		slices.Sort(keys)
		if want := []string{"node_id", "published_tables", "rpc_endpoints_info", "service_id", "subscribed_tables"}; !slices.Equal(keys, want) {
			t.Errorf("service %s: got keys %v, want %v", m["service_id"], keys, want)
		}
	}
	var out []serviceInfo
	decode(t, "GET /v1/services", b, &out)
	return out
}

// TestServices: list, create and delete, and every refusal of create and
// delete, which leaves the registry as it was.
func TestServices(t *testing.T) {
	node, base := openNode(t)
	ctx := context.Background()

	if got := listServices(t, base); len(got) != 0 {
		t.Fatalf("services of a new cluster: got %v, want none", got)
	}
	b := wantStatus(t, "create ext", post(t, base, "/v1/services", `{"id":"ext"}`), http.StatusCreated)
	wantKeys(t, "create ext", b, "service_id", "node_id", "published_tables", "subscribed_tables", "rpc_endpoints_info")
	var created serviceInfo
	decode(t, "create ext", b, &created)
	if created.ServiceID != "ext" || created.NodeID != node.ID() || !slices.Contains(created.RPCEndpointsInfo, "publish") ||
		created.PublishedTables == nil || created.SubscribedTables == nil {
		t.Fatalf("create ext: got %+v, want ext on %s with a publish action and empty lists", created, node.ID())
	}

	// A Go service subscribing to ext's table: the list shows both ends.
	sub := goService(t, node, "sub", nil)
	if err := sub.Subscribe(ctx, "ext", "t"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "publish", put(t, base, "/v1/services/ext/tables/t", `[[1]]`), http.StatusOK)
	dsetest.WaitFor(t, 10*time.Second, "ext's table t in the registry", func() bool {
		return slices.Contains(node.FSM().PublishedTables("ext"), "t")
	})
	got := listServices(t, base)
	if ids := []string{got[0].ServiceID, got[1].ServiceID}; len(got) != 2 || !slices.Equal(ids, []string{"ext", "sub"}) {
		t.Fatalf("services: got %+v, want ext and sub, sorted", got)
	}
	// subscribed_tables: a service's own tables that have subscribers
	// (Congress's _published_tables_with_subscriber).
	if !slices.Equal(got[0].PublishedTables, []string{"t"}) || !slices.Equal(got[0].SubscribedTables, []string{"t"}) || len(got[1].SubscribedTables) != 0 {
		t.Errorf("services: got %+v, want ext publishing t, which sub subscribes to", got)
	}

	t.Run("create refused", func(t *testing.T) {
		src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`[[1]]`)) }))
		t.Cleanup(src.Close)
		if _, err := node.AddDatasource(ctx, dse.DatasourceSpec{Name: "ds1", Driver: "http", Enabled: true, Config: map[string]any{"url": src.URL}}); err != nil {
			t.Fatal(err)
		}
		dsetest.WaitFor(t, 10*time.Second, "ds1's service", func() bool { return slices.Contains(serviceIDs(node), "ds1") })
		before := serviceIDs(node)
		for _, tc := range []struct {
			name, body string
			status     int
			code       string
		}{
			{"exists", `{"id":"ext"}`, http.StatusConflict, "service_exists"},
			{"a Go service's id", `{"id":"sub"}`, http.StatusConflict, "service_exists"},
			{"a datasource's name", `{"id":"ds1"}`, http.StatusConflict, "service_exists"},
			{"empty id", `{"id":""}`, http.StatusBadRequest, "invalid"},
			{"no body", ``, http.StatusBadRequest, "invalid"},
			{"dot", `{"id":"."}`, http.StatusBadRequest, "invalid"},
			{"dot dot", `{"id":".."}`, http.StatusBadRequest, "invalid"},
			{"slash", `{"id":"a/b"}`, http.StatusBadRequest, "invalid"},
			{"space", `{"id":"a b"}`, http.StatusBadRequest, "invalid"},
			{"not ASCII", `{"id":"café"}`, http.StatusBadRequest, "invalid"},
			{"not UTF-8", "{\"id\":\"a\xffb\"}", http.StatusBadRequest, "invalid"},
			{"129 bytes", `{"id":"` + strings.Repeat("a", 129) + `"}`, http.StatusBadRequest, "invalid"},
			{"wrong type", `{"id":5}`, http.StatusBadRequest, "invalid"},
			{"unknown key", `{"id":"x","replica":3}`, http.StatusBadRequest, "invalid"},
			{"malformed", `{"id":"x"`, http.StatusBadRequest, "invalid"},
			{"two values", `{"id":"x"}{"id":"y"}`, http.StatusBadRequest, "invalid"},
			{"an array", `["x"]`, http.StatusBadRequest, "invalid"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				msg := wantError(t, "create", post(t, base, "/v1/services", tc.body), tc.status, tc.code)
				if tc.name == "unknown key" && !strings.Contains(msg, "replica") {
					t.Errorf("got message %q, want it to name the unknown key", msg)
				}
			})
		}
		if after := serviceIDs(node); !slices.Equal(after, before) {
			t.Fatalf("services after refused creates: got %v, want %v", after, before)
		}
		// 128 bytes is the limit, and allowed.
		long := strings.Repeat("a", 128)
		wantStatus(t, "create 128 bytes", post(t, base, "/v1/services", `{"id":"`+long+`"}`), http.StatusCreated)
		wantStatus(t, "delete 128 bytes", del(t, base, "/v1/services/"+long), http.StatusOK)
	})

	t.Run("delete", func(t *testing.T) {
		wantError(t, "delete nosuch", del(t, base, "/v1/services/nosuch"), http.StatusNotFound, "service_not_found")
		wantError(t, "delete a datasource's service", del(t, base, "/v1/services/ds1"), http.StatusBadRequest, "invalid")
		wantStatus(t, "create gone", post(t, base, "/v1/services", `{"id":"gone"}`), http.StatusCreated)
		b := wantStatus(t, "delete gone", del(t, base, "/v1/services/gone"), http.StatusOK)
		wantJSON(t, "delete gone", b, `{"deleted":"gone"}`)
		if ids := serviceIDs(node); slices.Contains(ids, "gone") {
			t.Fatalf("services after delete: got %v, want no gone", ids)
		}
		wantError(t, "delete gone again", del(t, base, "/v1/services/gone"), http.StatusNotFound, "service_not_found")
	})
}

// tableContent is GET /v1/services/{id}/tables/{table}, decoded strictly.
type tableContent struct {
	Seqnum uint64            `json:"seqnum"`
	Rows   []json.RawMessage `json:"rows"`
}

func getTable(t *testing.T, base, service, tbl string) (raw []byte, tc tableContent) {
	t.Helper()
	b := wantStatus(t, "get "+service+"/"+tbl, get(t, base, "/v1/services/"+service+"/tables/"+tbl), http.StatusOK)
	wantKeys(t, "get", b, "seqnum", "rows")
	decode(t, "get", b, &tc)
	return b, tc
}

// TestPublishAndGet: publish answers {"seqnum","changed"}, consuming a
// seqnum only for a change; get answers {"seqnum","rows"}, rows sorted.
func TestPublishAndGet(t *testing.T) {
	node, base := openNode(t)
	if _, err := node.CreateService(context.Background(), "ext", 0); err != nil {
		t.Fatal(err)
	}

	// A table never published: seqnum 0, rows [] (not null).
	b, _ := getTable(t, base, "ext", "t")
	wantJSON(t, "get of a new table", b, `{"seqnum":0,"rows":[]}`)

	rows := `[["b",2,true],["a",1.5,null],["a",-1,false],[9007199254740993,"x","y"]]`
	pub := wantStatus(t, "publish", put(t, base, "/v1/services/ext/tables/t", rows), http.StatusOK)
	wantKeys(t, "publish", pub, "seqnum", "changed")
	var p1 dse.PublishResult
	decode(t, "publish", pub, &p1)
	if !p1.Changed || p1.Seqnum == 0 {
		t.Fatalf("first publish: got %s, want changed and a seqnum", pub)
	}
	b, _ = getTable(t, base, "ext", "t")
	// Sorted (numbers before strings), every value exact.
	wantJSON(t, "get", b, fmt.Sprintf(`{"seqnum":%d,"rows":[[9007199254740993,"x","y"],["a",-1,false],["a",1.5,null],["b",2,true]]}`, p1.Seqnum))
	if !strings.Contains(string(b), "9007199254740993") {
		t.Errorf("get: got %s, want the integer 9007199254740993 exactly", b)
	}

	// The same rows again, in another order: nothing changed, no seqnum.
	same := `[["a",-1,false],[9007199254740993,"x","y"],["b",2,true],["a",1.5,null]]`
	b = wantStatus(t, "publish the same", put(t, base, "/v1/services/ext/tables/t", same), http.StatusOK)
	wantJSON(t, "publish the same", b, fmt.Sprintf(`{"seqnum":%d,"changed":false}`, p1.Seqnum))

	b = wantStatus(t, "publish a change", put(t, base, "/v1/services/ext/tables/t?snapshot=true", `[["z"]]`), http.StatusOK)
	var p2 dse.PublishResult
	decode(t, "publish a change", b, &p2)
	if !p2.Changed || p2.Seqnum <= p1.Seqnum {
		t.Fatalf("publish a change: got %s, want changed and a seqnum after %d", b, p1.Seqnum)
	}
	b, _ = getTable(t, base, "ext", "t")
	wantJSON(t, "get", b, fmt.Sprintf(`{"seqnum":%d,"rows":[["z"]]}`, p2.Seqnum))

	// Empty: a change to no rows, and rows [] back.
	wantStatus(t, "publish empty", put(t, base, "/v1/services/ext/tables/t?snapshot=false", `[]`), http.StatusOK)
	b, tc := getTable(t, base, "ext", "t")
	if len(tc.Rows) != 0 || !strings.Contains(string(b), `"rows":[]`) {
		t.Fatalf("get after publishing no rows: got %s, want rows []", b)
	}

	wantError(t, "get nosuch service", get(t, base, "/v1/services/nosuch/tables/t"), http.StatusNotFound, "service_not_found")
	wantError(t, "publish to nosuch service", put(t, base, "/v1/services/nosuch/tables/t", `[[1]]`), http.StatusNotFound, "service_not_found")
	// A Go service publishes its own tables.
	goService(t, node, "gosvc", nil)
	wantError(t, "publish to a Go service", put(t, base, "/v1/services/gosvc/tables/t", `[[1]]`), http.StatusBadRequest, "invalid")
}

// TestPublishBadInput: each malformed publication gets 400 naming what is
// wrong, and the table keeps its content and seqnum.
func TestPublishBadInput(t *testing.T) {
	node, base := openNode(t)
	if _, err := node.CreateService(context.Background(), "ext", 0); err != nil {
		t.Fatal(err)
	}
	small := serve(t, node, api.ServerConfig{MaxBody: 256})
	wantStatus(t, "publish", put(t, base, "/v1/services/ext/tables/t", `[[1,"a"]]`), http.StatusOK)
	before, _ := getTable(t, base, "ext", "t")

	wide := "[[" + strings.TrimSuffix(strings.Repeat("1,", 1025), ",") + "]]"
	for _, tc := range []struct {
		name, base, path, body, want string
	}{
		{"snapshot=maybe", base, "/v1/services/ext/tables/t?snapshot=maybe", `[[2]]`, "snapshot"},
		{"snapshot=", base, "/v1/services/ext/tables/t?snapshot=yes", `[[2]]`, "snapshot"},
		{"empty body", base, "/v1/services/ext/tables/t", ``, "JSON"},
		{"malformed", base, "/v1/services/ext/tables/t", `[[2]`, "JSON"},
		{"two values", base, "/v1/services/ext/tables/t", `[[2]] [[3]]`, "more than one"},
		{"an object", base, "/v1/services/ext/tables/t", `{"rows":[[2]]}`, "array of rows"},
		{"null", base, "/v1/services/ext/tables/t", `null`, "array of rows"},
		{"a string", base, "/v1/services/ext/tables/t", `"x"`, "array of rows"},
		{"a row not an array", base, "/v1/services/ext/tables/t", `[[2],3]`, "row 1"},
		{"a nested array", base, "/v1/services/ext/tables/t", `[[[2]]]`, "nested array"},
		{"an object value", base, "/v1/services/ext/tables/t", `[[{"a":2}]]`, "object"},
		{"beyond int64", base, "/v1/services/ext/tables/t", `[[9223372036854775808]]`, "overflows"},
		{"below int64", base, "/v1/services/ext/tables/t", `[[-9223372036854775809]]`, "overflows"},
		{"float overflow", base, "/v1/services/ext/tables/t", `[[1e400]]`, "1e400"},
		{"not UTF-8", base, "/v1/services/ext/tables/t", "[[\"a\xff\"]]", "UTF-8"},
		{"too many columns", base, "/v1/services/ext/tables/t", wide, "columns"},
		{"bad table name", base, "/v1/services/ext/tables/a%20b", `[[2]]`, "table name"},
		{"table name too long", base, "/v1/services/ext/tables/" + strings.Repeat("a", 129), `[[2]]`, "table name"},
		{"escaped dot dot", base, "/v1/services/ext/tables/%2E%2E", `[[2]]`, "table name"},
		{"over MaxBody", small, "/v1/services/ext/tables/t", `[["` + strings.Repeat("x", 300) + `"]]`, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := wantError(t, tc.name, put(t, tc.base, tc.path, tc.body), http.StatusBadRequest, "invalid")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("got message %q, want it to say %q", msg, tc.want)
			}
		})
	}
	if after, _ := getTable(t, base, "ext", "t"); string(after) != string(before) {
		t.Fatalf("table after refused publications: got %s, want %s", after, before)
	}
	if tables := node.FSM().PublishedTables("ext"); !slices.Equal(tables, []string{"t"}) {
		t.Fatalf("ext's tables after refused publications: got %v, want [t]", tables)
	}
}

// TestWatch: the NDJSON stream, a snapshot line then a delta line per
// change, rows sorted and lists never null; its refusals; its end when the
// publisher is deleted (the trailers say why); and the node's watch limit.
func TestWatch(t *testing.T) {
	c := dsetest.NewWith(t, 1, func(_ int, cfg *dse.Config, _ *dse.Deps) { cfg.MaxWatches = 2 })
	node := c.Nodes[0]
	base := serve(t, node, api.ServerConfig{})
	ctx := context.Background()
	if _, err := node.CreateService(ctx, "ext", 0); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "publish", put(t, base, "/v1/services/ext/tables/t", `[[3],[1],[2]]`), http.StatusOK)

	w := openWatch(t, base, "ext", "t", "")
	line := w.next(t)
	wantKeys(t, "snapshot line", line, "seqnum", "snapshot", "rows")
	if !strings.HasPrefix(string(line), `{"seqnum":`) {
		t.Errorf("snapshot line %s: want seqnum first, as CLI.md shows it", line)
	}
	wantJSON(t, "snapshot line", line, `{"seqnum":1,"snapshot":true,"rows":[[1],[2],[3]]}`)

	// A watch is not a service the list shows.
	if got := listServices(t, base); len(got) != 1 || got[0].ServiceID != "ext" {
		t.Errorf("services with a watch open: got %+v, want only ext", got)
	}

	for _, step := range []struct{ rows, want string }{
		{`[[2],[5],[3],[4]]`, `{"seqnum":2,"snapshot":false,"add":[[4],[5]],"del":[[1]]}`},
		{`[[2],[5],[3],[4],[0]]`, `{"seqnum":3,"snapshot":false,"add":[[0]],"del":[]}`},
		{`[[5]]`, `{"seqnum":4,"snapshot":false,"add":[],"del":[[0],[2],[3],[4]]}`},
	} {
		wantStatus(t, "publish "+step.rows, put(t, base, "/v1/services/ext/tables/t", step.rows), http.StatusOK)
		line := w.next(t)
		wantKeys(t, "delta line", line, "seqnum", "snapshot", "add", "del")
		wantJSON(t, "delta line", line, step.want)
	}
	// A publication that changes nothing is no line (w.end below fails on
	// any line before the end).
	wantStatus(t, "publish the same", put(t, base, "/v1/services/ext/tables/t", `[[5]]`), http.StatusOK)

	t.Run("refused", func(t *testing.T) {
		wantError(t, "watch nosuch", get(t, base, "/v1/watch/nosuch/t"), http.StatusNotFound, "service_not_found")
		wantError(t, "watch a bad table", get(t, base, "/v1/watch/ext/a%20b"), http.StatusBadRequest, "invalid")
		wantError(t, "watch a bad service", get(t, base, "/v1/watch/a%20b/t"), http.StatusBadRequest, "invalid")
		// w and one more fill the limit of 2.
		openWatch(t, base, "ext", "t", "").next(t)
		wantError(t, "a watch over the limit", get(t, base, "/v1/watch/ext/t"), http.StatusServiceUnavailable, "unavailable")
	})

	// Its publisher deleted, the watch ends and says why.
	wantStatus(t, "delete ext", del(t, base, "/v1/services/ext"), http.StatusOK)
	tr := w.end(t)
	if code := tr.Get(endCode); code != "not_found" && code != "service_not_found" {
		t.Errorf("trailer %s: got %q, want not_found or service_not_found (%s: %q)", endCode, code, endError, tr.Get(endError))
	}
	if msg := tr.Get(endError); !strings.Contains(msg, "ext") {
		t.Errorf("trailer %s: got %q, want it to name ext", endError, msg)
	}
}

// TestRPC: the result as JSON, exact numbers, each option, and the errors
// of a call: not found, no such method, the method's own (remote), a
// timeout.
func TestRPC(t *testing.T) {
	node, base := openNode(t)
	var calls atomic.Int64
	goService(t, node, "svc", dse.Endpoint{
		"echo": func(_ context.Context, args map[string]any) (any, error) {
			calls.Add(1)
			return args, nil
		},
		"list": func(context.Context, map[string]any) (any, error) {
			return []any{int64(1), "a", nil, true, 2.5}, nil
		},
		"fail": func(context.Context, map[string]any) (any, error) {
			return nil, errors.New("boom: the method failed")
		},
		"slow": func(ctx context.Context, _ map[string]any) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})

	for _, tc := range []struct{ name, path, body, want string }{
		{"ping", "/v1/rpc/svc/ping", `{"args":{"a":1}}`, `{"a":1}`},
		{"no body", "/v1/rpc/svc/ping", ``, `{}`},
		{"no args", "/v1/rpc/svc/ping", `{}`, `{}`},
		{"null args", "/v1/rpc/svc/ping", `{"args":null}`, `{}`},
		{"nested", "/v1/rpc/svc/echo", `{"args":{"a":[1,{"b":2.5,"c":null}],"s":"é","t":true}}`, `{"a":[1,{"b":2.5,"c":null}],"s":"é","t":true}`},
		{"options", "/v1/rpc/svc/echo", `{"args":{"x":"y"},"timeout":"5s","retry":2,"local":true,"idempotent":true}`, `{"x":"y"}`},
		{"a list", "/v1/rpc/svc/list", ``, `[1,"a",null,true,2.5]`},
		{"builtin get_snapshot", "/v1/rpc/svc/get_snapshot", `{"args":{"table":"t"}}`, `[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantJSON(t, tc.name, wantStatus(t, tc.name, post(t, base, tc.path, tc.body), http.StatusOK), tc.want)
		})
	}
	// Integers keep every digit (not made floats).
	b := wantStatus(t, "big", post(t, base, "/v1/rpc/svc/echo", `{"args":{"n":9007199254740993,"m":-9223372036854775808}}`), http.StatusOK)
	if !strings.Contains(string(b), "9007199254740993") || !strings.Contains(string(b), "-9223372036854775808") {
		t.Errorf("echo of big integers: got %s, want them exact", b)
	}

	for _, tc := range []struct {
		name, path, body string
		status           int
		code, want       string
	}{
		{"no service", "/v1/rpc/nosuch/ping", ``, http.StatusNotFound, "service_not_found", "nosuch"},
		{"no method", "/v1/rpc/svc/nosuch", ``, http.StatusNotFound, "no_such_method", "nosuch"},
		{"remote", "/v1/rpc/svc/fail", ``, http.StatusBadGateway, "remote", "boom: the method failed"},
		{"builtin refuses", "/v1/rpc/svc/get_snapshot", `{"args":{}}`, http.StatusBadGateway, "remote", "table"},
		{"timeout", "/v1/rpc/svc/slow", `{"timeout":"100ms"}`, http.StatusServiceUnavailable, "unavailable", "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := wantError(t, tc.name, post(t, base, tc.path, tc.body), tc.status, tc.code)
			if !strings.Contains(msg, tc.want) {
				t.Errorf("got message %q, want it to say %q", msg, tc.want)
			}
		})
	}
}

// TestRPCBadInput: each malformed call gets 400 naming what is wrong, and
// the method does not run.
func TestRPCBadInput(t *testing.T) {
	node, base := openNode(t)
	small := serve(t, node, api.ServerConfig{MaxBody: 256})
	var calls atomic.Int64
	goService(t, node, "svc", dse.Endpoint{"count": func(context.Context, map[string]any) (any, error) {
		return calls.Add(1), nil
	}})
	deep := `{"args":{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`
	for _, tc := range []struct{ name, base, body, want string }{
		{"args an array", base, `{"args":[1]}`, "args"},
		{"args a string", base, `{"args":"x"}`, "args"},
		{"args a number", base, `{"args":1}`, "args"},
		{"beyond int64", base, `{"args":{"n":9223372036854775808}}`, "overflows"},
		{"nested beyond int64", base, `{"args":{"l":[1,{"n":18446744073709551616}]}}`, "overflows"},
		{"float overflow", base, `{"args":{"n":1e400}}`, "1e400"},
		{"timeout not a duration", base, `{"timeout":"soon"}`, "timeout"},
		{"timeout negative", base, `{"timeout":"-1s"}`, "timeout"},
		{"timeout zero", base, `{"timeout":"0s"}`, "timeout"},
		{"timeout a number", base, `{"timeout":5}`, "timeout"},
		{"retry negative", base, `{"retry":-1}`, "retry"},
		{"retry a string", base, `{"retry":"2"}`, "retry"},
		{"local a string", base, `{"local":"yes"}`, "local"},
		{"unknown key", base, `{"arg":{"a":1}}`, "arg"},
		{"malformed", base, `{"args":{`, "JSON"},
		{"two values", base, `{} {}`, "more than one"},
		{"an array", base, `[]`, "JSON"},
		{"too deep", base, deep, "nested deeper"},
		{"over MaxBody", small, `{"args":{"s":"` + strings.Repeat("x", 300) + `"}}`, "exceeds 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := wantError(t, tc.name, post(t, tc.base, "/v1/rpc/svc/count", tc.body), http.StatusBadRequest, "invalid")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("got message %q, want it to say %q", msg, tc.want)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the method ran %d times for refused calls, want 0", n)
	}
	wantJSON(t, "a good call", wantStatus(t, "count", post(t, base, "/v1/rpc/svc/count", ""), http.StatusOK), `1`)
}

// TestNotJSON: a value JSON cannot carry (a Go service may return or
// publish NaN or an infinity) makes an RPC or get a 500 with the error
// body, not a 200 without one, and ends a watch saying why.
func TestNotJSON(t *testing.T) {
	node, base := openNode(t)
	svc := goService(t, node, "svc", dse.Endpoint{
		"nan": func(context.Context, map[string]any) (any, error) { return math.NaN(), nil },
		"inf": func(context.Context, map[string]any) (any, error) {
			return map[string]any{"x": []any{math.Inf(1)}}, nil
		},
	})
	for _, action := range []string{"nan", "inf"} {
		msg := wantError(t, action, post(t, base, "/v1/rpc/svc/"+action, ""), http.StatusInternalServerError, "internal")
		if !strings.Contains(msg, "JSON") {
			t.Errorf("rpc %s: got message %q, want it to say the answer is not JSON", action, msg)
		}
	}

	ctx := context.Background()
	if _, _, err := svc.Publish(ctx, "t", []dse.Row{{int64(1)}}, false); err != nil {
		t.Fatal(err)
	}
	w := openWatch(t, base, "svc", "t", "")
	wantJSON(t, "snapshot", w.next(t), `{"seqnum":1,"snapshot":true,"rows":[[1]]}`)
	if _, _, err := svc.Publish(ctx, "t", []dse.Row{{math.Inf(-1)}}, false); err != nil {
		t.Fatal(err)
	}
	wantError(t, "get", get(t, base, "/v1/services/svc/tables/t"), http.StatusInternalServerError, "internal")
	tr := w.end(t)
	if code := tr.Get(endCode); code != "internal" || !strings.Contains(tr.Get(endError), "JSON") {
		t.Errorf("watch trailers: got %s %q, %s %q; want internal, saying the line is not JSON", endCode, code, endError, tr.Get(endError))
	}

	// The server goes on serving.
	wantStatus(t, "ping", post(t, base, "/v1/rpc/svc/ping", ""), http.StatusOK)
}

// TestGetBadTableName: get refuses a table name no table can have, as
// publish and watch do, instead of answering it as an empty table.
func TestGetBadTableName(t *testing.T) {
	node, base := openNode(t)
	if _, err := node.CreateService(context.Background(), "ext", 0); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"a%20b", "a%2Fb", "%2E%2E", "%2E", "caf%C3%A9", strings.Repeat("a", 129)} {
		t.Run(tbl, func(t *testing.T) {
			msg := wantError(t, "get "+tbl, get(t, base, "/v1/services/ext/tables/"+tbl), http.StatusBadRequest, "invalid")
			if !strings.Contains(msg, "table name") {
				t.Errorf("got message %q, want it to name the table name", msg)
			}
		})
	}
	getTable(t, base, "ext", strings.Repeat("a", 128))
}

// TestAnyNode: a service on one node is published to, read, watched and
// called through another node's API; a local call there finds no instance.
func TestAnyNode(t *testing.T) {
	c := dsetest.New(t, 2)
	owner, other := c.Nodes[0], c.Nodes[1]
	base := serve(t, other, api.ServerConfig{})
	// One replica: ext runs on the owner's node only (a local call
	// through the other fails).
	if _, err := owner.CreateService(context.Background(), "ext", 1); err != nil {
		t.Fatal(err)
	}
	dsetest.WaitFor(t, 10*time.Second, "ext in the other node's registry", func() bool {
		return slices.Contains(serviceIDs(other), "ext")
	})
	if got := listServices(t, base); len(got) != 1 || got[0].NodeID != owner.ID() {
		t.Fatalf("services through %s: got %+v, want ext on %s", other.ID(), got, owner.ID())
	}
	b := wantStatus(t, "publish", put(t, base, "/v1/services/ext/tables/t", `[[2],[1]]`), http.StatusOK)
	wantJSON(t, "publish", b, `{"seqnum":1,"changed":true}`)
	raw, _ := getTable(t, base, "ext", "t")
	wantJSON(t, "get", raw, `{"seqnum":1,"rows":[[1],[2]]}`)
	w := openWatch(t, base, "ext", "t", "")
	wantJSON(t, "snapshot", w.next(t), `{"seqnum":1,"snapshot":true,"rows":[[1],[2]]}`)
	wantStatus(t, "publish", put(t, base, "/v1/services/ext/tables/t", `[[2]]`), http.StatusOK)
	wantJSON(t, "delta", w.next(t), `{"seqnum":2,"snapshot":false,"add":[],"del":[[1]]}`)

	wantJSON(t, "rpc", wantStatus(t, "rpc", post(t, base, "/v1/rpc/ext/ping", `{"args":{"n":1}}`), http.StatusOK), `{"n":1}`)
	msg := wantError(t, "rpc local", post(t, base, "/v1/rpc/ext/ping", `{"local":true}`), http.StatusNotFound, "service_not_found")
	if !strings.Contains(msg, other.ID()) {
		t.Errorf("rpc local: got message %q, want it to name %s", msg, other.ID())
	}
}
