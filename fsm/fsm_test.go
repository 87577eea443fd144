package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

// applier feeds commands to an FSM with increasing log indexes.
type applier struct {
	t     testing.TB
	f     *FSM
	index uint64
}

func newApplier(t testing.TB) *applier { return &applier{t: t, f: New()} }

func (a *applier) apply(ct CommandType, body any) any {
	a.t.Helper()
	a.index++
	return a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: MustEncode(ct, body)})
}

func (a *applier) ok(ct CommandType, body any) {
	a.t.Helper()
	if r := a.apply(ct, body); r != nil {
		a.t.Fatalf("%s: got %v, want nil", ct, r)
	}
}

func (a *applier) fails(ct CommandType, body any, want error) {
	a.t.Helper()
	r := a.apply(ct, body)
	err, _ := r.(error)
	if !errors.Is(err, want) {
		a.t.Fatalf("%s: got %v, want %v", ct, r, want)
	}
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	sn, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := sn.(*snapshot).s.encode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestNodes(t *testing.T) {
	a := newApplier(t)
	a.ok(CmdNodeUpsert, NodeUpsert{ID: "n1", Addr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"})
	a.fails(CmdNodeUpsert, NodeUpsert{ID: "", Addr: "x"}, ErrInvalid)
	n, ok := a.f.Node("n1")
	if !ok || !n.Up || n.Addr != "127.0.0.1:1" || n.HTTPAddr != "127.0.0.1:2" {
		t.Fatalf("got %+v, want n1 up with its addresses", n)
	}
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n1", Up: false})
	if n, _ := a.f.Node("n1"); n.Up || n.Since != 3 {
		t.Fatalf("got %+v, want down since index 3", n)
	}
	a.fails(CmdNodeLiveness, NodeLiveness{ID: "nope", Up: true}, ErrNodeNotFound)
	a.ok(CmdNodeUpsert, NodeUpsert{ID: "n1", Addr: "127.0.0.1:9", HTTPAddr: "127.0.0.1:2"})
	if n, _ := a.f.Node("n1"); !n.Up || n.Addr != "127.0.0.1:9" {
		t.Fatalf("got %+v, want re-upserted node up at new address", n)
	}
	a.ok(CmdNodeRemove, NodeRemove{ID: "n1"})
	a.fails(CmdNodeRemove, NodeRemove{ID: "n1"}, ErrNodeNotFound)
	if got := len(a.f.Nodes()); got != 0 {
		t.Fatalf("got %d nodes, want 0", got)
	}
}

func twoNodes(t *testing.T) *applier {
	a := newApplier(t)
	a.ok(CmdNodeUpsert, NodeUpsert{ID: "n1", Addr: "a1"})
	a.ok(CmdNodeUpsert, NodeUpsert{ID: "n2", Addr: "a2"})
	return a
}

func TestServiceOwnershipAndFailover(t *testing.T) {
	a := twoNodes(t)
	a.fails(CmdServiceRegister, ServiceRegister{ID: "s", Node: "zz"}, ErrNodeNotFound)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n2", Endpoints: []string{"b", "a", "b"}})
	s, _ := a.f.Service("s")
	if s.Owner != "n2" || s.Incarnation != a.index || !slices.Equal(s.Endpoints, []string{"a", "b"}) {
		t.Fatalf("got %+v, want owner n2 at index %d with sorted endpoints", s, a.index)
	}
	inc := s.Incarnation
	a.ok(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n1"})
	// A create (exclusive) of an id taken fails, even on a node with none.
	a.fails(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n1", Exclusive: true}, ErrServiceExists)
	if s, _ = a.f.Service("s"); s.Owner != "n2" || s.Incarnation != inc || len(s.Instances) != 2 {
		t.Fatalf("standby changed ownership: %+v", s)
	}
	// Registered again on the owner's node (a restarted process): the same
	// owner under a new incarnation, so the old process is fenced.
	a.ok(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n2"})
	if s, _ = a.f.Service("s"); s.Owner != "n2" || s.Incarnation <= inc {
		t.Fatalf("re-registered on its owner's node: %+v, want a new incarnation above %d", s, inc)
	}
	inc = s.Incarnation
	// The owner's node dies: the standby takes over with a new incarnation.
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n2", Up: false})
	if s, _ = a.f.Service("s"); s.Owner != "n1" || s.Incarnation <= inc {
		t.Fatalf("got %+v, want failover to n1 with a higher incarnation", s)
	}
	inc = s.Incarnation
	// Both down: ownerless; n2 back: it owns again, newer incarnation.
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n1", Up: false})
	if s, _ = a.f.Service("s"); s.Owner != "" {
		t.Fatalf("got owner %q, want none with every node down", s.Owner)
	}
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n2", Up: true})
	if s, _ = a.f.Service("s"); s.Owner != "n2" || s.Incarnation <= inc {
		t.Fatalf("got %+v, want n2 owner with a higher incarnation", s)
	}
	a.fails(CmdServiceUnregister, ServiceUnregister{ID: "s", Node: "n9"}, ErrServiceNotFound)
	a.ok(CmdServiceUnregister, ServiceUnregister{ID: "s", Node: "n2"})
	if s, _ = a.f.Service("s"); s.Owner != "" || !slices.Equal(s.Instances, []string{"n1"}) {
		t.Fatalf("got %+v, want only the n1 instance, ownerless while n1 is down", s)
	}
	a.ok(CmdNodeRemove, NodeRemove{ID: "n1"})
	if _, ok := a.f.Service("s"); ok {
		t.Fatal("service survived the removal of its last instance's node")
	}
	a.fails(CmdServiceUnregister, ServiceUnregister{ID: "s"}, ErrServiceNotFound)
}

func TestSubscriptions(t *testing.T) {
	a := twoNodes(t)
	a.fails(CmdSubscribe, Subscribe{Subscriber: "sub", Publisher: "p", Table: "t"}, ErrServiceNotFound)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "sub", Node: "n1"})
	a.ok(CmdServiceRegister, ServiceRegister{ID: "sub2", Node: "n2"})
	a.fails(CmdSubscribe, Subscribe{Subscriber: "sub", Publisher: "p"}, ErrInvalid)
	// The publisher does not exist yet: the subscription stands anyway.
	a.ok(CmdSubscribe, Subscribe{Subscriber: "sub", Publisher: "p", Table: "t"})
	a.ok(CmdSubscribe, Subscribe{Subscriber: "sub2", Publisher: "p", Table: "t"})
	a.ok(CmdSubscribe, Subscribe{Subscriber: "sub2", Publisher: "p", Table: "u"})
	if got := a.f.SubscriberNodes("p", "t"); !slices.Equal(got, []string{"n1", "n2"}) {
		t.Fatalf("SubscriberNodes got %v, want [n1 n2]", got)
	}
	if got := a.f.SubscriptionsOf("sub2"); len(got) != 2 {
		t.Fatalf("SubscriptionsOf got %v, want 2", got)
	}
	a.ok(CmdUnsubscribe, Unsubscribe{Subscriber: "sub2", Publisher: "p", Table: "t"})
	a.ok(CmdUnsubscribe, Unsubscribe{Subscriber: "sub2", Publisher: "p", Table: "t"})
	if got := a.f.Subscribers("p", "t"); !slices.Equal(got, []string{"sub"}) {
		t.Fatalf("Subscribers got %v, want [sub]", got)
	}
	a.ok(CmdServiceUnregister, ServiceUnregister{ID: "sub"})
	if got := a.f.Subscriptions(); len(got) != 1 || got[0].Table != "u" {
		t.Fatalf("got %v, want only sub2's subscription to u", got)
	}
}

func TestPublishGrantsAndFencing(t *testing.T) {
	a := twoNodes(t)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "p", Node: "n1"})
	s, _ := a.f.Service("p")
	r := a.apply(CmdPublish, Publish{Requests: []PublishRequest{
		{Service: "p", Incarnation: s.Incarnation, Table: "t", Count: 3},
		{Service: "p", Incarnation: s.Incarnation, Table: "u", Count: 1},
		{Service: "p", Incarnation: s.Incarnation, Table: "t", Count: 2},
		{Service: "p", Incarnation: s.Incarnation + 1, Table: "t", Count: 1},
		{Service: "nope", Incarnation: 1, Table: "t", Count: 1},
		{Service: "p", Incarnation: s.Incarnation, Table: "t", Count: 0},
	}})
	g := r.([]PublishGrant)
	want := []uint64{1, 1, 4}
	for i, w := range want {
		if g[i].Err != nil || g[i].First != w {
			t.Errorf("grant %d: got %+v, want first %d", i, g[i], w)
		}
	}
	for i, e := range []error{ErrFenced, ErrServiceNotFound, ErrInvalid} {
		if !errors.Is(g[3+i].Err, e) {
			t.Errorf("grant %d: got %v, want %v", 3+i, g[3+i].Err, e)
		}
	}
	if got := a.f.Seqnum("p", "t"); got != 5 {
		t.Fatalf("seqnum got %d, want 5", got)
	}
	// Seqnums outlive the service: a recreated publisher never reuses one.
	a.ok(CmdServiceUnregister, ServiceUnregister{ID: "p"})
	a.ok(CmdServiceRegister, ServiceRegister{ID: "p", Node: "n2"})
	s, _ = a.f.Service("p")
	g = a.apply(CmdPublish, Publish{Requests: []PublishRequest{{Service: "p", Incarnation: s.Incarnation, Table: "t", Count: 1}}}).([]PublishGrant)
	if g[0].First != 6 {
		t.Fatalf("after re-creation got first %d, want 6", g[0].First)
	}
	if got := a.f.PublishedTables("p"); !slices.Equal(got, []string{"t", "u"}) {
		t.Fatalf("PublishedTables got %v", got)
	}
}

// A speculative request (First) is granted only as the table's next
// seqnum; After and Skip move a grant past seqnums a replica may hold.
func TestPublishFirstAfterSkip(t *testing.T) {
	a := twoNodes(t)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "p", Node: "n1"})
	s, _ := a.f.Service("p")
	inc := s.Incarnation
	g := a.apply(CmdPublish, Publish{Requests: []PublishRequest{
		{Service: "p", Incarnation: inc, Table: "t", Count: 2, First: 1},  // 1-2
		{Service: "p", Incarnation: inc, Table: "t", Count: 1, First: 2},  // taken
		{Service: "p", Incarnation: inc, Table: "t", Count: 1, First: 9},  // not next
		{Service: "p", Incarnation: inc, Table: "t", Count: 3, After: 10}, // 11-13
		{Service: "p", Incarnation: inc, Table: "t", Count: 1, After: 5},  // 14: After behind
		{Service: "p", Incarnation: inc, Table: "t", Count: 1, Skip: 100}, // 115
		{Service: "p", Incarnation: inc, Table: "t", Count: 1, First: 116, Skip: 1},
		{Service: "p", Incarnation: inc, Table: "t", Count: 1, Skip: MaxSkip + 1},
		{Service: "p", Incarnation: inc, Table: "new", Count: 1, Skip: 100}, // 1: never granted
	}}).([]PublishGrant)
	if g[8].Err != nil || g[8].First != 1 {
		t.Errorf("grant 8: got %+v, want first 1", g[8])
	}
	for i, w := range []uint64{1, 0, 0, 11, 14, 115} {
		switch {
		case w == 0 && !errors.Is(g[i].Err, ErrSeqnumTaken):
			t.Errorf("grant %d: got %+v, want %v", i, g[i], ErrSeqnumTaken)
		case w != 0 && (g[i].Err != nil || g[i].First != w):
			t.Errorf("grant %d: got %+v, want first %d", i, g[i], w)
		}
	}
	for i := 6; i < 8; i++ {
		if !errors.Is(g[i].Err, ErrInvalid) {
			t.Errorf("grant %d: got %+v, want %v", i, g[i], ErrInvalid)
		}
	}
	if got := a.f.Seqnum("p", "t"); got != 115 {
		t.Fatalf("seqnum got %d, want 115", got)
	}
}

func TestDatasources(t *testing.T) {
	a := twoNodes(t)
	ds := Datasource{ID: "d1", Name: "files", Driver: "file", Enabled: true, Config: map[string]any{"path": "/x", "nested": map[string]any{"k": []any{"v"}}}}
	a.ok(CmdDatasourceAdd, DatasourceAdd{Datasource: ds})
	a.fails(CmdDatasourceAdd, DatasourceAdd{Datasource: ds}, ErrDatasourceExists)
	dup := ds
	dup.ID = "d2"
	a.fails(CmdDatasourceAdd, DatasourceAdd{Datasource: dup}, ErrDatasourceExists)
	a.fails(CmdDatasourceAdd, DatasourceAdd{Datasource: Datasource{ID: "d3"}}, ErrInvalid)
	off := false
	desc := "new"
	a.ok(CmdDatasourceUpdate, DatasourceUpdate{ID: "d1", Enabled: &off, Description: &desc, Config: map[string]any{"path": "/y"}})
	a.fails(CmdDatasourceUpdate, DatasourceUpdate{ID: "zz"}, ErrDatasourceNotFound)
	got, _ := a.f.Datasource("d1")
	if got.Enabled || got.Description != "new" || got.Config["path"] != "/y" {
		t.Fatalf("got %+v after update", got)
	}
	a.ok(CmdDatasourcePlace, DatasourcePlace{ID: "d1", Node: "n2"})
	a.fails(CmdDatasourcePlace, DatasourcePlace{ID: "d1", Node: "n9"}, ErrNodeNotFound)
	if got, _ = a.f.Datasource("d1"); got.Node != "n2" || got.Incarnation != a.index-1 {
		t.Fatalf("got %+v, want placed on n2", got)
	}
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n2", Up: false})
	if got, _ = a.f.Datasource("d1"); got.Node != "" {
		t.Fatalf("datasource still placed on dead node: %+v", got)
	}
	a.ok(CmdDatasourceDelete, DatasourceDelete{ID: "d1"})
	a.fails(CmdDatasourceDelete, DatasourceDelete{ID: "d1"}, ErrDatasourceNotFound)
}

func TestBatch(t *testing.T) {
	a := twoNodes(t)
	r := a.apply(CmdBatch, Batch{Commands: [][]byte{
		MustEncode(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n1"}),
		MustEncode(CmdSubscribe, Subscribe{Subscriber: "nope", Publisher: "p", Table: "t"}),
	}})
	res := r.([]any)
	if res[0] != nil || !errors.Is(res[1].(error), ErrServiceNotFound) {
		t.Fatalf("got %v, want [nil, service not found]", res)
	}
	nested := MustEncode(CmdBatch, Batch{})
	if _, _, err := Decode(MustEncode(CmdBatch, Batch{Commands: [][]byte{nested}})); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("nested batch: got %v, want ErrBadCommand", err)
	}
}

func TestApplyPanicsOnUndecodableEntry(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Apply of garbage did not panic")
		}
	}()
	New().Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{200, 1, 2}})
}

func TestChangedIsClosedOnApply(t *testing.T) {
	a := newApplier(t)
	ch := a.f.Changed()
	a.ok(CmdNodeUpsert, NodeUpsert{ID: "n1", Addr: "a"})
	select {
	case <-ch:
	default:
		t.Fatal("Changed channel not closed after Apply")
	}
}

// randomLog returns n random, mostly valid commands over a small name space.
func randomLog(rng *rand.Rand, n int) [][]byte {
	pick := func(prefix string, k int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(k)) }
	var out [][]byte
	for range n {
		var e []byte
		switch rng.IntN(13) {
		case 0:
			e = MustEncode(CmdNodeUpsert, NodeUpsert{ID: pick("n", 4), Addr: pick("a", 8)})
		case 1:
			e = MustEncode(CmdNodeLiveness, NodeLiveness{ID: pick("n", 4), Up: rng.IntN(2) == 0})
		case 2:
			e = MustEncode(CmdNodeRemove, NodeRemove{ID: pick("n", 5)})
		case 3:
			e = MustEncode(CmdServiceRegister, ServiceRegister{ID: pick("s", 6), Node: pick("n", 4), Endpoints: []string{pick("e", 3)}})
		case 4:
			e = MustEncode(CmdServiceUnregister, ServiceUnregister{ID: pick("s", 6), Node: pick("n", 5)})
		case 5:
			e = MustEncode(CmdSubscribe, Subscribe{Subscriber: pick("s", 6), Publisher: pick("s", 6), Table: pick("t", 3)})
		case 6:
			e = MustEncode(CmdUnsubscribe, Unsubscribe{Subscriber: pick("s", 6), Publisher: pick("s", 6), Table: pick("t", 3)})
		case 7:
			e = MustEncode(CmdPublish, Publish{Requests: []PublishRequest{{Service: pick("s", 6), Incarnation: uint64(rng.IntN(40)), Table: pick("t", 3), Count: uint64(rng.IntN(3))}}})
		case 8:
			e = MustEncode(CmdDatasourceAdd, DatasourceAdd{Datasource: Datasource{ID: pick("d", 3), Name: pick("name", 3), Driver: "file", Config: map[string]any{pick("k", 5): pick("v", 5), "z": int64(rng.IntN(9))}}})
		case 9:
			e = MustEncode(CmdDatasourcePlace, DatasourcePlace{ID: pick("d", 3), Node: pick("n", 4)})
		case 10:
			e = MustEncode(CmdTokenCreate, TokenCreate{Token: Token{ID: pick("tok", 4), Name: "x", Role: []string{"read", "write", "admin", "bad"}[rng.IntN(4)], Hash: fmt.Sprintf("%064d", rng.IntN(9))}})
		case 11:
			e = MustEncode(CmdTokenRevoke, TokenRevoke{ID: pick("tok", 4)})
		default:
			// A command sent under an id, or resent: ids repeat often.
			if len(out) == 0 || out[len(out)-1][0] == byte(CmdOnce) {
				continue
			}
			e = MustEncode(CmdOnce, Once{Origin: pick("o", 3), Seq: uint64(rng.IntN(8)), Low: uint64(rng.IntN(4)), Cmd: out[len(out)-1]})
		}
		out = append(out, e)
	}
	return out
}

// TestSameLogSameSnapshot is the determinism property: two FSMs fed the same
// log end with byte-identical snapshots, and a snapshot restores to a state
// whose snapshot is the same bytes.
func TestSameLogSameSnapshot(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 7))
		log := randomLog(rng, 300)
		f1, f2 := New(), New()
		for i, e := range log {
			l := &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: e}
			f1.Apply(l)
		}
		// f2 applies the same log in batches of varying size.
		for i := 0; i < len(log); {
			n := 1 + rng.IntN(10)
			var logs []*raft.Log
			for j := i; j < i+n && j < len(log); j++ {
				logs = append(logs, &raft.Log{Index: uint64(j + 1), Type: raft.LogCommand, Data: log[j]})
			}
			f2.ApplyBatch(logs)
			i += n
		}
		b1, b2 := snapshotBytes(t, f1), snapshotBytes(t, f2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("seed %d: snapshots differ (%d vs %d bytes)", seed, len(b1), len(b2))
		}
		f3 := New()
		if err := f3.Restore(io.NopCloser(bytes.NewReader(b1))); err != nil {
			t.Fatal(err)
		}
		if b3 := snapshotBytes(t, f3); !bytes.Equal(b1, b3) {
			t.Fatalf("seed %d: restored snapshot differs", seed)
		}
		if f3.Index() != uint64(len(log)) {
			t.Fatalf("restored index got %d, want %d", f3.Index(), len(log))
		}
	}
}

func TestPersistThroughSink(t *testing.T) {
	a := twoNodes(t)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n1"})
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, a.index, 1, raft.Configuration{}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := a.f.Snapshot()
	if err := sn.Persist(sink); err != nil {
		t.Fatal(err)
	}
	metas, _ := store.List()
	_, rc, err := store.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	f := New()
	if err := f.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if s, ok := f.Service("s"); !ok || s.Owner != "n1" {
		t.Fatalf("restored service got %+v", s)
	}
	if err := New().Restore(io.NopCloser(bytes.NewReader([]byte{0xc1}))); err == nil {
		t.Fatal("Restore of garbage succeeded")
	}
}

func FuzzDecode(f *testing.F) {
	for _, e := range randomLog(rand.New(rand.NewPCG(1, 2)), 40) {
		f.Add(e)
	}
	f.Add(MustEncode(CmdBatch, Batch{Commands: [][]byte{MustEncode(CmdNodeRemove, NodeRemove{ID: "x"})}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, cmd, err := Decode(data)
		if err != nil {
			return
		}
		// A decodable command must apply without panicking.
		s := newState()
		s.nodes["n0"] = &Node{ID: "n0", Up: true}
		cmd.apply(s, 1)
	})
}

func TestTokens(t *testing.T) {
	a := newApplier(t)
	if a.f.AuthEnabled() {
		t.Fatal("auth on with no token")
	}
	hash := fmt.Sprintf("%064x", 42)
	// A first token that is not an admin one would lock administration out.
	for _, role := range []string{"read", "write"} {
		a.fails(CmdTokenCreate, TokenCreate{Token: Token{ID: "t0", Role: role, Hash: fmt.Sprintf("%064x", 7)}}, ErrInvalid)
	}
	if a.f.AuthEnabled() {
		t.Fatal("a refused token turned auth on")
	}
	a.ok(CmdTokenCreate, TokenCreate{Token: Token{ID: "t1", Name: "ops", Role: "admin", Hash: hash}})
	a.ok(CmdTokenCreate, TokenCreate{Token: Token{ID: "t4", Role: "read", Hash: fmt.Sprintf("%064x", 8)}})
	a.fails(CmdTokenRevoke, TokenRevoke{ID: "t1"}, ErrInvalid) // the last admin, with a read token left
	a.ok(CmdTokenRevoke, TokenRevoke{ID: "t4"})
	a.fails(CmdTokenCreate, TokenCreate{Token: Token{ID: "t1", Role: "admin", Hash: hash}}, ErrInvalid)
	// Another id, the same secret: revoking one would leave it working.
	a.fails(CmdTokenCreate, TokenCreate{Token: Token{ID: "t5", Role: "admin", Hash: hash}}, ErrInvalid)
	a.fails(CmdTokenCreate, TokenCreate{Token: Token{ID: "t2", Role: "root", Hash: fmt.Sprintf("%064x", 9)}}, ErrInvalid)
	a.fails(CmdTokenCreate, TokenCreate{Token: Token{ID: "t3", Role: "read", Hash: "short"}}, ErrInvalid)
	if tok, ok := a.f.TokenByHash(hash); !ok || tok.ID != "t1" || !a.f.AuthEnabled() {
		t.Fatalf("TokenByHash got %+v %v", tok, ok)
	}
	a.ok(CmdTokenRevoke, TokenRevoke{ID: "t1"})
	a.fails(CmdTokenRevoke, TokenRevoke{ID: "t1"}, ErrTokenNotFound)
	if _, ok := a.f.TokenByHash(hash); ok || len(a.f.Tokens()) != 0 {
		t.Fatal("revoked token still there")
	}
}

// TestReshapedAndUnsubscribed: publications wake neither Reshaped nor move
// Unsubscribed; subscribes wake Reshaped only; anything else both.
func TestReshapedAndUnsubscribed(t *testing.T) {
	f := New()
	idx := uint64(0)
	apply := func(ct CommandType, body any) {
		t.Helper()
		idx++
		data, err := Encode(ct, body)
		if err != nil {
			t.Fatal(err)
		}
		if err, ok := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(error); ok && err != nil {
			t.Fatalf("%s: %v", ct, err)
		}
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	apply(CmdNodeUpsert, NodeUpsert{ID: "n1", Addr: "a"})
	apply(CmdServiceRegister, ServiceRegister{ID: "p", Node: "n1"})
	apply(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n1"})
	inc := f.s.services["p"].Incarnation

	re, un := f.Reshaped(), f.Unsubscribed()
	apply(CmdPublish, Publish{Requests: []PublishRequest{{Service: "p", Incarnation: inc, Table: "t", Count: 3}}})
	if closed(re) || f.Unsubscribed() != un {
		t.Fatal("a publication woke Reshaped or moved Unsubscribed")
	}
	apply(CmdSubscribe, Subscribe{Subscriber: "s", Publisher: "p", Table: "t"})
	if !closed(re) || f.Unsubscribed() != un {
		t.Fatal("a subscribe did not wake Reshaped, or moved Unsubscribed")
	}
	re = f.Reshaped()
	apply(CmdUnsubscribe, Unsubscribe{Subscriber: "s", Publisher: "p", Table: "t"})
	if !closed(re) || f.Unsubscribed() == un {
		t.Fatal("an unsubscribe did not wake Reshaped and move Unsubscribed")
	}
}
