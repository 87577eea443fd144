package table

import (
	"errors"
	"fmt"

	"dse.dev/dse/internal/bigmem"
)

// Publication is one sequenced change of a table: a snapshot (Rows is the
// whole content) or a delta (Add and Del).
type Publication struct {
	Publisher string
	Table     string
	Seqnum    uint64
	Snapshot  bool
	// Rows, Add and Del of a decoded publication are shared by everyone it
	// is delivered to, and must not be changed.
	Rows []Row
	Add  []Row
	Del  []Row
	// SentAt is the publisher's clock (Unix nanoseconds) at the publish
	// call, for latency measurement only.
	SentAt int64

	// rowHashes are Rows' hashes, which the decoder computes (nil where
	// none did): ApplyTo hands them to the set. hashedRows is the Rows
	// they were computed for.
	rowHashes  []uint64
	hashedRows *Row
	// rawRows, of a decoded snapshot whose rows all came in their
	// canonical encoding, is a copy of those encodings end to end: a
	// Packed set keeps it as it is (every subscriber's cache on the node
	// sharing it) instead of encoding the rows again.
	rawRows []byte
	// rowStarts are where each row begins in rawRows.
	rowStarts []uint64
}

// ApplyTo applies p to s and returns what changed: a snapshot replaces the
// content (Set.Replace), a delta removes Del then adds Add (Set.Apply). A
// decoded snapshot's rows come with their hashes, which s then keeps
// instead of computing them. The rows of a decoded publication must not
// change afterwards (no one's do: publications are shared by every
// subscriber they are delivered to).
func (p *Publication) ApplyTo(s *Set) (added, deleted []Row) {
	if !p.Snapshot {
		return s.Apply(p.Add, p.Del)
	}
	hashes := p.rowHashes
	if len(hashes) != len(p.Rows) || len(p.Rows) == 0 || p.hashedRows != &p.Rows[0] {
		hashes = nil
	}
	return s.replace(p.Rows, hashes)
}

// ApplyToPacked is ApplyTo for a Packed set. A decoded snapshot's rows
// come with their encodings and hashes, which s keeps.
func (p *Publication) ApplyToPacked(s *Packed) (added, deleted []Row) {
	if !p.Snapshot {
		return s.Apply(p.Add, p.Del)
	}
	hashes, raw, starts := p.rowHashes, p.rawRows, p.rowStarts
	if len(hashes) != len(p.Rows) || len(p.Rows) == 0 || p.hashedRows != &p.Rows[0] {
		hashes, raw, starts = nil, nil, nil
	}
	return s.replace(p.Rows, packedRows{raw, starts}, hashes)
}

const pubFields = 8

const (
	// minPublication is the smallest encoding of a publication: an array
	// header and eight one-byte fields.
	minPublication = 9
	// pubChunk is how many publications DecodeBatch allocates at once.
	pubChunk = 256
)

// AppendTo appends p's msgpack encoding (an array of its fields) to b.
func (p *Publication) AppendTo(b []byte) ([]byte, error) {
	b = p.appendHead(b)
	var err error
	for _, rows := range [][]Row{p.Rows, p.Add, p.Del} {
		if b, err = appendRows(b, rows); err != nil {
			return nil, err
		}
	}
	return appendInt(b, p.SentAt), nil
}

// appendHead appends the fields before the rows arrays (AppendTo's and
// StreamTo's first bytes).
func (p *Publication) appendHead(b []byte) []byte {
	b = appendArrayLen(b, pubFields)
	b = appendString(b, p.Publisher)
	b = appendString(b, p.Table)
	b = appendUint(b, p.Seqnum)
	return appendBool(b, p.Snapshot)
}

// decode reads a publication written by AppendTo; prev (may be nil) is the
// publication before it in the batch, whose strings it reuses.
func (p *Publication) decode(r *reader, lim Limits, prev *Publication) error {
	n, err := r.arrayLen()
	if err != nil {
		return err
	}
	if n != pubFields {
		return fmt.Errorf("publication has %d fields, want %d", n, pubFields)
	}
	if prev == nil {
		prev = &Publication{}
	}
	if p.Publisher, err = r.stringLike(prev.Publisher); err != nil {
		return err
	}
	if p.Table, err = r.stringLike(prev.Table); err != nil {
		return err
	}
	if p.Seqnum, err = r.uint(); err != nil {
		return err
	}
	if p.Snapshot, err = r.bool(); err != nil {
		return err
	}
	// A snapshot's rows are hashed as they decode: a set is loaded with
	// them next (ApplyTo).
	var hashes *[]uint64
	if p.Snapshot {
		hashes = &p.rowHashes
	}
	rowsAt := r.pos
	r.notCanon, r.rowStarts = false, nil
	if err := r.decodeRowArrays(lim, hashes, &p.Rows, &p.Add, &p.Del); err != nil {
		return err
	}
	if len(p.Rows) > 0 {
		p.hashedRows = &p.Rows[0]
		if p.Snapshot && !r.notCanon {
			// Copied unless the body is owned: a lent one is reused (a
			// push frame's reader's buffer).
			rr := reader{b: r.b, pos: rowsAt}
			rr.arrayLen()
			if p.rawRows = r.b[rr.pos:r.firstEnd:r.firstEnd]; !r.owned {
				p.rawRows = bigmem.Make[byte](r.firstEnd - rr.pos)
				copy(p.rawRows, r.b[rr.pos:r.firstEnd])
			}
			if len(r.rowStarts) == len(p.Rows) {
				p.rowStarts = r.rowStarts
				for i := range p.rowStarts {
					p.rowStarts[i] -= uint64(rr.pos)
				}
			}
		}
	}
	p.SentAt, err = r.int()
	return err
}

// ErrBadBatch is returned for a publication batch that does not decode.
var ErrBadBatch = errors.New("malformed publication batch")

// Encode returns p's msgpack encoding, to be sent once to every node that
// wants it (AppendBatch joins encodings into one frame).
func (p *Publication) Encode() ([]byte, error) {
	return p.AppendTo(make([]byte, 0, p.SizeHint()))
}

// SizeHint guesses p's encoded size from a sample of its rows, so that a
// big snapshot is encoded without growing its buffer many times.
func (p *Publication) SizeHint() int {
	size := 64 + len(p.Publisher) + len(p.Table)
	for _, rows := range [][]Row{p.Rows, p.Add, p.Del} {
		if len(rows) == 0 {
			continue
		}
		step := max(1, len(rows)/64)
		sample, seen := 0, 0
		for i := 0; i < len(rows); i += step {
			sample += rowSizeHint(rows[i])
			seen++
		}
		size += sample * len(rows) / seen
	}
	return min(size+size/8, 64<<20)
}

func rowSizeHint(r Row) int {
	n := 1
	for _, v := range r {
		switch x := v.(type) {
		case string:
			n += 5 + len(x)
		case []byte:
			n += 5 + len(x)
		default:
			n += 9
		}
	}
	return n
}

// AppendBatch appends a batch header for n publications to b; the caller
// appends n encodings after it.
func AppendBatch(b []byte, n int) []byte { return appendArrayLen(b, n) }

// DecodeBatch decodes a frame of publications. It checks every length
// against the bytes present before allocating, and bounds rows, columns and
// strings by DefaultLimits. The rows do not share memory with body.
func DecodeBatch(body []byte) ([]*Publication, error) { return decodeBatch(body, false) }

// DecodeOwnedBatch is DecodeBatch for a body that is the caller's to give
// away (a catch-up reply, read into a buffer of its own): a snapshot's row
// encodings are kept from it, not copied, for the Packed sets that load
// the snapshot (which then keep body alive).
func DecodeOwnedBatch(body []byte) ([]*Publication, error) { return decodeBatch(body, true) }

func decodeBatch(body []byte, owned bool) ([]*Publication, error) {
	r := &reader{b: body, owned: owned}
	n, err := r.arrayLen()
	if err == nil && n < 0 {
		err = errors.New("nil batch")
	}
	if err == nil && n > r.left()/minPublication {
		err = errShort
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	lim := DefaultLimits
	// Allocated as they decode, in chunks: what a hostile count claims is
	// never allocated up front.
	out := make([]*Publication, 0, min(n, pubChunk))
	var (
		pubs []Publication
		prev *Publication
	)
	for i := 0; i < n; i++ {
		if len(pubs) == 0 {
			pubs = make([]Publication, min(n-i, pubChunk))
		}
		p := &pubs[0]
		pubs = pubs[1:]
		if err := p.decode(r, lim, prev); err != nil {
			return nil, fmt.Errorf("%w: publication %d: %v", ErrBadBatch, i, err)
		}
		out = append(out, p)
		prev = p
	}
	if r.left() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after %d publications", ErrBadBatch, r.left(), n)
	}
	return out, nil
}

// BatchHeaderSize is the size of the fixed batch header PutBatchHeader
// writes.
const BatchHeaderSize = 5

// PutBatchHeader writes a fixed-size header for n publications into
// b[:BatchHeaderSize], so a frame can be built before its count is known.
func PutBatchHeader(b []byte, n int) {
	b[0] = mpArray32
	b[1], b[2], b[3], b[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// BatchCount returns the publication count of a frame that starts with the
// fixed-size header PutBatchHeader writes.
func BatchCount(frame []byte) int {
	if len(frame) < BatchHeaderSize || frame[0] != mpArray32 {
		return 0
	}
	return int(frame[1])<<24 | int(frame[2])<<16 | int(frame[3])<<8 | int(frame[4])
}
