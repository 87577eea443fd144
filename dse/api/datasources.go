package api

import (
	"fmt"
	"net/http"
	"strconv"

	"dse.dev/dse/dse"
)

func (s *Server) datasourceRoutes() {
	s.mux.HandleFunc("GET /v1/drivers", s.listDrivers)
	s.mux.HandleFunc("GET /v1/drivers/{id}", s.showDriver)
	s.mux.HandleFunc("POST /v1/datasources", s.addDatasource)
	s.mux.HandleFunc("GET /v1/datasources", s.listDatasources)
	s.mux.HandleFunc("GET /v1/datasources/{id}", s.getDatasource)
	s.mux.HandleFunc("GET /v1/datasources/{id}/status", s.datasourceStatus)
	s.mux.HandleFunc("PATCH /v1/datasources/{id}", s.updateDatasource)
	s.mux.HandleFunc("DELETE /v1/datasources/{id}", s.deleteDatasource)
}

// DriverSummary is one line of GET /v1/drivers.
type DriverSummary struct {
	ID          string `json:"id"`
	Description string `json:"description"`
}

func (s *Server) listDrivers(w http.ResponseWriter, r *http.Request) {
	out := []DriverSummary{}
	for _, d := range s.node.DriversInfo() {
		out = append(out, DriverSummary{ID: d.ID, Description: d.Description})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) showDriver(w http.ResponseWriter, r *http.Request) {
	info, err := s.node.DriverInfo(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// AddDatasourceRequest is the body of POST /v1/datasources.
type AddDatasourceRequest struct {
	Name        string         `json:"name"`
	Driver      string         `json:"driver"`
	Description string         `json:"description"`
	Config      map[string]any `json:"config"`
	Enabled     *bool          `json:"enabled"`
}

func (s *Server) addDatasource(w http.ResponseWriter, r *http.Request) {
	var req AddDatasourceRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if req.Driver == "file" && !s.isAdmin(r) {
		s.forbid(w, r, "the file driver reads the node's own files: adding one needs an admin token")
		return
	}
	spec := dse.DatasourceSpec{Name: req.Name, Driver: req.Driver, Description: req.Description, Config: req.Config, Enabled: req.Enabled == nil || *req.Enabled}
	if spec.Config == nil {
		spec.Config = map[string]any{}
	}
	ds, err := s.node.AddDatasource(r.Context(), spec)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, ds)
}

// showSecrets reads ?show_secrets; secrets are filtered unless it is true.
func showSecrets(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("show_secrets")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: show_secrets=%q is not a boolean", dse.ErrInvalid, v)
	}
	return b, nil
}

func (s *Server) listDatasources(w http.ResponseWriter, r *http.Request) {
	show, err := showSecrets(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.node.GetDatasources(!show))
}

func (s *Server) getDatasource(w http.ResponseWriter, r *http.Request) {
	show, err := showSecrets(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	ds, err := s.node.GetDatasource(r.PathValue("id"), !show)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

func (s *Server) datasourceStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.node.DatasourceStatusOf(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// UpdateDatasourceRequest is the body of PATCH /v1/datasources/{id}.
type UpdateDatasourceRequest struct {
	Config  map[string]any `json:"config"`
	Enabled *bool          `json:"enabled"`
}

func (s *Server) updateDatasource(w http.ResponseWriter, r *http.Request) {
	var req UpdateDatasourceRequest
	if err := readJSON(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if req.Config == nil && req.Enabled == nil {
		s.fail(w, fmt.Errorf("%w: nothing to update: give config and/or enabled", dse.ErrInvalid))
		return
	}
	if req.Config != nil && !s.isAdmin(r) {
		cur, err := s.node.GetDatasource(r.PathValue("id"), true)
		if err != nil {
			s.fail(w, err)
			return
		}
		if cur.Driver == "file" {
			s.forbid(w, r, "the file driver reads the node's own files: changing its config needs an admin token")
			return
		}
		for _, v := range req.Config {
			if v == dse.Hidden {
				s.forbid(w, r, "keeping a stored secret (\"<hidden>\") while changing the config needs an admin token; give the secret again")
				return
			}
		}
	}
	ds, err := s.node.UpdateDatasource(r.Context(), r.PathValue("id"), req.Config, req.Enabled)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

func (s *Server) deleteDatasource(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.node.DeleteDatasource(r.Context(), id); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": id})
}
