package dse

import (
	"context"
	"testing"

	"dse.dev/dse/dse/subscribe"
	"dse.dev/dse/dse/wire"
)

// FuzzPeerRequests feeds arbitrary bodies to the decoders of requests a peer
// sends over the cluster port (RPCs, catch-ups; cluster fuzzes leader
// operations): they must
// fail cleanly, never panic.
func FuzzPeerRequests(f *testing.F) {
	rpc, _ := wire.Encode(rpcRequest{Service: "s", Action: "ping", Args: map[string]any{"a": int64(1)}})
	cu, _ := wire.Encode(subscribe.Request{Publisher: "p", Table: "t", After: 3})
	f.Add(rpc)
	f.Add(cu)
	f.Fuzz(func(t *testing.T, body []byte) {
		var r rpcRequest
		if wire.DecodeLoose(body, &r) == nil {
			n := &Node{id: "x", local: &localServices{byID: map[string]*DataService{}}}
			n.serveRPC(context.Background(), r)
		}
		var c subscribe.Request
		wire.Decode(body, &c, "catch-up request")
	})
}
