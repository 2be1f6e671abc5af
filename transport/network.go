package transport

import (
	"context"
	"errors"
	"net"
)

// ErrNoRoute is returned by an in-memory network's dial when the test
// harness has cut the link or the target is not listening. Like a refused
// TCP connection, it means the request was never sent.
var ErrNoRoute = errors.New("transport: no route to peer")

// Network is how a node listens and dials. TCP is the real one; tests use
// an in-memory network that can drop, delay and partition.
type Network interface {
	// Listen opens a listener on addr (host:port).
	Listen(addr string) (net.Listener, error)
	// DialContext connects to addr. A connection that could not be made
	// must be reported so that NotSent recognises it (a *net.OpError with
	// Op "dial", or ErrNoRoute).
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// TCP is the real network.
type TCP struct {
	dialer net.Dialer
}

var _ Network = (*TCP)(nil)

// Listen listens on a TCP address.
func (t *TCP) Listen(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

// DialContext dials a TCP address.
func (t *TCP) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return t.dialer.DialContext(ctx, network, addr)
}
