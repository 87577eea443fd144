package cli_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"dse.dev/dse/cli"
)

// TestFlagsBeatTheEnvironment: DSE_ADDR is the fallback for --addr, given
// before the command or after it, never a value that overrides it.
func TestFlagsBeatTheEnvironment(t *testing.T) {
	node := func(id string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%q,"state":"leader","leader":%q,"members":1}`, id, id)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	envNode, flagNode := node("from-env"), node("from-flag")
	t.Setenv("DSE_ADDR", envNode)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--json", "status"}, "from-env"},
		{[]string{"--addr", flagNode, "--json", "status"}, "from-flag"},
		{[]string{"--json", "status", "--addr", flagNode}, "from-flag"},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Run(append([]string{"dse"}, c.args...), &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), `"id":"`+c.want+`"`) {
			t.Errorf("dse %s: exit %d, stdout %q, stderr %q; want the node %s", strings.Join(c.args, " "), code, stdout.String(), stderr.String(), c.want)
		}
	}
}
