package bigmem

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"runtime/debug"
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
	if hugePage() == 0 {
		t.Skip("transparent huge pages are not in madvise mode here")
	}
	if !freeHugePages(64, hugePage()) {
		t.Skip("too few free huge pages here")
	}
	debug.FreeOSMemory() // see TestReadFullMapsHugePages
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

func TestFreeHugePagesReadsBuddyinfo(t *testing.T) {
	if _, err := os.Stat("/proc/buddyinfo"); err != nil {
		t.Skip("no /proc/buddyinfo")
	}
	if freeHugePages(1<<40, 2<<20) {
		t.Fatal("a terabyte of free huge pages reported")
	}
}

func TestFreeBlocks(t *testing.T) {
	info := `Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
Node 0, zone    DMA32      2      3      0      2      3      2      1      4      4      2    752
Node 0, zone   Normal  13181   5166   3466   1624   1245    576    296    222    277    166   1138
`
	// Order 9 (2 MiB of 4 KiB pages): DMA32 2 + 752*2, Normal 166 + 1138*2.
	if got, want := freeBlocks(info, 9), 2+752*2+166+1138*2; got != want {
		t.Fatalf("freeBlocks = %d, want %d", got, want)
	}
	if got := freeBlocks("Node 0, zone Normal 1 x\n", 0); got != -1 {
		t.Fatalf("garbage counted as %d blocks", got)
	}
	if got := freeBlocks("", 9); got != 0 {
		t.Fatalf("no zones counted as %d blocks", got)
	}
}

// TestReadFullMapsHugePages: a big buffer read from a stream holds what
// was sent, in huge pages as Make's.
func TestReadFullMapsHugePages(t *testing.T) {
	if hugePage() == 0 {
		t.Skip("transparent huge pages are not in madvise mode here")
	}
	if !freeHugePages(64, hugePage()) {
		t.Skip("too few free huge pages here")
	}
	const n = 64<<20 + 12345
	src := make([]byte, n)
	for i := range src {
		src[i] = byte(i * 7)
	}
	// Memory the heap holds already populated (the other tests' buffers)
	// would not grow the count: hand it back first.
	debug.FreeOSMemory()
	before := anonHugeKB(t)
	// iotest.OneByteReader would take minutes: short reads of 1 MiB - 1.
	b, err := ReadFull(&shortReader{src, 1<<20 - 1}, n)
	if err != nil {
		t.Fatal(err)
	}
	after := anonHugeKB(t)
	if got := after - before; got < 16<<10 {
		t.Fatalf("AnonHugePages grew by %d KiB for a %d MiB read, want at least 16 MiB", got, n>>20)
	}
	if !bytes.Equal(b, src) {
		t.Fatal("the buffer does not hold what was read")
	}
}

// shortReader reads at most max bytes at a time.
type shortReader struct {
	b   []byte
	max int
}

func (r *shortReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.max)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestReadFullShortInput: input ending early is an error, small buffers and
// big; nothing to read at all is io.EOF, as io.ReadFull says.
func TestReadFullShortInput(t *testing.T) {
	for _, n := range []int{10, MinSize + 10, 3*readChunk + 10} {
		if _, err := ReadFull(bytes.NewReader(make([]byte, n-1)), n); err != io.ErrUnexpectedEOF {
			t.Errorf("%d bytes from %d: %v, want io.ErrUnexpectedEOF", n, n-1, err)
		}
		if _, err := ReadFull(bytes.NewReader(nil), n); err != io.EOF {
			t.Errorf("%d bytes from none: %v, want io.EOF", n, err)
		}
		b, err := ReadFull(bytes.NewReader(bytes.Repeat([]byte{1}, n+5)), n)
		if err != nil || len(b) != n || b[n-1] != 1 {
			t.Errorf("%d bytes: len %d, %v", n, len(b), err)
		}
	}
}
