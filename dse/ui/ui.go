package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is where the console is mounted on a node's HTTP port.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every console response: scripts,
// styles, images and connections from the node itself only, no inline
// script or style, no framing, no form posts elsewhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded file, ready to serve.
type file struct {
	name        string
	data        []byte
	etag        string
	contentType string
}

// contentTypes are the types of the files static/ holds; a file of another
// kind is not served (nosniff would make the browser refuse a script sent
// as anything but JavaScript anyway).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
}

// Handler serves the console: GET and HEAD of the files under static/,
// index.html at the root, with the security headers on every response
// (errors included). Anything but a file is 404; any other method 405.
func Handler() http.Handler {
	h := &handler{files: map[string]*file{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		rel := strings.TrimPrefix(p, "static/")
		h.files[rel] = &file{name: rel, data: data, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, contentType: ct}
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a build bug.
		panic("ui: embedded files: " + err.Error())
	}
	return h
}

type handler struct {
	files map[string]*file
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method "+r.Method+" not allowed: the console serves GET and HEAD only", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p+"/" == Prefix {
		target := Prefix
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return
	}
	rel, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if rel == "" {
		rel = "index.html"
	}
	f, ok := h.files[rel]
	if !ok {
		http.Error(w, fmt.Sprintf("no console file %q", rel), http.StatusNotFound)
		return
	}
	hd.Set("Content-Type", f.contentType)
	hd.Set("ETag", f.etag)
	// Revalidate every time (a 304 when unchanged): a node upgraded in
	// place serves its new files at once.
	hd.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.data))
}
