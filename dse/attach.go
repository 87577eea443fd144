package dse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"dse.dev/dse/dse/name"
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
// waiting (it timed out): the result goes nowhere. It stays on the node
// that holds the session (the HTTP API answers it as 409 "expired"), so
// it needs no wire code.
var ErrExpired = errors.New("expired")

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

// ServeRequest is one call for an attached process to run.
type ServeRequest struct {
	// ID names the call within its session; the reply carries it.
	ID     string
	Action string
	Args   map[string]any
	// Timeout is what the caller had left when the call was sent.
	Timeout time.Duration
}

// ServeSession is one attachment: the process holding it takes its calls
// from Requests and answers each with Reply or Fail. Close detaches it.
type ServeSession struct {
	n           *Node
	service     string
	id          string
	actions     []string
	concurrency int
	requests    chan ServeRequest // at most concurrency lines: one a slot
	done        chan struct{}

	// Guarded by the node's attachState.mu.
	pending   map[string]*serveCall
	next      uint64
	committed bool // its attach is in the registry
	ended     bool
	err       error
}

type serveCall struct {
	reply     chan serveOutcome // buffered: one outcome
	abandoned bool              // its caller stopped waiting
}

type serveOutcome struct {
	result any
	msg    string
	failed bool // the process answered with an error
	lost   bool // the session ended first
}

// attachState holds a node's sessions.
type attachState struct {
	mu       sync.Mutex
	sessions map[string]*ServeSession // by session id
	changed  chan struct{}            // closed and replaced when a slot frees or a session comes or goes
	turn     atomic.Uint64            // rotates the first node of attached calls
}

func newAttachState() *attachState {
	return &attachState{sessions: map[string]*ServeSession{}, changed: make(chan struct{})}
}

// notifyLocked wakes the calls waiting for a free slot.
func (st *attachState) notifyLocked() {
	close(st.changed)
	st.changed = make(chan struct{})
}

// ID returns the session's id, unique in the cluster.
func (s *ServeSession) ID() string { return s.id }

// Service returns the service the session serves actions of.
func (s *ServeSession) Service() string { return s.service }

// Actions returns the actions the session serves, sorted.
func (s *ServeSession) Actions() []string { return slices.Clone(s.actions) }

// Concurrency returns the most calls the session gets at once.
func (s *ServeSession) Concurrency() int { return s.concurrency }

// Requests delivers the session's calls.
func (s *ServeSession) Requests() <-chan ServeRequest { return s.requests }

// Done is closed when the session has ended (Err says why).
func (s *ServeSession) Done() <-chan struct{} { return s.done }

// Err returns why the session ended; nil while it runs.
func (s *ServeSession) Err() error {
	st := s.n.attach
	st.mu.Lock()
	defer st.mu.Unlock()
	return s.err
}

// Reply answers call id with its result.
func (s *ServeSession) Reply(id string, result any) error {
	return s.answer(id, serveOutcome{result: result})
}

// Fail answers call id with the method's error message: the caller gets a
// remote error carrying it.
func (s *ServeSession) Fail(id, msg string) error {
	return s.answer(id, serveOutcome{msg: msg, failed: true})
}

// answer hands a call its outcome. ErrNotFound: no such call is pending
// (never sent, or answered already); ErrExpired: its caller stopped
// waiting. Either way the call's slot is free again.
func (s *ServeSession) answer(id string, out serveOutcome) error {
	st := s.n.attach
	st.mu.Lock()
	defer st.mu.Unlock()
	call, ok := s.pending[id]
	if !ok {
		if s.ended {
			return fmt.Errorf("%w: session %q has ended", ErrNotFound, s.id)
		}
		return fmt.Errorf("%w: no call %q is pending on session %q (answered already, or never sent)", ErrNotFound, id, s.id)
	}
	delete(s.pending, id)
	st.notifyLocked()
	if call.abandoned {
		return fmt.Errorf("%w: call %q: its caller stopped waiting (timed out)", ErrExpired, id)
	}
	call.reply <- out
	return nil
}

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
	s := &ServeSession{
		n:           n,
		service:     service,
		id:          hex.EncodeToString(b[:]),
		actions:     actions,
		concurrency: conc,
		requests:    make(chan ServeRequest, conc),
		done:        make(chan struct{}),
		pending:     map[string]*serveCall{},
	}
	st := n.attach
	// Known here before the registry names it, so the sweep never takes
	// it for a stale one.
	st.mu.Lock()
	st.sessions[s.id] = s
	st.notifyLocked()
	st.mu.Unlock()
	err := n.applyErr(ctx, fsm.CmdServiceAttach, fsm.ServiceAttach{Service: service, Node: n.id, Session: s.id, Actions: actions})
	if err != nil {
		// If it commits after all, the sweep removes it.
		s.end(err)
		return nil, err
	}
	st.mu.Lock()
	s.committed = true
	st.mu.Unlock()
	n.logger.Info("process attached", "service", service, "session", s.id, "actions", actions, "concurrency", conc)
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
	st := n.attach
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.sessions[id]
	if !ok || s.service != service {
		return nil, false
	}
	return s, true
}

// Close ends the session and removes it from the registry; its pending
// calls fail as unavailable. Safe to call more than once.
func (s *ServeSession) Close(ctx context.Context) error {
	s.end(fmt.Errorf("%w: the session was closed", ErrUnavailable))
	err := s.n.applyErr(ctx, fsm.CmdServiceDetach, fsm.ServiceDetach{Service: s.service, Node: s.n.id, Session: s.id})
	if errors.Is(err, ErrServiceNotFound) {
		err = nil // deleted: its attachments went with it
	}
	if err == nil {
		s.n.logger.Info("process detached", "service", s.service, "session", s.id)
	}
	return err
}

// end ends the session on this node (the registry is the caller's
// business): no call reaches it any more, and those pending are lost.
func (s *ServeSession) end(why error) {
	st := s.n.attach
	st.mu.Lock()
	defer st.mu.Unlock()
	if s.ended {
		return
	}
	s.ended, s.err = true, why
	delete(st.sessions, s.id)
	for id, call := range s.pending {
		if !call.abandoned {
			call.reply <- serveOutcome{lost: true}
		}
		delete(s.pending, id)
	}
	st.notifyLocked()
	close(s.done)
}

// pick reserves a slot on the least busy live session of service that
// serves action and returns the call's id; with none free, the channel to
// wait on; with none serving it, neither.
func (st *attachState) pick(req rpcRequest, deadline time.Time) (*ServeSession, *serveCall, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var best *ServeSession
	serving := false
	for _, s := range st.sessions {
		if s.service != req.Service || s.ended || !slices.Contains(s.actions, req.Action) {
			continue
		}
		serving = true
		if len(s.pending) >= s.concurrency {
			continue
		}
		if best == nil || len(s.pending) < len(best.pending) { // ties: map order, random
			best = s
		}
	}
	if best == nil {
		if !serving {
			return nil, nil, nil
		}
		return nil, nil, st.changed
	}
	best.next++
	id := fmt.Sprintf("%d", best.next)
	call := &serveCall{reply: make(chan serveOutcome, 1)}
	sr := ServeRequest{ID: id, Action: req.Action, Args: req.Args, Timeout: max(time.Until(deadline), time.Millisecond)}
	select {
	case best.requests <- sr:
	default:
		// Cannot happen (a line per slot); refuse rather than block.
		return nil, nil, nil
	}
	best.pending[id] = call
	return best, call, nil
}

// serveAttached runs, on the node holding them, a call routed to attached
// sessions.
func (n *Node) serveAttached(ctx context.Context, req rpcRequest) rpcReply {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultRPCTimeout)
	}
	st := n.attach
	for {
		s, call, wait := st.pick(req, deadline)
		if s != nil {
			return s.await(ctx, req, call)
		}
		if wait == nil {
			// The caller tries the next node: the method did not run.
			return rpcReply{Code: "service_not_found", Msg: fmt.Sprintf("service not found: no process attached through node %q serves %s.%s", n.id, req.Service, req.Action)}
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return rpcReply{Code: "unavailable", Msg: fmt.Sprintf("%s.%s timed out waiting for a free slot on node %q (every process serving it is busy)", req.Service, req.Action, n.id)}
		}
	}
}

// await waits for a dispatched call's outcome.
func (s *ServeSession) await(ctx context.Context, req rpcRequest, call *serveCall) rpcReply {
	select {
	case out := <-call.reply:
		switch {
		case out.lost:
			return rpcReply{Code: "unavailable", Msg: fmt.Sprintf("the process serving %s.%s through node %q went away before it answered (the call may have run)", req.Service, req.Action, s.n.id)}
		case out.failed:
			return rpcReply{Code: "remote", Msg: out.msg}
		}
		return rpcReply{Result: out.result}
	case <-ctx.Done():
		st := s.n.attach
		st.mu.Lock()
		call.abandoned = true
		st.mu.Unlock()
		// An outcome that arrived meanwhile still counts.
		select {
		case out := <-call.reply:
			if !out.lost && !out.failed {
				return rpcReply{Result: out.result}
			}
			if out.failed {
				return rpcReply{Code: "remote", Msg: out.msg}
			}
		default:
		}
		return rpcReply{Code: "unavailable", Msg: fmt.Sprintf("%s.%s timed out on node %q (the process may still run it)", req.Service, req.Action, s.n.id)}
	}
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
	k := int(n.attach.turn.Add(1) % uint64(len(nodes)))
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
	defer n.endSessions(fmt.Errorf("%w: the node is shutting down", ErrClosed))
	for !n.cluster.CaughtUp() {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	for {
		changed := n.fsm.Changed()
		n.sweepAttachments()
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
		}
		// Every applied entry closes Changed (publications' seqnums
		// too), and a sweep reads every service: a few a second at most.
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) sweepAttachments() {
	st := n.attach
	recorded := map[string]bool{}
	var stale []fsm.ServiceDetach
	attachments := n.fsm.Attachments()
	st.mu.Lock()
	for service, atts := range attachments {
		for _, a := range atts {
			if a.Node != n.id {
				continue
			}
			recorded[a.Session] = true
			if s, ok := st.sessions[a.Session]; !ok || s.service != service {
				stale = append(stale, fsm.ServiceDetach{Service: service, Node: n.id, Session: a.Session})
			}
		}
	}
	var dropped []*ServeSession
	for id, s := range st.sessions {
		if s.committed && !recorded[id] {
			dropped = append(dropped, s)
		}
	}
	st.mu.Unlock()
	for _, s := range dropped {
		why := fmt.Errorf("%w: the registry no longer has session %q of %q", ErrNotFound, s.id, s.service)
		if _, ok := n.fsm.Service(s.service); !ok {
			why = fmt.Errorf("%w: %q was deleted", ErrServiceNotFound, s.service)
		}
		n.logger.Info("ending a session the registry dropped", "service", s.service, "session", s.id)
		s.end(why)
	}
	for _, d := range stale {
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		err := n.applyErr(ctx, fsm.CmdServiceDetach, d)
		cancel()
		if err != nil && !errors.Is(err, ErrServiceNotFound) {
			n.logger.Warn("cannot remove a stale attachment", "service", d.Service, "session", d.Session, "error", err)
			continue
		}
		n.logger.Info("removed a stale attachment", "service", d.Service, "session", d.Session)
	}
}

func (n *Node) endSessions(why error) {
	st := n.attach
	st.mu.Lock()
	all := make([]*ServeSession, 0, len(st.sessions))
	for _, s := range st.sessions {
		all = append(all, s)
	}
	st.mu.Unlock()
	for _, s := range all {
		s.end(why)
	}
}
