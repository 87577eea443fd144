package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestE2EDatasourceFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1 := startAgent(t, t.TempDir(), "--id", "n1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap")
	n2 := startAgent(t, t.TempDir(), "--id", "n2", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http)
	n3 := startAgent(t, t.TempDir(), "--id", "n3", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http)
	agents := []*agent{n1, n2, n3}
	eventually(t, 20*time.Second, "3 members", func() bool {
		var ms []member
		return tryJSON(n3.http, &ms, "members", "list") && len(ms) == 3 && leaderOf(agents...) != ""
	})
	file := filepath.Join(t.TempDir(), "hosts.json")
	writeState := func(content string) {
		os.WriteFile(file+".tmp", []byte(content), 0o600)
		os.Rename(file+".tmp", file)
	}
	writeState(`{"hosts": [["web1", "up"]]}`)

	wantFail(t, 1, []string{"unknown driver", `"nope"`}, "--addr", n1.http, "datasources", "add", "--name", "inv", "--driver", "nope")
	wantFail(t, 1, []string{`"path"`, "required"}, "--addr", n1.http, "datasources", "add", "--name", "inv", "--driver", "file", "--config", `{"format":"json"}`)
	wantFail(t, 2, []string{"--config"}, "--addr", n1.http, "datasources", "add", "--name", "inv", "--driver", "file", "--config", `[1]`)
	var ds map[string]any
	runJSON(t, n2.http, &ds, "datasources", "add", "--name", "inv", "--driver", "file", "--config", `{"path":"`+file+`","poll_interval":"100ms"}`)
	var keys []string
	for k := range ds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"config", "description", "driver", "enabled", "id", "name", "type"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("datasource keys %v, want %v", keys, want)
	}
	wantFail(t, 1, []string{"already exists", `"inv"`}, "--addr", n3.http, "datasources", "add", "--name", "inv", "--driver", "file", "--config", `{"path":"/x.json"}`)
	// An http datasource with a secret: hidden unless asked.
	runJSON(t, n1.http, &ds, "datasources", "add", "--name", "api", "--driver", "http", "--disabled",
		"--config", `{"url":"http://127.0.0.1:1/x","username":"u","password":"s3cret"}`)
	// A datasource not running yet is a publisher to wait for, not an
	// unknown service.
	if r := run(t, "--addr", n2.http, "watch", "api", "x", "--count", "1", "--timeout", "2s"); r.code != 1 || !strings.Contains(r.stderr, "timed out") {
		t.Fatalf("watch of a disabled datasource: %+v", r)
	}
	for _, args := range [][]string{{"datasources", "list"}, {"datasources", "get", "api"}} {
		r := run(t, append([]string{"--addr", n2.http, "--json"}, args...)...)
		if r.code != 0 || strings.Contains(r.stdout, "s3cret") || !strings.Contains(r.stdout, "<hidden>") {
			t.Fatalf("%v: secret shown or not hidden: %+v", args, r)
		}
		r = run(t, append([]string{"--addr", n2.http}, args...)...) // for people
		if r.code != 0 || strings.Contains(r.stdout, "s3cret") || !strings.Contains(r.stdout, "<hidden>") {
			t.Fatalf("%v: secret shown or not hidden: %+v", args, r)
		}
		r = run(t, append([]string{"--addr", n2.http, "--json"}, append(args, "--show-secrets")...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "s3cret") {
			t.Fatalf("%v --show-secrets: %+v", args, r)
		}
	}

	// Where does it run? Watch from another node.
	var st map[string]any
	eventually(t, 20*time.Second, "datasource running", func() bool {
		return tryJSON(n1.http, &st, "datasources", "status", "inv") && st["running"] == true && st["healthy"] == true
	})
	owner := byID(agents, st["node"].(string))
	var watchFrom *agent
	for _, a := range agents {
		if a != owner {
			watchFrom = a
			break
		}
	}
	w := startWatch(t, watchFrom.http, "inv", "hosts")
	eventually(t, 20*time.Second, "first snapshot", func() bool { return len(w.snapshot()) >= 1 })
	writeState(`{"hosts": [["web1", "down"]]}`)
	eventually(t, 20*time.Second, "delta", func() bool { return len(w.snapshot()) >= 2 })

	// The owner's host hangs for a moment (SIGSTOP: its connections stay
	// open, nothing answers). A call that timed out may have run there, so
	// it is not sent again, unless the caller says the action is
	// idempotent: then its later attempts find the host back.
	ping := []string{"--addr", watchFrom.http, "rpc", "inv", "ping", "--args", `{"a":1}`, "--timeout", "250ms", "--retry", "12"}
	owner.cmd.Process.Signal(syscall.SIGSTOP)
	r := run(t, ping...)
	if r.code != 1 || !strings.Contains(r.stderr, "timed out") {
		owner.cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("rpc to a hanging owner: %+v, want exit 1, timed out (not sent again)", r)
	}
	idem := exec_(dseBin, append(ping, "--idempotent")...)
	var out, errb bytes.Buffer
	idem.Stdout, idem.Stderr = &out, &errb
	if err := idem.Start(); err != nil {
		owner.cmd.Process.Signal(syscall.SIGCONT)
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // two attempts time out
	owner.cmd.Process.Signal(syscall.SIGCONT)
	if err := idem.Wait(); err != nil || strings.TrimSpace(out.String()) != `{"a":1}` {
		t.Fatalf("idempotent rpc across the owner's hang: %v, stdout %q, stderr %q; want its answer", err, out.String(), errb.String())
	}

	// SIGKILL the node that runs it, then change the file.
	owner.kill()
	killed := time.Now()
	writeState(`{"hosts": [["db1", "up"]]}`)
	flowing := eventually(t, 30*time.Second, "new content after failover", func() bool {
		ls := w.snapshot()
		add, _ := ls[len(ls)-1]["add"].([]any)
		return len(add) == 1 && reflect.DeepEqual(add[0], []any{"db1", "up"})
	})
	t.Logf("SIGKILL of %s (running the datasource): data flowing again after %s", owner.id, flowing)
	_ = killed
	ls := w.snapshot()
	for i := 1; i < len(ls); i++ {
		if ls[i]["seqnum"].(float64) <= ls[i-1]["seqnum"].(float64) {
			t.Fatalf("seqnums not increasing: %v", ls)
		}
	}
	var infos []map[string]any
	runJSON(t, watchFrom.http, &infos, "services", "list")
	for _, i := range infos {
		if i["service_id"] == "inv" && (i["node_id"] == owner.id || i["node_id"] == "") {
			t.Fatalf("services list shows inv on %v after failover", i["node_id"])
		}
	}

	// Disable, delete.
	var upd map[string]any
	runJSON(t, watchFrom.http, &upd, "datasources", "update", "inv", "--enabled", "false")
	if upd["enabled"] != false {
		t.Fatalf("update: %v", upd)
	}
	wantFail(t, 2, []string{"--enabled"}, "--addr", watchFrom.http, "datasources", "update", "inv", "--enabled", "maybe")
	if r := run(t, "--addr", watchFrom.http, "datasources", "delete", "inv"); r.code != 0 {
		t.Fatalf("delete: %+v", r)
	}
	wantFail(t, 1, []string{"not found"}, "--addr", watchFrom.http, "datasources", "get", "inv")
}

// TestE2EDatasourceTableDropped: a table that a datasource's source no
// longer has after the datasource starts again (here on a new config; the
// same on a restart or a failover) is emptied for its subscribers; they
// kept its old rows for good, and `get` answered seqnum 0.
func TestE2EDatasourceTableDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1 := startAgent(t, t.TempDir(), "--id", "n1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap")
	eventually(t, 20*time.Second, "a leader", func() bool { return leaderOf(n1) != "" })
	dir := t.TempDir()
	both, onlyA := filepath.Join(dir, "both.json"), filepath.Join(dir, "a.json")
	os.WriteFile(both, []byte(`{"A": [["a1"]], "B": [["b1"], ["b2"]]}`), 0o600)
	os.WriteFile(onlyA, []byte(`{"A": [["a1"]]}`), 0o600)
	var ds map[string]any
	runJSON(t, n1.http, &ds, "datasources", "add", "--name", "ds", "--driver", "file", "--config", `{"path":"`+both+`","poll_interval":"100ms"}`)
	w := startWatch(t, n1.http, "ds", "B")
	eventually(t, 20*time.Second, "B's rows", func() bool {
		ls := w.snapshot()
		return len(ls) > 0 && len(ls[0]["rows"].([]any)) == 2
	})
	runJSON(t, n1.http, &ds, "datasources", "update", "ds", "--config", `{"path":"`+onlyA+`","poll_interval":"100ms"}`)
	eventually(t, 20*time.Second, "B emptied for its watcher", func() bool {
		ls := w.snapshot()
		del, _ := ls[len(ls)-1]["del"].([]any)
		return len(ls) >= 2 && len(del) == 2
	})
	var got struct {
		Seqnum int     `json:"seqnum"`
		Rows   [][]any `json:"rows"`
	}
	runJSON(t, n1.http, &got, "get", "ds", "B")
	if got.Seqnum < 2 || len(got.Rows) != 0 {
		t.Fatalf("get ds B after the source dropped it: %+v, want no rows at a new seqnum", got)
	}
}
