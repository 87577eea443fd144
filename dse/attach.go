package dse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/serve"
	"dse.dev/dse/fsm"
)

// Attached actions: a process outside Go (`dse serve`, the Python client)
// serves RPC actions of an external service through a session it holds open
// on one node (the HTTP API streams the session's requests to it and takes
// its replies). The registry records each session with its actions on the
// service's record (fsm.ServiceAttach), so that:
//
//   - a call of an action that attachments serve goes to the nodes holding
//     such sessions (live ones, in turn, starting at a rotating one), and
//     on each node to the session with the fewest calls in flight, never more
//     than its concurrency (a call waits for a free slot within its timeout);
//   - attached actions shadow the service's own endpoints of the same name
//     (get_snapshot, as a Python service overriding it expects); ping,
//     publish and get_last_published_data_with_seqnum, which `dse rpc`,
//     `publish` and `get` rely on, cannot be attached;
//   - a node that has no live session for the action (any more) answers that
//     the method did not run, and the caller goes on to the next node; a call
//     that reached a session and then lost it (the stream ended, the timeout
//     passed) may have run: it is unavailable and not sent again (unless the
//     caller said it is idempotent);
//   - an action that an attachment served once but none serves now (a serve
//     restarting, or stopped) is unavailable, not "no such method": that one
//     is for actions the service never had.
//
// A session ends when its stream does (the node detaches it), when its
// service is deleted, or with the node. A node sweeps the registry for
// attachments of its own that it holds no session for (its previous process
// left them, or a detach failed) and removes them.

// ErrExpired is returned for a reply to a call whose caller has stopped
// waiting (it timed out): the result goes nowhere.
var ErrExpired = serve.ErrExpired

// Bounds of an attachment.
const (
	// MaxAttachConcurrency bounds how many calls one session runs at once.
	MaxAttachConcurrency = 1024
	// MaxAttachActions bounds the actions one session serves.
	MaxAttachActions = fsm.MaxAttachActions
)

// reservedActions are the built-in actions no attachment may shadow.
var reservedActions = []string{"get_last_published_data_with_seqnum", "ping", "publish"}

// AttachOptions say what a session serves.
type AttachOptions struct {
	// Actions are the action names the session serves.
	Actions []string
	// Concurrency bounds the calls in flight to the session at once;
	// zero means 1.
	Concurrency int
}

// ServeSession is one attachment (dse/serve holds a node's sessions): the
// process holding it takes its calls from Requests and answers each with
// Reply or Fail. Close detaches it.
type ServeSession = serve.Session

// ServeRequest is one call for an attached process to run.
type ServeRequest = serve.Request

// Attach opens a session through which the caller serves actions of an
// external service, and records it in the registry. Errors:
// ErrServiceNotFound, ErrInvalid (not an external service, bad or reserved
// action names, concurrency out of range).
func (n *Node) Attach(ctx context.Context, service string, opts AttachOptions) (*ServeSession, error) {
	if err := name.Check("service id", service); err != nil {
		return nil, err
	}
	actions := slices.Clone(opts.Actions)
	slices.Sort(actions)
	actions = slices.Compact(actions)
	if len(actions) == 0 || len(actions) > MaxAttachActions {
		return nil, fmt.Errorf("%w: serve 1 to %d actions, got %d", ErrInvalid, MaxAttachActions, len(actions))
	}
	for _, a := range actions {
		if err := name.Check("action", a); err != nil {
			return nil, err
		}
		if slices.Contains(reservedActions, a) {
			return nil, fmt.Errorf("%w: action %q is built into every service and cannot be served from outside", ErrInvalid, a)
		}
	}
	conc := opts.Concurrency
	if conc == 0 {
		conc = 1
	}
	if conc < 1 || conc > MaxAttachConcurrency {
		return nil, fmt.Errorf("%w: concurrency %d is not within 1-%d", ErrInvalid, opts.Concurrency, MaxAttachConcurrency)
	}
	// The registry decides (the service may have been created on another
	// node a moment ago); known here, a wrong kind is named at once.
	if svc, ok := n.fsm.Service(service); ok && svc.Kind != KindExternal {
		return nil, fmt.Errorf("%w: %q is a %s service: only external services (`dse services create`) can be served from outside", ErrInvalid, service, kindName(svc.Kind))
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s := n.attach.Open(service, id, actions, conc, func(ctx context.Context) error {
		return n.detach(ctx, service, id)
	})
	err := n.applyErr(ctx, fsm.CmdServiceAttach, fsm.ServiceAttach{Service: service, Node: n.id, Session: id, Actions: actions})
	if err != nil {
		// If it commits after all, the sweep removes it.
		s.End(err)
		return nil, err
	}
	s.Committed()
	n.logger.Info("process attached", "service", service, "session", id, "actions", actions, "concurrency", conc)
	return s, nil
}

func kindName(kind string) string {
	switch kind {
	case KindGo:
		return "Go"
	case KindDatasource:
		return "datasource's"
	case KindWatch:
		return "watch's"
	}
	return kind
}

// Session returns the live session id of service held through this node.
func (n *Node) Session(service, id string) (*ServeSession, bool) {
	return n.attach.Get(service, id)
}

// detach removes session id of service from the registry (its
// ServeSession's Close, after ending it here).
func (n *Node) detach(ctx context.Context, service, id string) error {
	err := n.applyErr(ctx, fsm.CmdServiceDetach, fsm.ServiceDetach{Service: service, Node: n.id, Session: id})
	if errors.Is(err, ErrServiceNotFound) {
		err = nil // deleted: its attachments went with it
	}
	if err == nil {
		n.logger.Info("process detached", "service", service, "session", id)
	}
	return err
}

// serveAttached runs, on the node holding them, a call routed to attached
// sessions.
func (n *Node) serveAttached(ctx context.Context, req rpcRequest) rpcReply {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRPCTimeout)
		defer cancel()
	}
	out := n.attach.Call(ctx, n.id, req.Service, req.Action, req.Args)
	return rpcReply{Result: out.Result, Code: out.Code, Msg: out.Msg}
}

// rpcRoute is rpcTargets for one action: the nodes holding live
// attachments that serve it, rotated (attached true), when there are any.
// An action attachments served once and none serves now, and that the
// service has no endpoint of its own for, is unavailable (errNotRun: a
// retry may find it served again).
func (n *Node) rpcRoute(service, action string, local bool) ([]string, bool, error) {
	svc, ok := n.fsm.Service(service)
	if !ok || !slices.Contains(svc.Served, action) {
		targets, err := n.rpcTargets(service, local)
		return targets, false, err
	}
	var nodes []string
	for _, a := range svc.Attached {
		if !slices.Contains(a.Actions, action) || slices.Contains(nodes, a.Node) || local && a.Node != n.id {
			continue
		}
		if rec, ok := n.fsm.Node(a.Node); ok && rec.Up {
			nodes = append(nodes, a.Node)
		}
	}
	if len(nodes) == 0 {
		if slices.Contains(svc.Endpoints, action) {
			// A built-in endpoint no process shadows now.
			targets, err := n.rpcTargets(service, local)
			return targets, false, err
		}
		where := ""
		if local {
			where = fmt.Sprintf(" through node %q", n.id)
		}
		return nil, true, notRun{fmt.Errorf("%w: no process serves %s.%s%s now (it is served from outside: `dse serve` attaches one)", ErrUnavailable, service, action, where)}
	}
	k := int(n.attach.Turn() % uint64(len(nodes)))
	return slices.Concat(nodes[k:], nodes[:k]), true, nil
}

// endpointsWithAttached is the service's rpc_endpoints_info: its own
// endpoints and every action a live attachment serves, sorted.
func (n *Node) endpointsWithAttached(svc fsm.Service) []string {
	if len(svc.Attached) == 0 {
		return svc.Endpoints
	}
	out := slices.Clone(svc.Endpoints)
	for _, a := range svc.Attached {
		if rec, ok := n.fsm.Node(a.Node); ok && rec.Up {
			out = append(out, a.Actions...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// attachLoop keeps the registry's attachments of this node and its
// sessions in step: attachments it holds no session for (its previous
// process left them, or an attach committed after its caller gave up) are
// removed, and sessions whose attachment the registry dropped (their
// service deleted) end. At shutdown every session ends.
func (n *Node) attachLoop() {
	defer n.attach.EndAll(fmt.Errorf("%w: the node is shutting down", ErrClosed))
	for !n.cluster.CaughtUp() {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	for {
		changed := n.fsm.Reshaped()
		n.sweepAttachments()
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
		}
		// A sweep reads every service: a few a second at most.
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) sweepAttachments() {
	recorded := map[string]string{} // session → service
	for service, atts := range n.fsm.Attachments() {
		for _, a := range atts {
			if a.Node == n.id {
				recorded[a.Session] = service
			}
		}
	}
	stale := n.attach.Sweep(recorded, func(service, session string) error {
		n.logger.Info("ending a session the registry dropped", "service", service, "session", session)
		if _, ok := n.fsm.Service(service); !ok {
			return fmt.Errorf("%w: %q was deleted", ErrServiceNotFound, service)
		}
		return fmt.Errorf("%w: the registry no longer has session %q of %q", ErrNotFound, session, service)
	})
	for session, service := range stale {
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		err := n.applyErr(ctx, fsm.CmdServiceDetach, fsm.ServiceDetach{Service: service, Node: n.id, Session: session})
		cancel()
		if err != nil && !errors.Is(err, ErrServiceNotFound) {
			n.logger.Warn("cannot remove a stale attachment", "service", service, "session", session, "error", err)
			continue
		}
		n.logger.Info("removed a stale attachment", "service", service, "session", session)
	}
}
