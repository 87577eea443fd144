package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"dse.dev/dse/dse"
)

// requiredRole says what a request needs: admin for membership, tokens and
// secrets; write for anything that changes services, tables, datasources or
// calls RPCs; read for the rest.
func requiredRole(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/tokens"),
		strings.HasPrefix(p, "/v1/leader"),
		p == "/v1/leave",
		strings.HasPrefix(p, "/v1/members") && r.Method != http.MethodGet:
		return dse.RoleAdmin
	case strings.HasPrefix(p, "/v1/datasources") && r.URL.Query().Get("show_secrets") != "" && r.URL.Query().Get("show_secrets") != "false":
		return dse.RoleAdmin
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		return dse.RoleWrite
	}
	return dse.RoleRead
}

// authorize checks the bearer token once the cluster requires tokens, but
// for the console's files and an anonymous GET /v1/auth (console.go). It
// logs why a request was refused, never the token.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if !s.node.AuthRequired() || consolePath(r.URL.Path) || anonymousAuthInfo(r) {
		return r, true
	}
	if !s.node.AuthReady() {
		// Tokens are required but not (yet) replicated here: refuse rather
		// than let anyone in.
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this node has not caught up with the cluster's tokens yet; retry shortly")
		return r, false
	}
	need := requiredRole(r)
	tok, err := s.node.Authenticate(bearer(r.Header.Get("Authorization")))
	if err != nil {
		s.logger.Warn("request refused", "reason", err.Error(), "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="dse"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
		return r, false
	}
	if !dse.RoleAllows(tok.Role, need) {
		msg := fmt.Sprintf("forbidden: token %q has role %s, this needs %s", tok.ID, tok.Role, need)
		s.logger.Warn("request refused", "reason", msg, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		writeError(w, http.StatusForbidden, "forbidden", msg)
		return r, false
	}
	ctx := context.WithValue(r.Context(), roleKey{}, tok.Role)
	return r.WithContext(context.WithValue(ctx, tokenKey{}, tok.ID)), true
}

// bearer returns the token of an Authorization header: after the Bearer
// scheme, whose name is case-insensitive (RFC 7235), or the bare token.
func bearer(h string) string {
	if len(h) > len("Bearer ") && strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
		h = h[len("Bearer "):]
	}
	return strings.TrimSpace(h)
}

type (
	roleKey  struct{}
	tokenKey struct{} // the request's token id, when it needed one
)

// isAdmin reports whether the request may do what only admins may: true on
// a cluster that does not require tokens.
func (s *Server) isAdmin(r *http.Request) bool {
	if !s.node.AuthRequired() {
		return true
	}
	role, _ := r.Context().Value(roleKey{}).(string)
	return role == dse.RoleAdmin
}

func (s *Server) tokenRoutes() {
	s.mux.HandleFunc("POST /v1/tokens", s.createToken)
	s.mux.HandleFunc("GET /v1/tokens", s.listTokens)
	s.mux.HandleFunc("DELETE /v1/tokens/{id}", s.revokeToken)
}

// CreateTokenRequest is the body of POST /v1/tokens.
type CreateTokenRequest struct {
	Role string `json:"role"`
	Name string `json:"name"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req CreateTokenRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	t, err := s.node.CreateToken(r.Context(), req.Name, req.Role)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.node.Tokens())
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.node.RevokeToken(r.Context(), id); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"revoked": id})
}

// forbid refuses a request whose role is too low for what it asks.
func (s *Server) forbid(w http.ResponseWriter, r *http.Request, why string) {
	s.logger.Warn("request refused", "reason", why, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	writeError(w, http.StatusForbidden, "forbidden", "forbidden: "+why)
}
