package dse

import (
	"context"
	"fmt"
	"time"

	"dse.dev/dse/dse/table"

	"dse.dev/dse/dse/wire"
	"dse.dev/dse/transport"
)

// Inbound frames from peers enter here (the node is the transport's
// Handler) and go to the part of the node that owns them.

var (
	_ transport.Handler       = (*Node)(nil)
	_ transport.StreamHandler = (*Node)(nil)
)

// HandleRequest answers a dse request from a peer (transport.Handler).
func (n *Node) HandleRequest(ctx context.Context, typ byte, body []byte) ([]byte, error) {
	switch typ {
	case wire.LeaderOp:
		return n.cluster.HandleLeaderOp(ctx, body)
	case wire.Status:
		return wire.Encode(n.Status())
	case wire.RPC:
		return n.handleRPC(ctx, body)
	}
	return nil, fmt.Errorf("%w: unknown request type %d", ErrInvalid, typ)
}

// StreamRequest answers the requests whose replies are encoded as they are
// sent (transport.StreamHandler): catch-ups, which may carry a big table.
func (n *Node) StreamRequest(_ context.Context, typ byte, body []byte) (transport.StreamBody, bool, error) {
	if typ != wire.Catchup {
		return nil, false, nil
	}
	s, err := n.streamCatchup(body)
	return s, true, err
}

// HandleMessage receives a one-way dse frame from a peer (transport.Handler).
func (n *Node) HandleMessage(from string, typ byte, body []byte) {
	switch typ {
	case wire.Publication:
		// body is only lent (the transport reuses it): DecodeBatch
		// copies everything it keeps.
		pubs, err := table.DecodeBatch(body)
		if err != nil {
			n.logger.Warn("dropping malformed publications", "from", from, "error", err)
			return
		}
		n.replicas.Offer(pubs, false)
		n.subs.Enqueue(pubs, time.Now(), len(body))
	case wire.ReplicaPush:
		pubs, err := table.DecodeBatch(body)
		if err != nil {
			n.logger.Warn("dropping malformed replica publications", "from", from, "error", err)
			return
		}
		n.replicas.Offer(pubs, false)
	case wire.ReplicaAck:
		n.replicas.HandleAck(from, body)
	default:
		n.logger.Warn("dropping unknown message", "from", from, "type", typ)
	}
}
