package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"dse.dev/dse/dse/ui"
)

func TestHandler(t *testing.T) {
	h := ui.Handler()
	for _, tc := range []struct {
		method, path string
		status       int
		ctype        string // prefix
		body         string // substring
	}{
		{"GET", "/ui/", 200, "text/html", `<script type="module" src="js/app.js">`},
		{"HEAD", "/ui/", 200, "text/html", ""},
		{"GET", "/ui/index.html", 200, "text/html", "<title>dse console</title>"},
		{"GET", "/ui/js/app.js", 200, "text/javascript", "import"},
		{"GET", "/ui/css/console.css", 200, "text/css", ":root"},
		{"GET", "/ui/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/ui/nope.js", 404, "text/plain", "no console file"},
		{"GET", "/ui/js/", 404, "text/plain", ""},
		{"GET", "/ui", 301, "", ""},
		{"POST", "/ui/", 405, "text/plain", "GET and HEAD only"},
		{"DELETE", "/ui/js/app.js", 405, "text/plain", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			res := rec.Result()
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			// Every answer, errors and redirects too, carries the headers.
			for k, want := range map[string]string{
				"Content-Security-Policy": ui.ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"X-Frame-Options":         "DENY",
			} {
				if got := res.Header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if got := res.Header.Get("Content-Type"); !strings.HasPrefix(got, tc.ctype) {
				t.Errorf("Content-Type %q, want %s...", got, tc.ctype)
			}
			b, _ := io.ReadAll(res.Body)
			if !strings.Contains(string(b), tc.body) {
				t.Errorf("body %.200q does not hold %q", b, tc.body)
			}
			if tc.method == "HEAD" && len(b) != 0 {
				t.Errorf("HEAD answered a body of %d bytes", len(b))
			}
			if tc.status == 405 && res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q, want GET, HEAD", res.Header.Get("Allow"))
			}
			if tc.status == 301 && res.Header.Get("Location") != "/ui/" {
				t.Errorf("Location %q, want /ui/", res.Header.Get("Location"))
			}
		})
	}
}

// TestCSP: the policy forbids inline script and style, and anything but
// the node itself.
func TestCSP(t *testing.T) {
	want := []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"}
	for _, w := range want {
		if !strings.Contains(ui.ContentSecurityPolicy, w) {
			t.Errorf("policy %q lacks %q", ui.ContentSecurityPolicy, w)
		}
	}
	if strings.Contains(ui.ContentSecurityPolicy, "unsafe-") {
		t.Errorf("policy %q allows something unsafe", ui.ContentSecurityPolicy)
	}
}

// TestETag: an unchanged file is not sent again.
func TestETag(t *testing.T) {
	h := ui.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/js/app.js", nil))
	etag := rec.Result().Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest("GET", "/ui/js/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("status %d with If-None-Match, want 304", rec.Code)
	}
}

// TestNoMarkupFromData: the page's scripts build the DOM with text nodes
// and attributes only; none assigns markup (innerHTML and its kin), which
// would let a row value become an element.
func TestNoMarkupFromData(t *testing.T) {
	for _, name := range ui.Files() {
		if !strings.HasSuffix(name, ".js") && !strings.HasSuffix(name, ".html") {
			continue
		}
		src := ui.File(name)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "style=", ".style."} {
			if strings.Contains(src, bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
		if strings.HasSuffix(name, ".html") && strings.Contains(src, "<script>") {
			t.Errorf("%s has an inline script", name)
		}
	}
}
