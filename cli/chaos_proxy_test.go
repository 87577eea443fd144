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
// hole) or slow it down, with no root tricks. Nodes bind distinct loopback
// IPs and dial from them, so a proxy also tells which node a connection
// comes from: with blocked, the proxies of a run cut a partitioned node's
// own connections to its peers too, and the partition is two-way.
type faultProxy struct {
	ln      net.Listener
	target  string
	blocked *blockList

	mu        sync.Mutex
	partition bool
	delay     time.Duration
	conns     map[net.Conn]struct{}
	closed    bool
}

// blockList is the source IPs the proxies of a run refuse: partitioned
// nodes.
type blockList struct {
	mu  sync.Mutex
	ips map[string]bool
}

func (b *blockList) set(ip string, blocked bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ips == nil {
		b.ips = map[string]bool{}
	}
	b.ips[ip] = blocked
}

func (b *blockList) has(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ips[remoteIP(c)]
}

func remoteIP(c net.Conn) string {
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

func newFaultProxy(target string, blocked *blockList) (*faultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &faultProxy{ln: ln, target: target, blocked: blocked, conns: map[net.Conn]struct{}{}}
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
		cut := p.partition || p.blocked.has(c)
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
		cut, closed := p.partition || p.blocked.has(c), p.closed
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

// cutFrom closes the connections that came from ip (a partitioned node
// calling this proxy's node); blocked holds new ones.
func (p *faultProxy) cutFrom(ip string) {
	p.mu.Lock()
	var from []net.Conn
	for c := range p.conns {
		if remoteIP(c) == ip {
			from = append(from, c)
		}
	}
	p.mu.Unlock()
	for _, c := range from {
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
