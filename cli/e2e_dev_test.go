package cli_test

import (
	"bufio"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EDevResumes: `dse dev` stopped with Ctrl-C and run again on its
// folder resumes its cluster, demo datasource included, every time (a
// restarted node 1 that had not replayed its log yet took the demo for
// missing, and adding it again failed as "already exists").
func TestE2EDevResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	base := devPortBase(t, 3)
	for round := 1; round <= 4; round++ {
		cmd := exec.Command(dseBin, "dev", "--dir", dir, "--port-base", strconv.Itoa(base))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "Ctrl-C stops the cluster") {
					ready <- true
				}
			}
			close(ready)
		}()
		select {
		case ok := <-ready:
			if !ok {
				cmd.Wait()
				t.Fatalf("round %d: dse dev exited before it was ready: %s", round, stderr.String())
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: dse dev not ready in 60 s: %s", round, stderr.String())
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(base+21))
		var got struct {
			Seqnum int     `json:"seqnum"`
			Rows   [][]any `json:"rows"`
		}
		eventually(t, 20*time.Second, "the demo table", func() bool {
			return tryJSON(addr, &got, "get", "demo", "ticks") && got.Seqnum > 0 && len(got.Rows) > 0
		})
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: dse dev after Ctrl-C: %v: %s", round, err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: dse dev still running 30 s after Ctrl-C", round)
		}
	}
}

// devPortBase picks a --port-base whose nodes' ports (base+10*i and +1) are
// all free, below the ephemeral range as freeAddr's are.
func devPortBase(t *testing.T, nodes int) int {
	t.Helper()
	for range 100 {
		_, p, _ := net.SplitHostPort(freeAddr(t))
		base, _ := strconv.Atoi(p)
		free := true
		for i := range nodes {
			for off := range 2 {
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+10*i+off)))
				if err != nil {
					free = false
					continue
				}
				ln.Close()
			}
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port base")
	return 0
}
