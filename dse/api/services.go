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
	"dse.dev/dse/dse/name"
	"dse.dev/dse/dse/table"
)

func (s *Server) serviceRoutes() {
	s.mux.HandleFunc("GET /v1/services", s.listServices)
	s.mux.HandleFunc("POST /v1/services", s.createService)
	s.mux.HandleFunc("DELETE /v1/services/{id}", s.deleteService)
	s.mux.HandleFunc("PUT /v1/services/{id}/tables/{table}", s.publish)
	s.mux.HandleFunc("GET /v1/services/{id}/tables/{table}", s.getTable)
	s.mux.HandleFunc("GET /v1/watch/{id}/{table}", s.watch)
	s.mux.HandleFunc("POST /v1/rpc/{id}/{action}", s.rpc)
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.node.ServicesInfo())
}

// CreateServiceRequest is the body of POST /v1/services.
type CreateServiceRequest struct {
	ID string `json:"id"`
	// Replicas is how many nodes keep its tables (0: the default, 3, or
	// every node when there are fewer).
	Replicas int `json:"replicas,omitempty"`
}

func (s *Server) createService(w http.ResponseWriter, r *http.Request) {
	var req CreateServiceRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	info, err := s.node.CreateService(r.Context(), req.ID, req.Replicas)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) deleteService(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.node.DeleteService(r.Context(), id); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": id})
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	snapshot, err := boolParam(r, "snapshot")
	if err != nil {
		s.fail(w, err)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.fail(w, fmt.Errorf("%w: read body: %v", dse.ErrInvalid, err))
		return
	}
	rows, err := table.FromJSON(body, table.DefaultLimits)
	if err != nil {
		s.fail(w, fmt.Errorf("%w: %v", dse.ErrInvalid, err))
		return
	}
	res, err := s.node.Publish(r.Context(), r.PathValue("id"), r.PathValue("table"), rows, snapshot)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// TableContent is a table with its seqnum, rows sorted.
type TableContent struct {
	Seqnum uint64      `json:"seqnum"`
	Rows   []table.Row `json:"rows"`
}

func (s *Server) getTable(w http.ResponseWriter, r *http.Request) {
	tbl := r.PathValue("table")
	if err := name.Check("table name", tbl); err != nil {
		// As publish and watch refuse it: no table can have that name.
		s.fail(w, err)
		return
	}
	// A read may run twice: a timed-out attempt (the owner's host hung)
	// goes on to a replica or a standby.
	res, err := s.node.RPC(r.Context(), r.PathValue("id"), "get_last_published_data_with_seqnum",
		map[string]any{"table": tbl}, dse.RPCOptions{Timeout: 5 * time.Second, Retry: 2, Idempotent: true})
	if err != nil {
		s.fail(w, err)
		return
	}
	m, _ := res.(map[string]any)
	seq, _ := m["seqnum"].(int64)
	rows, err := table.FromValue(m["rows"], table.DefaultLimits)
	if err != nil {
		s.fail(w, fmt.Errorf("%w: publisher sent a malformed table: %v", dse.ErrUnavailable, err))
		return
	}
	table.Sort(rows)
	writeJSON(w, http.StatusOK, TableContent{Seqnum: uint64(seq), Rows: nonNil(rows)})
}

func nonNil(rows []table.Row) []table.Row {
	if rows == nil {
		return []table.Row{}
	}
	return rows
}

// snapshotLine and deltaLine are the lines of the watch stream, with keys in
// the order CLI.md shows them.
type snapshotLine struct {
	Seqnum   uint64      `json:"seqnum"`
	Snapshot bool        `json:"snapshot"`
	Rows     []table.Row `json:"rows"`
}

type deltaLine struct {
	Seqnum   uint64      `json:"seqnum"`
	Snapshot bool        `json:"snapshot"`
	Add      []table.Row `json:"add"`
	Del      []table.Row `json:"del"`
}

func watchLine(ev dse.WatchEvent) any {
	if ev.Snapshot {
		table.Sort(ev.Rows)
		return snapshotLine{Seqnum: ev.Seqnum, Snapshot: true, Rows: nonNil(ev.Rows)}
	}
	table.Sort(ev.Add)
	table.Sort(ev.Del)
	return deltaLine{Seqnum: ev.Seqnum, Add: nonNil(ev.Add), Del: nonNil(ev.Del)}
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	events := make(chan dse.WatchEvent, 4096)
	errc := make(chan error, 1)
	// The watch ends with its client, or when the server shuts down.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	defer context.AfterFunc(s.streams, func() { cancel(context.Cause(s.streams)) })()
	go func() { errc <- s.node.Watch(ctx, r.PathValue("id"), r.PathValue("table"), events) }()
	started := false
	// Each line is encoded whole before any of it is written.
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	// A watch lasts only as long as its token: revoked, it ends, as new
	// requests with it are refused.
	token, _ := r.Context().Value(tokenKey{}).(string)
	var tokenCheck <-chan time.Time
	if token != "" {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		tokenCheck = t.C
	}
	for {
		select {
		case <-tokenCheck:
			if !s.node.TokenValid(token) {
				s.logger.Info("watch ended: its token was revoked", "token", token, "remote", r.RemoteAddr)
				cancel(errTokenRevoked)
				err := fmt.Errorf("%w: %v", dse.ErrUnauthorized, errTokenRevoked)
				if started {
					endWatch(w, err)
				} else {
					s.fail(w, err)
				}
				return
			}
		case ev := <-events:
			if !started {
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.Header().Set("Trailer", watchEndCode+", "+watchEndError)
				w.WriteHeader(http.StatusOK)
				started = true
			}
			line.Reset()
			if err := enc.Encode(watchLine(ev)); err != nil {
				// Rows JSON cannot carry (NaN, say): the stream ends
				// saying why, rather than without a word.
				endWatch(w, fmt.Errorf("seqnum %d does not encode as JSON: %v", ev.Seqnum, err))
				return
			}
			rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := w.Write(line.Bytes()); err != nil || rc.Flush() != nil {
				return
			}
		case err := <-errc:
			if errors.Is(context.Cause(ctx), dse.ErrClosed) {
				// Ended by Shutdown: that is why, whatever Watch was
				// doing then (confirming its subscription, say).
				err = fmt.Errorf("%w: the server is shutting down", dse.ErrClosed)
			}
			if r.Context().Err() == nil {
				if started {
					endWatch(w, err)
				} else {
					s.fail(w, err)
				}
			}
			return
		}
	}
}

// The trailers that say why the node ended a watch's stream: the error's
// code and message, as a failed request's body would.
const (
	watchEndCode  = "Dse-Watch-End-Code"
	watchEndError = "Dse-Watch-End-Error"
)

func endWatch(w http.ResponseWriter, err error) {
	w.Header().Set(watchEndCode, dse.ErrorCode(err))
	w.Header().Set(watchEndError, err.Error())
}

var errTokenRevoked = errors.New("the watch's token was revoked")

// RPCRequest is the body of POST /v1/rpc/{service}/{action}.
type RPCRequest struct {
	Args    map[string]any `json:"args"`
	Timeout string         `json:"timeout,omitempty"`
	Retry   int            `json:"retry,omitempty"`
	Local   bool           `json:"local,omitempty"`
	// Idempotent lets a call that timed out go on to another attempt
	// (dse.RPCOptions.Idempotent).
	Idempotent bool `json:"idempotent,omitempty"`
}

func (s *Server) rpc(w http.ResponseWriter, r *http.Request) {
	var req RPCRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	opts := dse.RPCOptions{Retry: req.Retry, Local: req.Local, Idempotent: req.Idempotent}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			s.fail(w, fmt.Errorf("%w: timeout %q is not a positive duration", dse.ErrInvalid, req.Timeout))
			return
		}
		opts.Timeout = d
	}
	args, err := jsonToValues(req.Args)
	if err != nil {
		s.fail(w, fmt.Errorf("%w: args: %v", dse.ErrInvalid, err))
		return
	}
	res, err := s.node.RPC(r.Context(), r.PathValue("id"), r.PathValue("action"), args.(map[string]any), opts)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// jsonToValues turns json.Number into int64 or float64, recursively.
func jsonToValues(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", k, err)
			}
			out[k] = c
		}
		return out, nil
	}
	return nil, fmt.Errorf("want an object, got %T", v)
}

func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return table.Canonical(x)
	case map[string]any:
		return jsonToValues(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	return v, nil
}
