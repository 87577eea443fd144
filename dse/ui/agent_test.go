package ui_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
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

// The browser tests drive real `dse agent` processes, built once by
// TestMain (with -race when the tests run with it), through the CLI and a
// headless Chromium.
var (
	dseBin   string
	chromium string // "" when none is installed
)

// skipMessage is what the browser tests say on a machine without Chromium.
const skipMessage = "chromium not found: install it (apt-get install -y chromium) and run make test-ui"

func TestMain(m *testing.M) {
	flag.Parse()
	chromium = findChromium()
	dir := ""
	if chromium != "" && !testing.Short() {
		var err error
		if dir, err = os.MkdirTemp("", "dse-ui-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		dseBin = filepath.Join(dir, "dse")
		args := []string{"build", "-o", dseBin}
		if raceEnabled {
			args = append(args, "-race")
		}
		build := exec.Command("go", append(args, "dse.dev/dse")...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build dse:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// findChromium looks for a Chromium: $DSE_CHROMIUM when set (and only
// there), else Debian's /usr/bin/chromium, then chromium or
// chromium-browser on PATH.
func findChromium() string {
	if p := os.Getenv("DSE_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return ""
		}
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// needBrowser skips the test without Chromium, or fails it when
// DSE_UI_REQUIRE is set (make test-ui): a browser suite that skips there
// would pass while testing nothing.
func needBrowser(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests: not with -short")
	}
	if chromium == "" {
		if os.Getenv("DSE_UI_REQUIRE") != "" {
			t.Fatal("DSE_UI_REQUIRE is set and " + skipMessage)
		}
		t.Skip(skipMessage)
	}
}

// agent is a real `dse agent` process.
type agent struct {
	id, http string
	cmd      *exec.Cmd
	log      lockedBuffer
	exited   chan struct{}
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

// startAgent runs `dse agent` on free loopback ports with args, and waits
// until it prints its addresses.
func startAgent(t *testing.T, id string, args ...string) *agent {
	t.Helper()
	a := &agent{id: id, exited: make(chan struct{})}
	all := append([]string{"agent", "--id", id, "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "warn"}, args...)
	if raceEnabled {
		// Built with -race, an agent is 5-10x slower: publishing the big
		// table's 100,000 rows to three replicas took 7-8 s alone and past
		// the default 10 s beside the other packages' tests.
		all = append(all, "--apply-timeout", "30s")
	}
	a.cmd = exec.Command(dseBin, all...)
	a.cmd.Stderr = &a.log
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := startedRE.FindStringSubmatch(sc.Text()); m != nil {
				started <- m[3]
			}
		}
		close(started)
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
	select {
	case h, ok := <-started:
		if !ok {
			t.Fatalf("agent %s exited before it started: %s", id, a.log.String())
		}
		a.http = h
	case <-time.After(60 * time.Second):
		t.Fatalf("agent %s did not start in 60 s: %s", id, a.log.String())
	}
	return a
}

// kill ends the agent with SIGKILL (no goodbye) and waits for it.
func (a *agent) kill() {
	select {
	case <-a.exited:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
}

// cluster starts n voters: the first bootstraps, the others join it.
func cluster(t *testing.T, n int, args ...string) []*agent {
	t.Helper()
	first := startAgent(t, "n1", append([]string{"--bootstrap"}, args...)...)
	out := []*agent{first}
	waitFor(t, 30*time.Second, "n1 to lead", func() bool {
		var st struct{ Leader string }
		return tryJSON(first.http, &st, "", "status") && st.Leader == "n1"
	})
	for i := 2; i <= n; i++ {
		out = append(out, startAgent(t, fmt.Sprintf("n%d", i), append([]string{"--join", first.http}, args...)...))
	}
	waitFor(t, 30*time.Second, "every member up", func() bool {
		var ms []struct{ State string }
		if !tryJSON(first.http, &ms, "", "members", "list") || len(ms) != n {
			return false
		}
		for _, m := range ms {
			if m.State != "leader" && m.State != "follower" {
				return false
			}
		}
		return true
	})
	return out
}

// dse runs the CLI against addr (with token, if any) and wants exit 0.
func dse(t *testing.T, addr, token string, stdin string, args ...string) string {
	t.Helper()
	out, err := runCLI(addr, token, stdin, args...)
	if err != nil {
		t.Fatalf("dse %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func runCLI(addr, token, stdin string, args ...string) (string, error) {
	all := []string{"--addr", addr, "--request-timeout", "10s"}
	if token != "" {
		all = append(all, "--token", token)
	}
	cmd := exec.Command(dseBin, append(all, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), fmt.Errorf("exit %d: %s", ee.ExitCode(), strings.TrimSpace(errb.String()))
		}
		return "", err
	}
	return out.String(), nil
}

// tryJSON runs a CLI command with --json and decodes its output into v.
func tryJSON(addr string, v any, token string, args ...string) bool {
	out, err := runCLI(addr, token, "", append([]string{"--json"}, args...)...)
	return err == nil && json.Unmarshal([]byte(out), v) == nil
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
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
