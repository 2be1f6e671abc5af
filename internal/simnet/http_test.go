package simnet

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/freqd/freqd/transport"
)

// get fetches url and returns the body.
func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestHTTP2 runs h2c through the simulated network with transport's own
// client and server, across a partition and a kill.
func TestHTTP2(t *testing.T) {
	n := newNet(t, 5)
	n.SetDelay(0, time.Millisecond)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	})
	srv, err := transport.Serve(n.Host("srv").Network(), "127.0.0.1:0", handler)
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	addr := srv.Addr()
	url := "http://" + addr + "/"
	client := transport.NewHTTPClient(n.Host("cli").Network())
	defer client.CloseIdleConnections()

	ctx := context.Background()
	if got, err := get(ctx, client, url); err != nil || got != "HTTP/2.0" {
		t.Fatalf("GET = %q, %v; want HTTP/2.0", got, err)
	}

	// Across a cut the pooled connection stalls and the call times out.
	n.Partition([]string{"cli"}, []string{"srv"})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = get(short, client, url)
	cancel()
	if err == nil {
		t.Fatal("GET across a partition succeeded")
	}
	n.Heal()
	if got, err := get(ctx, client, url); err != nil || got != "HTTP/2.0" {
		t.Fatalf("GET after heal = %q, %v", got, err)
	}

	// A killed server resets the connection; new dials are refused.
	n.Kill("srv")
	_, err = get(ctx, client, url)
	if err == nil {
		t.Fatal("GET to a killed server succeeded")
	}
	_ = srv.Shutdown(ctx) // its listener is already gone
	_, err = get(ctx, client, url)
	if !transport.NotSent(err) {
		t.Fatalf("GET to a dead host: NotSent(%v) = false", err)
	}

	// A restarted server on the same address serves again.
	n.Restart("srv")
	srv2, err := transport.Serve(n.Host("srv").Network(), addr, handler)
	if err != nil {
		t.Fatalf("serve after restart: %v", err)
	}
	defer func() {
		// Close the client's pooled connection first, or the server's
		// graceful shutdown polls for it (as over TCP).
		client.CloseIdleConnections()
		if err := srv2.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	if got, err := get(ctx, client, url); err != nil || got != "HTTP/2.0" {
		t.Fatalf("GET after restart = %q, %v", got, err)
	}
}
