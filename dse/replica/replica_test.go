package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"

	"dse.dev/dse/dse/table"
	"dse.dev/dse/dse/wire"
	"dse.dev/dse/fsm"
)

// Replication in memory: the registry, the writer, the sender and the
// fetcher are fakes; the store is real, in a temp dir.

type fakeRegistry struct {
	mu      sync.Mutex
	svcs    map[string]fsm.Service
	seqnums map[[2]string]uint64
	changed chan struct{}
}

func newRegistry(svcs ...fsm.Service) *fakeRegistry {
	r := &fakeRegistry{svcs: map[string]fsm.Service{}, seqnums: map[[2]string]uint64{}, changed: make(chan struct{})}
	for _, s := range svcs {
		r.svcs[s.ID] = s
	}
	return r
}

func (r *fakeRegistry) set(s fsm.Service) {
	r.mu.Lock()
	r.svcs[s.ID] = s
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *fakeRegistry) Service(id string) (fsm.Service, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.svcs[id]
	return s, ok
}

func (r *fakeRegistry) ReplicasOn(node string) []fsm.Service {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []fsm.Service
	for _, s := range r.svcs {
		if replicas, _ := replicasOf(s); slices.Contains(replicas, node) {
			out = append(out, s)
		}
	}
	return out
}

func (r *fakeRegistry) Node(id string) (fsm.Node, bool) {
	return fsm.Node{ID: id, Addr: id + ":1", Up: true}, true
}

func (r *fakeRegistry) Seqnum(p, t string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seqnums[[2]string{p, t}]
}

func (r *fakeRegistry) PublishedTables(p string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k := range r.seqnums {
		if k[0] == p {
			out = append(out, k[1])
		}
	}
	slices.Sort(out)
	return out
}

func (r *fakeRegistry) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

type fakeWriter struct {
	mu     sync.Mutex
	writes []any
}

func (w *fakeWriter) Write(_ context.Context, _ fsm.CommandType, body any) error {
	w.mu.Lock()
	w.writes = append(w.writes, body)
	w.mu.Unlock()
	return nil
}

func (w *fakeWriter) syncs() []fsm.ReplicaSync {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []fsm.ReplicaSync
	for _, b := range w.writes {
		if s, ok := b.(fsm.ReplicaSync); ok {
			out = append(out, s)
		}
	}
	return out
}

type fakeSender struct {
	mu   sync.Mutex
	acks []Ack
	drop func(Ack) bool // when set and true, the ack is lost
}

func (s *fakeSender) Send(addr string, typ byte, body []byte) error {
	if typ != wire.ReplicaAck {
		return errors.New("not an ack")
	}
	var a Ack
	if err := wire.Decode(body, &a, "ack"); err != nil {
		return err
	}
	s.mu.Lock()
	if s.drop == nil || !s.drop(a) {
		s.acks = append(s.acks, a)
	}
	s.mu.Unlock()
	return nil
}

func (s *fakeSender) lastAck(svc, tbl string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var seq uint64
	for _, a := range s.acks {
		if a.Service == svc {
			seq = max(seq, a.Tables[tbl])
		}
	}
	return seq
}

type noFetch struct{}

func (noFetch) FetchTable(context.Context, string, string, string, uint64) ([]byte, error) {
	return nil, errors.New("no fetch here")
}

type rig struct {
	reg    *fakeRegistry
	writer *fakeWriter
	sender *fakeSender
	e      *Engine
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func start(t *testing.T, dir, node string, reg *fakeRegistry) *rig {
	t.Helper()
	r := &rig{reg: reg, writer: &fakeWriter{}, sender: &fakeSender{}}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	goFunc := func(f func()) {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); f() }()
	}
	e, err := New(Config{Dir: dir, Node: node, Context: ctx, Registry: reg, Writer: r.writer, Sender: r.sender, Fetcher: noFetch{},
		Ready: func() bool { return true }, Go: goFunc, LagTimeout: 100 * time.Millisecond, AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r.e = e
	goFunc(e.Run)
	t.Cleanup(r.stop)
	return r
}

func (r *rig) stop() {
	r.cancel()
	r.wg.Wait()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func delta(svc, tbl string, seq uint64, add ...table.Row) *table.Publication {
	return &table.Publication{Publisher: svc, Table: tbl, Seqnum: seq, Add: add}
}

func row(v int64) table.Row { return table.Row{v} }

// TestReplicaAppliesInOrderWritesAndAcknowledges: a replica applies a
// table's publications in seqnum order whatever order they come in, holds
// them on disk (a restart loads them), acknowledges what is on disk to the
// owner, and takes nothing of a service it does not replicate, nor pushes
// of a service it owns.
func TestReplicaAppliesInOrderWritesAndAcknowledges(t *testing.T) {
	dir := t.TempDir()
	reg := newRegistry(
		fsm.Service{ID: "s", Kind: "external", Owner: "o", Replicas: []string{"o", "me"}, InSync: []string{"me", "o"}, Factor: 2},
		fsm.Service{ID: "other", Kind: "external", Owner: "o", Replicas: []string{"o", "x"}, Factor: 2},
		fsm.Service{ID: "mine", Kind: "external", Owner: "me", Replicas: []string{"me", "o"}, Factor: 2},
	)
	r := start(t, dir, "me", reg)
	snap := &table.Publication{Publisher: "s", Table: "t", Seqnum: 1, Snapshot: true, Rows: []table.Row{row(0)}}
	r.e.Offer([]*table.Publication{delta("s", "t", 3, row(3)), snap, delta("other", "t", 1, row(9)), delta("mine", "t", 1, row(9))}, false)
	r.e.Offer([]*table.Publication{delta("s", "t", 2, row(2))}, false)
	waitFor(t, "the acknowledgement of seqnum 3", func() bool { return r.sender.lastAck("s", "t") == 3 })
	seq, rows, ok := r.e.Table("s", "t")
	if !ok || seq != 3 || len(rows) != 3 {
		t.Fatalf("replica: seqnum %d, rows %v", seq, rows)
	}
	if r.e.Holds("other") {
		t.Fatal("took a service it does not replicate")
	}
	if seq, _, _ := r.e.Table("mine", "t"); seq != 0 {
		t.Fatalf("took a push (seqnum %d) of a service it owns", seq)
	}
	r.stop()
	r = start(t, dir, "me", reg)
	if seq, rows, _ := r.e.Table("s", "t"); seq != 3 || len(rows) != 3 {
		t.Fatalf("after a restart: seqnum %d, rows %v", seq, rows)
	}
}

// TestAckCarriesWhatMoved: the acknowledgement of a commit names the
// tables it moved, not every table of the service (a service of 1,000
// tables acknowledges a one-table publication with one entry), and the
// owner's view is the highest it heard of each.
func TestAckCarriesWhatMoved(t *testing.T) {
	reg := newRegistry(fsm.Service{ID: "s", Kind: "external", Owner: "o", Replicas: []string{"o", "me"}, InSync: []string{"me", "o"}, Factor: 2})
	r := start(t, t.TempDir(), "me", reg)
	var pubs []*table.Publication
	for i := range 1000 {
		pubs = append(pubs, &table.Publication{Publisher: "s", Table: fmt.Sprintf("t%d", i), Seqnum: 1, Snapshot: true})
	}
	r.e.Offer(pubs, false)
	waitFor(t, "the 1,000 tables on disk", func() bool { return r.sender.lastAck("s", "t999") == 1 })
	r.sender.mu.Lock()
	r.sender.acks = nil
	r.sender.mu.Unlock()
	r.e.Offer([]*table.Publication{delta("s", "t7", 2, row(1))}, false)
	waitFor(t, "the acknowledgement of t7's seqnum 2", func() bool { return r.sender.lastAck("s", "t7") == 2 })
	r.sender.mu.Lock()
	defer r.sender.mu.Unlock()
	// The reconciler's resends (every table that moved in the last 2 s)
	// may come too; the commit's own acknowledgement is the one of one
	// table.
	sizes := []int{}
	for _, a := range r.sender.acks {
		if a.Tables["t7"] == 2 {
			if len(a.Tables) == 1 {
				return
			}
			sizes = append(sizes, len(a.Tables))
		}
	}
	t.Fatalf("t7's seqnum 2 was acknowledged only with other tables: %v tables", sizes)
}

// TestLostAckIsResent: a table's acknowledgement lost for longer than
// the resends of recent tables last (2 s) still reaches the owner while
// its service's other tables move, in a resend of every table.
func TestLostAckIsResent(t *testing.T) {
	reg := newRegistry(fsm.Service{ID: "s", Kind: "external", Owner: "o", Replicas: []string{"o", "me"}, InSync: []string{"me", "o"}, Factor: 2})
	r := start(t, t.TempDir(), "me", reg)
	r.e.Offer([]*table.Publication{{Publisher: "s", Table: "a", Seqnum: 1, Snapshot: true}, {Publisher: "s", Table: "x", Seqnum: 1, Snapshot: true}}, false)
	waitFor(t, "both tables on disk", func() bool { return r.sender.lastAck("s", "a") == 1 && r.sender.lastAck("s", "x") == 1 })
	r.sender.mu.Lock()
	r.sender.drop = func(a Ack) bool { return a.Tables["x"] == 2 }
	r.sender.mu.Unlock()
	r.e.Offer([]*table.Publication{delta("s", "x", 2, row(2))}, false)
	// a moves every 100 ms while every acknowledgement of x's seqnum 2
	// is lost for 2.5 s, then while they get through again.
	seq := uint64(1)
	move := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			seq++
			r.e.Offer([]*table.Publication{delta("s", "a", seq, row(int64(seq)))}, false)
		}
	}
	move(2500 * time.Millisecond)
	if got := r.sender.lastAck("s", "x"); got != 1 {
		t.Fatalf("x acknowledged at %d while its acknowledgements were lost", got)
	}
	r.sender.mu.Lock()
	r.sender.drop = nil
	r.sender.mu.Unlock()
	move(1500 * time.Millisecond)
	if got := r.sender.lastAck("s", "x"); got != 2 {
		t.Fatalf("x's seqnum 2 was never acknowledged again (the owner heard %d)", got)
	}
}

// TestReplicaCompacts: many deltas are folded into a snapshot on disk, and
// the table loads the same.
func TestReplicaCompacts(t *testing.T) {
	dir := t.TempDir()
	reg := newRegistry(fsm.Service{ID: "s", Kind: "external", Owner: "o", Replicas: []string{"o", "me"}, InSync: []string{"me", "o"}, Factor: 2})
	r := start(t, dir, "me", reg)
	r.e.Offer([]*table.Publication{{Publisher: "s", Table: "t", Seqnum: 1, Snapshot: true}}, false)
	var pubs []*table.Publication
	for i := uint64(2); i <= 2000; i++ {
		pubs = append(pubs, &table.Publication{Publisher: "s", Table: "t", Seqnum: i, Add: []table.Row{row(int64(i))}, Del: []table.Row{row(int64(i - 1))}})
	}
	r.e.Offer(pubs, false)
	waitFor(t, "seqnum 2000 on disk", func() bool { return r.sender.lastAck("s", "t") == 2000 })
	r.stop()
	var deltas int
	st, err := openStore(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.scan(prefixDelta, func(_, _ []byte) error { deltas++; return nil }); err != nil {
		t.Fatal(err)
	}
	st.close()
	if deltas == 0 || deltas >= compactDeltas {
		t.Fatalf("%d deltas on disk after compaction", deltas)
	}
	r = start(t, dir, "me", reg)
	if seq, rows, _ := r.e.Table("s", "t"); seq != 2000 || len(rows) != 1 || rows[0][0] != int64(2000) {
		t.Fatalf("after compaction and a restart: seqnum %d, rows %v", seq, rows)
	}
}

// TestBoltStoreImported: the bbolt store of the first replicated releases
// is imported entry for entry (a service, a snapshot, a delta after it, a
// delta of a deleted service's that stays out), and renamed.
func TestBoltStoreImported(t *testing.T) {
	dir := t.TempDir()
	old, err := bolt.Open(filepath.Join(dir, boltFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := (&table.Publication{Publisher: "inv", Table: "hosts", Seqnum: 4, Snapshot: true, Rows: []table.Row{{"web1", "up"}}}).Encode()
	delta, _ := (&table.Publication{Publisher: "inv", Table: "hosts", Seqnum: 5, Add: []table.Row{{"web2", "up"}}}).Encode()
	gone, _ := (&table.Publication{Publisher: "gone", Table: "t", Seqnum: 1, Add: []table.Row{{"x"}}}).Encode()
	old.Update(func(tx *bolt.Tx) error {
		s, _ := tx.CreateBucket([]byte("services"))
		s.Put([]byte("inv"), []byte{1})
		n, _ := tx.CreateBucket([]byte("snapshots"))
		n.Put([]byte("inv\x00hosts"), snap)
		d, _ := tx.CreateBucket([]byte("deltas"))
		d.Put(binary.BigEndian.AppendUint64([]byte("inv\x00hosts\x00"), 5), delta)
		return d.Put(binary.BigEndian.AppendUint64([]byte("gone\x00t\x00"), 1), gone)
	})
	old.Close()
	reg := newRegistry(fsm.Service{ID: "inv", Kind: "external", Owner: "o", Replicas: []string{"o", "me"}, InSync: []string{"me", "o"}, Factor: 2})
	r := start(t, dir, "me", reg)
	if seq, rows, ok := r.e.Table("inv", "hosts"); !ok || seq != 5 || len(rows) != 2 {
		t.Fatalf("imported: %d %v %v", seq, rows, ok)
	}
	if _, _, ok := r.e.Table("gone", "t"); ok {
		t.Fatal("a table of a service the store did not hold was loaded")
	}
	if _, err := os.Stat(filepath.Join(dir, boltFile+".imported")); err != nil {
		t.Fatalf("the old store was not set aside: %v", err)
	}
	r.stop()
	// Imported once: the renamed file is not read again.
	r = start(t, dir, "me", reg)
	if seq, rows, ok := r.e.Table("inv", "hosts"); !ok || seq != 5 || len(rows) != 2 {
		t.Fatalf("after a restart: %d %v %v", seq, rows, ok)
	}
}

// TestLegacyStoreImported: a node's pre-replication store is imported, its
// tables as snapshots at seqnum 0, and renamed.
func TestLegacyStoreImported(t *testing.T) {
	dir := t.TempDir()
	old, err := bolt.Open(filepath.Join(dir, legacyFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := (&table.Publication{Publisher: "inv", Table: "hosts", Snapshot: true, Rows: []table.Row{{"web1", "up"}}}).Encode()
	old.Update(func(tx *bolt.Tx) error {
		s, _ := tx.CreateBucket([]byte("services"))
		s.Put([]byte("inv"), nil)
		tb, _ := tx.CreateBucket([]byte("tables"))
		return tb.Put([]byte("inv\x00hosts"), enc)
	})
	old.Close()
	reg := newRegistry(fsm.Service{ID: "inv", Kind: "external", Owner: "me", Instances: []string{"me"}})
	r := start(t, dir, "me", reg)
	if seq, rows, ok := r.e.Table("inv", "hosts"); !ok || seq != 0 || len(rows) != 1 {
		t.Fatalf("imported: %d %v %v", seq, rows, ok)
	}
	if _, err := os.Stat(filepath.Join(dir, legacyFile+".imported")); err != nil {
		t.Fatalf("the old store was not set aside: %v", err)
	}
}

// TestOwnerAnswersOnceInSyncReplicasHold: a publication is answered once
// every in-sync replica (the owner too) acknowledged it, and a majority of
// the replicas holds it; a replica that holds up the oldest publication
// for the lag timeout is taken out of the in-sync set; one that caught up
// is added back.
func TestOwnerAnswersOnceInSyncReplicasHold(t *testing.T) {
	svc := fsm.Service{ID: "s", Kind: "external", Owner: "me", Incarnation: 7, Replicas: []string{"me", "r2", "r3"}, InSync: []string{"me", "r2", "r3"}, Factor: 3}
	reg := newRegistry(svc)
	r := start(t, t.TempDir(), "me", reg)
	if !r.e.Needs("s") {
		t.Fatal("the owner of a replicated service does not wait")
	}
	done := make(chan error, 4)
	p := &table.Publication{Publisher: "s", Table: "t", Seqnum: 1, Snapshot: true, Rows: []table.Row{row(1)}}
	r.e.Offer([]*table.Publication{p}, true) // the owner's own copy
	r.e.Await(p, func(err error) { done <- err })
	r.e.tr.ack(Ack{Service: "s", Node: "r2", Tables: map[string]uint64{"t": 1}})
	select {
	case err := <-done:
		t.Fatalf("answered (%v) before r3, in sync, acknowledged", err)
	case <-time.After(50 * time.Millisecond):
	}
	r.e.tr.ack(Ack{Service: "s", Node: "r3", Tables: map[string]uint64{"t": 1}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// r3 goes quiet: the owner takes it out of the in-sync set after the
	// lag timeout, and answers with me and r2.
	p2 := &table.Publication{Publisher: "s", Table: "t", Seqnum: 2, Add: []table.Row{row(2)}}
	r.e.Offer([]*table.Publication{p2}, true)
	r.e.Await(p2, func(err error) { done <- err })
	r.e.tr.ack(Ack{Service: "s", Node: "r2", Tables: map[string]uint64{"t": 2}})
	waitFor(t, "the shrink of the in-sync set", func() bool { return len(r.writer.syncs()) > 0 })
	if got := r.writer.syncs()[0]; got.Incarnation != 7 || !slices.Equal(got.InSync, []string{"me", "r2"}) {
		t.Fatalf("shrink %+v, want me and r2 under incarnation 7", got)
	}
	svc.InSync = []string{"me", "r2"}
	reg.set(svc)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// r3 catches up: it joins again.
	r.e.tr.ack(Ack{Service: "s", Node: "r3", Tables: map[string]uint64{"t": 2}})
	waitFor(t, "r3 added back", func() bool {
		s := r.writer.syncs()
		return len(s) > 1 && slices.Equal(s[len(s)-1].InSync, []string{"me", "r2", "r3"})
	})
}

// TestBelowTheMajorityNothingIsAcknowledged: with only the owner in sync of
// three, a publish is refused up front, and one already in flight fails
// with its outcome unknown after the ack timeout.
func TestBelowTheMajorityNothingIsAcknowledged(t *testing.T) {
	svc := fsm.Service{ID: "s", Kind: "external", Owner: "me", Incarnation: 7, Replicas: []string{"me", "r2", "r3"}, InSync: []string{"me"}, Factor: 3}
	r := start(t, t.TempDir(), "me", newRegistry(svc))
	if err := r.e.CanPublish("s"); err == nil {
		t.Fatal("a publish with 1 of 3 in sync allowed")
	}
	done := make(chan error, 1)
	p := &table.Publication{Publisher: "s", Table: "t", Seqnum: 1, Snapshot: true}
	r.e.Offer([]*table.Publication{p}, true)
	r.e.Await(p, func(err error) { done <- err })
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("acknowledged on the owner's disk alone")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after the ack timeout")
	}
}

// TestStoreWaitsForItsLock: a store opened while another holds its
// directory (a node of the same data dir still closing) opens once that
// one closes, and sees what it wrote.
func TestStoreWaitsForItsLock(t *testing.T) {
	dir := t.TempDir()
	first, err := openStore(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := first.commit([]op{{kind: opAddService, svc: "s"}}); err != nil {
		t.Fatal(err)
	}
	opened := make(chan *store)
	go func() {
		second, err := openStore(dir, hclog.NewNullLogger())
		if err != nil {
			t.Error(err)
		}
		opened <- second
	}()
	select {
	case <-opened:
		t.Fatal("opened while another held the store")
	case <-time.After(200 * time.Millisecond):
	}
	if err := first.close(); err != nil {
		t.Fatal(err)
	}
	second := <-opened
	if second == nil {
		return
	}
	defer second.close()
	loaded, err := second.load()
	if _, ok := loaded["s"]; err != nil || !ok {
		t.Fatalf("after the first closed: %v %v", loaded, err)
	}
}
