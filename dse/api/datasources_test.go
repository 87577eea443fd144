package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/dsetest"
)

// datasourceKeys are the keys CLI.md fixes for a datasource.
var datasourceKeys = []string{"id", "name", "driver", "description", "type", "enabled", "config"}

// datasource decodes a datasource answer strictly, checking its keys.
func datasource(t *testing.T, what string, b []byte) dse.Datasource {
	t.Helper()
	wantKeys(t, what, b, datasourceKeys...)
	var d dse.Datasource
	decode(t, what, b, &d)
	return d
}

func listDatasources(t *testing.T, base, query string) []dse.Datasource {
	t.Helper()
	b := wantStatus(t, "GET /v1/datasources"+query, get(t, base, "/v1/datasources"+query), http.StatusOK)
	var raw []json.RawMessage
	decode(t, "list", b, &raw)
	if raw == nil {
		t.Fatalf("GET /v1/datasources: got %s, want a list", b)
	}
	var out []dse.Datasource
	for _, r := range raw {
		out = append(out, datasource(t, "a listed datasource", r))
	}
	return out
}

// source serves a JSON array of rows for the http driver to poll.
func source(t *testing.T, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDrivers: the list of drivers, one driver's info, an unknown driver.
func TestDrivers(t *testing.T) {
	_, base := openNode(t)
	b := wantStatus(t, "GET /v1/drivers", get(t, base, "/v1/drivers"), http.StatusOK)
	var raw []json.RawMessage
	decode(t, "drivers", b, &raw)
	var ids []string
	for _, r := range raw {
		wantKeys(t, "a driver", r, "id", "description")
		var d api.DriverSummary
		decode(t, "a driver", r, &d)
		if d.Description == "" {
			t.Errorf("driver %s: no description", d.ID)
		}
		ids = append(ids, d.ID)
	}
	for _, want := range []string{"file", "http"} {
		if !slices.Contains(ids, want) {
			t.Errorf("drivers: got %v, want %s among them", ids, want)
		}
	}

	b = wantStatus(t, "GET /v1/drivers/http", get(t, base, "/v1/drivers/http"), http.StatusOK)
	wantKeys(t, "driver http", b, "id", "description", "config", "tables")
	var info struct {
		ID, Description string
		Config          []json.RawMessage
		Tables          []json.RawMessage
	}
	json.Unmarshal(b, &info)
	secret := map[string]bool{}
	for _, f := range info.Config {
		wantKeys(t, "a config field", f, "name", "type", "required", "secret", "description")
		var cf struct {
			Name   string
			Secret bool
		}
		json.Unmarshal(f, &cf)
		secret[cf.Name] = cf.Secret
	}
	if info.ID != "http" || !secret["password"] || secret["url"] {
		t.Errorf("driver http: got %s, want id http, password secret, url not", b)
	}
	for _, tb := range info.Tables {
		wantKeys(t, "a table", tb, "name", "columns")
	}
	wantError(t, "GET /v1/drivers/nosuch", get(t, base, "/v1/drivers/nosuch"), http.StatusNotFound, "not_found")
}

// TestDatasources: add, list, get, status, update and delete on an open
// cluster, with secrets hidden unless asked for, the datasource's table
// served as its service's, and every refusal changing nothing.
func TestDatasources(t *testing.T) {
	node, base := openNode(t)
	small := serve(t, node, api.ServerConfig{MaxBody: 256})
	url := source(t, `[[2,"b"],[1,"a"]]`)
	cfg := `{"url":"` + url + `","poll_interval":"100ms","username":"u","password":"s3cret"}`

	b := wantStatus(t, "add ds", post(t, base, "/v1/datasources", `{"name":"ds","driver":"http","description":"rows","config":`+cfg+`}`), http.StatusCreated)
	ds := datasource(t, "add ds", b)
	if ds.ID == "" || ds.Name != "ds" || ds.Driver != "http" || ds.Description != "rows" || ds.Type != "datasource" || !ds.Enabled {
		t.Fatalf("add ds: got %+v, want an enabled http datasource ds with an id", ds)
	}
	if ds.Config["password"] != dse.Hidden || ds.Config["username"] != "u" || ds.Config["url"] != url {
		t.Fatalf("add ds: got config %v, want the password hidden, the rest as given", ds.Config)
	}

	// It publishes its table as the service named ds.
	dsetest.WaitFor(t, 10*time.Second, "ds's table", func() bool {
		r := get(t, base, "/v1/services/ds/tables/data")
		return r.status == http.StatusOK && strings.Contains(string(r.body), `"rows":[[1,"a"],[2,"b"]]`)
	})
	dsetest.WaitFor(t, 10*time.Second, "ds running and healthy", func() bool {
		var st dse.DatasourceStatus
		decode(t, "status", wantStatus(t, "status", get(t, base, "/v1/datasources/ds/status"), http.StatusOK), &st)
		return st.Running && st.Healthy && st.Node == node.ID() && st.Polls > 0 && st.LastSuccess != nil
	})
	b = wantStatus(t, "status by id", get(t, base, "/v1/datasources/"+ds.ID+"/status"), http.StatusOK)
	wantKeys(t, "status", b, "id", "name", "enabled", "node", "incarnation", "running", "healthy", "last_error", "last_success", "polls", "failures")

	t.Run("read", func(t *testing.T) {
		for _, q := range []string{"", "?show_secrets=false", "?show_secrets=0"} {
			got := listDatasources(t, base, q)
			if len(got) != 1 || got[0].ID != ds.ID || got[0].Config["password"] != dse.Hidden {
				t.Errorf("list%s: got %+v, want ds with its password hidden", q, got)
			}
		}
		if got := listDatasources(t, base, "?show_secrets=true"); len(got) != 1 || got[0].Config["password"] != "s3cret" {
			t.Errorf("list?show_secrets=true: got %+v, want ds with its password", got)
		}
		for _, id := range []string{ds.ID, "ds"} {
			d := datasource(t, "get "+id, wantStatus(t, "get "+id, get(t, base, "/v1/datasources/"+id), http.StatusOK))
			if d.ID != ds.ID || d.Config["password"] != dse.Hidden {
				t.Errorf("get %s: got %+v, want ds, password hidden", id, d)
			}
		}
		d := datasource(t, "get", wantStatus(t, "get", get(t, base, "/v1/datasources/ds?show_secrets=1"), http.StatusOK))
		if d.Config["password"] != "s3cret" {
			t.Errorf("get ?show_secrets=1: got config %v, want the password", d.Config)
		}
		wantError(t, "list show_secrets=x", get(t, base, "/v1/datasources?show_secrets=x"), http.StatusBadRequest, "invalid")
		wantError(t, "get show_secrets=maybe", get(t, base, "/v1/datasources/ds?show_secrets=maybe"), http.StatusBadRequest, "invalid")
		wantError(t, "get nosuch", get(t, base, "/v1/datasources/nosuch"), http.StatusNotFound, "not_found")
		wantError(t, "status nosuch", get(t, base, "/v1/datasources/nosuch/status"), http.StatusNotFound, "not_found")
	})

	t.Run("add refused", func(t *testing.T) {
		wantStatus(t, "create ext", post(t, base, "/v1/services", `{"id":"ext"}`), http.StatusCreated)
		for _, tc := range []struct {
			name, base, body string
			status           int
			code, want       string
		}{
			{"duplicate name", base, `{"name":"ds","driver":"http","config":` + cfg + `}`, http.StatusConflict, "exists", "ds"},
			{"a service's name", base, `{"name":"ext","driver":"http","config":` + cfg + `}`, http.StatusConflict, "exists", "ext"},
			{"unknown driver", base, `{"name":"d2","driver":"nosuch","config":{}}`, http.StatusBadRequest, "invalid", "nosuch"},
			{"no driver", base, `{"name":"d2"}`, http.StatusBadRequest, "invalid", "driver"},
			{"config: unknown key", base, `{"name":"d2","driver":"http","config":{"url":"http://x/","bogus":1}}`, http.StatusBadRequest, "invalid", "bogus"},
			{"config: no url", base, `{"name":"d2","driver":"http","config":{}}`, http.StatusBadRequest, "invalid", "url"},
			{"config: not http", base, `{"name":"d2","driver":"http","config":{"url":"file:///etc/passwd"}}`, http.StatusBadRequest, "invalid", "url"},
			{"config: a password in the url", base, `{"name":"d2","driver":"http","config":{"url":"http://u:pw@x/"}}`, http.StatusBadRequest, "invalid", "password"},
			{"config: wrong type", base, `{"name":"d2","driver":"http","config":{"url":"http://x/","poll_interval":5}}`, http.StatusBadRequest, "invalid", "poll_interval"},
			{"config: bad duration", base, `{"name":"d2","driver":"http","config":{"url":"http://x/","poll_interval":"-1s"}}`, http.StatusBadRequest, "invalid", "poll_interval"},
			{"config: beyond int64", base, `{"name":"d2","driver":"http","config":{"url":"http://x/","n":9223372036854775808}}`, http.StatusBadRequest, "invalid", "overflows"},
			{"config not an object", base, `{"name":"d2","driver":"http","config":["url"]}`, http.StatusBadRequest, "invalid", "config"},
			{"enabled not a boolean", base, `{"name":"d2","driver":"http","config":{"url":"http://x/"},"enabled":"yes"}`, http.StatusBadRequest, "invalid", "enabled"},
			{"unknown key", base, `{"name":"d2","driver":"http","config":{"url":"http://x/"},"type":"x"}`, http.StatusBadRequest, "invalid", "type"},
			{"no name", base, `{"driver":"http","config":{"url":"http://x/"}}`, http.StatusBadRequest, "invalid", "name"},
			{"name ..", base, `{"name":"..","driver":"http","config":{"url":"http://x/"}}`, http.StatusBadRequest, "invalid", "name"},
			{"name with a space", base, `{"name":"a b","driver":"http","config":{"url":"http://x/"}}`, http.StatusBadRequest, "invalid", "name"},
			{"name too long", base, `{"name":"` + strings.Repeat("a", 129) + `","driver":"http","config":{"url":"http://x/"}}`, http.StatusBadRequest, "invalid", "name"},
			{"malformed", base, `{"name":"d2",`, http.StatusBadRequest, "invalid", "JSON"},
			{"empty body", base, ``, http.StatusBadRequest, "invalid", "name"},
			{"over MaxBody", small, `{"name":"d2","driver":"http","description":"` + strings.Repeat("x", 300) + `","config":{"url":"http://x/"}}`, http.StatusBadRequest, "invalid", "exceeds 256 bytes"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				msg := wantError(t, tc.name, post(t, tc.base, "/v1/datasources", tc.body), tc.status, tc.code)
				if !strings.Contains(msg, tc.want) {
					t.Errorf("got message %q, want it to say %q", msg, tc.want)
				}
			})
		}
		if got := node.GetDatasources(false); len(got) != 1 || got[0].ID != ds.ID {
			t.Fatalf("datasources after refused adds: got %+v, want only ds", got)
		}
	})

	t.Run("update", func(t *testing.T) {
		stored := func() map[string]any {
			d, err := node.GetDatasource("ds", false)
			if err != nil {
				t.Fatal(err)
			}
			return d.Config
		}
		before := stored()
		for _, tc := range []struct {
			name, path, body string
			status           int
			code, want       string
		}{
			{"nothing", "/v1/datasources/ds", `{}`, http.StatusBadRequest, "invalid", "nothing to update"},
			{"no body", "/v1/datasources/ds", ``, http.StatusBadRequest, "invalid", "nothing to update"},
			{"config rejected", "/v1/datasources/ds", `{"config":{"url":"http://x/","bogus":1}}`, http.StatusBadRequest, "invalid", "bogus"},
			{"config not an object", "/v1/datasources/ds", `{"config":"x"}`, http.StatusBadRequest, "invalid", "config"},
			{"enabled not a boolean", "/v1/datasources/ds", `{"enabled":"no"}`, http.StatusBadRequest, "invalid", "enabled"},
			{"unknown key", "/v1/datasources/ds", `{"name":"x"}`, http.StatusBadRequest, "invalid", "name"},
			{"nosuch", "/v1/datasources/nosuch", `{"enabled":false}`, http.StatusNotFound, "not_found", "nosuch"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				msg := wantError(t, tc.name, patch(t, base, tc.path, tc.body), tc.status, tc.code)
				if !strings.Contains(msg, tc.want) {
					t.Errorf("got message %q, want it to say %q", msg, tc.want)
				}
			})
		}
		if got := stored(); !jsonEqual(got, before) {
			t.Fatalf("config after refused updates: got %v, want %v", got, before)
		}

		// "<hidden>" keeps the stored secret; the answer hides it.
		b := wantStatus(t, "update config", patch(t, base, "/v1/datasources/ds",
			`{"config":{"url":"`+url+`","poll_interval":"200ms","username":"u2","password":"<hidden>"}}`), http.StatusOK)
		d := datasource(t, "update config", b)
		if d.Config["password"] != dse.Hidden || d.Config["username"] != "u2" || d.Config["poll_interval"] != "200ms" {
			t.Fatalf("update config: got %v, want the new config, password hidden", d.Config)
		}
		if got := stored(); got["password"] != "s3cret" || got["username"] != "u2" {
			t.Fatalf("stored config after update: got %v, want the new username and the old password", got)
		}

		b = wantStatus(t, "disable", patch(t, base, "/v1/datasources/"+ds.ID, `{"enabled":false}`), http.StatusOK)
		if d := datasource(t, "disable", b); d.Enabled {
			t.Fatalf("disable: got %+v, want enabled false", d)
		}
		dsetest.WaitFor(t, 10*time.Second, "a disabled datasource's service gone", func() bool {
			return !slices.Contains(serviceIDs(node), "ds")
		})
	})

	t.Run("delete", func(t *testing.T) {
		b := wantStatus(t, "delete ds", del(t, base, "/v1/datasources/ds"), http.StatusOK)
		wantJSON(t, "delete ds", b, `{"deleted":"ds"}`)
		if got := listDatasources(t, base, ""); len(got) != 0 {
			t.Fatalf("datasources after delete: got %+v, want none", got)
		}
		wantError(t, "delete again", del(t, base, "/v1/datasources/ds"), http.StatusNotFound, "not_found")
		wantError(t, "delete by id again", del(t, base, "/v1/datasources/"+ds.ID), http.StatusNotFound, "not_found")
	})
}

// TestFileDatasource: on a cluster without tokens the file driver may be
// added; a disabled datasource is not placed.
func TestFileDatasource(t *testing.T) {
	node, base := openNode(t)
	path := filepath.Join(t.TempDir(), "tables.json")
	if err := os.WriteFile(path, []byte(`{"colors":[["red"],["blue"]]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"name": "files", "driver": "file", "config": map[string]any{"path": path, "poll_interval": "100ms"}})
	datasource(t, "add files", wantStatus(t, "add files", post(t, base, "/v1/datasources", string(body)), http.StatusCreated))
	dsetest.WaitFor(t, 10*time.Second, "the file's table", func() bool {
		r := get(t, base, "/v1/services/files/tables/colors")
		return r.status == http.StatusOK && strings.Contains(string(r.body), `"rows":[["blue"],["red"]]`)
	})

	body, _ = json.Marshal(map[string]any{"name": "off", "driver": "file", "enabled": false, "config": map[string]any{"path": path}})
	d := datasource(t, "add off", wantStatus(t, "add off", post(t, base, "/v1/datasources", string(body)), http.StatusCreated))
	if d.Enabled {
		t.Fatalf("add with enabled false: got %+v, want it disabled", d)
	}
	var st dse.DatasourceStatus
	decode(t, "status", wantStatus(t, "status", get(t, base, "/v1/datasources/off/status"), http.StatusOK), &st)
	if st.Enabled || st.Running || st.Node != "" {
		t.Fatalf("status of a disabled datasource: got %+v, want not placed", st)
	}
	if slices.Contains(serviceIDs(node), "off") {
		t.Fatal("a disabled datasource has a service")
	}
}

// jsonEqual compares two values as JSON.
func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
