package bigmem

import (
	"bytes"
	"math/bits"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page, 0 when huge pages must
// not be asked for: THP not in madvise mode (in always mode the kernel
// gives them unasked), or turned off for this program's heap with
// GODEBUG=disablethp=1.
var hugePage = sync.OnceValue(func() uintptr {
	for _, kv := range strings.Split(os.Getenv("GODEBUG"), ",") {
		if kv == "disablethp=1" {
			return 0
		}
	}
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || !bytes.Contains(mode, []byte("[madvise]")) {
		return 0
	}
	size, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(size)), 10, 64)
	if err != nil || n == 0 || n&(n-1) != 0 || n < uint64(os.Getpagesize()) {
		return 0
	}
	return uintptr(n)
})

// populate maps the whole huge pages inside b (fresh, zero memory) as
// huge pages. Any failure leaves b as it is, to fault in page by page.
func populate(b []byte) {
	p := startPopulate(b)
	defer p.finish()
	r := p.r
	// Two threads fault pages in at once where the program may run two:
	// the kernel zeroes each page as it maps it.
	if len(r) < parallelSize || runtime.GOMAXPROCS(0) < 2 {
		fault(r, p.huge)
		return
	}
	half := len(r) / 2 &^ (int(p.huge) - 1)
	done := make(chan struct{})
	go func() {
		fault(r[half:], p.huge)
		close(done)
	}()
	fault(r[:half], p.huge)
	<-done
}

// populator populates the whole huge pages of a buffer, all at once or a
// part at a time.
type populator struct {
	r       []byte  // the buffer's whole huge pages, asked to be huge; nil: none
	off     uintptr // r's offset in the buffer
	huge    uintptr
	faulted uintptr // r[:faulted] is populated
}

// startPopulate asks for huge pages over b's whole huge pages, when the
// kernel has them to spare.
func startPopulate(b []byte) populator {
	huge := hugePage()
	if huge == 0 {
		return populator{}
	}
	off := (huge - uintptr(unsafe.Pointer(unsafe.SliceData(b)))%huge) % huge
	if off >= uintptr(len(b)) {
		return populator{}
	}
	whole := (uintptr(len(b)) - off) &^ (huge - 1)
	if whole == 0 || !freeHugePages(int(whole/huge), huge) {
		return populator{}
	}
	r := b[off : off+whole]
	if unix.Madvise(r, unix.MADV_HUGEPAGE) != nil {
		return populator{}
	}
	return populator{r: r, off: off, huge: huge}
}

// upTo populates the huge pages holding the buffer's bytes before end.
func (p *populator) upTo(end int) {
	if p.r == nil || uintptr(end) <= p.off {
		return
	}
	to := min((uintptr(end)-p.off+p.huge-1)&^(p.huge-1), uintptr(len(p.r)))
	if to > p.faulted {
		fault(p.r[p.faulted:to], p.huge)
		p.faulted = to
	}
}

// finish takes back the request for huge pages: the pages got stay huge,
// and what the Go heap later puts there is not collapsed (see doc.go).
func (p *populator) finish() {
	if p.r != nil {
		unix.Madvise(p.r, unix.MADV_NOHUGEPAGE)
	}
}

// parallelSize is the size from which two threads populate a buffer.
const parallelSize = 16 << 20

// fault populates r, whole huge pages asking to be huge.
func fault(r []byte, huge uintptr) {
	if len(r) == 0 || unix.Madvise(r, unix.MADV_POPULATE_WRITE) == nil {
		return
	}
	// Before Linux 5.14: a write per huge page faults it in. The memory is
	// zero, and stays zero.
	for i := 0; i < len(r); i += int(huge) {
		r[i] = 0
	}
}

// freeHugePages reports whether the kernel has n huge pages' worth of free
// blocks at least that big (twice over), read from /proc/buddyinfo. A fault
// in memory that asked for huge pages compacts memory to make one when
// none is free (THP defrag, "madvise" by default), which can stall for far
// longer than the faults saved (golang/go#61718): without free blocks, the
// buffer is left to ordinary pages.
func freeHugePages(n int, huge uintptr) bool {
	info, err := os.ReadFile("/proc/buddyinfo")
	if err != nil {
		return false
	}
	order := bits.TrailingZeros64(uint64(huge) / uint64(os.Getpagesize()))
	return freeBlocks(string(info), order) >= 2*n
}

// freeBlocks counts, in blocks of 2^order pages, the free memory in blocks
// at least that big in a /proc/buddyinfo (zone DMA aside: user memory does
// not come from it); -1 if it does not parse.
func freeBlocks(info string, order int) int {
	free := 0
	for line := range strings.Lines(info) {
		// "Node 0, zone   Normal  <free blocks of order 0> <order 1> ..."
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "Node" || f[2] != "zone" {
			return -1
		}
		if f[3] == "DMA" {
			continue
		}
		for o, s := range f[4:] {
			c, err := strconv.Atoi(s)
			if err != nil {
				return -1
			}
			if o >= order {
				free += c << (o - order)
			}
		}
	}
	return free
}
