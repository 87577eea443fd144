package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"dse.dev/dse/dse"
)

// Serving RPC actions from outside Go: a process attaches to an external
// service with one long-lived request whose response streams it the calls,
// as NDJSON, and answers each with a POST of its own:
//
//	POST /v1/serve/{service}  {"actions":["add"],"concurrency":2,"heartbeat_ms":5000}
//	→ 200 application/x-ndjson, one JSON object a line:
//	  {"session":"…","node":"n1","actions":["add"],"concurrency":2,"heartbeat_ms":5000}
//	  {"id":"1","action":"add","args":{"a":1,"b":2},"timeout_ms":9998}
//	  {"heartbeat":true}                      every heartbeat_ms
//	  {"error":{"code":"…","message":"…"}}    last, when the node ends the session
//	POST /v1/serve/{service}/{session}  {"id":"1","result":3}  or  {"id":"1","error":"message"}
//	→ 200 {"ok":true}; 404 not_found (no such session on this node, or no
//	  such call pending); 409 expired (the caller stopped waiting)
//
// Plain HTTP/1.1 and JSON lines, so any language's standard library, and
// curl, can serve. The session lasts as long as the stream: when the process
// closes it (or its connection drops), the node detaches it and the calls
// it had not answered fail as unavailable. Replies go to the node holding
// the stream. Attaching needs a write token, like any POST.

// Heartbeat bounds: a client states how often it wants one (to notice a
// dead node in about three intervals); the default is DefaultHeartbeat.
const (
	DefaultHeartbeat = 5 * time.Second
	minHeartbeat     = 100 * time.Millisecond
	maxHeartbeat     = time.Minute
)

func (s *Server) serveRoutes() {
	s.mux.HandleFunc("POST /v1/serve/{id}", s.serve)
	s.mux.HandleFunc("POST /v1/serve/{id}/{session}", s.serveReply)
	s.mux.HandleFunc("GET /v1/services/{id}/subscribers", s.subscribers)
}

// AttachRequest is the body of POST /v1/serve/{service}.
type AttachRequest struct {
	Actions     []string `json:"actions"`
	Concurrency int      `json:"concurrency,omitempty"`
	HeartbeatMS int64    `json:"heartbeat_ms,omitempty"`
}

// ServeHello is the first line of a serve stream.
type ServeHello struct {
	Session     string   `json:"session"`
	Node        string   `json:"node"`
	Actions     []string `json:"actions"`
	Concurrency int      `json:"concurrency"`
	HeartbeatMS int64    `json:"heartbeat_ms"`
}

// serveLine is a call line of a serve stream.
type serveLine struct {
	ID        string         `json:"id"`
	Action    string         `json:"action"`
	Args      map[string]any `json:"args"`
	TimeoutMS int64          `json:"timeout_ms"`
}

// ReplyRequest is the body of POST /v1/serve/{service}/{session}: Result,
// or Error (the handler's message: the caller gets a remote error).
type ReplyRequest struct {
	ID     string          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *string         `json:"error,omitempty"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	var req AttachRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	// Read to its end (readJSON may stop short of it): only then does
	// net/http watch the connection and cancel the request when the
	// client goes away; else the node would notice only when writing a
	// heartbeat failed.
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		s.fail(w, fmt.Errorf("%w: read body: %v", dse.ErrInvalid, err))
		return
	}
	hb := DefaultHeartbeat
	if req.HeartbeatMS != 0 {
		hb = time.Duration(req.HeartbeatMS) * time.Millisecond
		if hb < minHeartbeat || hb > maxHeartbeat {
			s.fail(w, fmt.Errorf("%w: heartbeat_ms %d is not within %d-%d", dse.ErrInvalid, req.HeartbeatMS, minHeartbeat.Milliseconds(), maxHeartbeat.Milliseconds()))
			return
		}
	}
	// The session ends with its client, or when the server shuts down.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	defer context.AfterFunc(s.streams, func() { cancel(context.Cause(s.streams)) })()
	service := r.PathValue("id")
	sess, err := s.node.Attach(ctx, service, dse.AttachOptions{Actions: req.Actions, Concurrency: req.Concurrency})
	if err != nil {
		s.fail(w, err)
		return
	}
	defer func() {
		// Detached when the stream ends, however it ends. At shutdown,
		// briefly: a restarted node removes what its last process left.
		timeout := 10 * time.Second
		if errors.Is(context.Cause(ctx), dse.ErrClosed) {
			timeout = time.Second
		}
		dctx, dcancel := context.WithTimeout(context.Background(), timeout)
		defer dcancel()
		if err := sess.Close(dctx); err != nil {
			s.logger.Warn("cannot detach a session", "service", service, "session", sess.ID(), "error", err)
		}
	}()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	write := func(v any) bool {
		buf.Reset()
		if err := enc.Encode(v); err != nil {
			s.logger.Error("cannot encode a serve line", "service", service, "error", err)
			return false
		}
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	end := func(err error) {
		var b errorBody
		b.Error.Code, b.Error.Message = dse.ErrorCode(err), err.Error()
		write(b)
	}
	if !write(ServeHello{Session: sess.ID(), Node: s.node.ID(), Actions: sess.Actions(), Concurrency: sess.Concurrency(), HeartbeatMS: hb.Milliseconds()}) {
		return
	}
	beat := time.NewTicker(hb)
	defer beat.Stop()
	// A session lasts only as long as its token, as a watch does.
	token, _ := r.Context().Value(tokenKey{}).(string)
	var tokenCheck <-chan time.Time
	if token != "" {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		tokenCheck = t.C
	}
	for {
		select {
		case call := <-sess.Requests():
			args := call.Args
			if args == nil {
				args = map[string]any{}
			}
			if !write(serveLine{ID: call.ID, Action: call.Action, Args: args, TimeoutMS: max(call.Timeout.Milliseconds(), 1)}) {
				return
			}
		case <-beat.C:
			if !write(map[string]bool{"heartbeat": true}) {
				return
			}
		case <-sess.Done():
			end(sess.Err())
			return
		case <-tokenCheck:
			if !s.node.TokenValid(token) {
				s.logger.Info("serve session ended: its token was revoked", "token", token, "remote", r.RemoteAddr)
				end(fmt.Errorf("%w: the session's token was revoked", dse.ErrUnauthorized))
				return
			}
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), dse.ErrClosed) {
				end(fmt.Errorf("%w: the node is shutting down", dse.ErrClosed))
			}
			return
		}
	}
}

func (s *Server) serveReply(w http.ResponseWriter, r *http.Request) {
	var req ReplyRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if req.ID == "" {
		s.fail(w, fmt.Errorf("%w: a reply needs the call's \"id\"", dse.ErrInvalid))
		return
	}
	if req.Error != nil && len(req.Result) > 0 {
		s.fail(w, fmt.Errorf("%w: a reply has a \"result\" or an \"error\", not both", dse.ErrInvalid))
		return
	}
	service, id := r.PathValue("id"), r.PathValue("session")
	sess, ok := s.node.Session(service, id)
	if !ok {
		s.fail(w, fmt.Errorf("%w: no session %q of %q on node %q (a reply goes to the node holding the session's stream)", dse.ErrNotFound, id, service, s.node.ID()))
		return
	}
	if req.Error != nil {
		msg := *req.Error
		if msg == "" {
			msg = fmt.Sprintf("%s failed (no message)", service)
		}
		s.answered(w, sess.Fail(req.ID, msg))
		return
	}
	var result any
	if len(req.Result) > 0 {
		dec := json.NewDecoder(bytes.NewReader(req.Result))
		dec.UseNumber()
		var raw any
		if err := dec.Decode(&raw); err != nil {
			s.fail(w, fmt.Errorf("%w: result: %v", dse.ErrInvalid, err))
			return
		}
		v, err := jsonValue(raw)
		if err != nil {
			s.fail(w, fmt.Errorf("%w: result: %v", dse.ErrInvalid, err))
			return
		}
		result = v
	}
	s.answered(w, sess.Reply(req.ID, result))
}

func (s *Server) answered(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case errors.Is(err, dse.ErrExpired):
		writeError(w, http.StatusConflict, "expired", err.Error())
	default:
		s.fail(w, err)
	}
}

// Subscriber is one line of GET /v1/services/{id}/subscribers.
type Subscriber struct {
	Subscriber string `json:"subscriber"`
	Publisher  string `json:"publisher"`
	Table      string `json:"table"`
}

// subscribers lists, cluster-wide, who subscribes to a service's tables
// (subscriber_list).
func (s *Server) subscribers(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.node.ServiceInfo(id); err != nil {
		s.fail(w, err)
		return
	}
	out := []Subscriber{}
	for _, sub := range s.node.FSM().SubscriptionsTo(id) {
		out = append(out, Subscriber{Subscriber: sub.Subscriber, Publisher: sub.Publisher, Table: sub.Table})
	}
	writeJSON(w, http.StatusOK, out)
}
