package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config holds a transport's settings. Zero fields take DefaultConfig's values.
type Config struct {
	// Bind is the TCP address to listen on; port 0 picks a free port.
	Bind string
	// Advertise is the address peers dial; defaults to the bound address.
	Advertise string
	// MaxFrameSize bounds a frame body, in bytes.
	MaxFrameSize int
	// MaxReplySize bounds a streamed reply (a StreamBody), in bytes: one
	// over MaxFrameSize is sent as a long reply, read into one buffer of
	// its size. At least MaxFrameSize.
	MaxReplySize int64
	// SendQueue bounds the frames queued for one peer.
	SendQueue int
	// MaxRequests bounds the requests one inbound connection has being
	// answered at once (each on a goroutine of its own, holding its body);
	// one more is refused with an error reply, before its handler runs.
	MaxRequests int
	// DialTimeout bounds a connection attempt.
	DialTimeout time.Duration
	// WriteTimeout bounds one flush of queued frames.
	WriteTimeout time.Duration
	// ReadTimeout bounds reading one frame body once its header arrived, and
	// the protocol byte of a new connection.
	ReadTimeout time.Duration
	// IdleTimeout closes a connection that carried nothing for this long;
	// outbound connections send a ping at a third of it to stay open.
	IdleTimeout time.Duration
	// TLS, when set, wraps every connection (mutual TLS is the caller's
	// choice through ClientAuth and ClientCAs).
	TLS *tls.Config
	// ClusterKey, when set (MinClusterKey bytes or more), must be held by
	// every peer: each connection runs TLS (a throwaway certificate, when
	// TLS is not set) and each side proves the key with an HMAC of the
	// session's keying material (the key never crosses the wire). It
	// guards the port where mutual TLS does not; a peer without it, or
	// with another, is refused before any frame.
	ClusterKey []byte
	// Logger receives connection-level events.
	Logger hclog.Logger
	// Faults, when set, drops, duplicates and delays one-way frames as its
	// rules say, and loses replies (tests and chaos runs).
	Faults *Faults
}

// DefaultConfig returns a Config with every field set but Bind.
func DefaultConfig() Config {
	return Config{
		MaxFrameSize: 64 << 20,
		MaxReplySize: 4 << 30,
		SendQueue:    8192,
		MaxRequests:  4096,
		DialTimeout:  2 * time.Second,
		WriteTimeout: 5 * time.Second,
		ReadTimeout:  10 * time.Second,
		IdleTimeout:  90 * time.Second,
	}
}

func (c *Config) fill() error {
	if c.ClusterKey != nil && len(c.ClusterKey) < MinClusterKey {
		return fmt.Errorf("transport: a cluster key of %d bytes; want at least %d", len(c.ClusterKey), MinClusterKey)
	}
	d := DefaultConfig()
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = d.MaxFrameSize
	}
	if c.MaxReplySize == 0 {
		c.MaxReplySize = max(d.MaxReplySize, int64(c.MaxFrameSize))
	}
	if c.SendQueue == 0 {
		c.SendQueue = d.SendQueue
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = d.MaxRequests
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	switch {
	case c.Bind == "":
		return errors.New("transport: Bind is required")
	case c.MaxFrameSize < 1024:
		return fmt.Errorf("transport: MaxFrameSize (%d) must be at least 1024", c.MaxFrameSize)
	case c.MaxReplySize < int64(c.MaxFrameSize):
		return fmt.Errorf("transport: MaxReplySize (%d) must be at least MaxFrameSize (%d)", c.MaxReplySize, c.MaxFrameSize)
	case c.SendQueue < 1:
		return fmt.Errorf("transport: SendQueue (%d) must be positive", c.SendQueue)
	case c.MaxRequests < 1:
		return fmt.Errorf("transport: MaxRequests (%d) must be positive", c.MaxRequests)
	case c.DialTimeout < 0 || c.WriteTimeout < 0 || c.ReadTimeout < 0 || c.IdleTimeout < 0:
		return errors.New("transport: timeouts must not be negative")
	}
	return nil
}

// Handler receives dse frames.
type Handler interface {
	// HandleMessage receives a one-way frame. It is called on the
	// connection's reader goroutine, in arrival order, so it must not block
	// for long. body is valid only until it returns (the reader reuses it):
	// copy what must outlive the call.
	HandleMessage(from string, typ byte, body []byte)
	// HandleRequest answers a request; it runs on its own goroutine and ctx
	// ends when the transport closes.
	HandleRequest(ctx context.Context, typ byte, body []byte) ([]byte, error)
}

// A StreamBody is a reply that the transport writes straight to the
// connection as it is encoded (a big snapshot), rather than one built in
// memory first.
type StreamBody interface {
	// Len is the exact number of bytes WriteTo writes.
	Len() int
	WriteTo(w io.Writer) (int64, error)
}

// A StreamHandler is a Handler that answers some requests with a
// StreamBody. The transport asks StreamRequest first; when it returns ok
// false, HandleRequest answers.
type StreamHandler interface {
	Handler
	StreamRequest(ctx context.Context, typ byte, body []byte) (reply StreamBody, ok bool, err error)
}

// Transport is a node's cluster port: a listener, a Raft stream layer, and a
// pool of outbound dse connections.
type Transport struct {
	cfg    Config
	ln     net.Listener
	addr   string
	raftCh chan net.Conn
	source net.IP      // outbound connections leave from it (sourceIP)
	keyTLS *tls.Config // the cluster key's server TLS, without mutual TLS

	mu      sync.Mutex
	handler Handler
	peers   map[string]*peer
	conns   map[net.Conn]struct{} // inbound connections, closed on Close
	closed  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New listens on cfg.Bind and starts accepting connections.
func New(cfg Config) (*Transport, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	var keyTLS *tls.Config
	if cfg.ClusterKey != nil && cfg.TLS == nil {
		var err error
		if keyTLS, err = throwawayTLS(); err != nil {
			return nil, fmt.Errorf("transport: cluster key's TLS: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", cfg.Bind, err)
	}
	addr := cfg.Advertise
	if addr == "" {
		addr = advertisable(ln.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:    cfg,
		ln:     ln,
		addr:   addr,
		source: sourceIP(cfg.Bind),
		raftCh: make(chan net.Conn),
		keyTLS: keyTLS,
		peers:  map[string]*peer{},
		conns:  map[net.Conn]struct{}{},
		ctx:    ctx,
		cancel: cancel,
	}
	t.goFunc(t.acceptLoop)
	return t, nil
}

// sourceIP is the address outbound connections leave from: the bind
// address when it names one IP (not 0.0.0.0 or ::), so that peers see
// connections come from the address this node listens on (a host with
// several addresses, or a test telling nodes apart on loopback).
func sourceIP(bind string) net.IP {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil
	}
	return ip
}

// localAddrFor is the local address to dial addr from: the source IP when
// addr is an IP on the same side of loopback (a loopback source cannot
// reach another host), else the system's choice.
func (t *Transport) localAddrFor(addr string) net.Addr {
	if t.source == nil {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsLoopback() != t.source.IsLoopback() {
		return nil
	}
	return &net.TCPAddr{IP: t.source}
}

// Addr returns the address peers reach this transport at.
func (t *Transport) Addr() string { return t.addr }

// MaxFrameSize returns the configured frame body limit.
func (t *Transport) MaxFrameSize() int { return t.cfg.MaxFrameSize }

// SetHandler installs the receiver of dse frames. Frames that arrive before
// it is set are dropped (requests get an error).
func (t *Transport) SetHandler(h Handler) {
	t.mu.Lock()
	t.handler = h
	t.mu.Unlock()
}

func (t *Transport) getHandler() Handler {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.handler
}

func (t *Transport) goFunc(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
}

// Close stops the listener, closes every connection and waits for the
// transport's goroutines. It is safe to call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	peers := t.peers
	t.peers = map[string]*peer{}
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	// Outside the lock: closing a TLS connection writes its close alert.
	for _, c := range conns {
		c.Close()
	}
	t.cancel()
	err := t.ln.Close()
	for _, p := range peers {
		p.close()
	}
	t.wg.Wait()
	return err
}

func (t *Transport) acceptLoop() {
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			t.cfg.Logger.Error("accept failed", "error", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		if !t.track(conn) {
			conn.Close()
			return
		}
		t.goFunc(func() { t.handshake(conn) })
	}
}

// track records an inbound connection so Close can end it; false once closed.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// handshake reads the protocol byte and hands the connection to its owner.
func (t *Transport) handshake(conn net.Conn) {
	if t.cfg.TLS != nil {
		tc := tls.Server(conn, t.cfg.TLS)
		conn.SetDeadline(time.Now().Add(t.cfg.ReadTimeout))
		if err := tc.HandshakeContext(t.ctx); err != nil {
			t.cfg.Logger.Warn("tls handshake failed", "remote", conn.RemoteAddr(), "error", err)
			t.untrack(conn)
			conn.Close()
			return
		}
		t.untrack(conn)
		conn = tc
		if !t.track(conn) {
			conn.Close()
			return
		}
	}
	var b [1]byte
	conn.SetReadDeadline(time.Now().Add(t.cfg.ReadTimeout))
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		t.untrack(conn)
		conn.Close()
		return
	}
	if t.cfg.ClusterKey != nil {
		err := ErrClusterKey
		var kc net.Conn
		if b[0] == ProtoAuth {
			kc, err = serverKeyHandshake(conn, t.cfg.ClusterKey, t.keyTLS, t.cfg.ReadTimeout)
		}
		if err == nil && kc != conn {
			t.untrack(conn)
			conn = kc
			if !t.track(conn) {
				conn.Close()
				return
			}
		}
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(t.cfg.ReadTimeout))
			_, err = io.ReadFull(conn, b[:])
		}
		if err != nil {
			t.cfg.Logger.Warn("closing connection: the peer did not prove the cluster key", "remote", conn.RemoteAddr(), "error", err)
			t.untrack(conn)
			conn.Close()
			return
		}
	}
	conn.SetDeadline(time.Time{})
	switch b[0] {
	case ProtoRaft:
		// Raft owns the connection from here; it stays tracked so Close
		// ends it.
		select {
		case t.raftCh <- &trackedConn{Conn: conn, t: t}:
		case <-t.ctx.Done():
			conn.Close()
		}
	case ProtoDSE:
		t.serveDSE(conn)
	default:
		t.cfg.Logger.Warn("closing connection", "remote", conn.RemoteAddr(), "error", ErrBadProtocol, "byte", b[0])
		t.untrack(conn)
		conn.Close()
	}
}

// dial opens an outbound connection speaking proto.
func (t *Transport) dial(ctx context.Context, addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	// One deadline for the connect and every handshake after it.
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	if la := t.localAddrFor(addr); la != nil {
		d.LocalAddr = la
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if t.cfg.TLS != nil {
		cfg := t.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		conn.SetDeadline(deadline)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	conn.SetDeadline(deadline)
	if t.cfg.ClusterKey != nil {
		// Ended early when ctx is (the node closing).
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
		kc, err := clientKeyHandshake(conn, t.cfg.ClusterKey)
		if !stop() && err == nil {
			err = ctx.Err()
		}
		if err != nil {
			conn.Close()
			return nil, err
		}
		conn = kc
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// trackedConn is an inbound connection handed to Raft; closing it forgets it.
type trackedConn struct {
	net.Conn
	t    *Transport
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.t.untrack(c.Conn) })
	return c.Conn.Close()
}

// advertisable replaces an unspecified listen host (0.0.0.0, ::) with
// 127.0.0.1; a node bound to every interface should set Advertise.
func advertisable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
