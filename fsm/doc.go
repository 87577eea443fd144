// Package fsm owns the cluster's replicated metadata: the Raft state machine
// that every node applies in the same order.
//
// It holds nodes (id, addresses, liveness), services (id, instances, owner,
// incarnation, RPC endpoints), subscriptions (subscriber, publisher, table),
// the publication sequence number of every table, and datasource
// configurations. Bulk data (rows) never enters it.
//
// A command is one type byte followed by a msgpack body; Apply dispatches on
// the byte through a table. Apply is deterministic: it reads no clock, no
// randomness, and never depends on map iteration order; the only "time" it
// knows is the Raft log index, which it uses as the incarnation number of a
// service owner (so incarnations grow monotonically across the cluster).
// Business errors (unknown service, stale incarnation) are returned as Apply's
// result; a committed entry that cannot be decoded panics, because a node that
// cannot apply the log has diverged and must stop.
//
// A command a node sends to the leader comes wrapped in a Once, with the
// sender's id and a sequence number: the FSM applies each id once and
// answers a resend with the first result, so a node may resend whenever it
// cannot know whether the leader committed what it sent.
//
// Beside the state it keeps an index of what nodes ask for on every change
// (services by node and by the nodes that replicate them, attachments,
// datasources by node and name, subscriptions by subscriber; index.go),
// refiled for the entries each command touches and rebuilt on Restore, so
// that no question a node asks scans the registry. Files: state.go (the
// state and the node, service, datasource and publish commands),
// subscriptions.go, tokens.go, replicas.go, attach.go, once.go, index.go,
// snapshot.go.
//
// Snapshot clones the state (cheap, metadata only) and Persist encodes it with
// sorted keys, so two FSMs fed the same log produce byte-identical snapshots.
// Restore builds a fresh state and swaps it in.
//
// Package fsm imports neither transport nor dse: it is pure state.
package fsm
