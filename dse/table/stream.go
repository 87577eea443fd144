package table

import (
	"fmt"
	"io"
	"math"
	"runtime"

	"dse.dev/dse/internal/bigmem"
)

// Streaming: a big snapshot is written to a connection as it is encoded,
// in chunks of a reused buffer, instead of being encoded into one buffer of
// its whole size first. That buffer (26 MB for a million rows of three
// columns) cost a publisher node more to allocate and zero (page faults
// on memory the Go heap had returned) than the encoding itself, and the
// subscriber could read nothing until all of it was built. The frame
// carrying the stream declares its length first, so EncodedLen computes the
// exact size in a pass that writes nothing.

// streamChunk is how much a stream encodes before writing it out; the
// buffer it fills has streamSlack more, so that the row crossing the
// chunk's end seldom grows it.
const (
	streamChunk = 256 << 10
	streamSlack = 4 << 10
)

// EncodedLen returns the exact length of p's encoding (AppendTo's), or the
// error AppendTo would return.
func (p *Publication) EncodedLen() (int, error) {
	n := arrayLenLen(pubFields) + stringLen(p.Publisher) + stringLen(p.Table) + uintLen(p.Seqnum) + 1 + intLen(p.SentAt)
	for _, rows := range [][]Row{p.Rows, p.Add, p.Del} {
		m, err := rowsLen(rows)
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// StreamTo writes p's encoding (AppendTo's bytes) to w, a chunk at a time,
// using buf's memory for the chunks. It returns the bytes written.
func (p *Publication) StreamTo(w io.Writer, buf []byte) (int64, error) {
	s := &streamer{w: w, b: p.appendHead(buf[:0])}
	for _, rows := range [][]Row{p.Rows, p.Add, p.Del} {
		s.b = appendArrayLen(s.b, len(rows))
		for _, r := range rows {
			var err error
			if s.b, err = appendRow(s.b, r); err != nil {
				return s.n, err
			}
			if len(s.b) >= streamChunk {
				if err := s.flush(); err != nil {
					return s.n, err
				}
			}
		}
	}
	s.b = appendInt(s.b, p.SentAt)
	return s.n, s.flush()
}

type streamer struct {
	w io.Writer
	b []byte
	n int64
}

func (s *streamer) flush() error {
	m, err := s.w.Write(s.b)
	s.n += int64(m)
	s.b = s.b[:0]
	return err
}

// rowsLen is the length of appendRows' encoding of rows. A big array is
// measured in two halves at once where the program may run two goroutines
// at once: the subscriber waits for it before the first byte comes.
func rowsLen(rows []Row) (int, error) {
	if len(rows) < parallelRows || runtime.GOMAXPROCS(0) < 2 {
		n, err := rowsBodyLen(rows)
		return arrayLenLen(len(rows)) + n, err
	}
	half := len(rows) / 2
	var n2 int
	var err2 error
	done := make(chan struct{})
	go func() {
		n2, err2 = rowsBodyLen(rows[half:])
		close(done)
	}()
	n1, err := rowsBodyLen(rows[:half])
	<-done
	if err == nil {
		err = err2
	}
	return arrayLenLen(len(rows)) + n1 + n2, err
}

// rowsBodyLen is the length of the rows' encodings.
func rowsBodyLen(rows []Row) (int, error) {
	n := 0
	for _, r := range rows {
		n += arrayLenLen(len(r))
		for _, v := range r {
			switch x := v.(type) {
			case nil, bool:
				n++
			case int64:
				n += intLen(x)
			case float64:
				n += 9
			case string:
				n += stringLen(x)
			case []byte:
				n += bytesLen(len(x))
			default:
				return 0, fmt.Errorf("%w: %T is not canonical", ErrBadRow, v)
			}
		}
	}
	return n, nil
}

// The lengths of what the append functions of codec.go write.

func arrayLenLen(n int) int {
	switch {
	case n < 16:
		return 1
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

func stringLen(s string) int {
	n := len(s)
	switch {
	case n < 32:
		return 1 + n
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

func bytesLen(n int) int {
	switch {
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

func uintLen(u uint64) int {
	switch {
	case u <= 0x7f:
		return 1
	case u <= math.MaxUint8:
		return 2
	case u <= math.MaxUint16:
		return 3
	case u <= math.MaxUint32:
		return 5
	}
	return 9
}

func intLen(i int64) int {
	switch {
	case i >= 0:
		return uintLen(uint64(i))
	case i >= -32:
		return 1
	case i >= math.MinInt8:
		return 2
	case i >= math.MinInt16:
		return 3
	case i >= math.MinInt32:
		return 5
	}
	return 9
}

// BatchStream is a batch of publications encoded as it is written: the
// body of a reply the transport sends under its declared length
// (transport.StreamBody), so a big table's snapshot is never held encoded
// in full.
type BatchStream struct {
	pubs []*Publication
	n    int
}

// NewBatchStream sizes the batch of pubs exactly (EncodedLen).
func NewBatchStream(pubs []*Publication) (*BatchStream, error) {
	s := &BatchStream{pubs: pubs, n: BatchHeaderSize}
	for _, p := range pubs {
		m, err := p.EncodedLen()
		if err != nil {
			return nil, err
		}
		s.n += m
	}
	return s, nil
}

// Len returns the batch's encoded length.
func (s *BatchStream) Len() int { return s.n }

// WriteTo writes the batch, header first, a chunk at a time, in a buffer
// of the batch's size when it is smaller than a chunk: a catch-up of a
// small table took a whole chunk, and a subscriber of 4,096 one-row
// tables cost its publisher 8,192 of them (2 GB of garbage) as it joined.
func (s *BatchStream) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, BatchHeaderSize, min(max(s.n, BatchHeaderSize), streamChunk+streamSlack))
	PutBatchHeader(buf, len(s.pubs))
	m, err := w.Write(buf)
	total := int64(m)
	for _, p := range s.pubs {
		if err != nil {
			break
		}
		var k int64
		k, err = p.StreamTo(w, buf)
		total += k
	}
	return total, err
}

// EncodeBatch encodes pubs as one batch, into a buffer of their estimated
// size (big ones ask for huge pages: package internal/bigmem).
func EncodeBatch(pubs []*Publication) ([]byte, error) {
	size := BatchHeaderSize
	for _, p := range pubs {
		size += p.SizeHint()
	}
	out := bigmem.Make[byte](size)[:BatchHeaderSize]
	var err error
	for _, p := range pubs {
		if out, err = p.AppendTo(out); err != nil {
			return nil, err
		}
	}
	PutBatchHeader(out, len(pubs))
	return out, nil
}
