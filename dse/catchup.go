package dse

import (
	"context"
	"fmt"

	"dse.dev/dse/dse/subscribe"
	"dse.dev/dse/dse/table"
	"dse.dev/dse/dse/wire"
	"dse.dev/dse/transport"
)

// Catch-ups on the wire, both sides: a subscriber node fetches what follows
// its last seqnum from the publisher's owner node (the subscriber engine's
// Fetcher), and the owner answers from the publisher's table: the deltas
// from its history, or a snapshot.

// fetcher is the node as the subscriber engine's Fetcher.
type fetcher struct{ n *Node }

func (f fetcher) Fetch(ctx context.Context, owner string, req subscribe.Request) ([]byte, error) {
	n := f.n
	if owner == n.id {
		pubs, err := n.catchupPubs(req)
		if err != nil {
			return nil, err
		}
		return table.EncodeBatch(pubs)
	}
	rec, ok := n.fsm.Node(owner)
	if !ok {
		return nil, fmt.Errorf("%w: node %q is not in the registry", ErrUnavailable, owner)
	}
	raw, err := wire.Encode(req)
	if err != nil {
		return nil, err
	}
	return n.trans.Call(ctx, rec.Addr, wire.Catchup, raw)
}

// FetchTable is Fetch for a replica catching up a table of service
// (replica.Fetcher).
func (f fetcher) FetchTable(ctx context.Context, owner, service, tbl string, after uint64) ([]byte, error) {
	return f.Fetch(ctx, owner, subscribe.Request{Publisher: service, Table: tbl, After: after})
}

// streamCatchup answers a subscriber node's catch-up request with a reply
// the transport encodes as it sends it (transport.StreamHandler): a big
// table's snapshot is never held encoded in full on the publisher's node.
func (n *Node) streamCatchup(body []byte) (transport.StreamBody, error) {
	var req subscribe.Request
	if err := wire.Decode(body, &req, "catch-up request"); err != nil {
		return nil, err
	}
	pubs, err := n.catchupPubs(req)
	if err != nil {
		return nil, err
	}
	return table.NewBatchStream(pubs)
}

// catchupPubs is what answers a catch-up request: the deltas after
// req.After when the publisher's history holds them all, else a snapshot.
func (n *Node) catchupPubs(req subscribe.Request) ([]*table.Publication, error) {
	svc, ok := n.local.get(req.Publisher)
	if !ok {
		return nil, fmt.Errorf("%w: %q does not run on node %q", ErrServiceNotFound, req.Publisher, n.id)
	}
	if seed := svc.seed(req.Table); seed != nil {
		return []*table.Publication{seed}, nil
	}
	t, ok := svc.existingTable(req.Table)
	if !ok {
		return nil, nil
	}
	return t.Catchup(svc.id, req.After)
}
