package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browser is one headless Chromium, on a fresh profile, flagged to stay
// off the network.
type browser struct {
	alloc context.Context
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	return &browser{alloc: alloc}
}

// tab is one browser tab (its own sessionStorage) that records what must
// never happen: a script error, a JavaScript dialog, a CSP violation.
type tab struct {
	ctx context.Context
	mu  sync.Mutex
	bad []string
}

// watchdog is installed before any page script runs: it records every
// Content-Security-Policy violation, which would mean the page tried to
// run or load something it must not (markup from data, inline style).
const watchdog = `window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`

func (b *browser) tab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.alloc)
	t.Cleanup(cancel)
	tb := &tab{ctx: ctx}
	// The first call starts the browser: no timeout on it (it would stop
	// the browser with it).
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watchdog}); err != nil {
		t.Fatalf("start chromium (%s): %v", chromium, err)
	}
	// A viewport of exactly 1280x800, whatever the window's frame takes.
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1280, Height: 800, DeviceScaleFactor: 1}); err != nil {
		t.Fatalf("set the viewport: %v", err)
	}
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() {
				tb.record("script error: " + m.String())
			}
		}
	}()
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.record(fmt.Sprintf("a %s dialog opened: %q", ev.Type, ev.Message))
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return tb
}

func (tb *tab) record(s string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.bad = append(tb.bad, s)
}

// clean fails the test if the tab recorded a script error, a dialog or a
// CSP violation.
func (tb *tab) clean(t *testing.T) {
	t.Helper()
	var csp []string
	tb.eval(t, `window.__csp || []`, &csp)
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, c := range csp {
		t.Errorf("CSP violation: %s", c)
	}
	for _, b := range tb.bad {
		t.Error(b)
	}
}

func (tb *tab) open(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// nav moves to a console route the way a click on a link does: the page
// is not reloaded.
func (tb *tab) nav(t *testing.T, route string) {
	t.Helper()
	tb.eval(t, `location.hash = `+js(route), nil)
}

func (tb *tab) tryEval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

func (tb *tab) eval(t *testing.T, expr string, out any) {
	t.Helper()
	if err := tb.tryEval(expr, out); err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
}

// click clicks the element sel finds (it must exist).
func (tb *tab) click(t *testing.T, sel string) {
	t.Helper()
	var ok bool
	tb.eval(t, `(() => { const e = document.querySelector(`+js(sel)+`); if (!e) return false; e.click(); return true; })()`, &ok)
	if !ok {
		t.Fatalf("click %s: no such element; page: %s", sel, tb.text())
	}
}

// setValue types value into the input sel finds.
func (tb *tab) setValue(t *testing.T, sel, value string) {
	t.Helper()
	var ok bool
	tb.eval(t, `(() => { const e = document.querySelector(`+js(sel)+`); if (!e) return false; e.value = `+js(value)+`;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, &ok)
	if !ok {
		t.Fatalf("set %s: no such element; page: %s", sel, tb.text())
	}
}

// until polls the JavaScript expression cond until it is true.
func (tb *tab) until(t *testing.T, d time.Duration, what, cond string) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for {
		var ok bool
		if last = tb.tryEval(`!!(`+cond+`)`, &ok); last == nil && ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for %s (%v); page:\n%s", d, what, last, tb.text())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// has reports whether sel finds an element.
func (tb *tab) has(t *testing.T, sel string) bool {
	t.Helper()
	var ok bool
	tb.eval(t, `!!document.querySelector(`+js(sel)+`)`, &ok)
	return ok
}

func (tb *tab) text() string {
	var s string
	tb.tryEval(`[document.getElementById('main'), document.getElementById('modal-root'), document.getElementById('banner')].filter(Boolean).map((e) => e.innerText).join('\n')`, &s)
	return s
}

// screenshot saves the viewport as name.png in $DSE_UI_SCREENSHOTS, when
// it is set.
func (tb *tab) screenshot(t *testing.T, name string) {
	t.Helper()
	dir := os.Getenv("DSE_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	// Toasts of earlier steps would cover the page.
	tb.eval(t, `document.getElementById('toasts').replaceChildren()`, nil)
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "console-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// js quotes s as a JavaScript string.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// signIn answers the sign-in dialog with token.
func (tb *tab) signIn(t *testing.T, token, role string) {
	t.Helper()
	tb.until(t, 10*time.Second, "the sign-in dialog", `document.querySelector('[data-testid="signin"] #token-input')`)
	tb.setValue(t, "#token-input", token)
	tb.click(t, `[data-testid="token-submit"]`)
	tb.until(t, 10*time.Second, "signed in as "+role,
		`!document.querySelector('[data-testid="signin"]') && document.getElementById('hdr-role') && document.getElementById('hdr-role').textContent === `+js(role))
}

func (tb *tab) signOut(t *testing.T) {
	t.Helper()
	tb.click(t, "#signout")
}
