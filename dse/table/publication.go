package table

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"dse.dev/dse/internal/mpcheck"
)

// Publication is one sequenced change of a table: a snapshot (Rows is the
// whole content) or a delta (Add and Del).
type Publication struct {
	Publisher string
	Table     string
	Seqnum    uint64
	Snapshot  bool
	Rows      []Row
	Add       []Row
	Del       []Row
	// SentAt is the publisher's clock (Unix nanoseconds) at the publish
	// call, for latency measurement only.
	SentAt int64
}

var (
	_ msgpack.CustomEncoder = (*Publication)(nil)
	_ msgpack.CustomDecoder = (*Publication)(nil)
)

const pubFields = 8

// EncodeMsgpack writes p as a msgpack array, without reflection.
func (p *Publication) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(pubFields); err != nil {
		return err
	}
	enc.EncodeString(p.Publisher)
	enc.EncodeString(p.Table)
	enc.EncodeUint(p.Seqnum)
	enc.EncodeBool(p.Snapshot)
	if err := encodeRows(enc, p.Rows); err != nil {
		return err
	}
	if err := encodeRows(enc, p.Add); err != nil {
		return err
	}
	if err := encodeRows(enc, p.Del); err != nil {
		return err
	}
	return enc.EncodeInt(p.SentAt)
}

func encodeRows(enc *msgpack.Encoder, rows []Row) error {
	if err := enc.EncodeArrayLen(len(rows)); err != nil {
		return err
	}
	for _, r := range rows {
		if err := enc.EncodeArrayLen(len(r)); err != nil {
			return err
		}
		for _, v := range r {
			var err error
			switch x := v.(type) {
			case nil:
				err = enc.EncodeNil()
			case bool:
				err = enc.EncodeBool(x)
			case int64:
				err = enc.EncodeInt(x)
			case float64:
				err = enc.EncodeFloat64(x)
			case string:
				err = enc.EncodeString(x)
			case []byte:
				err = enc.EncodeBytes(x)
			default:
				return fmt.Errorf("%w: %T is not canonical", ErrBadRow, v)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// DecodeMsgpack reads a publication written by EncodeMsgpack.
func (p *Publication) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n != pubFields {
		return fmt.Errorf("publication has %d fields, want %d", n, pubFields)
	}
	if p.Publisher, err = dec.DecodeString(); err != nil {
		return err
	}
	if p.Table, err = dec.DecodeString(); err != nil {
		return err
	}
	if p.Seqnum, err = dec.DecodeUint64(); err != nil {
		return err
	}
	if p.Snapshot, err = dec.DecodeBool(); err != nil {
		return err
	}
	if p.Rows, err = decodeRows(dec); err != nil {
		return err
	}
	if p.Add, err = decodeRows(dec); err != nil {
		return err
	}
	if p.Del, err = decodeRows(dec); err != nil {
		return err
	}
	p.SentAt, err = dec.DecodeInt64()
	return err
}

// maxPrealloc bounds what a declared length may preallocate: a hostile
// length must not allocate more than the bytes that back it.
const maxPrealloc = 1 << 16

func decodeRows(dec *msgpack.Decoder) ([]Row, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	rows := make([]Row, 0, min(n, maxPrealloc))
	for i := 0; i < n; i++ {
		m, err := dec.DecodeArrayLen()
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		if m < 0 {
			rows = append(rows, Row{}) // msgpack nil: no columns
			continue
		}
		if m > DefaultLimits.MaxColumns {
			return nil, fmt.Errorf("%w: row %d has %d columns, limit %d", ErrBadRow, i, m, DefaultLimits.MaxColumns)
		}
		r := make(Row, m)
		for j := range r {
			if r[j], err = decodeScalar(dec); err != nil {
				return nil, fmt.Errorf("%w: row %d column %d: %v", ErrBadRow, i, j, err)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func decodeScalar(dec *msgpack.Decoder) (any, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		return nil, dec.DecodeNil()
	case c == msgpcode.True || c == msgpcode.False:
		return dec.DecodeBool()
	case msgpcode.IsFixedNum(c) || c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64 ||
		c == msgpcode.Uint8 || c == msgpcode.Uint16 || c == msgpcode.Uint32:
		return dec.DecodeInt64()
	case c == msgpcode.Uint64:
		u, err := dec.DecodeUint64()
		if err != nil {
			return nil, err
		}
		return Canonical(u)
	case c == msgpcode.Float || c == msgpcode.Double:
		return dec.DecodeFloat64()
	case msgpcode.IsString(c):
		return dec.DecodeString()
	case msgpcode.IsBin(c):
		return dec.DecodeBytes()
	}
	return nil, fmt.Errorf("msgpack code %#x is not a scalar", c)
}

// ErrBadBatch is returned for a publication batch that does not decode.
var ErrBadBatch = errors.New("malformed publication batch")

// Encode returns p's msgpack encoding, to be sent once to every node that
// wants it (AppendBatch joins encodings into one frame).
func (p *Publication) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	if err := p.EncodeMsgpack(enc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// AppendBatch appends a batch header for n publications to b; the caller
// appends n encodings after it.
func AppendBatch(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, byte(msgpcode.FixedArrayLow)|byte(n))
	case n <= 0xffff:
		return append(b, msgpcode.Array16, byte(n>>8), byte(n))
	}
	return append(b, msgpcode.Array32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// DecodeBatch decodes a frame of publications.
func DecodeBatch(body []byte) ([]*Publication, error) {
	if err := mpcheck.Check(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(body))
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	out := make([]*Publication, 0, min(n, maxPrealloc))
	for i := 0; i < n; i++ {
		p := new(Publication)
		if err := p.DecodeMsgpack(dec); err != nil {
			return nil, fmt.Errorf("%w: publication %d: %v", ErrBadBatch, i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// BatchHeaderSize is the size of the fixed batch header PutBatchHeader
// writes.
const BatchHeaderSize = 5

// PutBatchHeader writes a fixed-size header for n publications into
// b[:BatchHeaderSize], so a frame can be built before its count is known.
func PutBatchHeader(b []byte, n int) {
	b[0] = msgpcode.Array32
	b[1], b[2], b[3], b[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}
