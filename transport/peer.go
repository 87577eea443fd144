package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"dse.dev/dse/internal/bigmem"
)

// Errors of outbound traffic. Check them with errors.Is.
var (
	// ErrQueueFull is returned by Send when the peer's queue is full; the
	// frame is dropped.
	ErrQueueFull = errors.New("transport: send queue full")
	// ErrUnavailable is returned when a peer cannot be reached, or its
	// connection failed before a request's reply arrived.
	ErrUnavailable = errors.New("transport: peer unavailable")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("transport: closed")
	// ErrNotSent is wrapped, beside ErrUnavailable, in a Call's error when
	// its request was never written to a connection (the peer could not be
	// dialed): the peer cannot have acted on it. Other failures of a sent
	// request leave that open.
	ErrNotSent = errors.New("request not sent")
)

// RemoteError carries the error message a peer's handler returned.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

type outFrame struct {
	typ  byte
	id   uint32
	body []byte
}

type result struct {
	body []byte
	err  error
}

// peer is the outbound side towards one address: a bounded queue drained by
// one writer goroutine that owns the connection.
type peer struct {
	t     *Transport
	addr  string
	queue chan outFrame
	done  chan struct{}
	once  sync.Once

	nextID atomic.Uint32

	current atomic.Pointer[outConn] // the writer's live connection

	mu      sync.Mutex
	pending map[uint32]chan result
}

func (t *Transport) peer(addr string) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if p, ok := t.peers[addr]; ok {
		return p, nil
	}
	p := &peer{
		t:       t,
		addr:    addr,
		queue:   make(chan outFrame, t.cfg.SendQueue),
		done:    make(chan struct{}),
		pending: map[uint32]chan result{},
	}
	t.peers[addr] = p
	t.goFunc(p.writeLoop)
	return p, nil
}

func (p *peer) close() { p.once.Do(func() { close(p.done) }) }

// Send queues a one-way frame to addr without blocking. It fails with
// ErrQueueFull when the peer's queue is full; the frame is then dropped.
// Delivery is not confirmed: a frame may be lost with its connection.
func (t *Transport) Send(addr string, typ byte, body []byte) error {
	if typ >= TypeReserved {
		return fmt.Errorf("transport: frame type %#x is reserved", typ)
	}
	if len(body) > t.cfg.MaxFrameSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(body), t.cfg.MaxFrameSize)
	}
	p, err := t.peer(addr)
	if err != nil {
		return err
	}
	f := outFrame{typ: typ, body: body}
	if t.cfg.Faults != nil {
		copies, delay := t.cfg.Faults.Frame(addr)
		for range copies {
			if delay > 0 {
				time.AfterFunc(delay, func() { p.enqueue(f) })
			} else if err := p.enqueue(f); err != nil {
				return err
			}
		}
		return nil
	}
	return p.enqueue(f)
}

func (p *peer) enqueue(f outFrame) error {
	select {
	case <-p.done:
		return ErrClosed
	default:
	}
	select {
	case p.queue <- f:
		return nil
	default:
		return ErrQueueFull
	}
}

// Call sends a request to addr and waits for its reply. It returns
// ErrUnavailable (wrapped) when the peer cannot be reached (with ErrNotSent)
// or the connection fails first, a *RemoteError when the peer's handler
// failed, and ctx's error when ctx ends first.
func (t *Transport) Call(ctx context.Context, addr string, typ byte, body []byte) ([]byte, error) {
	if typ >= TypeReserved {
		return nil, fmt.Errorf("transport: frame type %#x is reserved", typ)
	}
	if len(body) > t.cfg.MaxFrameSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(body), t.cfg.MaxFrameSize)
	}
	p, err := t.peer(addr)
	if err != nil {
		return nil, err
	}
	id := p.nextID.Add(1)
	if id == 0 {
		id = p.nextID.Add(1)
	}
	ch := make(chan result, 1)
	p.mu.Lock()
	p.pending[id] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
	}()
	select {
	case p.queue <- outFrame{typ: typ, id: id, body: body}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, ErrClosed
	}
	select {
	case r := <-ch:
		return r.body, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, ErrClosed
	}
}

// readLong reads the body of a long reply whose typeLong frame f was just
// read: its declared length, bounded by MaxReplySize, of bytes that follow.
func (p *peer) readLong(oc *outConn, r *bufio.Reader, f Frame) ([]byte, error) {
	if len(f.Body) != longHeaderSize {
		return nil, fmt.Errorf("long reply header of %d bytes", len(f.Body))
	}
	n := binary.BigEndian.Uint64(f.Body)
	if n > uint64(p.t.cfg.MaxReplySize) {
		return nil, fmt.Errorf("%w: reply of %d bytes, limit %d", ErrFrameTooLarge, n, p.t.cfg.MaxReplySize)
	}
	// As for its writer: a ReadTimeout for each 8 MiB.
	oc.conn.SetReadDeadline(time.Now().Add(p.t.cfg.ReadTimeout * time.Duration(1+n/(8<<20))))
	body, err := bigmem.ReadFull(r, int(n))
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return body, err
}

// resolve completes the pending request id, if anyone still waits for it.
func (p *peer) resolve(id uint32, r result) {
	p.mu.Lock()
	ch, ok := p.pending[id]
	delete(p.pending, id)
	p.mu.Unlock()
	if ok {
		ch <- r
	}
}

// failAll fails every pending request: their connection is gone.
func (p *peer) failAll(err error) {
	p.mu.Lock()
	pending := p.pending
	p.pending = map[uint32]chan result{}
	p.mu.Unlock()
	for _, ch := range pending {
		ch <- result{err: err}
	}
}

func (p *peer) isPending(id uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.pending[id]
	return ok
}

func (p *peer) hasPending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending) > 0
}

// outConn is the writer's current connection; dead is set by its reader.
type outConn struct {
	conn net.Conn
	w    *bufio.Writer
	dead atomic.Bool
}

const maxFlushBytes = 1 << 20

func (p *peer) writeLoop() {
	cfg := &p.t.cfg
	var oc *outConn
	lastUse := time.Now()
	drop := func(err error) {
		if oc != nil {
			p.current.Store(nil)
			oc.conn.Close()
			oc = nil
		}
		p.failAll(fmt.Errorf("%w: %s: %v", ErrUnavailable, p.addr, err))
	}
	keepalive := time.NewTicker(cfg.IdleTimeout / 3)
	defer keepalive.Stop()
	for {
		var f outFrame
		select {
		case f = <-p.queue:
			lastUse = time.Now()
		case <-keepalive.C:
			if oc == nil {
				continue
			}
			if time.Since(lastUse) > cfg.IdleTimeout && !p.hasPending() {
				p.current.Store(nil)
				oc.conn.Close()
				oc = nil
				continue
			}
			f = outFrame{typ: typePing}
		case <-p.done:
			drop(ErrClosed)
			return
		}
		if oc != nil && oc.dead.Load() {
			// Its reader has failed; whichever of the two takes it out of
			// current fails the requests it carried. The frame in hand
			// goes out on a new connection.
			if p.current.CompareAndSwap(oc, nil) {
				p.failAll(fmt.Errorf("%w: %s: connection lost", ErrUnavailable, p.addr))
			}
			oc.conn.Close()
			oc = nil
		}
		if oc == nil {
			conn, err := p.t.dial(p.t.ctx, p.addr, ProtoDSE, cfg.DialTimeout)
			if err != nil {
				if f.id != 0 {
					p.resolve(f.id, result{err: fmt.Errorf("%w: %s: %w (%w)", ErrUnavailable, p.addr, err, ErrNotSent)})
				}
				continue
			}
			oc = &outConn{conn: conn, w: bufio.NewWriterSize(conn, 64<<10)}
			p.current.Store(oc)
			c := oc
			p.t.goFunc(func() { p.readLoop(c) })
		}
		// One deadline covers the batch: bufio may write through early.
		oc.conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		err := p.write(oc, f)
		// Batch whatever else is queued into the same flush.
		for err == nil && oc.w.Buffered() < maxFlushBytes && len(p.queue) > 0 {
			err = p.write(oc, <-p.queue)
		}
		if err == nil {
			err = oc.w.Flush()
		}
		if err != nil {
			drop(err)
		}
	}
}

func (p *peer) write(oc *outConn, f outFrame) error {
	if f.id != 0 && f.typ != typePing && !p.isPending(f.id) {
		return nil // its Call already returned: never run it behind its back
	}
	var hdr [HeaderSize]byte
	appendHeader(hdr[:0], f.typ, f.id, len(f.body))
	if _, err := oc.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := oc.w.Write(f.body)
	return err
}

// readLoop reads replies on one outbound connection until it fails.
func (p *peer) readLoop(oc *outConn) {
	defer func() {
		oc.dead.Store(true)
		oc.conn.Close()
		// Unless the writer has already dropped it (and failed them).
		if p.current.CompareAndSwap(oc, nil) {
			p.failAll(fmt.Errorf("%w: %s: connection lost", ErrUnavailable, p.addr))
		}
	}()
	r := bufio.NewReaderSize(oc.conn, 64<<10)
	for {
		oc.conn.SetReadDeadline(time.Now().Add(p.t.cfg.IdleTimeout))
		f, err := ReadFrame(r, p.t.cfg.MaxFrameSize)
		if err != nil {
			return
		}
		switch f.Type {
		case typeReply:
			if f.ID != 0 {
				p.resolve(f.ID, result{body: f.Body})
			}
		case typeError:
			p.resolve(f.ID, result{err: &RemoteError{Msg: string(f.Body)}})
		case typeLong:
			body, err := p.readLong(oc, r, f)
			if err != nil {
				p.t.cfg.Logger.Warn("closing connection after a bad long reply", "peer", p.addr, "error", err)
				return
			}
			p.resolve(f.ID, result{body: body})
		default:
			return // peers only send replies on our connections
		}
	}
}
