package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The serving side of an inbound dse connection: requests read, handed to
// the handler, answered (streamed when long) in any order.

// serverConn is an inbound dse connection; replies are written under mu.
type serverConn struct {
	t        *Transport
	conn     net.Conn
	mu       sync.Mutex
	w        *bufio.Writer
	inflight atomic.Int32 // requests being answered
}

func (t *Transport) serveDSE(conn net.Conn) {
	defer func() {
		t.untrack(conn)
		conn.Close()
	}()
	sc := &serverConn{t: t, conn: conn, w: bufio.NewWriterSize(conn, 64<<10)}
	r := bufio.NewReaderSize(conn, 64<<10)
	from := conn.RemoteAddr().String()
	var hdr [HeaderSize]byte
	var msgBuf []byte // one-way frames' bodies, reused (see HandleMessage)
	for {
		conn.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		conn.SetReadDeadline(time.Now().Add(t.cfg.ReadTimeout))
		var buf []byte
		if binary.BigEndian.Uint32(hdr[1:5]) == 0 {
			// One-way: read into the reused buffer, grown up to 1 MiB
			// (larger bodies get their own slice).
			if n := int(binary.BigEndian.Uint32(hdr[5:9])); n > cap(msgBuf) && n <= 1<<20 {
				msgBuf = make([]byte, max(n, 64<<10))
			}
			buf = msgBuf
		}
		f, err := readBodyInto(r, hdr, t.cfg.MaxFrameSize, buf)
		if err != nil {
			t.cfg.Logger.Warn("closing connection", "remote", from, "error", err)
			return
		}
		switch {
		case f.Type == typePing:
			if err := sc.reply(Frame{Type: typeReply, ID: f.ID}); err != nil {
				return
			}
		case f.Type >= TypeReserved:
			t.cfg.Logger.Warn("closing connection", "remote", from, "error", "reserved frame type", "type", f.Type)
			return
		case f.ID == 0:
			if h := t.getHandler(); h != nil {
				h.HandleMessage(from, f.Type, f.Body)
			}
		default:
			if int(sc.inflight.Add(1)) > t.cfg.MaxRequests {
				// A peer that sends requests without waiting for answers
				// would otherwise hold a goroutine and a body for each.
				// The refusal comes before any handler: the request may
				// be sent again.
				sc.inflight.Add(-1)
				msg := fmt.Appendf(nil, "%d requests in flight on this connection, its limit: try again", t.cfg.MaxRequests)
				if err := sc.reply(Frame{Type: typeError, ID: f.ID, Body: msg}); err != nil {
					return
				}
				continue
			}
			t.goFunc(func() {
				defer sc.inflight.Add(-1)
				sc.answer(f)
			})
		}
	}
}

func (sc *serverConn) answer(f Frame) {
	h := sc.t.getHandler()
	var body []byte
	err := errors.New("node is starting")
	if sh, ok := h.(StreamHandler); ok {
		var stream StreamBody
		if stream, ok, err = sh.StreamRequest(sc.t.ctx, f.Type, f.Body); ok && err == nil {
			sc.answerStream(f.ID, stream)
			return
		} else if ok {
			h = nil // answer with err
		}
	}
	if h != nil {
		body, err = h.HandleRequest(sc.t.ctx, f.Type, f.Body)
	}
	out := Frame{Type: typeReply, ID: f.ID, Body: body}
	if err != nil {
		out = Frame{Type: typeError, ID: f.ID, Body: []byte(err.Error())}
	}
	if len(out.Body) > sc.t.cfg.MaxFrameSize {
		out = Frame{Type: typeError, ID: f.ID, Body: fmt.Appendf(nil, "reply of %d bytes exceeds the frame limit %d", len(out.Body), sc.t.cfg.MaxFrameSize)}
	}
	if faults := sc.t.cfg.Faults; faults != nil && faults.replyLost() {
		sc.conn.Close()
		return
	}
	if sc.reply(out) != nil {
		sc.conn.Close()
	}
}

// answerStream writes a streamed reply. A stream that fails or writes
// other than its declared length leaves a broken frame behind: the
// connection closes, and the caller's request fails with it.
func (sc *serverConn) answerStream(id uint32, body StreamBody) {
	n := body.Len()
	if int64(n) > sc.t.cfg.MaxReplySize {
		if sc.reply(Frame{Type: typeError, ID: id, Body: fmt.Appendf(nil, "reply of %d bytes exceeds the reply limit %d", n, sc.t.cfg.MaxReplySize)}) != nil {
			sc.conn.Close()
		}
		return
	}
	if faults := sc.t.cfg.Faults; faults != nil && faults.replyLost() {
		sc.conn.Close()
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	// The deadline is per flush of WriteTimeout, over a body that may be
	// large: give it one for each 8 MiB as well.
	sc.conn.SetWriteDeadline(time.Now().Add(sc.t.cfg.WriteTimeout * time.Duration(1+n/(8<<20))))
	var hdr [HeaderSize + longHeaderSize]byte
	h := appendHeader(hdr[:0], typeReply, id, n)
	if n > sc.t.cfg.MaxFrameSize {
		h = binary.BigEndian.AppendUint64(appendHeader(hdr[:0], typeLong, id, longHeaderSize), uint64(n))
	}
	_, err := sc.w.Write(h)
	var wrote int64
	if err == nil {
		// Capped: bytes past the declared length would be read as the
		// frames after it.
		wrote, err = body.WriteTo(&cappedWriter{w: sc.w, left: int64(n)})
	}
	if err == nil && wrote != int64(n) {
		err = fmt.Errorf("streamed reply of %d bytes declared %d", wrote, n)
	}
	if err == nil {
		err = sc.w.Flush()
	}
	if err != nil {
		sc.t.cfg.Logger.Warn("closing connection after a failed streamed reply", "error", err)
		sc.conn.Close()
	}
}

// cappedWriter refuses, whole, a write that would go past left bytes.
type cappedWriter struct {
	w    io.Writer
	left int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		return 0, fmt.Errorf("streamed reply longer than the %d bytes it declared", c.left)
	}
	n, err := c.w.Write(p)
	c.left -= int64(n)
	return n, err
}

func (sc *serverConn) reply(f Frame) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.conn.SetWriteDeadline(time.Now().Add(sc.t.cfg.WriteTimeout))
	if err := WriteFrame(sc.w, f, sc.t.cfg.MaxFrameSize); err != nil {
		return err
	}
	return sc.w.Flush()
}
