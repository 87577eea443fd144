// Package transport owns a node's single cluster port.
//
// Every inbound connection announces what it carries with its first byte:
// ProtoRaft hands the connection to hashicorp/raft's NetworkTransport through
// the StreamLayer returned by RaftLayer; ProtoDSE carries dse frames. Any other
// byte, or silence past the handshake timeout, closes that connection and
// nothing else. This is rqlite's tcp/mux idea: one port per node is easy to run
// in containers and behind firewalls.
//
// A dse frame is a 9-byte header (type byte, uint32 request id, uint32 body
// length) and a body the caller encodes (msgpack in package dse). Frames larger
// than Config.MaxFrameSize are refused on both ends. Every read and write has
// a deadline; a connection that fails to read, write or flush is closed, never
// reused.
//
// Outbound traffic to a peer goes through one pooled, multiplexed connection
// per peer address, owned by a writer goroutine that batches queued frames
// into one flush. One-way messages (Send) are queued without blocking and
// dropped with ErrQueueFull when the peer's bounded queue is full, so a slow
// peer never blocks its sender; requests (Call) wait for their reply, their
// context, or a connection failure (ErrUnavailable). Frames from one sender to
// one peer arrive in the order they were queued. A handler may answer a
// request with a StreamBody, written to the connection as it is encoded
// under its declared length (a big snapshot is never held encoded whole).
// One over the frame limit goes as a long reply: its length, then its
// bytes unframed, bounded by MaxReplySize on both sides.
//
// The Raft stream layer retries a dial the peer refuses until Raft's
// timeout, so that a peer's restart does not run up hashicorp/raft's
// replication backoff.
//
// Package transport knows nothing of Raft's state or of dse's messages: the
// type byte and body belong to its user.
package transport
