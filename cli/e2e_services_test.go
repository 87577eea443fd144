package cli_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// watcher is a background `dse watch` process and the lines it printed.
type watcher struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	done  chan struct{}
}

func startWatch(t *testing.T, addr, svc, tbl string) *watcher {
	t.Helper()
	w := &watcher{cmd: exec.Command(dseBin, "--addr", addr, "watch", svc, tbl), done: make(chan struct{})}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				t.Errorf("watch printed a non-JSON line %q", sc.Text())
				continue
			}
			w.mu.Lock()
			w.lines = append(w.lines, m)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGKILL)
		w.cmd.Wait()
	})
	return w
}

func (w *watcher) snapshot() []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]map[string]any(nil), w.lines...)
}

func publish(t *testing.T, addr, svc, tbl, rows string, extra ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(dseBin, append([]string{"--addr", addr, "--json", "publish", svc, tbl}, extra...)...)
	cmd.Stdin = strings.NewReader(rows)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("publish %s: %v %s", rows, err, stderr)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("publish printed %q", out)
	}
	return m
}

func TestE2EServicesPublishWatchRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	// n1 comes back on its own ports below (freeAddr: ones that no
	// outbound connection takes meanwhile).
	n1 := startAgent(t, t.TempDir(), "--id", "n1", "--bind", freeAddr(t), "--http", freeAddr(t), "--bootstrap")
	n2 := startAgent(t, t.TempDir(), "--id", "n2", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http, "--resub-timeout", "500ms")
	n3 := startAgent(t, t.TempDir(), "--id", "n3", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http, "--resub-timeout", "500ms")
	eventually(t, 20*time.Second, "3 members", func() bool {
		var ms []member
		return tryJSON(n3.http, &ms, "members", "list") && len(ms) == 3 && leaderOf(n1, n2, n3) != ""
	})

	// One replica: the service lives and dies with n1's disk, as before
	// replication (TestE2EReplicatedServiceOutlivesItsOwner has three).
	var info map[string]any
	runJSON(t, n1.http, &info, "services", "create", "ext", "--replicas", "1")
	wantFail(t, 1, []string{"already exists", `"ext"`}, "--addr", n2.http, "services", "create", "ext")
	var list []map[string]any
	runJSON(t, n3.http, &list, "services", "list")
	if len(list) != 1 {
		t.Fatalf("services list: %v", list)
	}
	var keys []string
	for k := range list[0] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"node_id", "published_tables", "rpc_endpoints_info", "service_id", "subscribed_tables"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("DataServiceInfo keys %v, want %v", keys, want)
	}

	w := startWatch(t, n3.http, "ext", "t")
	// Published through another node than the one running the service.
	if got := publish(t, n2.http, "ext", "t", `[[2,"b"],[1,"a"]]`); got["seqnum"] != 1.0 || got["changed"] != true {
		t.Fatalf("first publish: %v", got)
	}
	if got := publish(t, n1.http, "ext", "t", `[[1,"a"],[2,"b"]]`); got["seqnum"] != 1.0 || got["changed"] != false {
		t.Fatalf("unchanged publish: %v", got)
	}
	if got := publish(t, n1.http, "ext", "t", `[[1,"a"],[3,"c"]]`); got["seqnum"] != 2.0 {
		t.Fatalf("second publish: %v", got)
	}
	eventually(t, 20*time.Second, "watch saw the snapshot and the delta", func() bool { return len(w.snapshot()) >= 2 })
	lines := w.snapshot()
	if want := map[string]any{"seqnum": 1.0, "snapshot": true, "rows": []any{[]any{1.0, "a"}, []any{2.0, "b"}}}; !reflect.DeepEqual(lines[0], want) {
		t.Fatalf("first watch line %v, want %v", lines[0], want)
	}
	if want := map[string]any{"seqnum": 2.0, "snapshot": false, "add": []any{[]any{3.0, "c"}}, "del": []any{[]any{2.0, "b"}}}; !reflect.DeepEqual(lines[1], want) {
		t.Fatalf("second watch line %v, want %v", lines[1], want)
	}

	t.Run("bad input changes nothing", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.json")
		os.WriteFile(bad, []byte(`[[1,"a"],[2,{"x":1}]]`), 0o600)
		wantFail(t, 1, []string{"row 1", "column 1"}, "--addr", n1.http, "publish", "ext", "t", "--file", bad)
		resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPut, "http://"+n2.http+"/v1/services/ext/tables/t", `{"not":"rows"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("PUT of an object: status %d, want 400", resp.StatusCode)
		}
		var got map[string]any
		runJSON(t, n3.http, &got, "get", "ext", "t")
		if got["seqnum"] != 2.0 {
			t.Fatalf("bad input changed the table: %v", got)
		}
		wantFail(t, 2, []string{"--args"}, "--addr", n1.http, "rpc", "ext", "ping", "--args", "[1,2]")
		wantFail(t, 1, []string{"not found"}, "--addr", n1.http, "publish", "nope", "t", "--file", writeFile(t, `[[1]]`))
		// On a cluster without tokens, a first token that is not an admin
		// one would turn authentication on with nobody able to administer.
		wantFail(t, 1, []string{"admin token first"}, "--addr", n2.http, "tokens", "create", "--role", "read")
		var toks []any
		if runJSON(t, n1.http, &toks, "tokens", "list"); len(toks) != 0 {
			t.Fatalf("tokens after the refusal: %v", toks)
		}
	})

	t.Run("rpc", func(t *testing.T) {
		r := run(t, "--addr", n3.http, "rpc", "ext", "ping", "--args", `{"a":1}`)
		if r.code != 0 || strings.TrimSpace(r.stdout) != `{"a":1}` {
			t.Fatalf("ping: %+v", r)
		}
		wantFail(t, 1, []string{"service not found", `"nope"`}, "--addr", n3.http, "rpc", "nope", "ping")
		wantFail(t, 1, []string{"no such method", `"frob"`}, "--addr", n3.http, "rpc", "ext", "frob")
		wantFail(t, 1, []string{`argument "table"`}, "--addr", n3.http, "rpc", "ext", "get_snapshot")
	})

	t.Run("SIGKILL and restart the publisher's node", func(t *testing.T) {
		var before map[string]any
		runJSON(t, n3.http, &before, "get", "ext", "t")
		n1.kill()
		re := startAgent(t, n1.dir)
		var after map[string]any
		eventually(t, 30*time.Second, "the restarted node republished its table", func() bool {
			return tryJSON(n3.http, &after, "get", "ext", "t") && after["seqnum"].(float64) > before["seqnum"].(float64)
		})
		if !reflect.DeepEqual(after["rows"], before["rows"]) {
			t.Fatalf("acknowledged content lost: before %v after %v", before, after)
		}
		if got := publish(t, re.http, "ext", "t", `[[9,"z"]]`); got["seqnum"].(float64) <= after["seqnum"].(float64) {
			t.Fatalf("publish after restart: %v", got)
		}
		eventually(t, 20*time.Second, "watch saw the new content", func() bool {
			ls := w.snapshot()
			last := ls[len(ls)-1]
			add, _ := last["add"].([]any)
			return len(add) == 1 && reflect.DeepEqual(add[0], []any{9.0, "z"})
		})
		ls := w.snapshot()
		for i := 1; i < len(ls); i++ {
			if ls[i]["seqnum"].(float64) <= ls[i-1]["seqnum"].(float64) {
				t.Fatalf("watch seqnums not increasing: %v", ls)
			}
		}
	})

	t.Run("SIGKILL, restart once the cluster has marked the node down", func(t *testing.T) {
		// Its service then has no live owner when it comes back: the node
		// must take it again and republish, not lose it. (The agent the
		// last subtest restarted ended with it: start it once more first.)
		cur := startAgent(t, n1.dir)
		var before map[string]any
		eventually(t, 30*time.Second, "the node serves its table again", func() bool {
			return tryJSON(n3.http, &before, "get", "ext", "t")
		})
		cur.kill()
		eventually(t, 30*time.Second, "the cluster marks n1 down: ext has no owner", func() bool {
			var list []map[string]any
			if !tryJSON(n3.http, &list, "services", "list") {
				return false
			}
			for _, svc := range list {
				if svc["service_id"] == "ext" && svc["node_id"] == "" {
					return true
				}
			}
			return false
		})
		// On its own address again: a node back on a new one records it
		// at once, which marks it up before it restores its services.
		startAgent(t, n1.dir, "--bind", cur.cluster)
		var after map[string]any
		eventually(t, 30*time.Second, "the restarted node republished its table", func() bool {
			return tryJSON(n3.http, &after, "get", "ext", "t") && after["seqnum"].(float64) > before["seqnum"].(float64)
		})
		if !reflect.DeepEqual(after["rows"], before["rows"]) {
			t.Fatalf("acknowledged content lost: before %v after %v", before, after)
		}
	})

	t.Run("delete", func(t *testing.T) {
		// A watch open on the service ends with it, saying why.
		watch := startWatchProc(t, "--addr", n3.http, "watch", "ext", "t", "--timeout", "60s")
		if r := run(t, "--addr", n2.http, "services", "delete", "ext"); r.code != 0 {
			t.Fatalf("delete: %+v", r)
		}
		wantFail(t, 1, []string{"service not found"}, "--addr", n3.http, "get", "ext", "t")
		wantFail(t, 1, []string{"service not found"}, "--addr", n3.http, "services", "delete", "ext")
		watch.wantEnd(t, `"ext" was deleted`)
	})
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rows.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE2EWatchLimit: an agent holds at most --max-watches watches open; one
// more is refused with a one-line error naming the limit, and a watch that
// ends frees its place.
func TestE2EWatchLimit(t *testing.T) {
	wantFail(t, 2, []string{"--max-watches 0"}, "agent", "--data-dir", t.TempDir(), "--max-watches", "0")
	a := startAgent(t, t.TempDir(), "--id", "w1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap", "--max-watches", "1")
	eventually(t, 20*time.Second, "a leader", func() bool {
		var st map[string]any
		return tryJSON(a.http, &st, "status") && st["leader"] != ""
	})
	run(t, "--addr", a.http, "services", "create", "lim")
	publish(t, a.http, "lim", "t", `[[1]]`)
	// A watch of a service the registry does not have ends at once.
	wantFail(t, 1, []string{"service not found", `"nope"`}, "--addr", a.http, "watch", "nope", "t", "--timeout", "30s")
	w := startWatch(t, a.http, "lim", "t")
	eventually(t, 20*time.Second, "the first watch's snapshot", func() bool { return len(w.snapshot()) >= 1 })
	wantFail(t, 1, []string{"watches open", "max-watches"}, "--addr", a.http, "watch", "lim", "t", "--timeout", "5s")
	w.cmd.Process.Signal(syscall.SIGKILL)
	w.cmd.Wait()
	eventually(t, 20*time.Second, "a watch after the first ended", func() bool {
		r := run(t, "--addr", a.http, "watch", "lim", "t", "--count", "1", "--timeout", "5s")
		return r.code == 0 && strings.Contains(r.stdout, `"snapshot":true`)
	})
	// SIGTERM with a watch open: the agent ends the watch and shuts down
	// cleanly (its HTTP server used to wait for the stream until its
	// deadline, then exit 1).
	w = startWatch(t, a.http, "lim", "t")
	eventually(t, 20*time.Second, "the last watch's snapshot", func() bool { return len(w.snapshot()) >= 1 })
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.exited
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("agent exit %d on SIGTERM with a watch open; log:\n%s", code, a.log.String())
	}
}
