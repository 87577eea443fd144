package serve

import (
	"context"
	"errors"
	"testing"
	"time"

	"dse.dev/dse/dse/errdefs"
)

func open(st *Sessions, service, id string, conc int, actions ...string) *Session {
	return st.Open(service, id, actions, conc, func(context.Context) error { return nil })
}

// call runs one call in the background and returns where its outcome goes.
func start(st *Sessions, ctx context.Context, service, action string) <-chan Outcome {
	out := make(chan Outcome, 1)
	go func() { out <- st.Call(ctx, "n1", service, action, map[string]any{"x": 1}) }()
	return out
}

func next(t *testing.T, s *Session) Request {
	t.Helper()
	select {
	case r := <-s.Requests():
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("session %s got no request", s.ID())
		return Request{}
	}
}

func wait(t *testing.T, ch <-chan Outcome) Outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not return")
		return Outcome{}
	}
}

func TestReplyAndFail(t *testing.T) {
	st := NewSessions()
	s := open(st, "svc", "a", 2, "echo")
	ctx := context.Background()
	done := start(st, ctx, "svc", "echo")
	r := next(t, s)
	if r.Action != "echo" || r.Args["x"] != 1 || r.Timeout <= 0 {
		t.Fatalf("request %+v", r)
	}
	if err := s.Reply(r.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	if o := wait(t, done); o.Code != "" || o.Result != "ok" {
		t.Fatalf("outcome %+v", o)
	}
	if err := s.Reply(r.ID, "again"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second reply: %v, want not found", err)
	}
	done = start(st, ctx, "svc", "echo")
	r = next(t, s)
	s.Fail(r.ID, "boom")
	if o := wait(t, done); o.Code != "remote" || o.Msg != "boom" {
		t.Fatalf("failed outcome %+v", o)
	}
}

func TestNoSessionServesIt(t *testing.T) {
	st := NewSessions()
	open(st, "svc", "a", 1, "echo")
	for _, c := range [][2]string{{"svc", "other"}, {"nosvc", "echo"}} {
		if o := st.Call(context.Background(), "n1", c[0], c[1], nil); o.Code != "service_not_found" {
			t.Errorf("%s.%s: %+v, want service_not_found", c[0], c[1], o)
		}
	}
}

// TestConcurrencyBoundsCalls: a session never has more calls than its
// concurrency; a further call waits for a slot and gets the one freed.
func TestConcurrencyBoundsCalls(t *testing.T) {
	st := NewSessions()
	s := open(st, "svc", "a", 1, "echo")
	ctx := context.Background()
	first := start(st, ctx, "svc", "echo")
	r1 := next(t, s)
	second := start(st, ctx, "svc", "echo")
	select {
	case r := <-s.Requests():
		t.Fatalf("a second call %+v reached a session of concurrency 1", r)
	case <-time.After(100 * time.Millisecond):
	}
	s.Reply(r1.ID, 1)
	r2 := next(t, s)
	s.Reply(r2.ID, 2)
	if o := wait(t, first); o.Result != 1 {
		t.Fatalf("first %+v", o)
	}
	if o := wait(t, second); o.Result != 2 {
		t.Fatalf("second %+v", o)
	}
}

// TestLeastBusyFirst: with two sessions, a call goes to the idle one.
func TestLeastBusyFirst(t *testing.T) {
	st := NewSessions()
	a := open(st, "svc", "a", 4, "echo")
	b := open(st, "svc", "b", 4, "echo")
	ctx := context.Background()
	start(st, ctx, "svc", "echo")
	var busy, idle *Session
	select {
	case <-a.Requests():
		busy, idle = a, b
	case <-b.Requests():
		busy, idle = b, a
	case <-time.After(5 * time.Second):
		t.Fatal("no session got the call")
	}
	start(st, ctx, "svc", "echo")
	select {
	case <-idle.Requests():
	case <-busy.Requests():
		t.Fatal("the busy session got the second call")
	case <-time.After(5 * time.Second):
		t.Fatal("no session got the second call")
	}
}

func TestTimeoutExpiresTheReply(t *testing.T) {
	st := NewSessions()
	s := open(st, "svc", "a", 1, "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := start(st, ctx, "svc", "echo")
	r := next(t, s)
	if o := wait(t, done); o.Code != "unavailable" {
		t.Fatalf("timed-out call: %+v, want unavailable", o)
	}
	if err := s.Reply(r.ID, "late"); !errors.Is(err, ErrExpired) {
		t.Fatalf("late reply: %v, want ErrExpired", err)
	}
	// The slot is free again.
	done = start(st, context.Background(), "svc", "echo")
	s.Reply(next(t, s).ID, "ok")
	if o := wait(t, done); o.Result != "ok" {
		t.Fatalf("after expiry: %+v", o)
	}
}

func TestWaitingForASlotTimesOut(t *testing.T) {
	st := NewSessions()
	s := open(st, "svc", "a", 1, "echo")
	start(st, context.Background(), "svc", "echo")
	next(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if o := st.Call(ctx, "n1", "svc", "echo", nil); o.Code != "unavailable" {
		t.Fatalf("waiting for a slot: %+v, want unavailable", o)
	}
}

// TestEndLosesPendingCalls: calls in flight when a session ends are
// unavailable, and it gets no more.
func TestEndLosesPendingCalls(t *testing.T) {
	st := NewSessions()
	s := open(st, "svc", "a", 2, "echo")
	done := start(st, context.Background(), "svc", "echo")
	next(t, s)
	why := errors.New("gone")
	s.End(why)
	if o := wait(t, done); o.Code != "unavailable" {
		t.Fatalf("pending call of an ended session: %+v", o)
	}
	<-s.Done()
	if s.Err() != why {
		t.Fatalf("Err %v", s.Err())
	}
	if _, ok := st.Get("svc", "a"); ok {
		t.Fatal("an ended session is still found")
	}
	if o := st.Call(context.Background(), "n1", "svc", "echo", nil); o.Code != "service_not_found" {
		t.Fatalf("after end: %+v", o)
	}
	s.End(errors.New("twice")) // no panic, first reason stays
	if s.Err() != why {
		t.Fatalf("Err after a second End: %v", s.Err())
	}
}

// TestSweep: attachments without a session are stale; committed sessions
// the registry dropped end; uncommitted ones (an attach in flight) stay.
func TestSweep(t *testing.T) {
	st := NewSessions()
	kept := open(st, "svc", "kept", 1, "echo")
	kept.Committed()
	dropped := open(st, "svc", "dropped", 1, "echo")
	dropped.Committed()
	inFlight := open(st, "svc", "inflight", 1, "echo")
	stale := st.Sweep(map[string]string{"kept": "svc", "old": "svc", "kept2": "other"}, func(service, session string) error {
		return errors.New(service + "/" + session)
	})
	if len(stale) != 2 || stale["old"] != "svc" || stale["kept2"] != "other" {
		t.Fatalf("stale %v", stale)
	}
	select {
	case <-dropped.Done():
		if dropped.Err().Error() != "svc/dropped" {
			t.Fatalf("dropped Err %v", dropped.Err())
		}
	default:
		t.Fatal("a committed session the registry dropped did not end")
	}
	for _, s := range []*Session{kept, inFlight} {
		if _, ok := st.Get("svc", s.ID()); !ok {
			t.Errorf("session %s ended", s.ID())
		}
	}
	st.EndAll(errors.New("shutdown"))
	for _, s := range []*Session{kept, inFlight} {
		<-s.Done()
	}
}
