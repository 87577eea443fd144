package cli_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestE2ESecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	pki := t.TempDir()
	rogue := t.TempDir()
	for _, args := range [][]string{
		{"tls", "init", "--dir", pki},
		{"tls", "cert", "--dir", pki, "--id", "n1"},
		{"tls", "cert", "--dir", pki, "--id", "n2"},
		{"tls", "cert", "--dir", pki, "--id", "n3", "--host", "127.0.0.1", "--host", "localhost"},
		{"tls", "init", "--dir", rogue},
		{"tls", "cert", "--dir", rogue, "--id", "evil"},
	} {
		if r := run(t, args...); r.code != 0 {
			t.Fatalf("dse %v: %+v", args, r)
		}
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "n1.pem", "n1-key.pem"} {
		if _, err := os.Stat(filepath.Join(pki, f)); err != nil {
			t.Fatal(err)
		}
	}
	wantFail(t, 1, []string{"already holds a CA"}, "tls", "init", "--dir", pki)
	var wrote map[string]string
	runJSON(t, "127.0.0.1:1", &wrote, "tls", "cert", "--dir", pki, "--id", "n9")
	if wrote["cert"] != filepath.Join(pki, "n9.pem") || wrote["key"] != filepath.Join(pki, "n9-key.pem") {
		t.Fatalf("tls cert --json: %v", wrote)
	}
	// A certificate named as the CA's files would replace them.
	for _, id := range []string{"ca", "ca-key"} {
		wantFail(t, 1, []string{"overwrite the CA"}, "tls", "cert", "--dir", pki, "--id", id)
	}
	ca := filepath.Join(pki, "ca.pem")
	// With a cluster key too: its proofs then ride on the mutual TLS.
	tlsFlags := func(id string) []string {
		return []string{"--tls-cert", filepath.Join(pki, id+".pem"), "--tls-key", filepath.Join(pki, id+"-key.pem"), "--tls-ca", ca, "--cluster-key", "e2e-cluster-key-with-tls-0123"}
	}
	const admin = "e2e-admin-token-0123456789"
	n1 := startAgent(t, t.TempDir(), append([]string{"--id", "n1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap", "--bootstrap-token", admin}, tlsFlags("n1")...)...)
	n2dir := t.TempDir()
	// n2 restarts on its ports below (freeAddr: ones that no outbound
	// connection takes meanwhile).
	n2 := startAgent(t, n2dir, append([]string{"--id", "n2", "--bind", freeAddr(t), "--http", freeAddr(t), "--join", n1.http, "--token", admin}, tlsFlags("n2")...)...)
	n3 := startAgent(t, t.TempDir(), append([]string{"--id", "n3", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n2.http, "--token", admin}, tlsFlags("n3")...)...)
	as := func(token string, args ...string) []string {
		return append([]string{"--ca", ca, "--token", token}, args...)
	}
	tryAs := func(addr string, v any, args ...string) bool {
		return tryJSON(addr, v, append([]string{"--ca", ca, "--token", admin}, args...)...)
	}
	eventually(t, 30*time.Second, "a 3-node TLS cluster", func() bool {
		var ms []member
		if !tryAs(n3.http, &ms, "members", "list") || len(ms) != 3 {
			return false
		}
		for _, m := range ms {
			if !m.Reachable {
				return false
			}
		}
		return true
	})

	t.Run("refusals", func(t *testing.T) {
		wantFail(t, 1, []string{"unauthorized"}, "--addr", n1.http, "--ca", ca, "members", "list")
		wantFail(t, 1, []string{"unauthorized"}, append([]string{"--addr", n1.http}, as("not-a-real-token-at-all", "status")...)...)
		var ro, rw map[string]any
		runJSON(t, n1.http, &ro, as(admin, "tokens", "create", "--role", "read", "--name", "ro")...)
		runJSON(t, n2.http, &rw, as(admin, "tokens", "create", "--role", "write", "--name", "rw")...)
		roTok, rwTok := ro["token"].(string), rw["token"].(string)
		var tokens []map[string]any
		runJSON(t, n3.http, &tokens, as(admin, "tokens", "list")...)
		if len(tokens) != 3 || strings.Contains(mustJSON(tokens), roTok) {
			t.Fatalf("tokens list: %v", tokens)
		}
		// Read may read, not write; write may not manage members.
		var st status
		runJSON(t, n2.http, &st, as(roTok, "status")...)
		wantFail(t, 1, []string{"forbidden", "read"}, append([]string{"--addr", n2.http}, as(roTok, "services", "create", "x")...)...)
		var info map[string]any
		runJSON(t, n1.http, &info, as(rwTok, "services", "create", "secured")...)
		cmd := append([]string{"--addr", n3.http}, as(roTok, "publish", "secured", "t", "--file", writeFile(t, `[[1]]`))...)
		wantFail(t, 1, []string{"forbidden"}, cmd...)
		wantFail(t, 1, []string{"forbidden", "admin"}, append([]string{"--addr", n3.http}, as(rwTok, "members", "remove", "n3")...)...)
		wantFail(t, 1, []string{"forbidden"}, append([]string{"--addr", n3.http}, as(rwTok, "datasources", "list", "--show-secrets")...)...)
		// HTTP status codes.
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(ca)
		pool.AppendCertsFromPEM(pem)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		for token, want := range map[string]int{"": 401, "bogus-token-value-123": 401, roTok: 403} {
			req, _ := http.NewRequest(http.MethodPost, "https://"+n1.http+"/v1/services", strings.NewReader(`{"id":"y"}`))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("token %q: status %d, want %d", token, resp.StatusCode, want)
			}
		}
		// Revoked: refused everywhere, and a watch open with it ends.
		if r := run(t, append([]string{"--addr", n1.http}, as(rwTok, "publish", "secured", "t", "--file", writeFile(t, `[[1]]`))...)...); r.code != 0 {
			t.Fatalf("publish: %+v", r)
		}
		watch := startWatchProc(t, append([]string{"--addr", n3.http}, as(rwTok, "watch", "secured", "t", "--timeout", "60s")...)...)
		if r := run(t, append([]string{"--addr", n1.http}, as(admin, "tokens", "revoke", rw["id"].(string))...)...); r.code != 0 {
			t.Fatalf("revoke: %+v", r)
		}
		wantFail(t, 1, []string{"unauthorized"}, append([]string{"--addr", n3.http}, as(rwTok, "services", "list")...)...)
		watch.wantEnd(t, "revoked")
		if log := n1.log.String(); strings.Contains(log, rwTok) || strings.Contains(log, roTok) || strings.Contains(log, admin) {
			t.Fatal("a token appears in the log")
		}
	})

	t.Run("a node with another CA's certificate is refused", func(t *testing.T) {
		cmd := exec_(dseBin, "agent", "--id", "evil", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--join", n1.http, "--token", admin, "--join-timeout", "10s",
			"--tls-cert", filepath.Join(rogue, "evil.pem"), "--tls-key", filepath.Join(rogue, "evil-key.pem"), "--tls-ca", ca)
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "cluster CA") {
			t.Fatalf("rogue agent: exit %d, output %s", cmd.ProcessState.ExitCode(), out)
		}
		var ms []member
		if !tryAs(n1.http, &ms, "members", "list") || len(ms) != 3 {
			t.Fatalf("membership changed: %v", ms)
		}
	})

	t.Run("rotate a node's certificate while the cluster serves", func(t *testing.T) {
		if r := run(t, "tls", "cert", "--dir", pki, "--id", "n2"); r.code != 0 {
			t.Fatalf("reissue: %+v", r)
		}
		n2.kill()
		n2 = startAgent(t, n2dir, tlsFlags("n2")...)
		// Meanwhile the others serve writes.
		var res map[string]any
		runJSON(t, n1.http, &res, as(admin, "publish", "secured", "t", "--file", writeFile(t, `[[1],[2]]`))...)
		eventually(t, 30*time.Second, "the rotated node back and caught up", func() bool {
			var got map[string]any
			var ms []member
			return tryAs(n2.http, &got, "get", "secured", "t") && got["seqnum"] == res["seqnum"] &&
				tryAs(n3.http, &ms, "members", "list") && len(ms) == 3 && ms[1].Reachable
		})
	})

	t.Run("generated bootstrap token is printed once", func(t *testing.T) {
		a := startAgent(t, t.TempDir(), append([]string{"--id", "solo", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap"}, tlsFlags("n1")...)...)
		re := regexp.MustCompile(`bootstrap admin token \(shown once\): (dse_[0-9a-f]+)`)
		var tok string
		eventually(t, 20*time.Second, "the token line", func() bool {
			m := re.FindStringSubmatch(a.stdout.String())
			if m != nil {
				tok = m[1]
			}
			return tok != ""
		})
		var st status
		runJSON(t, a.http, &st, as(tok, "status")...)
		if strings.Count(a.stdout.String(), tok) != 1 {
			t.Fatal("token printed more than once")
		}
	})
}

// TestE2EClusterKey: without TLS, --cluster-key guards the cluster port:
// nodes given the key form the cluster; one with another key, or none,
// cannot join (and, the port refusing it, could not send the registry
// commands either); an agent with tokens and neither TLS nor a key warns.
func TestE2EClusterKey(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const admin, key = "e2e-admin-token-0123456789", "e2e-cluster-key-0123456789"
	n1 := startAgent(t, t.TempDir(), "--id", "n1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap", "--bootstrap-token", admin, "--cluster-key", key)
	n2 := startAgent(t, t.TempDir(), "--id", "n2", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http, "--token", admin, "--cluster-key", key)
	eventually(t, 20*time.Second, "2 members", func() bool {
		var ms []member
		return tryJSON(n2.http, &ms, "--token", admin, "members", "list") && len(ms) == 2 && ms[0].Reachable && ms[1].Reachable
	})
	for name, extra := range map[string][]string{"another key": {"--cluster-key", "another-cluster-key-0123"}, "no key": nil} {
		cmd := exec_(dseBin, append([]string{"agent", "--id", "n3", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--join", n1.http, "--token", admin, "--join-timeout", "5s"}, extra...)...)
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "cluster key") {
			t.Fatalf("%s: exit %d, output %s", name, cmd.ProcessState.ExitCode(), out)
		}
	}
	wantFail(t, 2, []string{"--cluster-key"}, "agent", "--id", "x", "--data-dir", t.TempDir(), "--bootstrap", "--cluster-key", "short")
	if strings.Contains(n1.log.String(), "tokens guard the HTTP API only") || strings.Contains(n1.log.String(), key) {
		t.Fatal("n1, with a cluster key, warned of an open cluster port, or logged its key")
	}
	plain := startAgent(t, t.TempDir(), "--id", "p1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap", "--bootstrap-token", admin)
	// Its log (stderr) may reach the buffer after the line on stdout that
	// startAgent waited for.
	eventually(t, 5*time.Second, "a warning of an open cluster port", func() bool {
		return strings.Contains(plain.log.String(), "tokens guard the HTTP API only")
	})
}
