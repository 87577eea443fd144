package dse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"dse.dev/dse/fsm"
	"dse.dev/dse/transport"
)

// HandleRequest answers a dse request from a peer (transport.Handler).
func (n *Node) HandleRequest(ctx context.Context, typ byte, body []byte) ([]byte, error) {
	switch typ {
	case msgLeaderOp:
		var op leaderOp
		if err := decode(body, &op, "leader operation"); err != nil {
			return nil, err
		}
		return encode(n.runLeaderOp(ctx, op))
	case msgStatus:
		return encode(n.Status())
	case msgRPC:
		return n.svcs.handleRPC(ctx, body)
	}
	return nil, fmt.Errorf("%w: unknown request type %d", ErrInvalid, typ)
}

var _ transport.StreamHandler = (*Node)(nil)

// StreamRequest answers the requests whose replies are encoded as they are
// sent (transport.StreamHandler): catch-ups, which may carry a big table.
func (n *Node) StreamRequest(_ context.Context, typ byte, body []byte) (transport.StreamBody, bool, error) {
	if typ != msgCatchup {
		return nil, false, nil
	}
	s, err := n.svcs.streamCatchup(body)
	return s, true, err
}

// HandleMessage receives a one-way dse frame from a peer (transport.Handler).
func (n *Node) HandleMessage(from string, typ byte, body []byte) {
	switch typ {
	case msgPublication:
		n.svcs.handlePublications(from, body)
	default:
		n.logger.Warn("dropping unknown message", "from", from, "type", typ)
	}
}

// runLeaderOp executes op if this node leads, else answers not_leader.
func (n *Node) runLeaderOp(ctx context.Context, op leaderOp) opReply {
	if !n.IsLeader() {
		return opReply{Code: "not_leader", Msg: fmt.Sprintf("node %q is not the leader", n.id)}
	}
	var (
		rep opReply
		err error
	)
	switch op.Op {
	case "apply":
		// A peer's command must decode here: a committed entry that does not
		// would stop every node.
		if _, _, derr := fsm.Decode(op.Cmd); derr != nil {
			err = fmt.Errorf("%w: %v", ErrInvalid, derr)
			break
		}
		res, index := n.applyLocal(op.Cmd)
		if res.Code == "not_leader" {
			return opReply{Code: "not_leader", Msg: res.Msg}
		}
		rep.Apply, rep.Index = &res, index
	case "join":
		rep.Index, err = n.joinLocal(op.Member)
	case "remove":
		rep.Index, err = n.removeLocal(op.ID, op.Force)
	case "promote":
		rep.Index, err = n.promoteLocal(op.ID)
	case "transfer":
		rep.Leader, err = n.transferLocal(ctx, op.ID)
	default:
		err = fmt.Errorf("%w: unknown leader operation %q", ErrInvalid, op.Op)
	}
	if err != nil {
		return opReply{Code: ErrorCode(err), Msg: err.Error()}
	}
	return rep
}

// leaderDo runs op on the leader, forwarding it over the cluster port when
// this node is a follower, and retrying while leadership moves. It returns
// once this node's FSM has applied the operation's index.
func (n *Node) leaderDo(ctx context.Context, op leaderOp) (opReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.ApplyTimeout)
		defer cancel()
	}
	if op.Op == "apply" {
		// Under an id, the command may be sent again whenever its outcome
		// is unknown: the FSM applies it once (fsm.Once).
		cmd, done, err := n.once.wrap(op.Cmd)
		if err != nil {
			return opReply{}, err
		}
		defer done()
		op.Cmd = cmd
	}
	body, err := encode(op)
	if err != nil {
		return opReply{}, err
	}
	backoff := 5 * time.Millisecond
	maybeDone := false // an earlier attempt may have been carried out
	for {
		var rep opReply
		var callErr error
		if n.IsLeader() {
			rep = n.runLeaderOp(ctx, op)
		} else if _, addr := n.Leader(); addr == "" {
			callErr = ErrNoLeader
		} else {
			var raw []byte
			raw, callErr = n.trans.Call(ctx, addr, msgLeaderOp, body)
			if callErr == nil {
				callErr = decode(raw, &rep, "leader reply")
			} else {
				maybeDone = true
				n.countUnknown()
			}
		}
		if maybeDone && callErr == nil && rep.Code != "" && rep.Code != "not_leader" && n.membershipDone(op) {
			// A resent membership change that an earlier attempt made:
			// "not a member" or "already a voter" is the goal reached.
			return opReply{}, nil
		}
		if callErr == nil && rep.Apply != nil && rep.Apply.Unknown {
			// The leader accepted the entry and lost track of it; it may
			// still commit. Send it again: the FSM answers once.
			callErr = rep.Apply.err()
			n.countUnknown()
		} else if callErr == nil && rep.Code != "not_leader" {
			if err := FromCode(rep.Code, rep.Msg); err != nil {
				return rep, err
			}
			if op.Op == "remove" && op.ID == n.id {
				return rep, nil // a removed node never sees the entry
			}
			if op.Op == "apply" {
				// A command: its effect is read from the FSM.
				return rep, n.waitFSM(ctx, rep.Index)
			}
			return rep, n.waitApplied(ctx, rep.Index)
		}
		if callErr == nil {
			callErr = ErrNotLeader
		}
		select {
		case <-ctx.Done():
			return opReply{}, fmt.Errorf("%w: %v (last error: %v)", ErrUnavailable, ctx.Err(), callErr)
		case <-n.ctx.Done():
			return opReply{}, ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

func (n *Node) countUnknown() {
	if n.metrics != nil {
		n.metrics.unknown.Inc()
	}
}

// membershipDone reports whether the configuration already is what a
// remove or promote op asks for.
func (n *Node) membershipDone(op leaderOp) bool {
	if op.Op != "remove" && op.Op != "promote" {
		return false
	}
	servers, _, err := n.configuration()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == op.ID {
			return op.Op == "promote" && s.Suffrage == raft.Voter
		}
	}
	return op.Op == "remove"
}

// waitApplied blocks until this node has applied the log through index.
// Raft's applied index counts every entry (no-ops and configuration changes
// never reach the FSM), so it is the one to wait on; the FSM's change channel
// wakes the wait early for commands. It moves when raft hands entries to the
// FSM, before the FSM has applied them: to read a command's effect, use
// waitFSM.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	return n.waitIndex(ctx, index, true)
}

// waitFSM blocks until this node's FSM has applied the command at index.
func (n *Node) waitFSM(ctx context.Context, index uint64) error {
	return n.waitIndex(ctx, index, false)
}

func (n *Node) waitIndex(ctx context.Context, index uint64, raftApplied bool) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := n.fsm.Changed()
		if n.fsm.Index() >= index || (raftApplied && n.raft.AppliedIndex() >= index) {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for index %d: %v", ErrUnavailable, index, ctx.Err())
		case <-n.ctx.Done():
			return ErrClosed
		}
	}
}

// applyLocal commits an encoded command through Raft on the leader.
func (n *Node) applyLocal(data []byte) (applyResult, uint64) {
	start := time.Now()
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	err := n.waitFuture(f)
	if n.metrics != nil {
		n.metrics.applyLatency.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		// Not accepted: safe to retry on the new leader. Leadership lost
		// after accepting: the entry may still commit, so the outcome is
		// unknown and the caller must not simply retry.
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return applyResult{Code: "not_leader", Msg: err.Error()}, 0
		}
		return applyResult{Code: "unavailable", Msg: "raft apply: " + err.Error(), Unknown: true}, 0
	}
	return toApplyResult(f.Response()), f.Index()
}

// waitFuture waits for a Raft future, or for the node to close:
// hashicorp/raft may leave a future queued at shutdown unanswered
// (hashicorp/raft#498; seen here as a Barrier that hung Close), and Close
// waits for the goroutines that wait on futures.
func (n *Node) waitFuture(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.ctx.Done():
		return ErrClosed
	}
}

func toApplyResult(v any) applyResult {
	switch r := v.(type) {
	case nil:
		return applyResult{}
	case error:
		return applyResult{Code: ErrorCode(r), Msg: r.Error()}
	case []fsm.PublishGrant:
		out := applyResult{Grants: make([]wireGrant, len(r))}
		for i, g := range r {
			out.Grants[i].First = g.First
			if g.Err != nil {
				out.Grants[i].Code, out.Grants[i].Msg = ErrorCode(g.Err), g.Err.Error()
			}
		}
		return out
	case []any:
		out := applyResult{Items: make([]applyResult, len(r))}
		for i, x := range r {
			out.Items[i] = toApplyResult(x)
		}
		return out
	}
	return applyResult{Code: "internal", Msg: fmt.Sprintf("unexpected apply result %T", v)}
}

// apply commits a command through the leader and returns its result.
func (n *Node) apply(ctx context.Context, t fsm.CommandType, body any) (*applyResult, error) {
	data, err := fsm.Encode(t, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	rep, err := n.leaderDo(ctx, leaderOp{Op: "apply", Cmd: data})
	if err != nil {
		return nil, err
	}
	if rep.Apply == nil {
		return nil, fmt.Errorf("%w: leader sent no apply result", ErrUnavailable)
	}
	return rep.Apply, nil
}

// applyErr commits a command whose only result is an error, through the
// node's registry group commit (applyBatcher).
func (n *Node) applyErr(ctx context.Context, t fsm.CommandType, body any) error {
	data, err := fsm.Encode(t, body)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return n.applies.do(ctx, data, batchKey(body))
}
