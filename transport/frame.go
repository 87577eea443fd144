package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"dse.dev/dse/internal/bigmem"
)

// Connection protocols, the first byte of every inbound connection.
const (
	ProtoRaft byte = 'R'
	ProtoDSE  byte = 'D'
)

// Frame types reserved by the transport; users pick types below TypeReserved.
const (
	TypeReserved byte = 0xF0
	typeLong     byte = 0xFC // reply: an 8-byte length, then that many bytes unframed
	typePing     byte = 0xFD // request; answered with an empty reply
	typeError    byte = 0xFE // reply carrying an error message
	typeReply    byte = 0xFF // reply carrying a body
)

// HeaderSize is the size of a frame header.
const HeaderSize = 9

// A streamed reply over the frame limit (a big table's snapshot) goes as a
// long reply: a typeLong frame whose 8-byte body is the reply's length,
// followed on the connection by exactly that many bytes, unframed. The
// server writes it whole under the connection's lock, so nothing comes
// between; the reader bounds it by MaxReplySize, not by the frame limit.
const longHeaderSize = 8

// Frame is one decoded frame. A request has a non-zero ID; one-way messages
// have ID 0; replies carry the ID of their request.
type Frame struct {
	Type byte
	ID   uint32
	Body []byte
}

// Frame decoding errors.
var (
	// ErrFrameTooLarge is returned for a frame whose body exceeds the limit.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrBadProtocol is returned for a connection whose first byte is unknown.
	ErrBadProtocol = errors.New("transport: unknown protocol byte")
)

// appendHeader appends the header of a frame with a body of n bytes.
func appendHeader(b []byte, typ byte, id uint32, n int) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, id)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// WriteFrame writes one frame to w. It does not flush.
func WriteFrame(w io.Writer, f Frame, max int) error {
	if len(f.Body) > max {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(f.Body), max)
	}
	var hdr [HeaderSize]byte
	appendHeader(hdr[:0], f.Type, f.ID, len(f.Body))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(f.Body)
	return err
}

// ReadFrame reads one frame from r, refusing bodies over max bytes before
// allocating them. A truncated frame is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, max int) (Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	return readBody(r, hdr, max)
}

func readBody(r io.Reader, hdr [HeaderSize]byte, max int) (Frame, error) {
	return readBodyInto(r, hdr, max, nil)
}

// readBodyInto reads a frame's body into buf when it fits there, else into
// a new slice.
func readBodyInto(r io.Reader, hdr [HeaderSize]byte, max int, buf []byte) (Frame, error) {
	f := Frame{Type: hdr[0], ID: binary.BigEndian.Uint32(hdr[1:5])}
	n := binary.BigEndian.Uint32(hdr[5:9])
	if uint64(n) > uint64(max) {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	var err error
	if uint64(n) <= uint64(cap(buf)) {
		f.Body = buf[:n]
		_, err = io.ReadFull(r, f.Body)
	} else {
		f.Body, err = bigmem.ReadFull(r, int(n))
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return f, nil
}
