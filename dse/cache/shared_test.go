package cache

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"dse.dev/dse/dse/table"
)

// keysOf returns rows as a sorted list of their keys.
func keysOf(rows []table.Row) []string {
	out := make([]string, 0, len(rows))
	c := append([]table.Row(nil), rows...)
	table.Sort(c)
	for _, r := range c {
		out = append(out, table.Key(r))
	}
	return out
}

// TestSharedMatchesPrivate: caches sharing their tables, fed as the
// delivery loop feeds them (each publication to every cache in turn;
// caches joining with a snapshot of what the others hold, others leaving
// and coming back), hold and report exactly what private caches fed the
// same do.
func TestSharedMatchesPrivate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	sh := NewShared()
	id := TableID{"p", "t"}
	const n = 5
	shared, private := make([]*Cache, n), make([]*Cache, n)
	var sharedChanges, privateChanges [n][]Change
	for i := range n {
		shared[i], private[i] = New(), New()
		shared[i].ShareWith(sh)
		shared[i].OnChange(func(ch Change) { sharedChanges[i] = append(sharedChanges[i], ch) })
		private[i].OnChange(func(ch Change) { privateChanges[i] = append(privateChanges[i], ch) })
	}
	attached := make([]bool, n)
	seq := uint64(0)
	row := func() table.Row { return table.Row{int64(rng.IntN(30))} }
	for step := range 2000 {
		switch k := rng.IntN(10); {
		case k == 0: // a cache leaves
			i := rng.IntN(n)
			if attached[i] {
				shared[i].Remove(id)
				private[i].Remove(id)
				attached[i] = false
			}
		case k == 1: // a cache joins with what another attached one holds
			i := rng.IntN(n)
			if attached[i] {
				continue
			}
			from := -1
			for j := range n {
				if attached[j] {
					from = j
				}
			}
			var rows []table.Row
			var at uint64
			if from >= 0 {
				rows, at, _ = shared[from].Unsorted(id)
			}
			p := &table.Publication{Publisher: "p", Table: "t", Seqnum: at, Snapshot: true, Rows: rows}
			shared[i].Apply(p)
			private[i].Apply(p)
			attached[i] = true
		case k == 2: // a cache joins with a newer snapshot (a catch-up), in any place of the order
			i := rng.IntN(n)
			if attached[i] {
				continue
			}
			attached[i] = true
			seq++
			p := &table.Publication{Publisher: "p", Table: "t", Seqnum: seq, Snapshot: true}
			for range rng.IntN(10) {
				p.Rows = append(p.Rows, row())
			}
			for _, j := range rng.Perm(n) {
				if attached[j] {
					shared[j].Apply(p)
					private[j].Apply(p)
				}
			}
		default: // a publication, to every attached cache in turn
			seq++
			p := &table.Publication{Publisher: "p", Table: "t", Seqnum: seq}
			if rng.IntN(8) == 0 {
				p.Snapshot = true
				for range rng.IntN(10) {
					p.Rows = append(p.Rows, row())
				}
			} else {
				p.Add, p.Del = []table.Row{row()}, []table.Row{row()}
			}
			for i := range n {
				if attached[i] {
					shared[i].Apply(p)
					private[i].Apply(p)
				}
			}
		}
		for i := range n {
			sr, ss, sok := shared[i].Unsorted(id)
			pr, ps, pok := private[i].Unsorted(id)
			if sok != pok || ss != ps || !reflect.DeepEqual(keysOf(sr), keysOf(pr)) {
				t.Fatalf("step %d cache %d: shared holds %v at %d (%v), private %v at %d (%v)", step, i, keysOf(sr), ss, sok, keysOf(pr), ps, pok)
			}
			if len(sharedChanges[i]) != len(privateChanges[i]) {
				t.Fatalf("step %d cache %d: %d changes shared, %d private", step, i, len(sharedChanges[i]), len(privateChanges[i]))
			}
			for k := range sharedChanges[i] {
				a, b := sharedChanges[i][k], privateChanges[i][k]
				if a.Seqnum != b.Seqnum || a.Removed != b.Removed || !reflect.DeepEqual(keysOf(a.Added), keysOf(b.Added)) || !reflect.DeepEqual(keysOf(a.Deleted), keysOf(b.Deleted)) {
					t.Fatalf("step %d cache %d change %d: shared %+v, private %+v", step, i, k, a, b)
				}
			}
		}
	}
	for i := range n {
		if attached[i] {
			shared[i].Remove(id)
		}
	}
	if sh.Len() != 0 {
		t.Fatalf("%d shared tables left after every cache removed its", sh.Len())
	}
}

// TestSharedAppliesOnce: three caches sharing a table apply each delta
// once between them, and keep no change once all three took it.
func TestSharedAppliesOnce(t *testing.T) {
	sh := NewShared()
	cs := []*Cache{New(), New(), New()}
	for _, c := range cs {
		c.ShareWith(sh)
	}
	p := &table.Publication{Publisher: "p", Table: "t", Seqnum: 1, Snapshot: true, Rows: []table.Row{r(1), r(2)}}
	for _, c := range cs {
		if ch := c.Apply(p); len(ch.Added) != 2 {
			t.Fatalf("first snapshot: %+v", ch)
		}
	}
	st := sh.tables[TableID{"p", "t"}]
	if st.gen != 1 || st.refs != 3 || st.added != nil || st.waiting != 0 {
		t.Fatalf("after the snapshot: gen %d refs %d waiting %d, change kept %v", st.gen, st.refs, st.waiting, st.added)
	}
	d := &table.Publication{Publisher: "p", Table: "t", Seqnum: 2, Add: []table.Row{r(3)}, Del: []table.Row{r(1)}}
	for _, c := range cs {
		if ch := c.Apply(d); !reflect.DeepEqual(ch.Added, []table.Row{r(3)}) || !reflect.DeepEqual(ch.Deleted, []table.Row{r(1)}) {
			t.Fatalf("delta: %+v", ch)
		}
	}
	if st.gen != 2 || st.added != nil {
		t.Fatalf("after the delta: gen %d, change kept %v", st.gen, st.added)
	}
	// One stops: it keeps its rows; the others go on without it.
	cs[2].Unshare()
	cs[0].Apply(&table.Publication{Publisher: "p", Table: "t", Seqnum: 3, Add: []table.Row{r(4)}})
	cs[1].Apply(&table.Publication{Publisher: "p", Table: "t", Seqnum: 3, Add: []table.Row{r(4)}})
	if got := cs[2].Len(TableID{"p", "t"}); got != 2 {
		t.Fatalf("the unshared cache holds %d rows, want 2", got)
	}
	if got := cs[0].Len(TableID{"p", "t"}); got != 3 {
		t.Fatalf("a sharing cache holds %d rows, want 3", got)
	}
}

// TestSharedConcurrentReads: readers of caches sharing a table race with
// nothing while the table changes (run with -race).
func TestSharedConcurrentReads(t *testing.T) {
	sh := NewShared()
	a, b := New(), New()
	a.ShareWith(sh)
	b.ShareWith(sh)
	id := TableID{"p", "t"}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := int64(1); i <= 1000; i++ {
			p := &table.Publication{Publisher: "p", Table: "t", Seqnum: uint64(i), Add: []table.Row{r(i)}}
			if i == 1 {
				p.Snapshot, p.Rows, p.Add = true, p.Add, nil
			}
			a.Apply(p)
			b.Apply(p)
		}
	})
	for range 2 {
		wg.Go(func() {
			for k := range 1000 {
				b.Has(id, r(int64(k)))
				a.Len(id)
				if k%100 == 0 {
					b.Rows(id)
				}
			}
		})
	}
	wg.Wait()
	if a.Len(id) != 1000 || b.Seqnum(id) != 1000 {
		t.Fatal(fmt.Sprint("len ", a.Len(id), " seqnum ", b.Seqnum(id)))
	}
}
