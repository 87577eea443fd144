package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"dse.dev/dse/dse"
)

// ServeCall is one call a serve stream delivers.
type ServeCall struct {
	ID        string          `json:"id"`
	Action    string          `json:"action"`
	Args      json.RawMessage `json:"args"`
	TimeoutMS int64           `json:"timeout_ms"`
}

// ServeStream is an attachment held open by this client: Next returns its
// calls, Close detaches it.
type ServeStream struct {
	Hello   ServeHello
	service string
	resp    *http.Response
	lines   chan []byte
	readErr error // set before lines is closed
}

// Attach opens a serve stream for actions of an external service (POST
// /v1/serve/{service}). Use a client without a Timeout: the stream lasts
// until Close.
func (c *Client) Attach(ctx context.Context, service string, req AttachRequest) (*ServeStream, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.request(ctx, http.MethodPost, "/v1/serve/"+url.PathEscape(service), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	s := &ServeStream{service: service, resp: resp, lines: make(chan []byte, 16)}
	go s.read()
	first, err := s.next(30 * time.Second)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	if err := json.Unmarshal(first, &s.Hello); err != nil || s.Hello.Session == "" {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: the serve stream began with %q, not a session", dse.ErrUnavailable, first)
	}
	return s, nil
}

func (s *ServeStream) read() {
	defer close(s.lines)
	sc := bufio.NewScanner(s.resp.Body)
	sc.Buffer(make([]byte, 64<<10), DefaultMaxBody)
	for sc.Scan() {
		s.lines <- bytes.Clone(sc.Bytes())
	}
	s.readErr = sc.Err()
}

// next returns the next line, waiting at most wait.
func (s *ServeStream) next(wait time.Duration) ([]byte, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case l, ok := <-s.lines:
		if !ok {
			if s.readErr != nil {
				return nil, fmt.Errorf("%w: serve stream: %v", dse.ErrUnavailable, s.readErr)
			}
			return nil, fmt.Errorf("%w: the node closed the serve stream", dse.ErrUnavailable)
		}
		return l, nil
	case <-t.C:
		return nil, fmt.Errorf("%w: no word from the node in %s (it died, or the network did)", dse.ErrUnavailable, wait)
	}
}

// Next returns the stream's next call. It fails when the stream ends: with
// the node's reason when it ended the session (an *Error), else
// dse.ErrUnavailable, also when three heartbeats in a row do not come.
func (s *ServeStream) Next() (ServeCall, error) {
	wait := 3 * time.Duration(max(s.Hello.HeartbeatMS, 1)) * time.Millisecond
	for {
		l, err := s.next(wait)
		if err != nil {
			return ServeCall{}, err
		}
		var probe struct {
			Heartbeat bool `json:"heartbeat"`
			errorBody
		}
		if err := json.Unmarshal(l, &probe); err != nil {
			return ServeCall{}, fmt.Errorf("%w: the serve stream sent %q: %v", dse.ErrUnavailable, l, err)
		}
		switch {
		case probe.Heartbeat:
			continue
		case probe.Error.Code != "":
			return ServeCall{}, &Error{Status: http.StatusOK, Code: probe.Error.Code, Msg: probe.Error.Message}
		}
		var call ServeCall
		if err := json.Unmarshal(l, &call); err != nil || call.ID == "" {
			return ServeCall{}, fmt.Errorf("%w: the serve stream sent %q, not a call", dse.ErrUnavailable, l)
		}
		return call, nil
	}
}

// Close ends the stream: the node detaches the session.
func (s *ServeStream) Close() error { return s.resp.Body.Close() }

// ErrNoCall is wrapped by Reply's error when the node refuses a reply
// (no such session or call there, or its caller stopped waiting): there is
// nothing to retry.
var ErrNoCall = errors.New("reply refused")

// Reply answers a call of session with its result, or with errMsg (the
// caller gets a remote error) when errMsg is not nil.
func (c *Client) Reply(ctx context.Context, service, session, id string, result json.RawMessage, errMsg *string) error {
	req := ReplyRequest{ID: id, Error: errMsg}
	if errMsg == nil {
		req.Result = result
		if len(result) == 0 {
			req.Result = json.RawMessage("null")
		}
	}
	err := c.do(ctx, http.MethodPost, "/v1/serve/"+url.PathEscape(service)+"/"+url.PathEscape(session), req, nil)
	var ae *Error
	if errors.As(err, &ae) && (ae.Code == "not_found" || ae.Code == "expired") {
		return fmt.Errorf("%w: %w", ErrNoCall, err)
	}
	return err
}

// Subscribers lists who subscribes to a service's tables.
func (c *Client) Subscribers(ctx context.Context, service string) ([]Subscriber, error) {
	var out []Subscriber
	return out, c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/subscribers", nil, &out)
}
