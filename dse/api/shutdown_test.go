package api_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/dsetest"
	"dse.dev/dse/dse/pki"
)

// TestShutdownEndsWatches: Shutdown ends open watches (their trailers say
// the node closed them, and Client.Watch returns dse.ErrClosed) instead of
// waiting for them until its deadline, and Serve then returns nil. Each
// round shuts down as soon as its watches have their first line: a watch's
// subscription may still be being confirmed then, which must not make it
// end as unavailable.
func TestShutdownEndsWatches(t *testing.T) {
	c := dsetest.New(t, 1)
	node := c.Nodes[0]
	ctx := context.Background()
	if _, err := node.CreateService(ctx, "ext", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Publish(ctx, "ext", "t", []dse.Row{{int64(1)}}, false); err != nil {
		t.Fatal(err)
	}
	for round := range 10 {
		srv := api.NewServer(node, api.ServerConfig{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		base := "http://" + ln.Addr().String()

		raw := openWatch(t, base, "ext", "t", "")
		cl := api.NewClient(api.ClientConfig{Addr: ln.Addr().String()})
		first := make(chan []byte, 8)
		watched := make(chan error, 1)
		go func() {
			watched <- cl.Watch(ctx, "ext", "t", func(l []byte) error {
				first <- l
				return nil
			})
		}()
		wantKeys(t, "snapshot line", raw.next(t), "seqnum", "snapshot", "rows")
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			t.Fatal("the client's watch got no snapshot in 10s")
		}

		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		err = srv.Shutdown(sctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Shutdown with watches open: %v", round, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("round %d: Shutdown took %s with watches open, want them ended at once", round, d)
		}
		tr := raw.end(t)
		if got := tr.Get(endCode); got != "closed" {
			t.Errorf("round %d: trailer %s: got %q, want closed (%s: %q)", round, endCode, got, endError, tr.Get(endError))
		}
		select {
		case err := <-watched:
			if !errors.Is(err, dse.ErrClosed) {
				t.Errorf("round %d: Client.Watch: got %v, want dse.ErrClosed", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Client.Watch still runs 10s after Shutdown", round)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("round %d: Serve after Shutdown: got %v, want nil", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Serve still runs 10s after Shutdown", round)
		}
	}
}

// TestServeTLS: with a TLS config Serve speaks HTTPS, and a client with
// the CA speaks it; a client speaking plain HTTP gets no answer it can use.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(dir); err != nil {
		t.Fatal(err)
	}
	if err := pki.Issue(dir, "n1", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	_, https, err := pki.Configs(pki.Files{Cert: filepath.Join(dir, "n1.pem"), Key: filepath.Join(dir, "n1-key.pem"), CA: filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	c := dsetest.New(t, 1)
	srv := api.NewServer(c.Nodes[0], api.ServerConfig{TLS: https})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-served
	})

	ctx := context.Background()
	clientTLS, err := pki.ClientConfig(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cl := api.NewClient(api.ClientConfig{Addr: ln.Addr().String(), TLS: clientTLS, Timeout: 10 * time.Second})
	if st, err := cl.Status(ctx); err != nil || st.ID != c.Nodes[0].ID() {
		t.Fatalf("Status over HTTPS: got %+v, %v", st, err)
	}
	plain := api.NewClient(api.ClientConfig{Addr: ln.Addr().String(), Timeout: 10 * time.Second})
	if _, err := plain.Status(ctx); err == nil {
		t.Fatal("Status over plain HTTP to an HTTPS server: got no error")
	}
	// Without the CA, the server's certificate is not trusted.
	untrusted := api.NewClient(api.ClientConfig{Addr: ln.Addr().String(), TLS: &tls.Config{MinVersion: tls.VersionTLS12}, Timeout: 10 * time.Second})
	if _, err := untrusted.Status(ctx); !errors.Is(err, dse.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Status without the CA: got %v, want unavailable naming the certificate", err)
	}
}
