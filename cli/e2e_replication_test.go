package cli_test

import (
	"os"
	"reflect"
	"testing"
	"time"
)

// serviceShow is `dse services show --json`.
type serviceShow struct {
	ServiceID   string `json:"service_id"`
	NodeID      string `json:"node_id"`
	Incarnation uint64 `json:"incarnation"`
	Replicas    []struct {
		NodeID string `json:"node_id"`
		InSync bool   `json:"in_sync"`
	} `json:"replicas"`
}

func (s serviceShow) inSync() int {
	n := 0
	for _, r := range s.Replicas {
		if r.InSync {
			n++
		}
	}
	return n
}

// TestE2EReplicatedServiceOutlivesItsOwner is issue 18's check on real
// agents: a service with 3 replicas; publish; a watch on n3; SIGKILL the
// owner and delete its data dir (a lost machine). get on the others shows
// the acknowledged rows, services show names a new owner, a publish
// through any node succeeds with a higher seqnum, and the watch ends with
// the new content. Remove the dead member and join a new node: the service
// gets back to 3 replicas in sync.
func TestE2EReplicatedServiceOutlivesItsOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1 := startAgent(t, t.TempDir(), "--id", "n1", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap", "--liveness-grace", "1s")
	n2 := startAgent(t, t.TempDir(), "--id", "n2", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http, "--liveness-grace", "1s")
	n3 := startAgent(t, t.TempDir(), "--id", "n3", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n1.http, "--liveness-grace", "1s")
	eventually(t, 20*time.Second, "3 members", func() bool {
		var ms []member
		return tryJSON(n3.http, &ms, "members", "list") && len(ms) == 3 && leaderOf(n1, n2, n3) != ""
	})
	var show serviceShow
	runJSON(t, n1.http, &show, "services", "create", "inv", "--replicas", "3")
	runJSON(t, n2.http, &show, "services", "show", "inv")
	if show.NodeID != "n1" || len(show.Replicas) != 3 || show.inSync() != 3 {
		t.Fatalf("services show after create: %+v, want n1 owning, 3 replicas in sync", show)
	}
	var last map[string]any
	for i, rows := range []string{`[["web1","up"]]`, `[["web1","up"],["db1","up"]]`, `[["web1","up"],["db1","down"]]`} {
		last = publish(t, []string{n1.http, n2.http, n3.http}[i%3], "inv", "hosts", rows)
	}
	w := startWatch(t, n3.http, "inv", "hosts")
	eventually(t, 20*time.Second, "the watch's snapshot", func() bool { return len(w.snapshot()) >= 1 })
	inc := show.Incarnation

	n1.kill()
	killed := time.Now()
	if err := os.RemoveAll(n1.dir); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	took := eventually(t, 20*time.Second, "get on a surviving node", func() bool {
		return tryJSON(n2.http, &got, "get", "inv", "hosts") && got["seqnum"].(float64) >= last["seqnum"].(float64)
	})
	want := []any{[]any{"db1", "down"}, []any{"web1", "up"}}
	if !reflect.DeepEqual(got["rows"], want) {
		t.Fatalf("get after the owner's loss: %v, want the acknowledged %v", got, want)
	}
	t.Logf("get answered %s after the SIGKILL", took)
	eventually(t, 20*time.Second, "a new owner", func() bool {
		return tryJSON(n3.http, &show, "services", "show", "inv") && show.NodeID != "" && show.NodeID != "n1" && show.Incarnation > inc
	})
	t.Logf("a new owner, %s, %s after the SIGKILL", show.NodeID, time.Since(killed))
	after := publish(t, n3.http, "inv", "hosts", `[["web1","up"],["db1","up"],["app1","up"]]`)
	if after["seqnum"].(float64) <= last["seqnum"].(float64) {
		t.Fatalf("publish after the failover: %v, want a seqnum above %v", after, last["seqnum"])
	}
	eventually(t, 20*time.Second, "the watch saw the new content", func() bool {
		ls := w.snapshot()
		return ls[len(ls)-1]["seqnum"] == after["seqnum"]
	})

	// The lost machine for good: remove it; a fresh node joins and gets the
	// third replica.
	if r := run(t, "--addr", n2.http, "members", "remove", "n1"); r.code != 0 {
		t.Fatalf("members remove n1: %+v", r)
	}
	startAgent(t, t.TempDir(), "--id", "n4", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--join", n2.http, "--liveness-grace", "1s")
	eventually(t, 30*time.Second, "3 replicas in sync again", func() bool {
		return tryJSON(n2.http, &show, "services", "show", "inv") && len(show.Replicas) == 3 && show.inSync() == 3
	})
	runJSON(t, n2.http, &got, "get", "inv", "hosts")
	if got["seqnum"] != after["seqnum"] || len(got["rows"].([]any)) != 3 {
		t.Fatalf("get at the end: %v", got)
	}
}
