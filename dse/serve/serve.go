package serve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"dse.dev/dse/dse/errdefs"
)

// ErrExpired is returned for a reply to a call whose caller has stopped
// waiting (it timed out): the result goes nowhere. It stays on the node
// that holds the session (the HTTP API answers it as 409 "expired"), so
// it needs no wire code.
var ErrExpired = errors.New("expired")

// DefaultTimeout bounds a call whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// Request is one call for an attached process to run.
type Request struct {
	// ID names the call within its session; the reply carries it.
	ID     string
	Action string
	Args   map[string]any
	// Timeout is what the caller had left when the call was sent.
	Timeout time.Duration
}

// Session is one attachment: the process holding it takes its calls from
// Requests and answers each with Reply or Fail. Close detaches it.
type Session struct {
	st          *Sessions
	service     string
	id          string
	actions     []string
	concurrency int
	requests    chan Request // at most concurrency lines: one a slot
	done        chan struct{}
	detach      func(ctx context.Context) error

	// Guarded by st.mu.
	pending   map[string]*call
	next      uint64
	committed bool // its attach is in the registry
	ended     bool
	err       error
}

type call struct {
	reply     chan outcome // buffered: one outcome
	abandoned bool         // its caller stopped waiting
}

type outcome struct {
	result any
	msg    string
	failed bool // the process answered with an error
	lost   bool // the session ended first
}

// Sessions holds a node's sessions.
type Sessions struct {
	mu       sync.Mutex
	sessions map[string]*Session // by session id
	changed  chan struct{}       // closed and replaced when a slot frees or a session comes or goes
	turn     atomic.Uint64       // rotates the first node of attached calls
}

// NewSessions returns a node's empty set of sessions.
func NewSessions() *Sessions {
	return &Sessions{sessions: map[string]*Session{}, changed: make(chan struct{})}
}

// notifyLocked wakes the calls waiting for a free slot.
func (st *Sessions) notifyLocked() {
	close(st.changed)
	st.changed = make(chan struct{})
}

// Turn returns the next number of a rotation (where an attached call
// starts among the nodes that serve it).
func (st *Sessions) Turn() uint64 { return st.turn.Add(1) }

// Open adds a session of service serving actions (sorted), at most
// concurrency calls at once; detach removes it from the registry (Close
// calls it). The session counts as live at once, before the registry
// names it, so a sweep never takes it for a stale one.
func (st *Sessions) Open(service, id string, actions []string, concurrency int, detach func(context.Context) error) *Session {
	s := &Session{
		st:          st,
		service:     service,
		id:          id,
		actions:     actions,
		concurrency: concurrency,
		requests:    make(chan Request, concurrency),
		done:        make(chan struct{}),
		detach:      detach,
		pending:     map[string]*call{},
	}
	st.mu.Lock()
	st.sessions[s.id] = s
	st.notifyLocked()
	st.mu.Unlock()
	return s
}

// Committed marks the session's attach as in the registry.
func (s *Session) Committed() {
	s.st.mu.Lock()
	s.committed = true
	s.st.mu.Unlock()
}

// Get returns the live session id of service.
func (st *Sessions) Get(service, id string) (*Session, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.sessions[id]
	if !ok || s.service != service {
		return nil, false
	}
	return s, true
}

// ID returns the session's id, unique in the cluster.
func (s *Session) ID() string { return s.id }

// Service returns the service the session serves actions of.
func (s *Session) Service() string { return s.service }

// Actions returns the actions the session serves, sorted.
func (s *Session) Actions() []string { return slices.Clone(s.actions) }

// Concurrency returns the most calls the session gets at once.
func (s *Session) Concurrency() int { return s.concurrency }

// Requests delivers the session's calls.
func (s *Session) Requests() <-chan Request { return s.requests }

// Done is closed when the session has ended (Err says why).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended; nil while it runs.
func (s *Session) Err() error {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.err
}

// Reply answers call id with its result.
func (s *Session) Reply(id string, result any) error {
	return s.answer(id, outcome{result: result})
}

// Fail answers call id with the method's error message: the caller gets a
// remote error carrying it.
func (s *Session) Fail(id, msg string) error {
	return s.answer(id, outcome{msg: msg, failed: true})
}

// answer hands a call its outcome. errdefs.ErrNotFound: no such call is
// pending (never sent, or answered already); ErrExpired: its caller
// stopped waiting. Either way the call's slot is free again.
func (s *Session) answer(id string, out outcome) error {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := s.pending[id]
	if !ok {
		if s.ended {
			return fmt.Errorf("%w: session %q has ended", errdefs.ErrNotFound, s.id)
		}
		return fmt.Errorf("%w: no call %q is pending on session %q (answered already, or never sent)", errdefs.ErrNotFound, id, s.id)
	}
	delete(s.pending, id)
	st.notifyLocked()
	if c.abandoned {
		return fmt.Errorf("%w: call %q: its caller stopped waiting (timed out)", ErrExpired, id)
	}
	c.reply <- out
	return nil
}

// Close ends the session and removes it from the registry; its pending
// calls fail as unavailable. Safe to call more than once.
func (s *Session) Close(ctx context.Context) error {
	s.End(fmt.Errorf("%w: the session was closed", errdefs.ErrUnavailable))
	return s.detach(ctx)
}

// End ends the session on this node (the registry is the caller's
// business): no call reaches it any more, and those pending are lost.
func (s *Session) End(why error) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if s.ended {
		return
	}
	s.ended, s.err = true, why
	delete(st.sessions, s.id)
	for id, c := range s.pending {
		if !c.abandoned {
			c.reply <- outcome{lost: true}
		}
		delete(s.pending, id)
	}
	st.notifyLocked()
	close(s.done)
}

// EndAll ends every session (the node shuts down).
func (st *Sessions) EndAll(why error) {
	st.mu.Lock()
	all := make([]*Session, 0, len(st.sessions))
	for _, s := range st.sessions {
		all = append(all, s)
	}
	st.mu.Unlock()
	for _, s := range all {
		s.End(why)
	}
}

// Sweep compares the sessions with the registry's attachments of this
// node (recorded: session id → service): it returns the attachments the
// registry has that no live session holds (to detach), and ends, with
// why's answer, the committed sessions the registry dropped.
func (st *Sessions) Sweep(recorded map[string]string, why func(service, session string) error) (stale map[string]string) {
	stale = map[string]string{}
	st.mu.Lock()
	for id, service := range recorded {
		if s, ok := st.sessions[id]; !ok || s.service != service {
			stale[id] = service
		}
	}
	var dropped []*Session
	for id, s := range st.sessions {
		if _, ok := recorded[id]; s.committed && !ok {
			dropped = append(dropped, s)
		}
	}
	st.mu.Unlock()
	for _, s := range dropped {
		s.End(why(s.service, s.id))
	}
	return stale
}

// Outcome is what an attached call came to: its result, or an error code
// (errdefs') and message.
type Outcome struct {
	Result any
	Code   string
	Msg    string
}

// Call runs service.action on a session of this node: the least busy live
// one that serves it, never more calls than its concurrency (a call waits
// for a free slot until its deadline). Code "service_not_found" means no
// session here serves it (the method did not run); "unavailable", that
// the session went away or the deadline passed (it may have run);
// "remote", the process's error.
func (st *Sessions) Call(ctx context.Context, node, service, action string, args map[string]any) Outcome {
	deadline, ok := ctx.Deadline()
	if !ok {
		var cancel context.CancelFunc
		deadline = time.Now().Add(DefaultTimeout)
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	for {
		s, c, wait := st.pick(service, action, args, deadline)
		if s != nil {
			return s.await(ctx, node, service, action, c)
		}
		if wait == nil {
			return Outcome{Code: "service_not_found", Msg: fmt.Sprintf("service not found: no process attached through node %q serves %s.%s", node, service, action)}
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return Outcome{Code: "unavailable", Msg: fmt.Sprintf("%s.%s timed out waiting for a free slot on node %q (every process serving it is busy)", service, action, node)}
		}
	}
}

// pick reserves a slot on the least busy live session of service that
// serves action and sends it the call; with none free, the channel to wait
// on; with none serving it, neither.
func (st *Sessions) pick(service, action string, args map[string]any, deadline time.Time) (*Session, *call, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var best *Session
	serving := false
	for _, s := range st.sessions {
		if s.service != service || s.ended || !slices.Contains(s.actions, action) {
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
	c := &call{reply: make(chan outcome, 1)}
	req := Request{ID: id, Action: action, Args: args, Timeout: max(time.Until(deadline), time.Millisecond)}
	select {
	case best.requests <- req:
	default:
		// Cannot happen (a line per slot); refuse rather than block.
		return nil, nil, nil
	}
	best.pending[id] = c
	return best, c, nil
}

// await waits for a dispatched call's outcome.
func (s *Session) await(ctx context.Context, node, service, action string, c *call) Outcome {
	select {
	case out := <-c.reply:
		return out.of(node, service, action)
	case <-ctx.Done():
		s.st.mu.Lock()
		c.abandoned = true
		s.st.mu.Unlock()
		// An outcome that arrived meanwhile still counts.
		select {
		case out := <-c.reply:
			if !out.lost {
				return out.of(node, service, action)
			}
		default:
		}
		return Outcome{Code: "unavailable", Msg: fmt.Sprintf("%s.%s timed out on node %q (the process may still run it)", service, action, node)}
	}
}

// of is the Outcome of a call that got this outcome.
func (out outcome) of(node, service, action string) Outcome {
	switch {
	case out.lost:
		return Outcome{Code: "unavailable", Msg: fmt.Sprintf("the process serving %s.%s through node %q went away before it answered (the call may have run)", service, action, node)}
	case out.failed:
		return Outcome{Code: "remote", Msg: out.msg}
	}
	return Outcome{Result: out.result}
}
