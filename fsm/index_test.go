package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

// indexLog is randomLog with every kind of entry that files services and
// datasources: replicated services, their moves, attachments, datasource
// updates and deletes, batches.
func indexLog(rng *rand.Rand, n int) [][]byte {
	pick := func(prefix string, k int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(k)) }
	var out [][]byte
	for _, e := range attachLog(rng, n) {
		out = append(out, e)
		switch rng.IntN(9) {
		case 0:
			out = append(out, MustEncode(CmdServiceCreate, ServiceCreate{ID: pick("r", 3), Node: pick("n", 4), Kind: "external", Replicas: 1 + rng.IntN(3)}))
		case 1:
			out = append(out, MustEncode(CmdReplicaMove, ReplicaMove{Service: pick("r", 3), Remove: pick("n", 5), Add: pick("n", 4)}))
		case 2:
			out = append(out, MustEncode(CmdReplicaResign, ReplicaResign{Service: pick("r", 3), Node: pick("n", 4)}))
		case 3:
			on := rng.IntN(2) == 0
			out = append(out, MustEncode(CmdDatasourceUpdate, DatasourceUpdate{ID: pick("d", 3), Enabled: &on}))
		case 4:
			out = append(out, MustEncode(CmdDatasourceDelete, DatasourceDelete{ID: pick("d", 3)}))
		case 5:
			out = append(out, MustEncode(CmdServiceRegister, ServiceRegister{ID: pick("name", 3), Node: pick("n", 4), Kind: "datasource"}))
		case 6:
			out = append(out, MustEncode(CmdBatch, Batch{Commands: [][]byte{
				MustEncode(CmdServiceRegister, ServiceRegister{ID: pick("s", 6), Node: pick("n", 4)}),
				MustEncode(CmdDatasourcePlace, DatasourcePlace{ID: pick("d", 3), Node: pick("n", 4)}),
				MustEncode(CmdSubscribe, Subscribe{Subscriber: pick("s", 6), Publisher: pick("name", 3), Table: pick("t", 3)}),
			}}))
		}
	}
	return out
}

// TestIndexFollowsTheState: after every entry, the index and the
// subscriptions by subscriber kept as entries apply equal those rebuilt
// from the state alone, and a restored snapshot has them too.
func TestIndexFollowsTheState(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 11))
		f := New()
		for i, e := range indexLog(rng, 300) {
			f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: e})
			checkDerived(t, fmt.Sprintf("seed %d entry %d (%s)", seed, i, CommandType(e[0])), f.s)
		}
		g := New()
		if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
			t.Fatal(err)
		}
		checkDerived(t, fmt.Sprintf("seed %d restored", seed), g.s)
		if !reflect.DeepEqual(f.s.ix, g.s.ix) || !reflect.DeepEqual(f.s.bySub, g.s.bySub) {
			t.Fatalf("seed %d: the restored index differs", seed)
		}
	}
}

func checkDerived(t *testing.T, where string, s *state) {
	t.Helper()
	kept := s.ix
	s.reindexAll()
	if !reflect.DeepEqual(kept, s.ix) {
		t.Fatalf("%s: index kept\n%+v\nrebuilt\n%+v", where, kept, s.ix)
	}
	bySub := map[string]map[pubTable]struct{}{}
	for p, tables := range s.subs {
		for tbl, set := range tables {
			for sub := range set {
				if bySub[sub] == nil {
					bySub[sub] = map[pubTable]struct{}{}
				}
				bySub[sub][pubTable{p, tbl}] = struct{}{}
			}
		}
	}
	if !reflect.DeepEqual(bySub, s.bySub) {
		t.Fatalf("%s: subscriptions by subscriber kept\n%v\nrebuilt\n%v", where, s.bySub, bySub)
	}
}

// TestBatchSeesTheIndexOfItsOwnCommands: a datasource name taken earlier
// in the same batch is taken.
func TestBatchSeesTheIndexOfItsOwnCommands(t *testing.T) {
	a := newApplier(t)
	res := a.apply(CmdBatch, Batch{Commands: [][]byte{
		MustEncode(CmdDatasourceAdd, DatasourceAdd{Datasource: Datasource{ID: "d1", Name: "inv", Driver: "file"}}),
		MustEncode(CmdDatasourceAdd, DatasourceAdd{Datasource: Datasource{ID: "d2", Name: "inv", Driver: "file"}}),
	}}).([]any)
	if res[0] != nil {
		t.Fatalf("first add: %v", res[0])
	}
	if err, _ := res[1].(error); !errors.Is(err, ErrDatasourceExists) {
		t.Fatalf("second add of the same name: %v, want ErrDatasourceExists", res[1])
	}
}

// TestReplicasOnLeavesOutWhatANodeOnlyRuns: a node's replica engine
// follows the replicated services it keeps, not the Go services it runs.
func TestReplicasOnLeavesOutWhatANodeOnlyRuns(t *testing.T) {
	a := newApplier(t)
	nodes(a, "n1", "n2", "n3")
	a.ok(CmdServiceRegister, ServiceRegister{ID: "go1", Node: "n1", Kind: "go"})
	a.ok(CmdServiceCreate, ServiceCreate{ID: "ext", Node: "n1", Kind: "external", Replicas: 2})
	ids := func(node string) (out []string) {
		for _, s := range a.f.ReplicasOn(node) {
			out = append(out, s.ID)
		}
		return out
	}
	on := map[string][]string{}
	for _, n := range []string{"n1", "n2", "n3"} {
		on[n] = ids(n)
	}
	svc := service(t, a.f, "ext")
	for _, n := range []string{"n1", "n2", "n3"} {
		want := []string(nil)
		if slices.Contains(svc.Replicas, n) {
			want = []string{"ext"}
		}
		if !slices.Equal(on[n], want) {
			t.Fatalf("ReplicasOn(%s) = %v, want %v (replicas %v)", n, on[n], want, svc.Replicas)
		}
	}
	if got := len(a.f.ServicesOn("n1")); got != 2 {
		t.Fatalf("ServicesOn(n1): %d services, want go1 and ext", got)
	}
}
