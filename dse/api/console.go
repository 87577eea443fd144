package api

import (
	"net/http"
	"strings"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/ui"
)

// consoleRoutes mounts the web console and the two reads it needs beyond
// the rest of the API: who the caller is, and one service's detail.
func (s *Server) consoleRoutes() {
	console := ui.Handler()
	s.mux.Handle("/ui", console)
	s.mux.Handle("/ui/", console)
	s.mux.HandleFunc("GET /v1/auth", s.authInfo)
	s.mux.HandleFunc("GET /v1/services/{id}", s.serviceDetail)
}

// consolePath reports whether p is the console's: its files hold no data,
// so they are served without a token. Only the console's handler (or the
// catch-all 404, or a redirect to the cleaned path, which is then
// authorized as any request) can answer such a path: every other route's
// first segment is not "ui".
func consolePath(p string) bool { return p == "/ui" || strings.HasPrefix(p, "/ui/") }

// AuthInfo is the body of GET /v1/auth: whether the cluster requires
// tokens, and the role of the token presented ("" when none was; admin on
// a cluster without tokens, where anyone may do anything).
type AuthInfo struct {
	AuthRequired bool   `json:"auth_required"`
	Role         string `json:"role"`
	TokenID      string `json:"token_id,omitempty"`
	TokenName    string `json:"token_name,omitempty"`
}

// authInfo answers GET /v1/auth, so that a client (the console) offers
// only what its token may do. Without a token it needs none: it tells no
// more than a 401 would. With one, the token is checked as for any read.
func (s *Server) authInfo(w http.ResponseWriter, r *http.Request) {
	if !s.node.AuthRequired() {
		writeJSON(w, http.StatusOK, AuthInfo{Role: dse.RoleAdmin})
		return
	}
	info := AuthInfo{AuthRequired: true}
	if role, ok := r.Context().Value(roleKey{}).(string); ok {
		info.Role = role
		if t, err := s.node.Authenticate(bearer(r.Header.Get("Authorization"))); err == nil {
			info.TokenID, info.TokenName = t.ID, t.Name
		}
	}
	writeJSON(w, http.StatusOK, info)
}

// anonymousAuthInfo reports whether r asks GET /v1/auth without a token,
// which authorize lets through (see authInfo).
func anonymousAuthInfo(r *http.Request) bool {
	return r.URL.Path == "/v1/auth" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Authorization") == ""
}

func (s *Server) serviceDetail(w http.ResponseWriter, r *http.Request) {
	d, err := s.node.ServiceDetail(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}
