package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Message size limits. Client requests are tiny; a partition transfer
// carries a whole snapshot.
const (
	// MaxRequestBytes bounds a client request on the public API.
	MaxRequestBytes = 64 << 10
	// MaxPeerMessageBytes bounds a node-to-node message (snapshots).
	MaxPeerMessageBytes = 256 << 20
)

// NewHTTPClient returns a pooled HTTP client that speaks cleartext HTTP/2
// (h2c) over nw, for connect clients. One client per node is shared by all
// its peer connections; HTTP/2 multiplexes calls over one connection per
// peer.
func NewHTTPClient(nw Network) *http.Client {
	tr := &http.Transport{
		DialContext:         nw.DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	// A pooled connection to a peer that vanished (crash, partition) is
	// found out by a ping after 2 s of silence and closed 1 s later, so new
	// calls dial afresh instead of queueing behind it.
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 2 * time.Second, PingTimeout: time.Second}
	return &http.Client{Transport: tr}
}

// Server serves HTTP handlers (HTTP/1.1 and h2c) on a listener from a
// Network.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error

	closeOnce sync.Once
}

// Serve listens on addr through nw and serves h in a goroutine until
// Shutdown. The listener is open when Serve returns, so the address is
// reachable at once.
func Serve(nw Network, addr string, h http.Handler) (*Server, error) {
	ln, err := nw.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	s := &Server{srv: srv, ln: ln, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string {
	return s.ln.Addr().String()
}

// Shutdown stops accepting, waits for in-flight requests until ctx ends,
// then closes every connection and waits for the serve goroutine.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		err = s.srv.Shutdown(ctx)
		if err != nil {
			_ = s.srv.Close()
		}
		if serr := <-s.done; serr != nil && err == nil {
			err = serr
		}
	})
	return err
}
