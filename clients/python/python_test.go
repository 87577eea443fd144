package python_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPythonClient runs the Python client's unittest suite (tests/) against
// real `dse agent` processes built from this repository.
func TestPythonClient(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the Python client's tests need it")
	}
	bin := filepath.Join(t.TempDir(), "dse")
	build := exec.Command("go", "build", "-race", "-o", bin, "../..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build dse: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "discover", "-s", "tests", "-v")
	// The suite's own settings only: a DSE_TOKEN or DSE_ADDR of the
	// caller's would reach the CLI the tests run.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DSE_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "DSE_BIN="+bin, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("python3 -m unittest discover -s tests (%s):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("the Python client's tests failed: %v", err)
	}
}
