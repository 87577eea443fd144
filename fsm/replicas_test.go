package fsm

import (
	"bytes"
	"io"
	"slices"
	"testing"
)

func nodes(a *applier, ids ...string) {
	for _, id := range ids {
		a.ok(CmdNodeUpsert, NodeUpsert{ID: id, Addr: id + ":1"})
	}
}

func service(t *testing.T, f *FSM, id string) Service {
	t.Helper()
	svc, ok := f.Service(id)
	if !ok {
		t.Fatalf("service %q not found", id)
	}
	return svc
}

// TestServiceCreatePicksReplicas: the creating node owns the service and
// the least loaded live nodes hold the other replicas, every one in sync;
// a taken id, a bad count or a down node is refused.
func TestServiceCreatePicksReplicas(t *testing.T) {
	a := newApplier(t)
	nodes(a, "n1", "n2", "n3", "n4")
	a.ok(CmdServiceCreate, ServiceCreate{ID: "a", Node: "n2", Kind: "external", Replicas: 3})
	svc := service(t, a.f, "a")
	if svc.Owner != "n2" || !slices.Equal(svc.Replicas, []string{"n2", "n1", "n3"}) || !slices.Equal(svc.InSync, []string{"n1", "n2", "n3"}) || svc.Factor != 3 {
		t.Fatalf("a: %+v, want owner n2, replicas n2 n1 n3, all in sync", svc)
	}
	a.ok(CmdServiceCreate, ServiceCreate{ID: "b", Node: "n1", Kind: "external", Replicas: 3})
	if svc := service(t, a.f, "b"); !slices.Equal(svc.Replicas, []string{"n1", "n4", "n2"}) {
		t.Fatalf("b: replicas %v, want n1 then the least loaded n4, n2", svc.Replicas)
	}
	a.ok(CmdServiceCreate, ServiceCreate{ID: "c", Node: "n1", Kind: "external", Replicas: 9})
	if svc := service(t, a.f, "c"); len(svc.Replicas) != 4 || svc.Factor != 9 {
		t.Fatalf("c: %d replicas (factor %d), want every node of 4", len(svc.Replicas), svc.Factor)
	}
	a.fails(CmdServiceCreate, ServiceCreate{ID: "a", Node: "n1", Kind: "external", Replicas: 1}, ErrServiceExists)
	a.fails(CmdServiceCreate, ServiceCreate{ID: "d", Node: "n1", Kind: "external", Replicas: 0}, ErrInvalid)
	a.fails(CmdServiceCreate, ServiceCreate{ID: "d", Node: "n1", Kind: "external", Replicas: MaxReplicas + 1}, ErrInvalid)
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n4", Up: false})
	a.fails(CmdServiceCreate, ServiceCreate{ID: "d", Node: "n4", Kind: "external", Replicas: 1}, ErrNodeNotFound)
	a.ok(CmdServiceCreate, ServiceCreate{ID: "d", Node: "n1", Kind: "external", Replicas: 3})
	if svc := service(t, a.f, "d"); slices.Contains(svc.Replicas, "n4") {
		t.Fatalf("d: replicas %v hold a down node", svc.Replicas)
	}
}

// TestReplicaFailover: a replica down leaves the in-sync set; the owner
// down hands the service to a live in-sync replica under a new
// incarnation, never to one out of sync; the last in-sync replica stays
// in the set, and the service waits for it.
func TestReplicaFailover(t *testing.T) {
	a := newApplier(t)
	nodes(a, "n1", "n2", "n3")
	a.ok(CmdServiceCreate, ServiceCreate{ID: "s", Node: "n1", Kind: "external", Replicas: 3})
	inc := service(t, a.f, "s").Incarnation
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n3", Up: false})
	if svc := service(t, a.f, "s"); svc.Owner != "n1" || !slices.Equal(svc.InSync, []string{"n1", "n2"}) || svc.Incarnation != inc {
		t.Fatalf("n3 down: %+v, want n1 owning, n1 n2 in sync", svc)
	}
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n3", Up: true}) // back, still out of sync
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n1", Up: false})
	svc := service(t, a.f, "s")
	if svc.Owner != "n2" || !slices.Equal(svc.InSync, []string{"n2"}) || svc.Incarnation <= inc {
		t.Fatalf("owner n1 down: %+v, want n2 (in sync) owning under a new incarnation, not n3", svc)
	}
	a.fails(CmdReplicaSync, ReplicaSync{Service: "s", Incarnation: inc, InSync: []string{"n1", "n2"}}, ErrFenced)
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n2", Up: false})
	if svc := service(t, a.f, "s"); svc.Owner != "" || !slices.Equal(svc.InSync, []string{"n2"}) {
		t.Fatalf("the last in-sync replica down: %+v, want no owner, n2 still in sync", svc)
	}
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n1", Up: true})
	if svc := service(t, a.f, "s"); svc.Owner != "" {
		t.Fatalf("an out-of-sync replica back: %+v, want still no owner", svc)
	}
	a.ok(CmdNodeLiveness, NodeLiveness{ID: "n2", Up: true})
	if svc := service(t, a.f, "s"); svc.Owner != "n2" {
		t.Fatalf("the in-sync replica back: owner %q, want n2", svc.Owner)
	}
}

// TestReplicaSyncResignMove: the owner grows and shrinks its in-sync set
// (always holding itself, within the replicas); a replica resigns; the
// leader moves a replica, never the owner.
func TestReplicaSyncResignMove(t *testing.T) {
	a := newApplier(t)
	nodes(a, "n1", "n2", "n3", "n4")
	a.ok(CmdServiceCreate, ServiceCreate{ID: "s", Node: "n1", Kind: "external", Replicas: 3})
	svc := service(t, a.f, "s")
	inc := svc.Incarnation
	a.ok(CmdReplicaSync, ReplicaSync{Service: "s", Incarnation: inc, InSync: []string{"n1"}})
	a.fails(CmdReplicaSync, ReplicaSync{Service: "s", Incarnation: inc, InSync: []string{"n2"}}, ErrInvalid)
	a.fails(CmdReplicaSync, ReplicaSync{Service: "s", Incarnation: inc, InSync: []string{"n1", "n4"}}, ErrInvalid)
	a.ok(CmdReplicaSync, ReplicaSync{Service: "s", Incarnation: inc, InSync: []string{"n3", "n1", "n2"}})
	a.ok(CmdReplicaResign, ReplicaResign{Service: "s", Node: "n2"})
	if svc := service(t, a.f, "s"); !slices.Equal(svc.InSync, []string{"n1", "n3"}) {
		t.Fatalf("after n2 resigned: in sync %v", svc.InSync)
	}
	a.ok(CmdReplicaResign, ReplicaResign{Service: "s", Node: "n1"}) // the owner
	if svc := service(t, a.f, "s"); svc.Owner != "n3" || svc.Incarnation <= inc || !slices.Equal(svc.InSync, []string{"n3"}) {
		t.Fatalf("after the owner resigned: %+v, want n3 owning", svc)
	}
	a.fails(CmdReplicaMove, ReplicaMove{Service: "s", Remove: "n3", Add: "n4"}, ErrInvalid) // the owner
	a.fails(CmdReplicaMove, ReplicaMove{Service: "s", Remove: "n2", Add: "n3"}, ErrInvalid) // a replica already
	a.ok(CmdReplicaMove, ReplicaMove{Service: "s", Remove: "n2", Add: "n4"})
	svc = service(t, a.f, "s")
	if !slices.Equal(svc.Replicas, []string{"n1", "n3", "n4"}) || !slices.Equal(svc.Instances, []string{"n1", "n3", "n4"}) || slices.Contains(svc.InSync, "n4") {
		t.Fatalf("after the move: %+v, want n4 a replica out of sync", svc)
	}
	a.fails(CmdReplicaMove, ReplicaMove{Service: "s", Add: "n2"}, ErrInvalid) // it has its 3
	a.fails(CmdServiceUnregister, ServiceUnregister{ID: "s", Node: "n4"}, ErrInvalid)
	a.fails(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n2", Kind: "external"}, ErrInvalid)
	a.ok(CmdServiceRegister, ServiceRegister{ID: "s", Node: "n3", Kind: "external"}) // the owner's restart
	if got := service(t, a.f, "s"); got.Incarnation <= svc.Incarnation || got.Owner != "n3" {
		t.Fatalf("the owner registered again: %+v, want a new incarnation", got)
	}
}

// TestReplicaNodeRemoved: removing a replica's node takes it out; removing
// the only in-sync one leaves the others as all there is; the service goes
// with its last replica.
func TestReplicaNodeRemoved(t *testing.T) {
	a := newApplier(t)
	nodes(a, "n1", "n2", "n3")
	a.ok(CmdServiceCreate, ServiceCreate{ID: "s", Node: "n1", Kind: "external", Replicas: 3})
	inc := service(t, a.f, "s").Incarnation
	a.ok(CmdReplicaSync, ReplicaSync{Service: "s", Incarnation: inc, InSync: []string{"n1"}})
	a.ok(CmdNodeRemove, NodeRemove{ID: "n1"})
	svc := service(t, a.f, "s")
	if !slices.Equal(svc.Replicas, []string{"n2", "n3"}) || !slices.Equal(svc.InSync, []string{"n2", "n3"}) || svc.Owner != "n2" {
		t.Fatalf("the owner, alone in sync, removed: %+v", svc)
	}
	a.ok(CmdNodeRemove, NodeRemove{ID: "n2"})
	a.ok(CmdNodeRemove, NodeRemove{ID: "n3"})
	if _, ok := a.f.Service("s"); ok {
		t.Fatal("the service outlived its last replica")
	}
}

// TestReplicasSurviveASnapshot: the replica fields round-trip through a
// snapshot, byte for byte.
func TestReplicasSurviveASnapshot(t *testing.T) {
	a := newApplier(t)
	nodes(a, "n1", "n2")
	a.ok(CmdServiceCreate, ServiceCreate{ID: "s", Node: "n1", Kind: "external", Replicas: 2})
	b := snapshotBytes(t, a.f)
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBytes(t, f); !bytes.Equal(got, b) {
		t.Fatal("snapshot bytes differ after a restore")
	}
	if svc := service(t, f, "s"); !slices.Equal(svc.Replicas, []string{"n1", "n2"}) || svc.Factor != 2 || len(svc.InSync) != 2 {
		t.Fatalf("restored: %+v", svc)
	}
}

// TestDeletedExternalServiceStaysDeleted: a replica's instance that
// registers after the service was deleted (its node saw the create late)
// does not bring the service back; only a create makes one.
func TestDeletedExternalServiceStaysDeleted(t *testing.T) {
	a := newApplier(t)
	nodes(a, "n1", "n2", "n3")
	a.ok(CmdServiceCreate, ServiceCreate{ID: "inv", Node: "n1", Kind: "external", Replicas: 3})
	a.ok(CmdServiceRegister, ServiceRegister{ID: "inv", Node: "n3", Kind: "external"})
	a.ok(CmdServiceUnregister, ServiceUnregister{ID: "inv"})
	a.fails(CmdServiceRegister, ServiceRegister{ID: "inv", Node: "n3", Kind: "external"}, ErrServiceNotFound)
	if _, ok := a.f.Service("inv"); ok {
		t.Fatal("a late replica's register brought the deleted service back")
	}
	// A Go service registers without a create, as it always has.
	a.ok(CmdServiceRegister, ServiceRegister{ID: "gosvc", Node: "n3", Kind: "go"})
}
