package transport

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Raft's stream layer over the transport's listener and dials.

// RaftLayer returns the raft.StreamLayer served by this transport. While
// ctx is live, a dial that the peer refuses (nothing listens: its process is
// restarting) is tried again until Raft's timeout runs out, instead of
// failing at once.
//
// Why: hashicorp/raft backs off replication to a follower after each failed
// RPC, doubling the wait up to 10 s, and sleeps through the backoff even
// once the follower is back. Refused dials fail in microseconds, so a
// follower down for a few seconds had run up waits of 2-5 s before it was
// sent anything after its restart. Retried, a refused dial fails only once
// per timeout, and succeeds within a retry interval of the follower
// listening again. ctx ends the retrying when the node closes, so that
// Raft's shutdown does not wait out a dial.
func (t *Transport) RaftLayer(ctx context.Context) raft.StreamLayer {
	return &raftLayer{t: t, ctx: ctx}
}

type raftLayer struct {
	t   *Transport
	ctx context.Context
}

// raftRedialEvery is how often a refused Raft dial is tried again.
const raftRedialEvery = 25 * time.Millisecond

var _ raft.StreamLayer = (*raftLayer)(nil)

// errLayerClosed is returned by Accept once the transport has closed.
var errLayerClosed = errors.New("transport: closed")

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.t.raftCh:
		return c, nil
	case <-l.t.ctx.Done():
		return nil, errLayerClosed
	}
}

// Close is a no-op: the transport's owner closes the transport after Raft.
func (l *raftLayer) Close() error { return nil }

func (l *raftLayer) Addr() net.Addr { return addrString(l.t.addr) }

func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	// Ended by the node closing (l.ctx, before Raft's shutdown waits for
	// its dials) as by the transport's.
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	defer context.AfterFunc(l.t.ctx, cancel)()
	for {
		conn, err := l.t.dial(ctx, string(address), ProtoRaft, time.Until(deadline))
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Until(deadline) < raftRedialEvery {
			return conn, err
		}
		select {
		case <-time.After(raftRedialEvery):
		case <-l.ctx.Done():
			return nil, err
		case <-l.t.ctx.Done():
			return nil, err
		}
	}
}

type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }
