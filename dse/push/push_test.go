package push

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"dse.dev/dse/dse/table"
	"dse.dev/dse/dse/wire"
	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

type fakeRegistry struct {
	subs     map[[2]string][]string
	replicas map[string][]string
	nodes    map[string]fsm.Node
	reshaped chan struct{} // nil: never changes
}

func (r fakeRegistry) ReplicaNodes(p string) []string { return append([]string(nil), r.replicas[p]...) }
func (r fakeRegistry) SubscriberNodes(p, t string) []string {
	var out []string
	for _, n := range r.subs[[2]string{p, t}] {
		if !slices.Contains(r.replicas[p], n) {
			out = append(out, n)
		}
	}
	return out
}

func (r fakeRegistry) Destinations(p, t string) []string { return r.subs[[2]string{p, t}] }
func (r fakeRegistry) Node(id string) (fsm.Node, bool)   { n, ok := r.nodes[id]; return n, ok }
func (r fakeRegistry) Reshaped() <-chan struct{}         { return r.reshaped }

type sent struct {
	addr string
	typ  byte
	body []byte
}

type fakeSender struct {
	frames []sent
	full   map[string]bool
}

func (s *fakeSender) Send(addr string, typ byte, body []byte) error {
	if s.full[addr] {
		return errors.New("queue full")
	}
	s.frames = append(s.frames, sent{addr, typ, body})
	return nil
}

func newPusher(reg fakeRegistry, s *fakeSender, local *[]*table.Publication, dropped prometheus.Counter) *Pusher {
	return New(Config{Node: "n1", Registry: reg, Sender: s, Dropped: dropped, Local: func(pubs []*table.Publication, _ int) { *local = append(*local, pubs...) }})
}

func decode(t *testing.T, body []byte) []*table.Publication {
	t.Helper()
	pubs, err := table.DecodeBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	return pubs
}

// TestPushGoesOnceToEachSubscriberNode: a publication goes to each node
// with a subscriber (sharing one frame where the lists are the same), to
// local subscribers directly, to no down node; one that does not encode is
// left out and the rest still go.
func TestPushGoesOnceToEachSubscriberNode(t *testing.T) {
	reg := fakeRegistry{
		subs: map[[2]string][]string{{"p", "a"}: {"n1", "n2", "n3", "n4"}, {"p", "b"}: {"n2", "n3"}},
		nodes: map[string]fsm.Node{
			"n2": {ID: "n2", Addr: "a2", Up: true}, "n3": {ID: "n3", Addr: "a3", Up: true}, "n4": {ID: "n4", Addr: "a4"},
		},
	}
	s := &fakeSender{}
	var local []*table.Publication
	p := newPusher(reg, s, &local, nil)
	good := &table.Publication{Publisher: "p", Table: "a", Seqnum: 1, Snapshot: true, Rows: []table.Row{{int64(1)}}}
	bad := &table.Publication{Publisher: "p", Table: "a", Seqnum: 2, Add: []table.Row{{int(2)}}} // int is not canonical
	other := &table.Publication{Publisher: "p", Table: "b", Seqnum: 1, Snapshot: true}
	p.Push([]*table.Publication{good, bad, other})
	if len(s.frames) != 2 || s.frames[0].addr != "a2" || s.frames[1].addr != "a3" {
		t.Fatalf("frames to %v, want one each to a2 and a3 (a4 is down)", s.frames)
	}
	if &s.frames[0].body[0] != &s.frames[1].body[0] {
		t.Fatal("two nodes with the same publications got two frames")
	}
	got := decode(t, s.frames[0].body)
	if len(got) != 2 || got[0].Table != "a" || got[0].Seqnum != 1 || got[1].Table != "b" {
		t.Fatalf("pushed %v", got)
	}
	if len(local) != 2 || local[0] != good || local[1] != bad {
		t.Fatalf("local subscribers got %v", local)
	}
}

// TestPushFollowsRegistryChanges: the nodes a table's publications go to
// are asked of the registry again once it changes more than seqnums, and
// only then.
func TestPushFollowsRegistryChanges(t *testing.T) {
	reg := fakeRegistry{
		subs: map[[2]string][]string{{"p", "a"}: {"n2"}},
		nodes: map[string]fsm.Node{
			"n2": {ID: "n2", Addr: "a2", Up: true}, "n3": {ID: "n3", Addr: "a3", Up: true},
		},
		reshaped: make(chan struct{}),
	}
	s := &fakeSender{}
	var local []*table.Publication
	p := newPusher(reg, s, &local, nil)
	push := func(seq uint64) string {
		s.frames = nil
		p.Push([]*table.Publication{{Publisher: "p", Table: "a", Seqnum: seq, Snapshot: true}})
		var to []string
		for _, f := range s.frames {
			to = append(to, f.addr)
		}
		return strings.Join(to, ",")
	}
	if got := push(1); got != "a2" {
		t.Fatalf("first push to %q, want a2", got)
	}
	reg.subs[[2]string{"p", "a"}] = []string{"n3"}
	if got := push(2); got != "a2" {
		t.Fatalf("push before the registry's change is told to %q, want a2 (cached)", got)
	}
	close(reg.reshaped)
	if got := push(3); got != "a3" {
		t.Fatalf("push after the registry changed to %q, want a3", got)
	}
}

// TestPushReplicasGoesToReplicasOnly: publications sent ahead of their
// grant go to the publisher's replica nodes alone, in frames no
// subscriber reads, and to this node's own replica directly, never to
// its subscribers.
func TestPushReplicasGoesToReplicasOnly(t *testing.T) {
	reg := fakeRegistry{
		subs:     map[[2]string][]string{{"p", "a"}: {"n1", "n2", "n4"}},
		replicas: map[string][]string{"p": {"n1", "n2", "n3"}},
		nodes: map[string]fsm.Node{
			"n2": {ID: "n2", Addr: "a2", Up: true}, "n3": {ID: "n3", Addr: "a3", Up: true}, "n4": {ID: "n4", Addr: "a4", Up: true},
		},
	}
	s := &fakeSender{}
	var local, localReplica []*table.Publication
	p := newPusher(reg, s, &local, nil)
	p.cfg.LocalReplica = func(pubs []*table.Publication) { localReplica = append(localReplica, pubs...) }
	pub := &table.Publication{Publisher: "p", Table: "a", Seqnum: 7, Add: []table.Row{{int64(1)}}}
	p.PushReplicas([]*table.Publication{pub})
	if len(s.frames) != 2 || s.frames[0].addr != "a2" || s.frames[1].addr != "a3" {
		t.Fatalf("frames to %v, want one each to a2 and a3 (n4 only subscribes)", s.frames)
	}
	for _, f := range s.frames {
		if f.typ != wire.ReplicaPush {
			t.Fatalf("frame type %d, want wire.ReplicaPush", f.typ)
		}
		if got := decode(t, f.body); len(got) != 1 || got[0].Seqnum != 7 {
			t.Fatalf("pushed %v", got)
		}
	}
	if len(local) != 0 || len(localReplica) != 1 || localReplica[0] != pub {
		t.Fatalf("local subscribers got %v, local replica %v", local, localReplica)
	}
	// Once granted, it goes to the subscribers' nodes that are no
	// replicas (the fake registry's subscribers that are replicas stand
	// for replicas only).
	s.frames = nil
	p.PushSubscribers([]*table.Publication{pub})
	if len(s.frames) != 1 || s.frames[0].addr != "a4" || s.frames[0].typ != wire.Publication {
		t.Fatalf("granted frames %v, want one to a4", s.frames)
	}
}

// TestPushCutsFramesAndCountsDrops: a long list goes in frames under the
// limit, each decodable alone; frames a full queue refuses are counted.
func TestPushCutsFramesAndCountsDrops(t *testing.T) {
	reg := fakeRegistry{
		subs:  map[[2]string][]string{{"p", "t"}: {"n2", "n3"}},
		nodes: map[string]fsm.Node{"n2": {ID: "n2", Addr: "a2", Up: true}, "n3": {ID: "n3", Addr: "a3", Up: true}},
	}
	s := &fakeSender{full: map[string]bool{"a3": true}}
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"})
	var local []*table.Publication
	p := newPusher(reg, s, &local, dropped)
	big := strings.Repeat("x", 100<<10)
	var pubs []*table.Publication
	for i := range 30 { // 3 MB
		pubs = append(pubs, &table.Publication{Publisher: "p", Table: "t", Seqnum: uint64(i + 1), Add: []table.Row{{big, int64(i)}}})
	}
	p.Push(pubs)
	total := 0
	for _, f := range s.frames {
		if len(f.body) > maxFrame+(110<<10) {
			t.Fatalf("a frame of %d bytes", len(f.body))
		}
		got := decode(t, f.body)
		if got[0].Seqnum != uint64(total+1) {
			t.Fatalf("frame starts at %d, want %d", got[0].Seqnum, total+1)
		}
		total += len(got)
	}
	if total != 30 || len(s.frames) < 3 {
		t.Fatalf("%d publications in %d frames", total, len(s.frames))
	}
	var m dto.Metric
	dropped.Write(&m)
	if got := m.GetCounter().GetValue(); got != 30 {
		t.Fatalf("dropped %v, want 30 (every frame to a3)", got)
	}
}

// TestPushFaultsTargetAPeerAndATable: a fault rule for one peer and one
// table drops that table's publications to that peer only.
func TestPushFaultsTargetAPeerAndATable(t *testing.T) {
	reg := fakeRegistry{
		subs:  map[[2]string][]string{{"p", "a"}: {"n2", "n3"}, {"p", "b"}: {"n2", "n3"}},
		nodes: map[string]fsm.Node{"n2": {ID: "n2", Addr: "a2", Up: true}, "n3": {ID: "n3", Addr: "a3", Up: true}},
	}
	s := &fakeSender{}
	faults := transport.NewFaults(1)
	faults.Add(transport.Rule{Peer: "a2", Publisher: "p", Table: "a", Drop: 1, Frames: 1})
	p := New(Config{Node: "n1", Registry: reg, Sender: s, Faults: faults})
	pubs := []*table.Publication{
		{Publisher: "p", Table: "a", Seqnum: 1, Snapshot: true},
		{Publisher: "p", Table: "b", Seqnum: 1, Snapshot: true},
	}
	p.Push(pubs)
	for _, f := range s.frames {
		got := decode(t, f.body)
		switch f.addr {
		case "a2":
			if len(got) != 1 || got[0].Table != "b" {
				t.Fatalf("a2 got %v, want b's only", got)
			}
		case "a3":
			if len(got) != 2 {
				t.Fatalf("a3 got %v, want both", got)
			}
		}
	}
	s.frames = nil
	p.Push(pubs) // the rule's one frame is spent
	for _, f := range s.frames {
		if got := decode(t, f.body); len(got) != 2 {
			t.Fatalf("%s got %v after the rule ended", f.addr, got)
		}
	}
}
