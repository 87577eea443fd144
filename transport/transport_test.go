package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Handler that records messages and echoes requests.
type recorder struct {
	mu   sync.Mutex
	msgs [][]byte
	got  chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1<<16)} }

func (r *recorder) HandleMessage(_ string, _ byte, body []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, append([]byte(nil), body...)) // body is only lent
	r.mu.Unlock()
	r.got <- struct{}{}
}

func (r *recorder) HandleRequest(_ context.Context, typ byte, body []byte) ([]byte, error) {
	if typ == 2 {
		return nil, errors.New("boom: " + string(body))
	}
	if typ == 3 {
		time.Sleep(200 * time.Millisecond)
	}
	return append([]byte("echo:"), body...), nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func newTransport(t *testing.T, cfg Config) *Transport {
	t.Helper()
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1:0"
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCallAndErrors(t *testing.T) {
	srv := newTransport(t, Config{})
	srv.SetHandler(newRecorder())
	cli := newTransport(t, Config{})
	ctx := context.Background()
	got, err := cli.Call(ctx, srv.Addr(), 1, []byte("hi"))
	if err != nil || string(got) != "echo:hi" {
		t.Fatalf("got %q, %v; want echo:hi", got, err)
	}
	_, err = cli.Call(ctx, srv.Addr(), 2, []byte("x"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "boom: x" {
		t.Fatalf("got %v, want RemoteError boom: x", err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := cli.Call(short, srv.Addr(), 3, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	if _, err := cli.Call(ctx, srv.Addr(), TypeReserved, nil); err == nil {
		t.Fatal("reserved type accepted")
	}
	// Nothing listens on a closed port: unavailable.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if _, err := cli.Call(ctx, dead, 1, nil); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("got %v, want ErrUnavailable, not sent", err)
	}
}

// blocker answers a request only once released.
type blocker struct {
	recorder
	started chan struct{}
	release chan struct{}
}

func (b *blocker) HandleRequest(context.Context, byte, []byte) ([]byte, error) {
	b.started <- struct{}{}
	<-b.release
	return []byte("done"), nil
}

// TestRequestsInFlightAreBounded: a connection has at most MaxRequests
// requests being answered; one more is refused at once, before any
// handler, and a request after a slot frees is answered.
func TestRequestsInFlightAreBounded(t *testing.T) {
	srv := newTransport(t, Config{MaxRequests: 3})
	h := &blocker{started: make(chan struct{}, 8), release: make(chan struct{})}
	srv.SetHandler(h)
	cli := newTransport(t, Config{})
	ctx := context.Background()
	results := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := cli.Call(ctx, srv.Addr(), 1, nil)
			results <- err
		}()
		<-h.started
	}
	_, err := cli.Call(ctx, srv.Addr(), 1, nil)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Msg, "3 requests in flight") {
		t.Fatalf("a fourth request: %v, want a refusal naming the limit", err)
	}
	if len(h.started) != 0 {
		t.Fatal("the refused request reached its handler")
	}
	close(h.release)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if got, err := cli.Call(ctx, srv.Addr(), 1, nil); err != nil || string(got) != "done" {
		t.Fatalf("after the others were answered: %q %v", got, err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	srv := newTransport(t, Config{})
	srv.SetHandler(newRecorder())
	cli := newTransport(t, Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				msg := fmt.Sprintf("%d-%d", i, j)
				got, err := cli.Call(context.Background(), srv.Addr(), 1, []byte(msg))
				if err != nil || string(got) != "echo:"+msg {
					errs <- fmt.Errorf("got %q, %v; want echo:%s", got, err, msg)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestSendKeepsOrder(t *testing.T) {
	srv := newTransport(t, Config{})
	rec := newRecorder()
	srv.SetHandler(rec)
	cli := newTransport(t, Config{SendQueue: 20000})
	const n = 10000
	for i := range n {
		if err := cli.Send(srv.Addr(), 1, binary.BigEndian.AppendUint32(nil, uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "all messages", func() bool { return rec.count() == n })
	for i, m := range rec.msgs {
		if got := binary.BigEndian.Uint32(m); got != uint32(i) {
			t.Fatalf("message %d: got %d, out of order", i, got)
		}
	}
}

func TestSendQueueFull(t *testing.T) {
	// A peer that accepts but never reads: the queue fills, Send refuses
	// without blocking.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	cli := newTransport(t, Config{SendQueue: 4, WriteTimeout: 200 * time.Millisecond})
	big := make([]byte, 1<<20)
	start := time.Now()
	full := false
	for range 200 {
		if err := cli.Send(ln.Addr().String(), 1, big); errors.Is(err, ErrQueueFull) {
			full = true
			break
		}
	}
	if !full {
		t.Fatal("queue never reported full")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Send blocked for %s", d)
	}
}

// rawDial connects to tr's port and writes b.
func rawDial(t *testing.T, tr *Transport, b []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", tr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByPeer reports whether the server closed c within d.
func closedByPeer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	var ne net.Error
	// EOF (ReadAll returns nil) or a reset: closed. A timeout: still open.
	return !errors.As(err, &ne) || !ne.Timeout()
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	srv := newTransport(t, Config{MaxFrameSize: 4096, ReadTimeout: 300 * time.Millisecond})
	srv.SetHandler(newRecorder())
	cli := newTransport(t, Config{})
	hdr := func(typ byte, id uint32, n uint32) []byte {
		b := []byte{ProtoDSE, typ}
		b = binary.BigEndian.AppendUint32(b, id)
		return binary.BigEndian.AppendUint32(b, n)
	}
	cases := map[string][]byte{
		"wrong first byte": []byte("GET / HTTP/1.1\r\n\r\n"),
		"oversized frame":  hdr(1, 0, 1<<30),
		"truncated frame":  append(hdr(1, 0, 100), "short"...),
		"reserved type":    hdr(TypeReserved, 0, 0),
		"silence":          nil,
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			c := rawDial(t, srv, b)
			defer c.Close()
			if !closedByPeer(c, 3*time.Second) {
				t.Fatal("connection not closed by the node")
			}
			got, err := cli.Call(context.Background(), srv.Addr(), 1, []byte("ok"))
			if err != nil || string(got) != "echo:ok" {
				t.Fatalf("node stopped serving: %q, %v", got, err)
			}
		})
	}
}

func TestRaftLayerHandsOverConnections(t *testing.T) {
	srv := newTransport(t, Config{})
	cli := newTransport(t, Config{})
	layer := srv.RaftLayer(context.Background())
	if layer.Addr().String() != srv.Addr() {
		t.Fatalf("Addr got %s, want %s", layer.Addr(), srv.Addr())
	}
	done := make(chan []byte)
	go func() {
		c, err := layer.Accept()
		if err != nil {
			done <- nil
			return
		}
		b := make([]byte, 4)
		io.ReadFull(c, b)
		c.Close()
		done <- b
	}()
	c, err := cli.RaftLayer(context.Background()).Dial("127.0.0.1:1", 100*time.Millisecond)
	if err == nil {
		c.Close()
		t.Fatal("dial to a closed port succeeded")
	}
	c, err = cli.RaftLayer(context.Background()).Dial(raftAddr(srv), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("raft"))
	if got := <-done; !bytes.Equal(got, []byte("raft")) {
		t.Fatalf("got %q, want raft", got)
	}
	c.Close()
	srv.Close()
	if _, err := layer.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}

func raftAddr(t *Transport) serverAddress { return serverAddress(t.Addr()) }

type serverAddress = raft.ServerAddress

func TestCloseTwice(t *testing.T) {
	tr := newTransport(t, Config{})
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if err := tr.Send("127.0.0.1:1", 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: got %v, want ErrClosed", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, c := range map[string]Config{
		"no bind":      {},
		"tiny frames":  {Bind: "127.0.0.1:0", MaxFrameSize: 10},
		"bad timeouts": {Bind: "127.0.0.1:0", ReadTimeout: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	WriteFrame(&buf, Frame{Type: 1, ID: 7, Body: []byte("hello")}, 1024)
	f.Add(buf.Bytes())
	f.Add([]byte{1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ReadFrame(bytes.NewReader(data), 1024)
		if err != nil {
			return
		}
		// A frame read back re-encodes to the bytes it came from.
		var out bytes.Buffer
		if err := WriteFrame(&out, fr, 1024); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data[:out.Len()]) {
			t.Fatalf("round trip changed the frame")
		}
	})
}

// A flood of bad connections from one peer does not stop the node serving
// others.
func TestFloodOfBadFramesDoesNotStopService(t *testing.T) {
	srv := newTransport(t, Config{MaxFrameSize: 4096, ReadTimeout: 200 * time.Millisecond})
	srv.SetHandler(newRecorder())
	cli := newTransport(t, Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", srv.Addr())
				if err != nil {
					continue
				}
				c.Write([]byte{ProtoDSE, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
				c.Close()
			}
		}()
	}
	for i := range 200 {
		got, err := cli.Call(context.Background(), srv.Addr(), 1, []byte{byte(i)})
		if err != nil || len(got) != 6 {
			t.Fatalf("call %d during the flood: %q %v", i, got, err)
		}
	}
	close(stop)
	wg.Wait()
}

// A peer that sends a frame header and then stalls (slowloris) is cut off
// after the read timeout.
func TestSlowPeerIsCutOff(t *testing.T) {
	srv := newTransport(t, Config{ReadTimeout: 200 * time.Millisecond})
	srv.SetHandler(newRecorder())
	c := rawDial(t, srv, []byte{ProtoDSE, 1, 0, 0, 0, 0, 0, 0, 0, 100, 'x'})
	defer c.Close()
	start := time.Now()
	if !closedByPeer(c, 3*time.Second) {
		t.Fatal("stalled connection left open")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cut off after %s", d)
	}
}

// TestLostReply: with LoseReplies, a request is handled and its caller gets
// an error (the connection closed) instead of the reply; the next call on a
// new connection works.
func TestLostReply(t *testing.T) {
	var handled atomic.Int32
	faults := NewFaults(1)
	srv := newTransport(t, Config{Faults: faults})
	srv.SetHandler(countingHandler{&handled})
	cli := newTransport(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	faults.LoseReplies(1)
	if _, err := cli.Call(ctx, srv.Addr(), 1, []byte("a")); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the connection's error at once", err)
	}
	if handled.Load() != 1 {
		t.Fatalf("handled %d requests, want 1", handled.Load())
	}
	waitFor(t, 5*time.Second, "a call on a new connection", func() bool {
		got, err := cli.Call(ctx, srv.Addr(), 1, []byte("b"))
		return err == nil && string(got) == "b"
	})
}

type countingHandler struct{ n *atomic.Int32 }

func (countingHandler) HandleMessage(string, byte, []byte) {}

func (h countingHandler) HandleRequest(_ context.Context, _ byte, body []byte) ([]byte, error) {
	h.n.Add(1)
	return body, nil
}

// TestRaftDialWaitsForARestartingPeer: a Raft dial that the peer refuses is
// tried again until the timeout, so a peer that starts listening meanwhile
// is reached; once the layer's context ends, a refused dial fails at once.
func TestRaftDialWaitsForARestartingPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until the peer below starts
	cli := newTransport(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	layer := cli.RaftLayer(ctx)
	got := make(chan error, 1)
	go func() {
		c, err := layer.Dial(raft.ServerAddress(addr), 5*time.Second)
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	time.Sleep(300 * time.Millisecond)
	srv := newTransport(t, Config{Bind: addr})
	srv.SetHandler(newRecorder())
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("dial to a peer that came back: %v", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the dial did not reach the peer that came back")
	}
	srv.Close()
	cancel()
	start := time.Now()
	if _, err := layer.Dial(raft.ServerAddress(addr), 5*time.Second); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a refused dial after the context ended took %v", d)
	}
}

// streamer answers type 7 with a streamed body of n bytes (short ones
// declare one byte more than they write), type 8 with an error, and leaves
// the rest to HandleRequest.
type streamer struct {
	countingHandler
	n     int
	short bool
}

type patternBody struct {
	n     int
	short bool
}

func (b patternBody) Len() int { return b.n }

func (b patternBody) WriteTo(w io.Writer) (int64, error) {
	n := b.n
	if b.short {
		n--
	}
	var total int64
	for chunk := make([]byte, 4096); n > 0; {
		k := min(n, len(chunk))
		for i := range chunk[:k] {
			chunk[i] = byte(total + int64(i))
		}
		m, err := w.Write(chunk[:k])
		total += int64(m)
		n -= m
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *streamer) StreamRequest(_ context.Context, typ byte, _ []byte) (StreamBody, bool, error) {
	switch typ {
	case 7:
		return patternBody{s.n, s.short}, true, nil
	case 8:
		return nil, true, errors.New("no stream for you")
	}
	return nil, false, nil
}

func TestStreamedReplies(t *testing.T) {
	var handled atomic.Int32
	h := &streamer{countingHandler: countingHandler{&handled}, n: 3<<20 + 5}
	srv := newTransport(t, Config{MaxFrameSize: 4 << 20, MaxReplySize: 12 << 20})
	srv.SetHandler(h)
	cli := newTransport(t, Config{MaxFrameSize: 4 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := cli.Call(ctx, srv.Addr(), 7, nil)
	if err != nil || len(got) != h.n {
		t.Fatalf("streamed reply: %d bytes, %v; want %d", len(got), err, h.n)
	}
	for i, c := range got {
		if c != byte(i%4096) {
			t.Fatalf("byte %d is %d, want %d", i, c, byte(i%4096))
		}
	}
	if got, err := cli.Call(ctx, srv.Addr(), 1, []byte("plain")); err != nil || string(got) != "plain" {
		t.Fatalf("a request not streamed: %q, %v", got, err)
	}
	var re *RemoteError
	if _, err := cli.Call(ctx, srv.Addr(), 8, nil); !errors.As(err, &re) || re.Msg != "no stream for you" {
		t.Fatalf("a stream's error: %v", err)
	}
	// Over the frame limit, a stream goes as a long reply, and the
	// connection carries frames after it.
	h.n = 9<<20 + 3
	got, err = cli.Call(ctx, srv.Addr(), 7, nil)
	if err != nil || len(got) != h.n {
		t.Fatalf("a stream over the frame limit: %d bytes, %v; want %d", len(got), err, h.n)
	}
	for i, c := range got {
		if c != byte(i%4096) {
			t.Fatalf("long reply: byte %d is %d, want %d", i, c, byte(i%4096))
		}
	}
	if got, err := cli.Call(ctx, srv.Addr(), 1, []byte("after")); err != nil || string(got) != "after" {
		t.Fatalf("a request after a long reply: %q, %v", got, err)
	}
	// A reader bounds a long reply by its own limit.
	small := newTransport(t, Config{MaxFrameSize: 4 << 20, MaxReplySize: 8 << 20})
	if got, err := small.Call(ctx, srv.Addr(), 7, nil); err == nil {
		t.Fatalf("a long reply over the reader's limit was taken: %d bytes", len(got))
	}
	// Over the reply limit, it is refused with an error, not sent.
	h.n = 13 << 20
	if _, err := cli.Call(ctx, srv.Addr(), 7, nil); !errors.As(err, &re) || !strings.Contains(re.Msg, "exceeds the reply limit") {
		t.Fatalf("a stream over the reply limit: %v", err)
	}
	// A stream shorter than it said breaks its connection, not the next
	// call.
	h.n, h.short = 1<<20, true
	if _, err := cli.Call(ctx, srv.Addr(), 7, nil); err == nil {
		t.Fatal("a short stream was taken as a reply")
	}
	h.short = false
	waitFor(t, 5*time.Second, "a streamed reply on a new connection", func() bool {
		got, err := cli.Call(ctx, srv.Addr(), 7, nil)
		return err == nil && len(got) == 1<<20
	})
}

// longBody writes more than it declares, with a frame for another call
// after its declared bytes.
type longBody struct{ n int }

func (b longBody) Len() int { return b.n }

func (b longBody) WriteTo(w io.Writer) (int64, error) {
	extra := appendHeader(nil, typeReply, 1, 6)
	extra = append(extra, "forged"...)
	m, err := w.Write(append(make([]byte, b.n), extra...))
	return int64(m), err
}

type longStreamer struct{ countingHandler }

func (longStreamer) StreamRequest(_ context.Context, typ byte, _ []byte) (StreamBody, bool, error) {
	if typ == 7 {
		return longBody{1 << 20}, true, nil
	}
	return nil, false, nil
}

// TestStreamLongerThanDeclared: a stream that writes past its declared
// length sends nothing beyond it; the call fails, and no bytes of it are
// read as another frame.
func TestStreamLongerThanDeclared(t *testing.T) {
	var handled atomic.Int32
	srv := newTransport(t, Config{})
	srv.SetHandler(longStreamer{countingHandler{&handled}})
	cli := newTransport(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := cli.Call(ctx, srv.Addr(), 7, nil); err == nil {
		t.Fatalf("an overlong stream was taken as a reply of %d bytes", len(got))
	}
}

type fromRecorder struct {
	countingHandler
	from chan string
}

func (r fromRecorder) HandleMessage(from string, _ byte, _ []byte) { r.from <- from }

// TestDialsLeaveFromTheBindAddress: a transport bound to one IP connects to
// its peers from that IP, so they can tell who is calling.
func TestDialsLeaveFromTheBindAddress(t *testing.T) {
	var n atomic.Int32
	rec := fromRecorder{countingHandler{&n}, make(chan string, 1)}
	srv := newTransport(t, Config{})
	srv.SetHandler(rec)
	cli := newTransport(t, Config{Bind: "127.0.0.2:0"})
	if err := cli.Send(srv.Addr(), 1, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case from := <-rec.from:
		if host, _, _ := net.SplitHostPort(from); host != "127.0.0.2" {
			t.Fatalf("the message came from %s, want 127.0.0.2", from)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	if la := cli.localAddrFor("10.1.2.3:7400"); la != nil {
		t.Fatalf("a loopback-bound transport would dial another host from %v", la)
	}
	if la := (&Transport{source: sourceIP("0.0.0.0:7400")}).localAddrFor("127.0.0.1:1"); la != nil {
		t.Fatalf("an unspecified bind dials from %v", la)
	}
}

// TestClusterKey: with a cluster key, only peers that hold it talk: one
// with another key, or none, is refused before any frame (its call is not
// sent), both ways; a raw connection that sends a frame without the
// handshake is closed unanswered.
func TestClusterKey(t *testing.T) {
	key := []byte("a-cluster-key-0123456789")
	srv := newTransport(t, Config{ClusterKey: key})
	srv.SetHandler(newRecorder())
	ctx := context.Background()
	good := newTransport(t, Config{ClusterKey: key})
	if got, err := good.Call(ctx, srv.Addr(), 1, []byte("hi")); err != nil || string(got) != "echo:hi" {
		t.Fatalf("with the key: %q, %v", got, err)
	}
	for name, cfg := range map[string]Config{"another key": {ClusterKey: []byte("another-key-0123456789")}, "no key": {}} {
		cli := newTransport(t, cfg)
		cli.SetHandler(newRecorder())
		if _, err := cli.Call(ctx, srv.Addr(), 1, []byte("hi")); err == nil {
			t.Fatalf("%s: the call was answered", name)
		}
		// And the other way: the keyed node cannot talk to it.
		if _, err := good.Call(ctx, cli.Addr(), 1, []byte("hi")); !errors.Is(err, ErrNotSent) {
			t.Fatalf("%s, keyed caller: %v, want not sent", name, err)
		}
	}
	// A raw peer skipping the handshake is closed on, unanswered.
	var frame bytes.Buffer
	frame.WriteByte(ProtoDSE)
	WriteFrame(&frame, Frame{Type: 1, ID: 1, Body: []byte("hi")}, 1024)
	c := rawDial(t, srv, frame.Bytes())
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := io.ReadAll(c); len(got) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a peer without the handshake read %q (%v), want the connection closed unanswered", got, err)
	}
	if _, err := New(Config{Bind: "127.0.0.1:0", ClusterKey: []byte("short")}); err == nil {
		t.Fatal("a 5-byte cluster key accepted")
	}
}

// TestClusterKeyResistsARelay: a machine between two keyed nodes, holding
// a TLS session with each, cannot pass the client's proof on to the
// server: each proof is bound to its own session.
func TestClusterKeyResistsARelay(t *testing.T) {
	key := []byte("a-cluster-key-0123456789")
	srv := newTransport(t, Config{ClusterKey: key})
	srv.SetHandler(newRecorder())
	cli := newTransport(t, Config{ClusterKey: key})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	relayed := make(chan error, 1)
	go func() {
		c1, err := ln.Accept()
		if err != nil {
			relayed <- err
			return
		}
		defer c1.Close()
		c1.SetDeadline(time.Now().Add(5 * time.Second))
		own, _ := throwawayTLS()
		var b [1]byte
		io.ReadFull(c1, b[:])
		t1 := tls.Server(c1, own)
		proof := make([]byte, 32)
		if _, err := io.ReadFull(t1, proof); err != nil {
			relayed <- err
			return
		}
		c2, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			relayed <- err
			return
		}
		defer c2.Close()
		c2.SetDeadline(time.Now().Add(5 * time.Second))
		c2.Write([]byte{ProtoAuth})
		t2 := tls.Client(c2, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		t2.Write(proof) // the client's proof, for another session
		_, err = io.ReadFull(t2, make([]byte, 32))
		relayed <- err // the server's proof, had it taken the client's
	}()
	if _, err := cli.Call(context.Background(), ln.Addr().String(), 1, []byte("hi")); err == nil {
		t.Fatal("the call through the relay was answered")
	}
	if err := <-relayed; err == nil {
		t.Fatal("the server took a proof relayed from another session")
	}
}

// TestFaultRulesTargetAndEnd: a rule applies to its peer only, for its
// number of frames, and rules change while frames go; publication rules
// leave frames alone.
func TestFaultRulesTargetAndEnd(t *testing.T) {
	f := NewFaults(7)
	id := f.Add(Rule{Peer: "a", Drop: 1})
	f.Add(Rule{Peer: "b", Drop: 1, Frames: 3})
	f.Add(Rule{Publisher: "p", Table: "t", Dup: 1})
	for range 5 {
		if c, _ := f.Frame("a"); c != 0 {
			t.Fatal("a frame to a was not dropped")
		}
		if c, _ := f.Frame("c"); c != 1 {
			t.Fatal("a frame to c was touched")
		}
	}
	dropped := 0
	for range 10 {
		if c, _ := f.Frame("b"); c == 0 {
			dropped++
		}
	}
	if dropped != 3 || f.Active() != 2 {
		t.Fatalf("the 3-frame rule dropped %d, %d rules left", dropped, f.Active())
	}
	if c, _ := f.Publication("c", "p", "t"); c != 2 {
		t.Fatalf("a publication of p/t: %d copies, want 2", c)
	}
	if c, _ := f.Publication("c", "p", "u"); c != 1 {
		t.Fatalf("a publication of p/u: %d copies, want 1", c)
	}
	if c, _ := f.Publication("a", "p", "u"); c != 1 {
		t.Fatal("a frame rule applied to a publication")
	}
	f.Remove(id)
	if c, _ := f.Frame("a"); c != 1 {
		t.Fatal("a removed rule still applies")
	}
	f.Clear()
	if f.Active() != 0 {
		t.Fatal("rules left after Clear")
	}
}

// TestFaultsChangeWhileFramesGo: rules are added and removed while frames
// are being decided (run with -race).
func TestFaultsChangeWhileFramesGo(t *testing.T) {
	f := NewFaults(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			f.Frame("a")
			f.Publication("a", "p", "t")
			if i%10 == 0 {
				f.replyLost()
			}
		}
	}()
	for range 100 {
		id := f.Add(Rule{Drop: 0.5})
		f.LoseReplies(1)
		f.Remove(id)
	}
	<-done
}
