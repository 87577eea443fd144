package dse

import (
	"context"
	"testing"
)

// FuzzPeerRequests feeds arbitrary bodies to the decoders of requests a peer
// sends over the cluster port (leader operations, RPCs, catch-ups): they must
// fail cleanly, never panic.
func FuzzPeerRequests(f *testing.F) {
	op, _ := encode(leaderOp{Op: "apply", Cmd: []byte{1, 2}})
	rpc, _ := encode(rpcRequest{Service: "s", Action: "ping", Args: map[string]any{"a": int64(1)}})
	cu, _ := encode(catchupRequest{Publisher: "p", Table: "t", After: 3})
	f.Add(op)
	f.Add(rpc)
	f.Add(cu)
	f.Fuzz(func(t *testing.T, body []byte) {
		var o leaderOp
		decode(body, &o, "leader operation")
		var r rpcRequest
		if decodeLoose(body, &r) == nil {
			ss := &services{local: map[string]*DataService{}, n: &Node{id: "x"}}
			ss.serveRPC(context.Background(), r)
		}
		var c catchupRequest
		decode(body, &c, "catch-up request")
	})
}
