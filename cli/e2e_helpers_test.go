package cli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dseBin is the binary the end-to-end tests drive, built once by TestMain.
var dseBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dseBin = filepath.Join(dir, "dse")
	build := exec.Command("go", "build", "-race", "-o", dseBin, "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build dse:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent is a real `dse agent` process.
type agent struct {
	t       *testing.T
	id, dir string
	cmd     *exec.Cmd
	http    string
	cluster string
	log     *lockedBuffer
	stdout  *lockedBuffer
	exited  chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var startedRE = regexp.MustCompile(`^dse agent (\S+): cluster (\S+), http (\S+)$`)

// startAgent runs `dse agent --data-dir dir args...` and waits until it
// prints its addresses.
func startAgent(t *testing.T, dir string, args ...string) *agent {
	t.Helper()
	a := &agent{t: t, dir: dir, log: &lockedBuffer{}, stdout: &lockedBuffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(dseBin, append([]string{"agent", "--data-dir", dir, "--log-level", "info"}, args...)...)
	a.cmd.Stderr = a.log
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() {
		a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("log of agent %s:\n%s", a.id, a.log.String())
		}
	})
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("agent exited before it started; log:\n%s", a.log.String())
			}
			a.stdout.Write([]byte(l + "\n"))
			if m := startedRE.FindStringSubmatch(l); m != nil {
				a.id, a.cluster, a.http = m[1], m[2], m[3]
				go func() {
					for l := range lines {
						a.stdout.Write([]byte(l + "\n"))
					}
				}()
				return a
			}
		case <-timeout:
			t.Fatalf("agent did not start in time; log:\n%s", a.log.String())
		}
	}
}

// kill ends the process with SIGKILL (no goodbye) and waits for it.
func (a *agent) kill() {
	select {
	case <-a.exited:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
}

// waitExit waits for the process to end by itself.
func (a *agent) waitExit(d time.Duration) {
	a.t.Helper()
	select {
	case <-a.exited:
	case <-time.After(d):
		a.t.Fatalf("agent %s still running after %s", a.id, d)
	}
}

// result is what one CLI run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the dse CLI and returns its output and exit code.
func run(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(dseBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// runJSON runs a CLI command with --json against addr, wants exit 0, and
// decodes its output into v.
func runJSON(t *testing.T, addr string, v any, args ...string) {
	t.Helper()
	r := run(t, append([]string{"--addr", addr, "--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("dse %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("dse %s: output %q is not JSON: %v", strings.Join(args, " "), r.stdout, err)
	}
}

// wantFail runs a command and wants the exit code and a stderr containing
// every one of parts.
func wantFail(t *testing.T, code int, parts []string, args ...string) {
	t.Helper()
	r := run(t, args...)
	if r.code != code {
		t.Fatalf("dse %s: exit %d, want %d (stdout %q, stderr %q)", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	for _, p := range parts {
		if !strings.Contains(r.stderr, p) {
			t.Fatalf("dse %s: stderr %q does not mention %q", strings.Join(args, " "), r.stderr, p)
		}
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); code == 1 && n > 0 {
		t.Fatalf("dse %s: error is %d lines, want one: %q", strings.Join(args, " "), n+1, r.stderr)
	}
}

// eventually polls cond until it holds, failing after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

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

type status struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      int    `json:"members"`
}

// tryJSON is runJSON that reports failure instead of failing the test.
func tryJSON(addr string, v any, args ...string) bool {
	cmd := exec.Command(dseBin, append([]string{"--addr", addr, "--json", "--request-timeout", "3s"}, args...)...)
	out, err := cmd.Output()
	return err == nil && json.Unmarshal(out, v) == nil
}

func exec_(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// watchProc is a `dse watch` process whose end a test awaits.
type watchProc struct {
	cmd      *exec.Cmd
	out, err lockedBuffer
}

// startWatchProc runs the CLI with args (a watch) and waits for its
// snapshot line.
func startWatchProc(t *testing.T, args ...string) *watchProc {
	t.Helper()
	w := &watchProc{cmd: exec.Command(dseBin, args...)}
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.err
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		w.cmd.Wait()
	})
	eventually(t, 20*time.Second, "the watch's snapshot", func() bool { return strings.Contains(w.out.String(), `"snapshot":true`) })
	return w
}

// wantEnd waits up to 20 s for the watch to exit 1 with why in its error.
func (w *watchProc) wantEnd(t *testing.T, why string) {
	t.Helper()
	ended := make(chan error, 1)
	go func() { ended <- w.cmd.Wait() }()
	select {
	case err := <-ended:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(w.err.String(), why) {
			t.Fatalf("watch ended with %v, stderr %q; want exit 1 and %q", err, w.err.String(), why)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the watch still runs 20 s later; want it ended with %q", why)
	}
}
