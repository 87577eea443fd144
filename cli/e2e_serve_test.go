package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveProc is a running `dse serve`.
type serveProc struct {
	cmd      *exec.Cmd
	out, err lockedBuffer
	exited   chan struct{}
}

// startServe runs `dse serve` with args and waits until it says it is
// attached.
func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{cmd: exec.Command(dseBin, args...), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	eventually(t, 20*time.Second, "dse serve attached", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("dse serve exited: %s", p.err.String())
		default:
		}
		return strings.Contains(p.out.String(), "serving ") || strings.Contains(p.out.String(), `"session"`)
	})
	return p
}

// interrupt sends SIGINT and wants a clean exit 0.
func (p *serveProc) interrupt(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("dse serve still runs 15 s after SIGINT")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("dse serve exit %d after SIGINT, want 0; stderr %q", code, p.err.String())
	}
}

// sumSh is a POSIX shell adder of the args {"a":A,"b":B}: it counts its
// calls in the file named by its first argument.
const sumSh = `echo x >> "$0"; sed -E 's/.*"a":(-?[0-9]+).*"b":(-?[0-9]+).*/\1 \2/' | { read a b; echo $((a+b)); }`

// sumPy is sumSh in Python.
const sumPy = `import json, sys; a = json.load(sys.stdin); open(sys.argv[1], "a").write("x\n"); print(json.dumps(a["a"] + a["b"]))`

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// TestE2EServe: `dse serve` attaches a shell (and a Python) adder through
// one node; `dse rpc` from another returns the sum, calls spread over two
// serves, the command's failures are remote errors, and after SIGINT the
// next call is unavailable.
func TestE2EServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1 := startAgent(t, t.TempDir(), "--id", "n1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap")
	n2 := startAgent(t, t.TempDir(), "--id", "n2", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http)
	n3 := startAgent(t, t.TempDir(), "--id", "n3", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http)
	eventually(t, 20*time.Second, "3 members", func() bool {
		var ms []member
		return tryJSON(n3.http, &ms, "members", "list") && len(ms) == 3 && leaderOf(n1, n2, n3) != ""
	})
	var info map[string]any
	runJSON(t, n1.http, &info, "services", "create", "calc")

	t.Run("bad usage", func(t *testing.T) {
		wantFail(t, 2, []string{"no -- before the command"}, "--addr", n2.http, "serve", "calc", "add", "sh")
		wantFail(t, 2, []string{"at least one ACTION"}, "--addr", n2.http, "serve", "calc", "--", "sh")
		wantFail(t, 2, []string{"--concurrency 0"}, "--addr", n2.http, "serve", "calc", "add", "--concurrency", "0", "--", "sh")
		wantFail(t, 1, []string{"service not found", `"nope"`}, "--addr", n2.http, "serve", "nope", "add", "--", "sh")
		wantFail(t, 1, []string{"built into every service"}, "--addr", n2.http, "serve", "calc", "ping", "--", "sh")
		wantFail(t, 1, []string{"cannot run", "no-such-program"}, "--addr", n2.http, "serve", "calc", "add", "--", "no-such-program")
	})

	dir := t.TempDir()
	shCount, pyCount := filepath.Join(dir, "sh"), filepath.Join(dir, "py")
	sh := startServe(t, "--addr", n2.http, "--json", "serve", "calc", "add", "--heartbeat", "500ms", "--", "sh", "-c", sumSh, shCount)
	var hello map[string]any
	if err := json.Unmarshal([]byte(sh.out.String()), &hello); err != nil || hello["node"] != "n2" || hello["session"] == "" {
		t.Fatalf("serve --json printed %q (%v), want one object naming session and node", sh.out.String(), err)
	}
	r := run(t, "--addr", n3.http, "rpc", "calc", "add", "--args", `{"a":1,"b":2}`)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "3" {
		t.Fatalf("rpc calc add through n3: %+v, want 3", r)
	}
	eventually(t, 10*time.Second, "add in calc's rpc_endpoints_info on n1", func() bool {
		var list []map[string]any
		if !tryJSON(n1.http, &list, "services", "list") {
			return false
		}
		for _, svc := range list {
			if svc["service_id"] == "calc" {
				eps, _ := svc["rpc_endpoints_info"].([]any)
				return slices.Contains(eps, any("add"))
			}
		}
		return false
	})

	var second *serveProc
	if _, err := exec.LookPath("python3"); err == nil {
		second = startServe(t, "--addr", n3.http, "serve", "calc", "add", "--", "python3", "-c", sumPy, pyCount)
	} else {
		t.Log("python3 not found: the second serve is a shell too")
		pyCount = filepath.Join(dir, "sh2")
		second = startServe(t, "--addr", n3.http, "serve", "calc", "add", "--", "sh", "-c", sumSh, pyCount)
	}
	// Calls through n1 go to n2 and n3 in turn.
	for i := range 6 {
		r := run(t, "--addr", n1.http, "rpc", "calc", "add", "--args", `{"a":40,"b":2}`)
		if r.code != 0 || strings.TrimSpace(r.stdout) != "42" {
			t.Fatalf("call %d: %+v, want 42", i, r)
		}
	}
	if a, b := countLines(shCount), countLines(pyCount); a < 2 || b < 2 || a+b != 7 {
		t.Fatalf("the shell ran %d calls and the second serve %d: want 7, spread over both", a, b)
	}

	t.Run("failures", func(t *testing.T) {
		fail := startServe(t, "--addr", n1.http, "serve", "calc", "fail", "junk", "--", "sh", "-c",
			`if [ "$DSE_ACTION" = junk ]; then echo 'not json'; exit 0; fi; echo 'some noise' >&2; echo 'bad input: a is missing' >&2; exit 3`)
		wantFail(t, 1, []string{"bad input: a is missing"}, "--addr", n2.http, "rpc", "calc", "fail")
		if r := run(t, "--addr", n2.http, "rpc", "calc", "fail"); strings.Contains(r.stderr, "noise") {
			t.Fatalf("the remote error carries more than stderr's last line: %q", r.stderr)
		}
		wantFail(t, 1, []string{"not one JSON value", "not json"}, "--addr", n2.http, "rpc", "calc", "junk")
		fail.interrupt(t)
	})

	// SIGINT both: the next call is unavailable, and add is no longer
	// listed.
	sh.interrupt(t)
	second.interrupt(t)
	wantFail(t, 1, []string{"unavailable", "no process serves calc.add"}, "--addr", n3.http, "rpc", "calc", "add", "--args", `{"a":1,"b":2}`)
	var list []map[string]any
	runJSON(t, n2.http, &list, "services", "list")
	if eps := list[0]["rpc_endpoints_info"].([]any); slices.Contains(eps, any("add")) {
		t.Fatalf("add still listed after both serves stopped: %v", eps)
	}
}

// TestE2EServeReconnects: a serve whose node dies reconnects through the
// next address it was given, saying so in one line, and calls reach it
// again.
func TestE2EServeReconnects(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1 := startAgent(t, t.TempDir(), "--id", "n1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap")
	n2 := startAgent(t, t.TempDir(), "--id", "n2", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http)
	n3 := startAgent(t, t.TempDir(), "--id", "n3", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http)
	eventually(t, 20*time.Second, "3 members", func() bool {
		var ms []member
		return tryJSON(n3.http, &ms, "members", "list") && len(ms) == 3 && leaderOf(n1, n2, n3) != ""
	})
	var info map[string]any
	runJSON(t, n1.http, &info, "services", "create", "calc")
	count := filepath.Join(t.TempDir(), "calls")
	p := startServe(t, "--addr", n3.http+","+n2.http, "serve", "calc", "add", "--heartbeat", "200ms", "--", "sh", "-c", sumSh, count)
	if r := run(t, "--addr", n1.http, "rpc", "calc", "add", "--args", `{"a":1,"b":1}`); r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
		t.Fatalf("before: %+v", r)
	}
	n3.kill()
	eventually(t, 20*time.Second, "serve reattached through n2", func() bool { return strings.Count(p.out.String(), "serving ") == 2 })
	if lines := strings.Split(strings.TrimSpace(p.err.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "reconnecting to "+n2.http) {
		t.Fatalf("stderr %q, want one line saying it reconnects", p.err.String())
	}
	// n3 is not marked down yet: its attachment is tried first, cannot be
	// reached, and the call goes on to n2.
	eventually(t, 20*time.Second, "a call answered after the reconnect", func() bool {
		r := run(t, "--addr", n1.http, "rpc", "calc", "add", "--args", `{"a":2,"b":3}`, "--timeout", "3s")
		return r.code == 0 && strings.TrimSpace(r.stdout) == "5"
	})
	p.interrupt(t)
}
