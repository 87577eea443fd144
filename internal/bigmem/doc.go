// Package bigmem allocates the big, short-lived-to-fill buffers of the
// publish path (a snapshot's frame, its decode slabs, a big table's index)
// so that the kernel maps them with transparent huge pages where it can.
//
// Why: filling fresh memory costs a page fault per 4 KiB. On the VM the
// benchmarks run on, that is 12-16 µs a fault, so the 180 MB a new
// subscriber fills for a million-row snapshot took 0.5 s in faults alone;
// the same memory in 2 MiB pages takes a few milliseconds of faults when
// the VM's host already backs it. When it does not, it costs far more:
// that VM hands the memory its kernel frees back to the host (virtio
// balloon free page reporting, page_reporting_order=11 on its kernel
// command line), so memory a process takes from the kernel is mostly
// cold, and a huge page of it faults in at 400-520 MB/s on one thread,
// 800-950 MB/s on two (measured with MADV_POPULATE_WRITE on fresh
// mappings; 4 KiB pages: 290-320 MB/s however warm). That is why the
// biggest buffers are populated by two threads, and ReadFull populates a
// frame a chunk at a time as it arrives, overlapping the faults with the
// sender's work. Linux
// set to transparent_hugepage=madvise (the usual default) gives huge pages
// only to memory that asks, and the Go runtime no longer asks (Go 1.21.1
// dropped it: khugepaged collapsing memory the scavenger had returned grew
// RSS, golang/go#63334).
//
// So Make asks for huge pages, populates the buffer at once, then takes the
// request back (MADV_NOHUGEPAGE): the pages it got stay huge, and nothing
// the Go heap later puts at those addresses is collapsed behind the
// scavenger's back, which was #63334's trouble. It asks only when the kernel
// has free blocks of huge-page size to spare (/proc/buddyinfo): otherwise a
// fault would compact memory first, which can stall far longer than the
// faults it saves (golang/go#61718). Buffers under 4 MiB, other systems,
// THP set to never or always, and GODEBUG=disablethp=1 in the environment
// all get a plain make.
package bigmem
