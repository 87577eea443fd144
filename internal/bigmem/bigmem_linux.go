package bigmem

import (
	"os"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePage = 2 << 20

// advise says whether huge pages must be asked for: THP in madvise mode,
// and not turned off for this program's heap.
var advise = sync.OnceValue(func() bool {
	for _, kv := range strings.Split(os.Getenv("GODEBUG"), ",") {
		if kv == "disablethp=1" {
			return false
		}
	}
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && strings.Contains(string(mode), "[madvise]")
})

// populate maps the whole huge pages inside b (fresh, zero memory) as
// huge pages. Any failure leaves b as it is, to fault in page by page.
func populate(b []byte) {
	if !advise() {
		return
	}
	off := (hugePage - uintptr(unsafe.Pointer(unsafe.SliceData(b)))%hugePage) % hugePage
	if off >= uintptr(len(b)) {
		return
	}
	whole := (uintptr(len(b)) - off) &^ (hugePage - 1)
	if whole == 0 {
		return
	}
	r := b[off : off+whole]
	if unix.Madvise(r, unix.MADV_HUGEPAGE) != nil {
		return
	}
	if unix.Madvise(r, unix.MADV_POPULATE_WRITE) != nil {
		// Before Linux 5.14: a write per huge page faults it in. The
		// memory is zero, and stays zero.
		for i := 0; i < len(r); i += hugePage {
			r[i] = 0
		}
	}
	unix.Madvise(r, unix.MADV_NOHUGEPAGE)
}
