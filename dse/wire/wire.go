package wire

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/internal/mpcheck"
)

// Frame types of the dse protocol on the cluster port (package transport
// carries them without looking inside).
const (
	LeaderOp    byte = 1 // request: a leader-only operation, forwarded
	Status      byte = 2 // request: the node's Raft status
	Publication byte = 3 // one-way: publications pushed to a subscriber node
	RPC         byte = 4 // request: a service RPC
	Catchup     byte = 5 // request: deltas after a seqnum, or a snapshot
	ReplicaAck  byte = 6 // one-way: what a replica holds on disk, to its owner
	ReplicaPush byte = 7 // one-way: publications for replicas only, maybe not yet sequenced
)

// Encode marshals v as msgpack.
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode unmarshals msgpack from a peer into v, its lengths checked first,
// naming what failed (an errdefs.ErrInvalid).
func Decode(b []byte, v any, what string) error {
	if err := mpcheck.Check(b); err != nil {
		return fmt.Errorf("%w: malformed %s: %v", errdefs.ErrInvalid, what, err)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: malformed %s: %v", errdefs.ErrInvalid, what, err)
	}
	return nil
}

// DecodeLoose decodes msgpack with integers as int64 and floats as float64
// (RPC arguments and results), its lengths checked first.
func DecodeLoose(b []byte, v any) error {
	if err := mpcheck.Check(b); err != nil {
		return err
	}
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(b))
	dec.UseLooseInterfaceDecoding(true)
	return dec.Decode(v)
}
