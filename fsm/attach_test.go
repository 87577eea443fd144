package fsm

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func attachedOf(t *testing.T, f *FSM, id string) ([]Attachment, []string) {
	t.Helper()
	svc, ok := f.Service(id)
	if !ok {
		t.Fatalf("service %q not found", id)
	}
	return svc.Attached, svc.Served
}

func TestAttachDetach(t *testing.T) {
	a := twoNodes(t)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "calc", Node: "n1", Kind: "external", Endpoints: []string{"ping", "publish"}, Exclusive: true})
	a.ok(CmdServiceRegister, ServiceRegister{ID: "gosvc", Node: "n1", Kind: "go"})

	// Refusals change nothing.
	a.fails(CmdServiceAttach, ServiceAttach{Service: "nope", Node: "n1", Session: "s1", Actions: []string{"add"}}, ErrServiceNotFound)
	a.fails(CmdServiceAttach, ServiceAttach{Service: "gosvc", Node: "n1", Session: "s1", Actions: []string{"add"}}, ErrInvalid)
	a.fails(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n9", Session: "s1", Actions: []string{"add"}}, ErrNodeNotFound)
	a.fails(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "", Actions: []string{"add"}}, ErrInvalid)
	a.fails(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "s1"}, ErrInvalid)
	a.fails(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "s1", Actions: []string{""}}, ErrInvalid)
	a.fails(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "s1", Actions: []string{strings.Repeat("x", 129)}}, ErrInvalid)
	many := make([]string, MaxAttachActions+1)
	for i := range many {
		many[i] = fmt.Sprint("a", i)
	}
	a.fails(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "s1", Actions: many}, ErrInvalid)
	if att, served := attachedOf(t, a.f, "calc"); att != nil || served != nil {
		t.Fatalf("refused attaches left %v %v", att, served)
	}

	a.ok(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n2", Session: "s2", Actions: []string{"mul", "add", "add"}})
	a.ok(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "s1", Actions: []string{"add"}})
	att, served := attachedOf(t, a.f, "calc")
	want := []Attachment{{Node: "n1", Session: "s1", Actions: []string{"add"}}, {Node: "n2", Session: "s2", Actions: []string{"add", "mul"}}}
	if fmt.Sprint(att) != fmt.Sprint(want) || !slices.Equal(served, []string{"add", "mul"}) {
		t.Fatalf("got %v served %v, want %v served [add mul]", att, served, want)
	}
	// The same session again replaces its actions; through another node it
	// is refused.
	a.ok(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "s1", Actions: []string{"div"}})
	a.fails(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n2", Session: "s1", Actions: []string{"div"}}, ErrInvalid)
	if att, served = attachedOf(t, a.f, "calc"); len(att) != 2 || !slices.Equal(att[0].Actions, []string{"div"}) || !slices.Equal(served, []string{"add", "div", "mul"}) {
		t.Fatalf("after re-attach got %v served %v", att, served)
	}
	if m := a.f.Attachments(); len(m) != 1 || len(m["calc"]) != 2 {
		t.Fatalf("Attachments() = %v, want calc's two", m)
	}

	// Detach: unknown sessions are no error; the served actions stay.
	a.ok(CmdServiceDetach, ServiceDetach{Service: "calc", Node: "n1", Session: "zz"})
	a.fails(CmdServiceDetach, ServiceDetach{Service: "nope", Node: "n1", Session: "s1"}, ErrServiceNotFound)
	a.fails(CmdServiceDetach, ServiceDetach{Service: "calc", Node: "n1"}, ErrInvalid)
	a.ok(CmdServiceDetach, ServiceDetach{Service: "calc", Node: "n1", Session: "s1"})
	if att, served = attachedOf(t, a.f, "calc"); len(att) != 1 || att[0].Session != "s2" || len(served) != 3 {
		t.Fatalf("after detach got %v served %v", att, served)
	}

	// A node's removal drops its attachments; the service lives on.
	a.ok(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "s3", Actions: []string{"add"}})
	a.ok(CmdNodeRemove, NodeRemove{ID: "n2"})
	if att, _ = attachedOf(t, a.f, "calc"); len(att) != 1 || att[0].Node != "n1" {
		t.Fatalf("after removing n2 got %v, want only n1's", att)
	}
	// A copy read from the FSM is the reader's own.
	svc, _ := a.f.Service("calc")
	svc.Attached[0].Actions[0] = "changed"
	if att, _ = attachedOf(t, a.f, "calc"); att[0].Actions[0] != "add" {
		t.Fatal("a copy of the record shares its attachments with the FSM")
	}
	// Deleted with the service.
	a.ok(CmdServiceUnregister, ServiceUnregister{ID: "calc"})
	if m := a.f.Attachments(); len(m) != 0 {
		t.Fatalf("attachments outlived their service: %v", m)
	}
}

func TestAttachLimits(t *testing.T) {
	a := twoNodes(t)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "calc", Node: "n1", Kind: "external", Exclusive: true})
	for i := range MaxAttachments {
		a.ok(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: fmt.Sprint("s", i), Actions: []string{"add"}})
	}
	a.fails(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "one-more", Actions: []string{"add"}}, ErrInvalid)
	// Re-attaching a recorded session is within the limit.
	a.ok(CmdServiceAttach, ServiceAttach{Service: "calc", Node: "n1", Session: "s0", Actions: []string{"mul"}})

	a.ok(CmdServiceRegister, ServiceRegister{ID: "wide", Node: "n1", Kind: "external", Exclusive: true})
	for i := range MaxServedActions / MaxAttachActions {
		acts := make([]string, MaxAttachActions)
		for j := range acts {
			acts[j] = fmt.Sprintf("a%d.%d", i, j)
		}
		a.ok(CmdServiceAttach, ServiceAttach{Service: "wide", Node: "n1", Session: fmt.Sprint("w", i), Actions: acts})
	}
	a.fails(CmdServiceAttach, ServiceAttach{Service: "wide", Node: "n1", Session: "w-last", Actions: []string{"new"}}, ErrInvalid)
	// Actions served before do not count again.
	a.ok(CmdServiceAttach, ServiceAttach{Service: "wide", Node: "n1", Session: "w-last", Actions: []string{"a0.0"}})
}

// attachLog returns randomLog's commands interleaved with attaches and
// detaches over the same small name space.
func attachLog(rng *rand.Rand, n int) [][]byte {
	pick := func(prefix string, k int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(k)) }
	var out [][]byte
	for _, e := range randomLog(rng, n) {
		out = append(out, e)
		switch rng.IntN(4) {
		case 0:
			out = append(out, MustEncode(CmdServiceRegister, ServiceRegister{ID: pick("x", 3), Node: pick("n", 4), Kind: "external", Exclusive: rng.IntN(2) == 0}))
		case 1:
			out = append(out, MustEncode(CmdServiceAttach, ServiceAttach{Service: pick("x", 3), Node: pick("n", 4), Session: pick("sess", 6), Actions: []string{pick("act", 4), pick("act", 4)}}))
		case 2:
			out = append(out, MustEncode(CmdServiceDetach, ServiceDetach{Service: pick("x", 3), Node: pick("n", 4), Session: pick("sess", 6)}))
		}
	}
	return out
}

// TestAttachDeterminism: two FSMs fed the same log with attachments end with
// the same snapshot bytes, and a snapshot restores to the same state.
func TestAttachDeterminism(t *testing.T) {
	sawAttached := false
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 11))
		log := attachLog(rng, 200)
		f1, f2 := New(), New()
		for i, e := range log {
			f1.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: e})
		}
		for i := 0; i < len(log); {
			k := 1 + rng.IntN(10)
			var logs []*raft.Log
			for j := i; j < i+k && j < len(log); j++ {
				logs = append(logs, &raft.Log{Index: uint64(j + 1), Type: raft.LogCommand, Data: log[j]})
			}
			f2.ApplyBatch(logs)
			i += k
		}
		b1, b2 := snapshotBytes(t, f1), snapshotBytes(t, f2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("seed %d: snapshots differ", seed)
		}
		f3 := New()
		if err := f3.Restore(io.NopCloser(bytes.NewReader(b1))); err != nil {
			t.Fatal(err)
		}
		if b3 := snapshotBytes(t, f3); !bytes.Equal(b1, b3) {
			t.Fatalf("seed %d: restored snapshot differs", seed)
		}
		if fmt.Sprint(f1.Attachments()) != fmt.Sprint(f3.Attachments()) {
			t.Fatalf("seed %d: restored attachments %v, want %v", seed, f3.Attachments(), f1.Attachments())
		}
		sawAttached = sawAttached || len(f1.Attachments()) > 0
	}
	if !sawAttached {
		t.Fatal("no log left an attachment: the test exercised nothing")
	}
}
