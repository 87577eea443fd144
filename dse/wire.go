package dse

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"dse.dev/dse/internal/mpcheck"
)

// Frame types of the dse protocol on the cluster port (package transport
// carries them without looking inside).
const (
	msgLeaderOp    byte = 1 // request: a leader-only operation, forwarded
	msgStatus      byte = 2 // request: the node's Raft status
	msgPublication byte = 3 // one-way: publications pushed to a subscriber node
	msgRPC         byte = 4 // request: a service RPC
	msgCatchup     byte = 5 // request: deltas after a seqnum, or a snapshot
)

// leaderOp is a leader-only operation sent to the leader by a follower.
type leaderOp struct {
	Op     string      `msgpack:"op"`
	Cmd    []byte      `msgpack:"cmd,omitempty"`
	Member JoinRequest `msgpack:"member"`
	ID     string      `msgpack:"id,omitempty"`
	Force  bool        `msgpack:"force,omitempty"`
}

// opReply answers a leaderOp: an error code and message, or a result.
type opReply struct {
	Code   string       `msgpack:"code,omitempty"`
	Msg    string       `msgpack:"msg,omitempty"`
	Apply  *applyResult `msgpack:"apply,omitempty"`
	Leader string       `msgpack:"leader,omitempty"`
	// Index is the log index the operation committed at; the caller waits
	// for its own FSM to reach it (read-your-writes).
	Index uint64 `msgpack:"index,omitempty"`
}

// applyResult is an FSM Apply result in a form that crosses the wire.
type applyResult struct {
	Code   string        `msgpack:"code,omitempty"`
	Msg    string        `msgpack:"msg,omitempty"`
	Grants []wireGrant   `msgpack:"grants,omitempty"`
	Items  []applyResult `msgpack:"items,omitempty"`
	// Unknown: the leader accepted the entry and then lost track of it
	// (leadership lost, or the apply timed out), so it may yet commit.
	Unknown bool `msgpack:"unknown,omitempty"`
}

type wireGrant struct {
	First uint64 `msgpack:"f"`
	Code  string `msgpack:"c,omitempty"`
	Msg   string `msgpack:"m,omitempty"`
}

func (r *applyResult) err() error { return FromCode(r.Code, r.Msg) }

// encode marshals v as msgpack.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decode unmarshals msgpack into v, naming what failed.
func decode(b []byte, v any, what string) error {
	if err := mpcheck.Check(b); err != nil {
		return fmt.Errorf("%w: malformed %s: %v", ErrInvalid, what, err)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: malformed %s: %v", ErrInvalid, what, err)
	}
	return nil
}
