package dse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"dse.dev/dse/dse/wire"
	"dse.dev/dse/internal/mpcheck"
	"dse.dev/dse/transport"
)

// DefaultRPCTimeout bounds an RPC whose caller set no timeout.
const DefaultRPCTimeout = 10 * time.Second

// RPCOptions are rpc's optional arguments.
type RPCOptions struct {
	// Timeout bounds the call (each attempt); zero means DefaultRPCTimeout.
	Timeout time.Duration
	// Local calls only an instance on the caller's node.
	Local bool
	// Retry is how many more attempts follow one that failed to reach the
	// service (transport failures only; never after the method ran).
	// Within an attempt, a call that could not reach an instance goes on
	// to the next live one; a call that timed out or lost its connection
	// after it was sent (the method may have run) is not sent again,
	// unless Idempotent.
	Retry int
	// Idempotent says the method may run more than once for one call: a
	// call that timed out or lost its connection after it was sent then
	// takes the next attempt, if Retry leaves one, on the next live
	// instance (the owner's host hanging fails over to a standby). Each
	// such attempt waits at most Timeout, so the whole call at most
	// (Retry+1) × Timeout, plus the instances that could not be reached
	// and the pauses between attempts (a second at most each).
	Idempotent bool
}

type rpcRequest struct {
	Service string         `msgpack:"s"`
	Action  string         `msgpack:"a"`
	Args    map[string]any `msgpack:"args"`
	Timeout int64          `msgpack:"t"` // nanoseconds
	// Attached: for the node's attached sessions (attach.go), not its
	// instance of the service.
	Attached bool `msgpack:"at,omitempty"`
}

type rpcReply struct {
	Result any    `msgpack:"r"`
	Code   string `msgpack:"c,omitempty"`
	Msg    string `msgpack:"m,omitempty"`
}

// RPC calls action on service with args, wherever the service runs (rpc).
// Errors: ErrServiceNotFound, ErrNoSuchMethod, ErrUnavailable (timed out or
// unreachable, after the retries), and ErrRemote with the method's message.
func (s *DataService) RPC(ctx context.Context, service, action string, args map[string]any, opts RPCOptions) (any, error) {
	n := s.nodeOf()
	if n == nil {
		return nil, s.errNotRunning()
	}
	return n.RPC(ctx, service, action, args, opts)
}

// RPC is DataService.RPC on behalf of the node itself (the HTTP API's rpc).
func (n *Node) RPC(ctx context.Context, service, action string, args map[string]any, opts RPCOptions) (any, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRPCTimeout
	}
	if opts.Retry < 0 {
		return nil, fmt.Errorf("%w: retry %d is negative", ErrInvalid, opts.Retry)
	}
	if args == nil {
		args = map[string]any{}
	}
	req := rpcRequest{Service: service, Action: action, Args: args, Timeout: int64(opts.Timeout)}
	body, err := wire.Encode(req)
	if err != nil {
		return nil, fmt.Errorf("%w: arguments do not encode: %v", ErrInvalid, err)
	}
	if err := mpcheck.Check(body); err != nil {
		// What the receiving node would refuse (nesting over 64, say):
		// refused here as bad arguments, not there as unavailable.
		return nil, fmt.Errorf("%w: arguments: %v", ErrInvalid, err)
	}
	var last error
	after := "" // an idempotent attempt's next one starts past this node
	synced := false
	for attempt := 0; attempt <= opts.Retry; attempt++ {
		// attach.go: an action served from outside goes to its sessions.
		targets, attached, err := n.rpcRoute(service, action, opts.Local)
		if errors.Is(err, ErrServiceNotFound) && !synced {
			// This node's registry may not hold a service created a
			// moment ago elsewhere: look again once it has what the
			// leader committed. Until it can, it cannot tell.
			if synced = n.syncRead(ctx); synced {
				targets, attached, err = n.rpcRoute(service, action, opts.Local)
			} else {
				err = errNotCurrent(n.id, service)
			}
		}
		if errors.Is(err, errNotRun) {
			last, targets = err, nil
		} else if err != nil {
			return nil, err
		}
		if attached != req.Attached {
			req.Attached = attached
			if body, err = wire.Encode(req); err != nil {
				return nil, fmt.Errorf("%w: arguments do not encode: %v", ErrInvalid, err)
			}
		}
		targets = rotatePast(targets, after)
		after = ""
		for _, node := range targets {
			res, err := n.rpcOnce(ctx, node, req, body, opts.Timeout)
			if err == nil {
				n.metrics.rpcCalls.WithLabelValues("ok").Inc()
				return res, nil
			}
			last = err
			if errors.Is(err, errNotRun) {
				continue
			}
			if opts.Idempotent && errors.Is(err, ErrUnavailable) && attempt < opts.Retry {
				// It may have run, which the caller allows: this
				// attempt is spent, and the next tries the next
				// instance first.
				after = node
				break
			}
			n.metrics.rpcCalls.WithLabelValues(ErrorCode(err)).Inc()
			return nil, err
		}
		if ctx.Err() != nil || attempt == opts.Retry {
			break
		}
		// A short pause before the next attempt: an instance restarting or
		// moving is back within moments, not within microseconds.
		select {
		case <-ctx.Done():
		case <-time.After(min(50*time.Millisecond<<attempt, time.Second)):
		}
	}
	if errors.Is(last, ErrServiceNotFound) {
		if _, ok := n.fsm.Service(service); ok {
			// The registry has it: its instances are starting or moving,
			// which is not the service being gone. Nothing ran: a
			// publish tries again.
			err := fmt.Errorf("%w: no instance of %q answered (starting, or moving): %v", ErrUnavailable, service, last)
			if errors.Is(last, errNotRun) {
				err = notRun{err}
			}
			last = err
		}
	}
	n.metrics.rpcCalls.WithLabelValues(ErrorCode(last)).Inc()
	return nil, last
}

// rotatePast returns targets starting with the one after node, wrapping
// around; targets as they are when node is not among them.
func rotatePast(targets []string, node string) []string {
	i := slices.Index(targets, node)
	if i < 0 {
		return targets
	}
	return append(slices.Clone(targets[i+1:]), targets[:i+1]...)
}

// errNotRun marks an RPC failure after which the method certainly did not
// run on that node: the request never reached it, or the node does not
// run the service (any more). Only such a call goes on to another
// instance or is retried.
var errNotRun = errors.New("the method did not run")

// notRun wraps such a failure; its message is the failure's own.
type notRun struct{ error }

func (e notRun) Unwrap() error      { return e.error }
func (notRun) Is(target error) bool { return target == errNotRun }

// errNotCurrent says that node, whose registry is not current (it is
// starting, or cut off from the leader), cannot tell whether service
// exists; nothing ran.
func errNotCurrent(node, service string) error {
	return notRun{fmt.Errorf("%w: node %q cannot tell whether %q exists: its registry is not current (the node is starting, or cut off from the leader)", ErrUnavailable, node, service)}
}

// syncRead brings this node's registry up to what the leader had committed
// when it asked, within a second; it reports whether it did.
func (n *Node) syncRead(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return n.cluster.Sync(ctx) == nil
}

// rpcTargets lists the nodes to try: the owner first, then the other live
// instances; with local, only this node.
func (n *Node) rpcTargets(service string, local bool) ([]string, error) {
	svc, ok := n.fsm.Service(service)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrServiceNotFound, service)
	}
	if local {
		if !slices.Contains(svc.Instances, n.id) {
			return nil, fmt.Errorf("%w: %q has no instance on node %q", ErrServiceNotFound, service, n.id)
		}
		return []string{n.id}, nil
	}
	var out []string
	if svc.Owner != "" {
		out = append(out, svc.Owner)
	}
	for _, node := range svc.Instances {
		if node == svc.Owner {
			continue
		}
		if rec, ok := n.fsm.Node(node); ok && rec.Up {
			out = append(out, node)
		}
	}
	if len(out) == 0 {
		return nil, notRun{fmt.Errorf("%w: no live instance of %q", ErrUnavailable, service)}
	}
	return out, nil
}

// rpcOnce calls the method on node. An error wrapping errNotRun means the
// method did not run there; any other may come after it ran (a timeout, a
// connection lost after the request was sent) or is the method's own.
func (n *Node) rpcOnce(ctx context.Context, node string, req rpcRequest, body []byte, timeout time.Duration) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	timedOut := func() error {
		return fmt.Errorf("%w: %s.%s timed out after %s on node %q", ErrUnavailable, req.Service, req.Action, timeout, node)
	}
	var raw []byte
	var err error
	if node == n.id {
		// Through the codec even here, so callers see the same types
		// wherever the service runs; in a goroutine, so that the deadline
		// holds for a method that does not heed its ctx.
		type reply struct {
			raw []byte
			err error
		}
		done := make(chan reply, 1)
		go func() {
			raw, err := n.handleRPC(ctx, body)
			done <- reply{raw, err}
		}()
		select {
		case r := <-done:
			raw, err = r.raw, r.err
		case <-ctx.Done():
			return nil, timedOut()
		}
	} else if rec, ok := n.fsm.Node(node); !ok {
		return nil, notRun{fmt.Errorf("%w: node %q is not in the cluster", ErrUnavailable, node)}
	} else {
		raw, err = n.trans.Call(ctx, rec.Addr, wire.RPC, body)
	}
	if err != nil {
		var re *transport.RemoteError
		switch {
		case errors.As(err, &re):
			// The peer's handler refused the request before any method
			// ran (it is starting, or could not read the request): a
			// method's outcome, even a result too big to send, comes back
			// as an rpcReply.
			return nil, notRun{fmt.Errorf("%w: node %q: %s", ErrUnavailable, node, re.Msg)}
		case errors.Is(err, transport.ErrNotSent):
			return nil, notRun{fmt.Errorf("%w: node %q: %v", ErrUnavailable, node, err)}
		case errors.Is(err, context.DeadlineExceeded):
			return nil, timedOut()
		}
		return nil, fmt.Errorf("%w: node %q: %v", ErrUnavailable, node, err)
	}
	var rep rpcReply
	if err := wire.DecodeLoose(raw, &rep); err != nil {
		return nil, fmt.Errorf("%w: node %q: %v", ErrUnavailable, node, err)
	}
	if rep.Code == "service_not_found" {
		// The registry still names an instance there that has stopped or
		// moved: no method ran, another instance may answer.
		return nil, notRun{FromCode(rep.Code, rep.Msg)}
	}
	return rep.Result, FromCode(rep.Code, rep.Msg)
}

// handleRPC answers an RPC from a peer.
func (n *Node) handleRPC(ctx context.Context, body []byte) ([]byte, error) {
	var req rpcRequest
	if err := wire.DecodeLoose(body, &req); err != nil {
		return nil, fmt.Errorf("%w: malformed rpc request: %v", ErrInvalid, err)
	}
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout))
		defer cancel()
	}
	rep := n.serveRPC(ctx, req)
	out, err := wire.Encode(rep)
	if err != nil {
		return wire.Encode(rpcReply{Code: "remote", Msg: fmt.Sprintf("result of %s.%s does not encode: %v", req.Service, req.Action, err)})
	}
	if limit := n.trans.MaxFrameSize(); len(out) > limit {
		// Answered here, as the method's failure: the transport would
		// answer with an error of its own, which callers take for a
		// request refused before any method ran, and send elsewhere.
		return wire.Encode(rpcReply{Code: "remote", Msg: fmt.Sprintf("result of %s.%s is %d bytes, over the frame limit %d", req.Service, req.Action, len(out), limit)})
	}
	return out, nil
}

func (n *Node) serveRPC(ctx context.Context, req rpcRequest) (rep rpcReply) {
	if req.Attached {
		return n.serveAttached(ctx, req) // attach.go
	}
	s, ok := n.local.get(req.Service)
	if !ok {
		return rpcReply{Code: "service_not_found", Msg: fmt.Sprintf("service not found: %q does not run on node %q", req.Service, n.id)}
	}
	m, ok := s.method(req.Action)
	if !ok {
		return rpcReply{Code: "no_such_method", Msg: fmt.Sprintf("no such method: %q on service %q", req.Action, req.Service)}
	}
	if _, ok := s.enter(); !ok {
		return rpcReply{Code: "service_not_found", Msg: fmt.Sprintf("service not found: %q stopped on node %q", req.Service, n.id)}
	}
	defer s.leave()
	defer func() {
		if v := recover(); v != nil {
			rep = rpcReply{Code: "remote", Msg: fmt.Sprintf("%s.%s panicked: %v", req.Service, req.Action, v)}
		}
	}()
	res, err := m(ctx, req.Args)
	if err != nil {
		if ctx.Err() != nil {
			return rpcReply{Code: "unavailable", Msg: fmt.Sprintf("%s.%s timed out: %v", req.Service, req.Action, ctx.Err())}
		}
		var own nodeError
		if errors.As(err, &own) {
			return rpcReply{Code: ErrorCode(err), Msg: err.Error()} // the node's refusal, not the method's
		}
		return rpcReply{Code: "remote", Msg: err.Error()}
	}
	return rpcReply{Result: res}
}

// builtinEndpoint is DataServiceEndPoints: ping, get_snapshot and
// get_last_published_data_with_seqnum on every service.
func (s *DataService) builtinEndpoint() Endpoint {
	tableArg := func(args map[string]any) (string, error) {
		t, ok := args["table"].(string)
		if !ok || t == "" {
			return "", fmt.Errorf("argument \"table\" (a string) is required")
		}
		return t, nil
	}
	return Endpoint{
		"ping": func(_ context.Context, args map[string]any) (any, error) {
			return args, nil
		},
		"get_snapshot": func(_ context.Context, args map[string]any) (any, error) {
			t, err := tableArg(args)
			if err != nil {
				return nil, err
			}
			rows, err := s.GetSnapshot(t)
			if err != nil {
				return nil, err
			}
			return rowsValue(rows), nil
		},
		"get_last_published_data_with_seqnum": func(_ context.Context, args map[string]any) (any, error) {
			t, err := tableArg(args)
			if err != nil {
				return nil, err
			}
			seq, rows, err := s.GetLastPublishedDataWithSeqnum(t)
			if err != nil {
				return nil, err
			}
			return map[string]any{"seqnum": int64(seq), "rows": rowsValue(rows)}, nil
		},
	}
}

func rowsValue(rows []Row) []any {
	out := make([]any, len(rows))
	for i, r := range rows {
		out[i] = []any(r)
	}
	return out
}
