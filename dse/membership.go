package dse

import (
	"context"

	"dse.dev/dse/dse/cluster"
	"dse.dev/dse/fsm"
)

// The cluster's membership, as package cluster keeps it.
type (
	// JoinRequest asks the cluster to add a node.
	JoinRequest = cluster.JoinRequest
	// Member is one cluster member as `members list` shows it.
	Member = cluster.Member
	// StatusReport is a node's own view of Raft, as `status` shows it.
	StatusReport = cluster.StatusReport
)

// Status returns this node's view of Raft.
func (n *Node) Status() StatusReport { return n.cluster.Status() }

// Members lists the cluster's members: Raft's configuration joined with the
// registry's addresses and liveness, and each member's own report of its
// state and last log index (a member that does not answer shows state
// "down").
func (n *Node) Members(ctx context.Context) ([]Member, error) { return n.cluster.Members(ctx) }

// Join adds a node to the cluster (through the leader). A member with the
// same id or address is replaced; a member already present as asked is left
// alone.
func (n *Node) Join(ctx context.Context, req JoinRequest) error { return n.cluster.Join(ctx, req) }

// Remove takes a member out of the cluster. Unless force is set it refuses,
// with ErrQuorum, a removal after which the live voters could not elect a
// leader.
func (n *Node) Remove(ctx context.Context, id string, force bool) error {
	return n.cluster.Remove(ctx, id, force)
}

// Promote turns a non-voter into a voter.
func (n *Node) Promote(ctx context.Context, id string) error { return n.cluster.Promote(ctx, id) }

// TransferLeadership moves leadership to the member to (any voter if empty)
// and waits until a new leader is in place. It returns the new leader's id.
func (n *Node) TransferLeadership(ctx context.Context, to string) (string, error) {
	return n.cluster.TransferLeadership(ctx, to)
}

// Leave removes this node from the cluster gracefully and stops it: a leader
// hands leadership over first. The removal is refused, like Remove, when it
// would cost the cluster its quorum.
func (n *Node) Leave(ctx context.Context) error {
	if err := n.cluster.Leave(ctx); err != nil {
		return err
	}
	go n.Close()
	return nil
}

// WriteRegistry commits one registry command as it is (package fsm's
// types), through the registry's group commit, and returns once this
// node's FSM has applied it. It is for tools that build a registry in bulk
// (`dse bench join`): it checks nothing that Register, Subscribe and the
// other calls check first.
func (n *Node) WriteRegistry(ctx context.Context, t fsm.CommandType, body any) error {
	return n.applyErr(ctx, t, body)
}

// SnapshotInfo describes a Raft snapshot of the registry.
type SnapshotInfo = cluster.SnapshotInfo

// Snapshot takes a Raft snapshot of the registry now (as Raft does every
// Config.SnapshotThreshold entries), compacting the log behind it, and
// describes it.
func (n *Node) Snapshot() (SnapshotInfo, error) { return n.cluster.Snapshot() }
