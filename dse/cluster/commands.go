package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"dse.dev/dse/dse/errdefs"
	"dse.dev/dse/dse/wire"
	"dse.dev/dse/fsm"
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

func (r *applyResult) err() error { return errdefs.FromCode(r.Code, r.Msg) }

// HandleLeaderOp answers a follower's leader operation (a wire.LeaderOp
// frame).
func (c *Membership) HandleLeaderOp(ctx context.Context, body []byte) ([]byte, error) {
	var op leaderOp
	if err := wire.Decode(body, &op, "leader operation"); err != nil {
		return nil, err
	}
	return wire.Encode(c.runLeaderOp(ctx, op))
}

// runLeaderOp executes op if this member leads, else answers not_leader.
func (c *Membership) runLeaderOp(ctx context.Context, op leaderOp) opReply {
	if !c.IsLeader() {
		return opReply{Code: "not_leader", Msg: fmt.Sprintf("node %q is not the leader", c.id)}
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
			err = fmt.Errorf("%w: %v", errdefs.ErrInvalid, derr)
			break
		}
		res, index, aerr := c.applyLocal(op.Cmd)
		switch {
		case errors.Is(aerr, errNotAccepted):
			return opReply{Code: "not_leader", Msg: aerr.Error()}
		case aerr != nil:
			// Accepted, then leadership was lost or the apply timed out:
			// the entry may still commit, so the outcome is unknown.
			rep.Apply = &applyResult{Code: errdefs.Code(aerr), Msg: aerr.Error(), Unknown: true}
		default:
			wr := toApplyResult(res)
			rep.Apply, rep.Index = &wr, index
		}
	case "join":
		rep.Index, err = c.joinLocal(op.Member)
	case "remove":
		rep.Index, err = c.removeLocal(op.ID, op.Force)
	case "promote":
		rep.Index, err = c.promoteLocal(op.ID)
	case "transfer":
		rep.Leader, err = c.transferLocal(ctx, op.ID)
	default:
		err = fmt.Errorf("%w: unknown leader operation %q", errdefs.ErrInvalid, op.Op)
	}
	if err != nil {
		return opReply{Code: errdefs.Code(err), Msg: err.Error()}
	}
	return rep
}

// leaderDo runs op on the leader, forwarding it over the cluster port when
// this member is a follower, and retrying while leadership moves. It returns
// once this member's FSM has applied the operation's index.
func (c *Membership) leaderDo(ctx context.Context, op leaderOp) (opReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		defer cancel()
	}
	if op.Op == "apply" {
		// Under an id, the command may be sent again whenever its outcome
		// is unknown: the FSM applies it once (fsm.Once).
		cmd, done, err := c.once.wrap(op.Cmd)
		if err != nil {
			return opReply{}, err
		}
		defer done()
		op.Cmd = cmd
	}
	body, err := wire.Encode(op)
	if err != nil {
		return opReply{}, err
	}
	backoff := 5 * time.Millisecond
	maybeDone := false // an earlier attempt may have been carried out
	for {
		var rep opReply
		var callErr error
		if c.IsLeader() {
			rep = c.runLeaderOp(ctx, op)
		} else if _, addr := c.Leader(); addr == "" {
			callErr = errdefs.ErrNoLeader
		} else {
			var raw []byte
			raw, callErr = c.trans.Call(ctx, addr, wire.LeaderOp, body)
			if callErr == nil {
				callErr = wire.Decode(raw, &rep, "leader reply")
			} else {
				maybeDone = true
				c.metrics.unknown.Inc()
			}
		}
		if maybeDone && callErr == nil && rep.Code != "" && rep.Code != "not_leader" && c.membershipDone(op) {
			// A resent membership change that an earlier attempt made:
			// "not a member" or "already a voter" is the goal reached.
			return opReply{}, nil
		}
		if callErr == nil && rep.Apply != nil && rep.Apply.Unknown {
			// The leader accepted the entry and lost track of it; it may
			// still commit. Send it again: the FSM answers once.
			callErr = rep.Apply.err()
			c.metrics.unknown.Inc()
		} else if callErr == nil && rep.Code != "not_leader" {
			if err := errdefs.FromCode(rep.Code, rep.Msg); err != nil {
				return rep, err
			}
			if op.Op == "remove" && op.ID == c.id {
				return rep, nil // a removed member never sees the entry
			}
			if op.Op == "apply" {
				// A command: its effect is read from the FSM.
				return rep, c.WaitFSM(ctx, rep.Index)
			}
			return rep, c.WaitApplied(ctx, rep.Index)
		}
		if callErr == nil {
			callErr = errdefs.ErrNotLeader
		}
		select {
		case <-ctx.Done():
			return opReply{}, fmt.Errorf("%w: %v (last error: %v)", errdefs.ErrUnavailable, ctx.Err(), callErr)
		case <-c.ctx.Done():
			return opReply{}, errdefs.ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// membershipDone reports whether the configuration already is what a
// remove or promote op asks for.
func (c *Membership) membershipDone(op leaderOp) bool {
	if op.Op != "remove" && op.Op != "promote" {
		return false
	}
	servers, _, err := c.Configuration()
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

// WaitApplied blocks until this member has applied the log through index.
// Raft's applied index counts every entry (no-ops and configuration
// changes never reach the FSM), so it is the one to wait on; the FSM's
// change channel wakes the wait early for commands. It moves when raft
// hands entries to the FSM, before the FSM has applied them: to read a
// command's effect, use WaitFSM.
func (c *Membership) WaitApplied(ctx context.Context, index uint64) error {
	return c.waitIndex(ctx, index, true)
}

// WaitFSM blocks until this member's FSM has applied the command at index.
func (c *Membership) WaitFSM(ctx context.Context, index uint64) error {
	return c.waitIndex(ctx, index, false)
}

func (c *Membership) waitIndex(ctx context.Context, index uint64, raftApplied bool) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := c.fsm.Changed()
		if c.fsm.Index() >= index || (raftApplied && c.raft.AppliedIndex() >= index) {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for index %d: %v", errdefs.ErrUnavailable, index, ctx.Err())
		case <-c.ctx.Done():
			return errdefs.ErrClosed
		}
	}
}

// errNotAccepted is wrapped by applyLocal's error when raft refused the
// entry outright (this member is not the leader, or leadership is being
// transferred): it can never commit, and may be sent again elsewhere.
var errNotAccepted = errors.New("entry not accepted")

// applyLocal commits an encoded command through Raft on this member, the
// leader, and returns the FSM's result and the entry's index. It is the
// one place a member submits an entry: the registry's writes and the
// publish path's seqnum entries go through it on the leader. Its error
// wraps errNotAccepted when raft refused the entry outright, and is
// errdefs.ErrUnavailable when raft accepted it and lost track of it (the
// outcome is unknown: it may still commit).
func (c *Membership) applyLocal(data []byte) (any, uint64, error) {
	start := time.Now()
	f := c.raft.Apply(data, c.cfg.ApplyTimeout)
	err := c.waitFuture(f)
	c.metrics.applyLatency.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		return f.Response(), f.Index(), nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return nil, 0, fmt.Errorf("%w: %w", errNotAccepted, err)
	case errors.Is(err, errdefs.ErrClosed):
		return nil, 0, err
	}
	return nil, 0, fmt.Errorf("%w: raft apply: %v", errdefs.ErrUnavailable, err)
}

// ApplyLeader commits a command on this member, which must lead (the
// leader's own loops: liveness, placement), and returns the command's
// business error, if any.
func (c *Membership) ApplyLeader(data []byte) error {
	res, _, err := c.applyLocal(data)
	if err != nil {
		return err
	}
	ar := toApplyResult(res)
	return ar.err()
}

// waitFuture waits for a Raft future, or for the member to close:
// hashicorp/raft may leave a future queued at shutdown unanswered
// (hashicorp/raft#498; seen here as a Barrier that hung Close), and Close
// waits for the goroutines that wait on futures.
func (c *Membership) waitFuture(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-c.ctx.Done():
		return errdefs.ErrClosed
	}
}

// toApplyResult turns an FSM result into its wire form, its errors into
// their codes.
func toApplyResult(v any) applyResult {
	switch r := v.(type) {
	case nil:
		return applyResult{}
	case error:
		return applyResult{Code: errdefs.Code(r), Msg: r.Error()}
	case []fsm.PublishGrant:
		out := applyResult{Grants: make([]wireGrant, len(r))}
		for i, g := range r {
			out.Grants[i].First = g.First
			if g.Err != nil {
				out.Grants[i].Code, out.Grants[i].Msg = errdefs.Code(g.Err), g.Err.Error()
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

// apply commits a command through the leader (forwarded by a follower,
// under an id that makes a resend harmless) and returns its result.
func (c *Membership) apply(ctx context.Context, data []byte) (*applyResult, error) {
	rep, err := c.leaderDo(ctx, leaderOp{Op: "apply", Cmd: data})
	if err != nil {
		return nil, err
	}
	if rep.Apply == nil {
		return nil, fmt.Errorf("%w: leader sent no apply result", errdefs.ErrUnavailable)
	}
	return rep.Apply, nil
}

// Write commits a registry command whose only result is an error (register,
// subscribe, datasources, tokens, ...), through the member's registry group
// commit, and returns once this member's FSM has applied it.
func (c *Membership) Write(ctx context.Context, t fsm.CommandType, body any) error {
	data, err := fsm.Encode(t, body)
	if err != nil {
		return fmt.Errorf("%w: %v", errdefs.ErrInvalid, err)
	}
	return c.applies.do(ctx, data, batchKey(body))
}

// Sequence commits one publish entry (fsm.Publish) and returns a grant per
// request, in order (errors as errdefs sentinels). On the leader the entry is applied locally and its
// grants read as the FSM returned them; a follower forwards it, as a leader
// whose entry raft refused outright does (nothing was submitted after it,
// so nothing can overtake it). An error means the entry as a whole failed:
// errdefs.ErrUnavailable when its outcome is unknown (it may still commit,
// its seqnums then unused).
func (c *Membership) Sequence(ctx context.Context, cmd fsm.Publish) ([]fsm.PublishGrant, error) {
	data, err := fsm.Encode(fsm.CmdPublish, cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errdefs.ErrInvalid, err)
	}
	if c.IsLeader() {
		res, _, err := c.applyLocal(data)
		if err == nil {
			grants, ok := res.([]fsm.PublishGrant)
			if !ok {
				return nil, fmt.Errorf("%w: publish entry answered %v", errdefs.ErrUnavailable, res)
			}
			out := make([]fsm.PublishGrant, len(grants))
			for i, g := range grants {
				out[i].First = g.First
				if g.Err != nil {
					// As a follower reads it: the FSM's own errors are not
					// the sentinels callers check.
					out[i].Err = errdefs.FromCode(errdefs.Code(g.Err), g.Err.Error())
				}
			}
			return out, nil
		}
		if !errors.Is(err, errNotAccepted) {
			return nil, err
		}
	}
	res, err := c.apply(ctx, data)
	if err != nil {
		return nil, err
	}
	if err := res.err(); err != nil {
		return nil, err // the entry as a whole failed (fsm.ErrAnswered)
	}
	out := make([]fsm.PublishGrant, len(res.Grants))
	for i, g := range res.Grants {
		out[i] = fsm.PublishGrant{First: g.First, Err: errdefs.FromCode(g.Code, g.Msg)}
	}
	return out, nil
}
