package bigmem

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// anonHugeKB reads this process's memory in transparent huge pages.
func anonHugeKB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps_rollup")
	if err != nil {
		t.Skipf("no smaps_rollup: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "AnonHugePages:"); ok {
			kb, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Skip("smaps_rollup has no AnonHugePages")
	return 0
}

func TestMakeMapsHugePages(t *testing.T) {
	if !advise() {
		t.Skip("transparent huge pages are not in madvise mode here")
	}
	before := anonHugeKB(t)
	const n = 64 << 20
	b := Make[uint64](n / 8)
	after := anonHugeKB(t)
	// 64 MiB hold at least 31 whole huge pages; allow for some that the
	// kernel could not find (fragmented memory).
	if got := after - before; got < 16<<10 {
		t.Fatalf("AnonHugePages grew by %d KiB for a %d MiB buffer, want at least 16 MiB", got, n>>20)
	}
	for i, v := range b {
		if v != 0 {
			t.Fatalf("element %d = %#x, want zero", i, v)
		}
	}
	b[len(b)-1] = 1 // usable to its end
}

func TestMakeSmallAndEmpty(t *testing.T) {
	for _, n := range []int{0, 1, MinSize - 1, MinSize, MinSize + 3} {
		b := Make[byte](n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("Make(%d): len %d cap %d", n, len(b), cap(b))
		}
	}
	type pair struct {
		p *int
		s string
	}
	ps := Make[pair](MinSize / 8)
	x := 7
	ps[len(ps)-1] = pair{&x, "last"}
	if *ps[len(ps)-1].p != 7 || ps[0].p != nil || ps[0].s != "" {
		t.Fatal("a pointerful buffer is not zero, or not usable")
	}
}
