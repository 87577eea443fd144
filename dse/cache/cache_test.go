package cache

import (
	"reflect"
	"sync"
	"testing"

	"dse.dev/dse/dse/table"
)

func r(v int64) table.Row { return table.Row{v} }

func TestApplyAndCallbacks(t *testing.T) {
	c := New()
	id := TableID{"p", "t"}
	var got []Change
	c.OnChange(func(ch Change) { got = append(got, ch) })
	c.Apply(&table.Publication{Publisher: "p", Table: "t", Seqnum: 1, Snapshot: true, Rows: []table.Row{r(1), r(2)}})
	c.Apply(&table.Publication{Publisher: "p", Table: "t", Seqnum: 2, Add: []table.Row{r(3), r(1)}, Del: []table.Row{r(2), r(9)}})
	// A snapshot replacing the table reaches callbacks as a diff.
	c.Apply(&table.Publication{Publisher: "p", Table: "t", Seqnum: 3, Snapshot: true, Rows: []table.Row{r(3), r(4)}})
	rows, seq, ok := c.Rows(id)
	if !ok || seq != 3 || !reflect.DeepEqual(rows, []table.Row{r(3), r(4)}) {
		t.Fatalf("Rows got %v %d %v", rows, seq, ok)
	}
	want := []Change{
		{TableID: id, Seqnum: 1, Snapshot: true, Added: []table.Row{r(1), r(2)}},
		{TableID: id, Seqnum: 2, Added: []table.Row{r(3)}, Deleted: []table.Row{r(2)}},
		{TableID: id, Seqnum: 3, Snapshot: true, Added: []table.Row{r(4)}, Deleted: []table.Row{r(1)}},
	}
	for i := range want {
		table.Sort(got[i].Added)
		table.Sort(got[i].Deleted)
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("change %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if !c.Has(id, r(4)) || c.Has(id, r(1)) || c.Len(id) != 2 {
		t.Fatal("Has/Len disagree with Rows")
	}
	c.Remove(id)
	if last := got[len(got)-1]; len(last.Deleted) != 2 || !last.Removed {
		t.Fatalf("Remove: got %+v, want both rows deleted", last)
	}
	if _, _, ok := c.Rows(id); ok || len(c.Tables()) != 0 {
		t.Fatal("table survived Remove")
	}
}

func TestConcurrentReadsAndApplies(t *testing.T) {
	c := New()
	id := TableID{"p", "t"}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := int64(1); i <= 2000; i++ {
			c.Apply(&table.Publication{Publisher: "p", Table: "t", Seqnum: uint64(i), Add: []table.Row{r(i)}})
		}
	}()
	go func() {
		defer wg.Done()
		for range 2000 {
			c.Rows(id)
			c.Len(id)
		}
	}()
	wg.Wait()
	if c.Len(id) != 2000 || c.Seqnum(id) != 2000 {
		t.Fatalf("len %d seqnum %d", c.Len(id), c.Seqnum(id))
	}
}
