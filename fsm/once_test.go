package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

func once(origin string, seq, low uint64, ct CommandType, body any) Once {
	return Once{Origin: origin, Seq: seq, Low: low, Cmd: MustEncode(ct, body)}
}

func TestOnceAppliesAResendOnce(t *testing.T) {
	a := twoNodes(t)
	reg := once("n2/1", 1, 1, CmdServiceRegister, ServiceRegister{ID: "s", Node: "n1", Kind: "k"})
	a.ok(CmdOnce, reg)
	s, _ := a.f.Service("s")
	// The resend answers as the first did, and changes nothing.
	before := fmt.Sprint(a.f.Services(), a.f.Nodes())
	a.ok(CmdOnce, reg)
	if s2, _ := a.f.Service("s"); s2.Incarnation != s.Incarnation || len(s2.Instances) != 1 {
		t.Fatalf("resend changed the service: %+v then %+v", s, s2)
	}
	if after := fmt.Sprint(a.f.Services(), a.f.Nodes()); after != before {
		t.Fatalf("resend changed the registry:\n%s\n%s", before, after)
	}
	// The first result is the answer even where applying again would
	// answer otherwise: a second unregister is refused.
	unreg := once("n2/1", 2, 1, CmdServiceUnregister, ServiceUnregister{ID: "gone"})
	a.ok(CmdServiceRegister, ServiceRegister{ID: "gone", Node: "n2"})
	a.ok(CmdOnce, unreg)
	a.ok(CmdOnce, unreg)
	a.fails(CmdServiceUnregister, ServiceUnregister{ID: "gone"}, ErrServiceNotFound)

	// A publish grant is answered again, not granted again.
	pub := once("n2/1", 3, 1, CmdPublish, Publish{Requests: []PublishRequest{{Service: "s", Incarnation: s.Incarnation, Table: "t", Count: 5}}})
	g1 := a.apply(CmdOnce, pub).([]PublishGrant)
	g2 := a.apply(CmdOnce, pub).([]PublishGrant)
	if g1[0].First != 1 || g2[0].First != 1 || a.f.Seqnum("s", "t") != 5 {
		t.Fatalf("grants %+v then %+v, seqnum %d: want first 1 twice and seqnum 5", g1, g2, a.f.Seqnum("s", "t"))
	}
	// Another origin with the same seq is another command.
	g3 := a.apply(CmdOnce, once("n1/9", 3, 1, CmdPublish, Publish{Requests: []PublishRequest{{Service: "s", Incarnation: s.Incarnation, Table: "t", Count: 1}}})).([]PublishGrant)
	if g3[0].First != 6 {
		t.Fatalf("other origin's grant got first %d, want 6", g3[0].First)
	}
}

func TestOnceForgetsBelowLow(t *testing.T) {
	a := twoNodes(t)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "a", Node: "n1"})
	sub := func(seq, low uint64, table string) Once {
		return once("n1/1", seq, low, CmdSubscribe, Subscribe{Subscriber: "a", Publisher: "b", Table: table})
	}
	a.ok(CmdOnce, sub(1, 1, "t1"))
	a.ok(CmdOnce, sub(2, 1, "t2"))
	// Seq 1 answered: the origin says so with Low 2, and a late copy of
	// seq 1 is refused, not applied.
	a.ok(CmdOnce, sub(3, 2, "t3"))
	a.fails(CmdOnce, sub(1, 1, "late"), ErrAnswered)
	if got := a.f.Subscribers("b", "late"); len(got) != 0 {
		t.Fatalf("a command below Low was applied: %v", got)
	}
	if o := a.f.s.origins["n1/1"]; o.low != 2 || len(o.done) != 2 {
		t.Fatalf("origin holds low %d and %d results, want 2 and 2", o.low, len(o.done))
	}
}

func TestOnceSurvivesASnapshot(t *testing.T) {
	a := twoNodes(t)
	reg := once("n2/1", 1, 1, CmdServiceRegister, ServiceRegister{ID: "s", Node: "n1", Kind: "k"})
	a.ok(CmdOnce, reg)
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, a.f)))); err != nil {
		t.Fatal(err)
	}
	// The restored FSM knows seq 1 was applied, not what it answered.
	a.f = f
	a.fails(CmdOnce, reg, ErrAnswered)
	a.fails(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n1", Kind: "other"}, ErrServiceExists)
	if s, _ := f.Service("s"); len(s.Instances) != 1 || s.Kind != "k" {
		t.Fatalf("restored service changed: %+v", s)
	}
}

func TestOnceBoundsItsMemory(t *testing.T) {
	a := twoNodes(t)
	for i := range maxOrigins + 10 {
		a.ok(CmdOnce, once("o"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)), 1, 1, CmdNodeLiveness, NodeLiveness{ID: "n1", Up: true}))
	}
	if n := len(a.f.s.origins); n != maxOrigins {
		t.Fatalf("%d origins held, want %d", n, maxOrigins)
	}
	// An origin that never raises Low (a stuck command) holds at most
	// maxOnceHeld results.
	for seq := range uint64(maxOnceHeld + 5) {
		a.ok(CmdOnce, once("stuck", seq+1, 0, CmdNodeLiveness, NodeLiveness{ID: "n1", Up: true}))
	}
	if o := a.f.s.origins["stuck"]; len(o.done) > maxOnceHeld || o.low != 6 {
		t.Fatalf("stuck origin holds %d results, low %d; want at most %d and low 6", len(o.done), o.low, maxOnceHeld)
	}
}

func TestOnceDecodeRefusesNesting(t *testing.T) {
	inner := MustEncode(CmdNodeLiveness, NodeLiveness{ID: "n1"})
	for name, data := range map[string][]byte{
		"once in once":  MustEncode(CmdOnce, Once{Origin: "o", Cmd: MustEncode(CmdOnce, Once{Origin: "o", Cmd: inner})}),
		"once in batch": MustEncode(CmdBatch, Batch{Commands: [][]byte{MustEncode(CmdOnce, Once{Origin: "o", Cmd: inner})}}),
		"no origin":     MustEncode(CmdOnce, Once{Cmd: inner}),
		"bad inner":     MustEncode(CmdOnce, Once{Origin: "o", Cmd: []byte{0xff}}),
		"empty inner":   MustEncode(CmdOnce, Once{Origin: "o"}),
	} {
		if _, _, err := Decode(data); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: Decode got %v, want ErrBadCommand", name, err)
		}
	}
	if _, _, err := Decode(MustEncode(CmdOnce, Once{Origin: "o", Cmd: MustEncode(CmdBatch, Batch{Commands: [][]byte{inner}})})); err != nil {
		t.Fatalf("a batch under once: %v", err)
	}
}
