package push

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"dse.dev/dse/dse/table"
	"dse.dev/dse/dse/wire"
	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

// Registry is what a pusher reads of the cluster's registry: where a
// table's publications go (its subscribers' nodes, its publisher's
// replicas), and where those nodes listen.
type Registry interface {
	Destinations(publisher, table string) []string
	SubscriberNodes(publisher, table string) []string
	ReplicaNodes(publisher string) []string
	Node(id string) (fsm.Node, bool)
	// Reshaped returns a channel closed once anything but seqnums
	// changes (fsm.FSM.Reshaped): what the nodes of a table's
	// publications depend on.
	Reshaped() <-chan struct{}
}

// Sender queues a one-way frame to a peer without blocking (package
// transport); an error means the frame was dropped.
type Sender interface {
	Send(addr string, typ byte, body []byte) error
}

// Config holds a pusher's collaborators.
type Config struct {
	Node     string // this node's id
	Registry Registry
	Sender   Sender
	// Local takes the publications for subscribers on this node, with their
	// estimated size on the wire.
	Local func(pubs []*table.Publication, size int)
	// LocalReplica takes the publications PushReplicas sends to this
	// node's own replica.
	LocalReplica func(pubs []*table.Publication)
	Dropped      prometheus.Counter // publications a peer's full queue dropped (nil: not counted)
	// Faults, when set, drops, duplicates or delays publications to peers
	// as its rules say (tests and chaos runs).
	Faults *transport.Faults
	Logger hclog.Logger
}

// Pusher sends sequenced publications to the nodes that subscribe to them.
type Pusher struct {
	cfg   Config
	dests destCache
}

// destCache keeps, by publisher's table, the nodes Push and
// PushSubscribers send its publications to, until the registry next
// changes more than seqnums. Asking the registry for each table of each
// batch cost 0.5 us a publication at 4,096 tables with one publication in
// flight each (a read lock, a map walk, an allocation and a sort), for
// an answer that changes only with subscriptions, instances and replica
// sets.
type destCache struct {
	mu sync.Mutex
	// reshaped is the registry's channel from before the entries were
	// asked for: once it is closed they may be stale.
	reshaped <-chan struct{}
	m        map[destKey][]string
}

type destKey struct {
	publisher, table string
	subscribersOnly  bool
}

// maxCachedDests bounds the cache: past it, it starts over (a node
// publishing more tables than that between two registry changes asks
// the registry for some more than once).
const maxCachedDests = 1 << 16

// lock locks the cache for a batch's lookups, emptied first if the
// registry changed since its entries were asked for.
func (c *destCache) lock(reg Registry) {
	c.mu.Lock()
	stale := c.reshaped == nil || len(c.m) >= maxCachedDests
	if !stale {
		select {
		case <-c.reshaped:
			stale = true
		default:
		}
	}
	if stale {
		// The channel first: a change while the entries are asked for
		// closes it, and the next batch starts over.
		c.reshaped = reg.Reshaped()
		clear(c.m)
	}
}

// get returns the nodes of a publication of publisher's table; the cache
// is locked. The slice is shared: read-only.
func (c *destCache) get(reg Registry, publisher, tbl string, subscribersOnly bool) []string {
	k := destKey{publisher, tbl, subscribersOnly}
	if nodes, ok := c.m[k]; ok {
		return nodes
	}
	var nodes []string
	if subscribersOnly {
		nodes = reg.SubscriberNodes(publisher, tbl)
	} else {
		nodes = reg.Destinations(publisher, tbl)
	}
	if c.m == nil {
		c.m = map[destKey][]string{}
	}
	c.m[k] = nodes
	return nodes
}

// New returns a pusher.
func New(cfg Config) *Pusher {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Pusher{cfg: cfg}
}

// maxFrame is where a push frame is cut, well under the frame limit.
const maxFrame = 1 << 20

// Push sends sequenced publications, in order, once to each node that hosts
// a subscriber of their table or a replica of their publisher (a down node
// catches up when it is back); this node's own get them directly. Each publication is encoded once,
// whatever the number of nodes, into one buffer; each frame is allocated at
// its exact size, and nodes that get the same publications (the common
// case) share the same frames.
func (p *Pusher) Push(pubs []*table.Publication) {
	p.push(pubs, false)
}

// PushSubscribers sends sequenced publications as Push does, but to the
// nodes of their subscribers only: their replicas have them already
// (PushReplicas).
func (p *Pusher) PushSubscribers(pubs []*table.Publication) {
	p.push(pubs, true)
}

func (p *Pusher) push(pubs []*table.Publication, subscribersOnly bool) {
	if len(pubs) == 0 {
		return
	}
	p.dests.lock(p.cfg.Registry)
	local := p.send(pubs, wire.Publication, func(publisher, tbl string) []string {
		return p.dests.get(p.cfg.Registry, publisher, tbl, subscribersOnly)
	})
	p.dests.mu.Unlock()
	if len(local) > 0 {
		size := 0
		for _, pub := range local {
			size += pub.SizeHint()
		}
		p.cfg.Local(local, size)
	}
}

// PushReplicas sends publications of replicated services to their
// replica nodes only, as wire.ReplicaPush frames, which no subscriber
// sees: the owner sends them before their seqnums are granted (package
// publish), so that the replicas' writes overlap the registry's. This
// node's own replica gets them directly (LocalReplica).
func (p *Pusher) PushReplicas(pubs []*table.Publication) {
	byPublisher := map[string][]string{}
	local := p.send(pubs, wire.ReplicaPush, func(publisher, _ string) []string {
		nodes, ok := byPublisher[publisher]
		if !ok {
			nodes = append(p.cfg.Registry.ReplicaNodes(publisher), p.cfg.Node)
			slices.Sort(nodes)
			nodes = slices.Compact(nodes)
			byPublisher[publisher] = nodes
		}
		return nodes
	})
	if len(local) > 0 && p.cfg.LocalReplica != nil {
		p.cfg.LocalReplica(local)
	}
}

// span is one publication's bytes in a batch's encoding.
type span struct{ from, to int }

// send sends pubs, in order, as frames of type typ, once to each node
// that targetsOf names for their table, and returns those for this node.
// targetsOf is asked once for each run of publications of one table.
func (p *Pusher) send(pubs []*table.Publication, typ byte, targetsOf func(publisher, table string) []string) []*table.Publication {
	type dest struct {
		addr  string
		spans []span
	}
	var (
		// Room for a frame's header first: the usual frame, every
		// publication to every node, is enc itself (no copy).
		enc   = make([]byte, table.BatchHeaderSize, table.BatchHeaderSize+encodedSizeHint(pubs))
		dests = map[string]*dest{}
		order []*dest
		local []*table.Publication
		nodes []string
	)
	for i, pub := range pubs {
		if i == 0 || pub.Publisher != pubs[i-1].Publisher || pub.Table != pubs[i-1].Table {
			nodes = targetsOf(pub.Publisher, pub.Table)
		}
		var sp span
		encoded := false
		for _, node := range nodes {
			if node == p.cfg.Node {
				local = append(local, pub)
				continue
			}
			d := dests[node]
			if d == nil {
				rec, ok := p.cfg.Registry.Node(node)
				if !ok || !rec.Up {
					continue // a down node catches up when it is back
				}
				d = &dest{addr: rec.Addr}
				dests[node] = d
				order = append(order, d)
			}
			if !encoded {
				out, err := pub.AppendTo(enc)
				if err != nil {
					p.cfg.Logger.Error("cannot encode publication", "publisher", pub.Publisher, "table", pub.Table, "error", err)
					break
				}
				sp, encoded = span{len(enc), len(out)}, true
				enc = out
			}
			if p.cfg.Faults == nil {
				d.spans = append(d.spans, sp)
				continue
			}
			switch copies, delay := p.cfg.Faults.Publication(d.addr, pub.Publisher, pub.Table); {
			case copies == 0:
			case delay > 0:
				p.sendLater(d.addr, typ, enc[sp.from:sp.to], copies, delay)
			default:
				for range copies {
					d.spans = append(d.spans, sp)
				}
			}
		}
	}
	// Frames by list of publications: nodes with the same list share them.
	built := map[*dest][][]byte{}
	for i, d := range order {
		var frames [][]byte
		for _, prev := range order[:i] {
			if slices.Equal(prev.spans, d.spans) {
				frames = built[prev]
				break
			}
		}
		if frames == nil && whole(d.spans, len(enc)) {
			table.PutBatchHeader(enc, len(d.spans))
			frames = [][]byte{enc[:len(enc):len(enc)]}
		}
		if frames == nil {
			for rest := d.spans; len(rest) > 0; {
				k, size := 0, table.BatchHeaderSize
				for k < len(rest) && (k == 0 || size+rest[k].to-rest[k].from <= maxFrame) {
					size += rest[k].to - rest[k].from
					k++
				}
				buf := make([]byte, table.BatchHeaderSize, size)
				table.PutBatchHeader(buf, k)
				for _, sp := range rest[:k] {
					buf = append(buf, enc[sp.from:sp.to]...)
				}
				frames = append(frames, buf)
				rest = rest[k:]
			}
		}
		built[d] = frames
		for _, f := range frames {
			if err := p.cfg.Sender.Send(d.addr, typ, f); err != nil {
				count := table.BatchCount(f)
				if p.cfg.Dropped != nil {
					p.cfg.Dropped.Add(float64(count))
				}
				p.cfg.Logger.Debug("push dropped", "peer", d.addr, "publications", count, "error", err)
			}
		}
	}
	return local
}

// whole reports whether spans are every publication encoded in enc's
// end bytes, once each and in order, and fit one frame: enc (its header
// room filled in) is then their frame.
func whole(spans []span, end int) bool {
	if len(spans) == 0 || end > maxFrame {
		return false
	}
	at := table.BatchHeaderSize
	for _, sp := range spans {
		if sp.from != at {
			return false
		}
		at = sp.to
	}
	return at == end
}

// sendLater sends one encoded publication to addr, copies times, after
// delay: a fault that reorders it behind later pushes.
func (p *Pusher) sendLater(addr string, typ byte, enc []byte, copies int, delay time.Duration) {
	frame := make([]byte, table.BatchHeaderSize, table.BatchHeaderSize+copies*len(enc))
	table.PutBatchHeader(frame, copies)
	for range copies {
		frame = append(frame, enc...)
	}
	time.AfterFunc(delay, func() { p.cfg.Sender.Send(addr, typ, frame) })
}

// encodedSizeHint guesses the encoded size of pubs.
func encodedSizeHint(pubs []*table.Publication) int {
	size := 0
	for _, p := range pubs {
		size += p.SizeHint()
	}
	return min(size, 64<<20)
}
