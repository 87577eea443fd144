package cli_test

import (
	"io"
	"net"
	"sync"
	"time"
)

// faultProxy sits in front of a node's cluster port (the node advertises the
// proxy's address, so every peer reaches it through here) and can cut the
// node off (existing connections close, new ones hang silently: a black
// hole) or slow it down, with no root tricks.
type faultProxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	partition bool
	delay     time.Duration
	conns     map[net.Conn]struct{}
	closed    bool
}

func newFaultProxy(target string) (*faultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[c] = struct{}{}
		cut := p.partition
		p.mu.Unlock()
		if cut {
			go p.hold(c)
			continue
		}
		go p.serve(c)
	}
}

// hold swallows a connection made during a partition until it heals.
func (p *faultProxy) hold(c net.Conn) {
	defer p.forget(c)
	go io.Copy(io.Discard, c)
	for {
		time.Sleep(20 * time.Millisecond)
		p.mu.Lock()
		cut, closed := p.partition, p.closed
		p.mu.Unlock()
		if !cut || closed {
			return
		}
	}
}

func (p *faultProxy) serve(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.forget(c)
		return
	}
	p.mu.Lock()
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				d := p.delay
				p.mu.Unlock()
				if d > 0 {
					time.Sleep(d)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	p.forget(c)
	p.forget(up)
}

func (p *faultProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cut starts a partition: every connection closes, new ones hang.
func (p *faultProxy) cut() {
	p.mu.Lock()
	p.partition = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (p *faultProxy) heal() {
	p.mu.Lock()
	p.partition, p.delay = false, 0
	p.mu.Unlock()
}

func (p *faultProxy) slow(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

func (p *faultProxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	p.ln.Close()
	for c := range conns {
		c.Close()
	}
}
