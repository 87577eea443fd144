package push

import (
	"slices"
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
type Pusher struct{ cfg Config }

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
	p.push(pubs, p.cfg.Registry.Destinations)
}

// PushSubscribers sends sequenced publications as Push does, but to the
// nodes of their subscribers only: their replicas have them already
// (PushReplicas).
func (p *Pusher) PushSubscribers(pubs []*table.Publication) {
	p.push(pubs, p.cfg.Registry.SubscriberNodes)
}

func (p *Pusher) push(pubs []*table.Publication, targets func(publisher, table string) []string) {
	local := p.send(pubs, wire.Publication, func(pub *table.Publication) []string {
		return targets(pub.Publisher, pub.Table)
	})
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
	local := p.send(pubs, wire.ReplicaPush, func(pub *table.Publication) []string {
		nodes := append(p.cfg.Registry.ReplicaNodes(pub.Publisher), p.cfg.Node)
		slices.Sort(nodes)
		return slices.Compact(nodes)
	})
	if len(local) > 0 && p.cfg.LocalReplica != nil {
		p.cfg.LocalReplica(local)
	}
}

// send sends pubs, in order, as frames of type typ, once to each node
// that targets names for them, and returns those for this node.
func (p *Pusher) send(pubs []*table.Publication, typ byte, targetsOf func(*table.Publication) []string) []*table.Publication {
	type span struct{ from, to int } // one publication's bytes in enc
	type dest struct {
		addr  string
		spans []span
	}
	var (
		enc     = make([]byte, 0, encodedSizeHint(pubs))
		dests   = map[string]*dest{}
		order   []*dest
		local   []*table.Publication
		targets = map[[2]string][]string{}
	)
	for _, pub := range pubs {
		id := [2]string{pub.Publisher, pub.Table}
		nodes, ok := targets[id]
		if !ok {
			nodes = targetsOf(pub)
			targets[id] = nodes
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
