package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/name"
)

// DefaultMaxBody bounds a request body unless ServerConfig says otherwise.
const DefaultMaxBody = 64 << 20

// ServerConfig holds the HTTP server's settings.
type ServerConfig struct {
	// MaxBody bounds a request body, in bytes.
	MaxBody int64
	// Logger receives request errors.
	Logger hclog.Logger
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
}

// Server serves a node's HTTP API.
type Server struct {
	node   *dse.Node
	cfg    ServerConfig
	mux    *http.ServeMux
	srv    *http.Server
	logger hclog.Logger
	// streams ends (with dse.ErrClosed as its cause) when Shutdown starts:
	// a watch would otherwise hold Shutdown until its deadline.
	streams     context.Context
	stopStreams context.CancelCauseFunc
}

// NewServer returns the API of node; Serve runs it on a listener.
func NewServer(node *dse.Node, cfg ServerConfig) *Server {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	s := &Server{node: node, cfg: cfg, mux: http.NewServeMux(), logger: cfg.Logger}
	s.streams, s.stopStreams = context.WithCancelCause(context.Background())
	s.routes()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          cfg.Logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	s.srv.RegisterOnShutdown(func() { s.stopStreams(dse.ErrClosed) })
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/members", s.members)
	s.mux.HandleFunc("POST /v1/members", s.join)
	s.mux.HandleFunc("DELETE /v1/members/{id}", s.remove)
	s.mux.HandleFunc("POST /v1/members/{id}/promote", s.promote)
	s.mux.HandleFunc("POST /v1/leave", s.leave)
	s.mux.HandleFunc("POST /v1/leader/transfer", s.transfer)
	s.serviceRoutes()
	s.datasourceRoutes()
	s.tokenRoutes()
	s.serveRoutes() // serve.go: RPC actions served from outside
	s.consoleRoutes()
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.node.Registry(), promhttp.HandlerOpts{}))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// A handler bug must not take the node down; answer 500 instead.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
			writeError(w, http.StatusInternalServerError, "internal", "internal error")
		}
	}()
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	}
	r, ok := s.authorize(w, r)
	if !ok {
		return
	}
	if err := checkSegments(r.URL.EscapedPath()); err != nil {
		s.fail(w, err)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// checkSegments refuses a path with an empty, "." or ".." segment (an id
// that is not a name, put in the path as it is): the mux would redirect it
// to the cleaned path, another route, where a client's request went on.
func checkSegments(p string) error {
	segs := strings.Split(p, "/")
	for i, seg := range segs[1:] {
		if seg == "." || seg == ".." || seg == "" && i < len(segs)-2 {
			return fmt.Errorf("%w: path %q has an empty, . or .. segment; a name in a path is %s", dse.ErrInvalid, p, name.Rule)
		}
	}
	return nil
}

// Serve runs the server on ln until Shutdown (HTTPS with a TLS config).
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

// fail answers err with the status its code calls for.
func (s *Server) fail(w http.ResponseWriter, err error) {
	code := dse.ErrorCode(err)
	status := statusOf(code)
	if status >= 500 {
		s.logger.Warn("request failed", "code", code, "error", err)
	}
	writeError(w, status, code, err.Error())
}

func statusOf(code string) int {
	switch code {
	case "invalid":
		return http.StatusBadRequest
	case "unauthorized":
		return http.StatusUnauthorized
	case "forbidden":
		return http.StatusForbidden
	case "not_found", "member_not_found", "service_not_found", "no_such_method":
		return http.StatusNotFound
	case "quorum", "exists", "service_exists", "fenced":
		return http.StatusConflict
	case "unavailable", "no_leader", "not_leader", "closed":
		return http.StatusServiceUnavailable
	case "timeout":
		return http.StatusGatewayTimeout
	case "remote":
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// writeJSON answers v, or a 500 when v does not encode (a NaN a Go
// service returned, say): the status is not sent before the body is ready.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		var b errorBody
		b.Error.Code, b.Error.Message = "internal", "the answer does not encode as JSON: "+err.Error()
		buf.Reset()
		enc.Encode(b)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// readJSON decodes a request body strictly into v; an empty body leaves v
// as it is. A body that is not UTF-8 is refused: the decoder would make
// each bad byte U+FFFD and go on with a value the client never sent.
func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body exceeds %d bytes", dse.ErrInvalid, mbe.Limit)
		}
		return fmt.Errorf("%w: read body: %v", dse.ErrInvalid, err)
	}
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: request body is not valid UTF-8", dse.ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("%w: malformed JSON body: %v", dse.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: malformed JSON body: more than one value", dse.ErrInvalid)
	}
	return nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: query parameter %s=%q is not a boolean", dse.ErrInvalid, name, v)
	}
	return b, nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.node.Status())
}

func (s *Server) members(w http.ResponseWriter, r *http.Request) {
	ms, err := s.node.Members(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ms)
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req dse.JoinRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.node.Join(r.Context(), req); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": req.ID})
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	force, err := boolParam(r, "force")
	if err != nil {
		s.fail(w, err)
		return
	}
	id := r.PathValue("id")
	if err := s.node.Remove(r.Context(), id, force); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.node.Promote(r.Context(), id); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"promoted": id})
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request) {
	if err := s.node.Leave(r.Context()); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"left": s.node.ID()})
}

// TransferRequest is the body of POST /v1/leader/transfer.
type TransferRequest struct {
	To string `json:"to"`
}

func (s *Server) transfer(w http.ResponseWriter, r *http.Request) {
	var req TransferRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	leader, err := s.node.TransferLeadership(r.Context(), req.To)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader": leader})
}
