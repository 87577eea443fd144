package cli_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// leaderOf returns the leader id all the given agents report, or "".
func leaderOf(agents ...*agent) string {
	leader := ""
	for _, a := range agents {
		var st status
		if !tryJSON(a.http, &st, "status") || st.Leader == "" {
			return ""
		}
		if leader != "" && st.Leader != leader {
			return ""
		}
		leader = st.Leader
	}
	return leader
}

func membersOf(t *testing.T, a *agent) map[string]member {
	t.Helper()
	var ms []member
	runJSON(t, a.http, &ms, "members", "list")
	out := map[string]member{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

func byID(agents []*agent, id string) *agent {
	for _, a := range agents {
		if a.id == id {
			return a
		}
	}
	return nil
}

func TestE2EClusterLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	// Agents that restart come back on their ports: freeAddr picks ones no
	// outbound connection takes meanwhile.
	n1 := startAgent(t, t.TempDir(), "--id", "n1", "--bind", freeAddr(t), "--http", freeAddr(t), "--bootstrap")
	n2 := startAgent(t, t.TempDir(), "--id", "n2", "--bind", freeAddr(t), "--http", freeAddr(t), "--join", n1.http)
	n3 := startAgent(t, t.TempDir(), "--id", "n3", "--bind", freeAddr(t), "--http", freeAddr(t), "--join", n1.http)
	agents := []*agent{n1, n2, n3}
	top := t // agents started in subtests outlive them

	t.Run("members agree", func(t *testing.T) {
		eventually(t, 15*time.Second, "all members reachable on every node", func() bool {
			for _, a := range agents {
				var ms []member
				if !tryJSON(a.http, &ms, "members", "list") || len(ms) != 3 {
					return false
				}
				leaders := 0
				for _, m := range ms {
					if !m.Voter || !m.Reachable {
						return false
					}
					if m.Leader {
						leaders++
					}
				}
				if leaders != 1 {
					return false
				}
			}
			return leaderOf(agents...) != ""
		})
		var st status
		runJSON(t, n2.http, &st, "status")
		if st.ID != "n2" || st.Members != 3 || st.Leader == "" || st.Term == 0 || st.AppliedIndex == 0 {
			t.Fatalf("status got %+v", st)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		wantFail(t, 1, []string{"member not found", `"nope"`}, "--addr", n2.http, "members", "remove", "nope")
		wantFail(t, 2, []string{"-bogus"}, "--addr", n2.http, "members", "list", "--bogus")
		wantFail(t, 2, []string{"ID"}, "--addr", n2.http, "members", "promote")
		wantFail(t, 2, []string{"unknown command"}, "--addr", n2.http, "members", "frobnicate")
		wantFail(t, 2, []string{"data-dir"}, "agent", "--id", "x")
		wantFail(t, 2, []string{"--id", "first start"}, "agent", "--data-dir", t.TempDir(), "--bootstrap")
		wantFail(t, 2, []string{"--liveness-grace"}, "agent", "--id", "x", "--data-dir", t.TempDir(), "--liveness-grace", "1ms")
		wantFail(t, 2, []string{"--apply-timeout (0s) must be positive"}, "agent", "--id", "x", "--data-dir", t.TempDir(), "--apply-timeout", "0s")
		wantFail(t, 2, []string{"--request-timeout"}, "--addr", n2.http, "--request-timeout", "-1s", "status")
		if r := run(t, "agent", "--id", "x", "--data-dir", n1.dir, "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"); r.code != 1 || !strings.Contains(r.stderr, "dse: data dir") || strings.Contains(r.stderr, "dse: dse:") {
			t.Fatalf("agent on another node's data dir: %+v", r)
		}
		wantFail(t, 1, []string{"unavailable"}, "--addr", "127.0.0.1:1", "status")
		resp, err := http.Post("http://"+n2.http+"/v1/members", "application/json", strings.NewReader(`{"id": "x", "address":`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("malformed JSON: got %d %s, want 400 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		// Garbage on the cluster port closes that connection only.
		c, err := net.Dial("tcp", n1.cluster)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("\x00\xffGARBAGE\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1)
		if _, err := c.Read(buf); err == nil {
			t.Fatal("node answered garbage")
		}
		c.Close()
		if got := len(membersOf(t, n1)); got != 3 {
			t.Fatalf("after garbage: %d members", got)
		}
	})

	t.Run("a live member's id is taken", func(t *testing.T) {
		r := run(t, "agent", "--id", "n2", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http)
		if r.code != 1 || !strings.Contains(r.stderr, `node id "n2" is a live member`) {
			t.Fatalf("second n2: exit %d, stderr %q", r.code, r.stderr)
		}
		var ms []member
		runJSON(t, n3.http, &ms, "members", "list")
		for _, m := range ms {
			if m.ID == "n2" && (m.Address != n2.cluster || !m.Reachable) {
				t.Fatalf("the live n2 lost its entry: %+v", ms)
			}
		}
	})

	t.Run("nonvoter promote transfer leave", func(t *testing.T) {
		n4 := startAgent(t, t.TempDir(), "--id", "n4", "--bind", freeAddr(t), "--http", freeAddr(t), "--nonvoter", "--join", n3.http)
		if m := membersOf(t, n2)["n4"]; m.Voter || m.ID != "n4" {
			t.Fatalf("n4 got %+v, want a non-voter", m)
		}
		if r := run(t, "--addr", n2.http, "members", "promote", "n4"); r.code != 0 {
			t.Fatalf("promote: %+v", r)
		}
		if m := membersOf(t, n1)["n4"]; !m.Voter {
			t.Fatalf("n4 got %+v, want a voter", m)
		}
		var tr map[string]string
		runJSON(t, n2.http, &tr, "leader", "transfer", "--to", "n4")
		if tr["leader"] != "n4" || leaderOf(n1, n2, n3, n4) != "n4" {
			t.Fatalf("transfer answered %v; leader now %q", tr, leaderOf(n1, n2, n3, n4))
		}
		if r := run(t, "--addr", n4.http, "members", "leave"); r.code != 0 {
			t.Fatalf("leave: %+v", r)
		}
		n4.waitExit(30 * time.Second)
		eventually(t, 15*time.Second, "3 members and a leader after n4 left", func() bool {
			var ms []member
			return tryJSON(n1.http, &ms, "members", "list") && len(ms) == 3 && leaderOf(agents...) != ""
		})
		var any map[string]string
		runJSON(t, n1.http, &any, "leader", "transfer")
		if any["leader"] == "" {
			t.Fatalf("transfer to any: %v", any)
		}
		// Back on its data dir with --join, the node that left finds no
		// leader (none reaches a former member) and asks to join again.
		n4 = startAgent(t, n4.dir, "--join", n1.http)
		eventually(t, 30*time.Second, "n4 a member again", func() bool {
			var ms []member
			if !tryJSON(n1.http, &ms, "members", "list") || len(ms) != 4 {
				return false
			}
			var st status
			return tryJSON(n4.http, &st, "status") && st.Leader != ""
		})
		if r := run(t, "--addr", n4.http, "members", "leave"); r.code != 0 {
			t.Fatalf("leave again: %+v", r)
		}
		n4.waitExit(30 * time.Second)
		eventually(t, 15*time.Second, "3 members and a leader after n4 left again", func() bool {
			var ms []member
			return tryJSON(n1.http, &ms, "members", "list") && len(ms) == 3 && leaderOf(agents...) != ""
		})
	})

	t.Run("SIGKILL the leader, then restart it", func(t *testing.T) {
		var old *agent
		eventually(t, 20*time.Second, "a leader", func() bool {
			old = byID(agents, leaderOf(agents...))
			return old != nil
		})
		var live []*agent
		for _, a := range agents {
			if a != old {
				live = append(live, a)
			}
		}
		var before status
		runJSON(t, live[0].http, &before, "status")
		old.kill()
		elect := eventually(t, 20*time.Second, "a new leader", func() bool {
			l := leaderOf(live...)
			return l != "" && l != old.id
		})
		down := eventually(t, 20*time.Second, "the dead leader unreachable on every live node", func() bool {
			for _, a := range live {
				var ms []member
				if !tryJSON(a.http, &ms, "members", "list") {
					return false
				}
				for _, m := range ms {
					if m.ID == old.id && (m.Reachable || m.State != "down") {
						return false
					}
				}
			}
			return true
		})
		t.Logf("SIGKILL of leader %s: new leader after %s, shown unreachable after %s more", old.id, elect, down)
		// Only --data-dir: identity, addresses and state come from disk.
		restarted := time.Now()
		re := startAgent(top, old.dir)
		if re.id != old.id || re.cluster != old.cluster {
			t.Fatalf("restarted as %s at %s, want %s at %s", re.id, re.cluster, old.id, old.cluster)
		}
		for i, a := range agents {
			if a == old {
				agents[i] = re
			}
		}
		eventually(t, 20*time.Second, "restarted node reachable and caught up", func() bool {
			var st status
			if !tryJSON(re.http, &st, "status") || st.AppliedIndex < before.AppliedIndex || st.Leader == "" {
				return false
			}
			m := membersOf(t, live[0])[re.id]
			return m.Reachable && m.State == "follower"
		})
		t.Logf("restart of %s: rejoined and caught up after %s", re.id, time.Since(restarted))
	})

	t.Run("remove refused when quorum would be lost", func(t *testing.T) {
		var leader *agent
		eventually(t, 20*time.Second, "a leader", func() bool {
			leader = byID(agents, leaderOf(agents...))
			return leader != nil
		})
		var followers []*agent
		for _, a := range agents {
			if a != leader {
				followers = append(followers, a)
			}
		}
		dead, other := followers[0], followers[1]
		dead.kill()
		eventually(t, 20*time.Second, "follower recorded down", func() bool {
			var ms []member
			if !tryJSON(leader.http, &ms, "members", "list") {
				return false
			}
			for _, m := range ms {
				if m.ID == dead.id {
					return !m.Reachable
				}
			}
			return false
		})
		wantFail(t, 1, []string{"quorum", "--force"}, "--addr", other.http, "members", "remove", other.id)
		if got := len(membersOf(t, leader)); got != 3 {
			t.Fatalf("refused removal changed membership: %d members", got)
		}
		if r := run(t, "--addr", other.http, "members", "remove", dead.id); r.code != 0 {
			t.Fatalf("remove dead member: %+v", r)
		}
		ms := membersOf(t, other)
		if _, ok := ms[dead.id]; ok || len(ms) != 2 {
			t.Fatalf("after removal: %v", ms)
		}
	})
}

// TestE2ELogStoreKeptAcrossRestarts: a node started on raft-boltdb keeps it
// across a SIGKILL and a restart with only --data-dir, with its state; asking
// for the other store on that data dir is refused.
func TestE2ELogStoreKeptAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir, "--id", "b1", "--bootstrap", "--log-store", "boltdb", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0")
	var st map[string]any
	eventually(t, 20*time.Second, "a leader", func() bool {
		runJSON(t, a.http, &st, "status")
		return st["state"] == "leader"
	})
	if st["log_store"] != "boltdb" {
		t.Fatalf("status: %v", st)
	}
	if r := run(t, "--addr", a.http, "services", "create", "svc"); r.code != 0 {
		t.Fatalf("services create: %+v", r)
	}
	if r := run(t, "--addr", a.http, "publish", "svc", "t", "--file", writeFile(t, `[[1,"a"]]`)); r.code != 0 {
		t.Fatalf("publish: %+v", r)
	}
	a.kill()

	a = startAgent(t, dir, "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0")
	eventually(t, 20*time.Second, "a leader again", func() bool {
		runJSON(t, a.http, &st, "status")
		return st["state"] == "leader"
	})
	if st["log_store"] != "boltdb" {
		t.Fatalf("after restart: %v", st)
	}
	var got struct {
		Rows [][]any `json:"rows"`
	}
	eventually(t, 20*time.Second, "the table back", func() bool {
		r := run(t, "--addr", a.http, "--json", "get", "svc", "t")
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &got) == nil && len(got.Rows) == 1
	})
	a.kill()

	r := run(t, "agent", "--data-dir", dir, "--log-store", "wal", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stderr, "holds a boltdb Raft log") {
		t.Fatalf("agent --log-store wal on a boltdb data dir: exit %d, stderr %q", r.code, r.stderr)
	}
	wantFail(t, 2, []string{"--log-store", "want wal or boltdb"}, "agent", "--data-dir", t.TempDir(), "--log-store", "lsm")
}
