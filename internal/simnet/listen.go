package simnet

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/freqd/freqd/transport"
)

// parsePort checks that addr is host:port on the loopback address ("",
// "127.0.0.1" or "localhost") and returns the port.
func parsePort(addr string) (int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("simnet: address %q: %w", addr, err)
	}
	switch host {
	case "", "127.0.0.1", "localhost":
	default:
		return 0, fmt.Errorf("simnet: address %q: only 127.0.0.1 exists", addr)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > lastEphemeral {
		return 0, fmt.Errorf("simnet: address %q: bad port", addr)
	}
	return p, nil
}

func tcpAddr(port int) *net.TCPAddr { return &net.TCPAddr{IP: loopback, Port: port} }

// rpcNetwork is a host's view of the network for RPC traffic.
type rpcNetwork struct {
	h *Host
}

var _ transport.Network = rpcNetwork{}

// Network returns the host's RPC network. Listen("127.0.0.1:0") takes a
// fresh simulated port (no real socket is bound); Listen on a fixed
// 127.0.0.1 port works if no listener or gossip transport in the Net holds
// it. Addresses are labels only. A dial that fails returns a *net.OpError
// with Op "dial" wrapping transport.ErrNoRoute, so transport.NotSent
// recognises it.
func (h *Host) Network() transport.Network {
	return rpcNetwork{h: h}
}

// Listen opens a listener on addr.
func (r rpcNetwork) Listen(addr string) (net.Listener, error) {
	port, err := parsePort(addr)
	if err != nil {
		return nil, err
	}
	h := r.h
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: tcpAddr(port), Err: err}
	}
	if port == 0 {
		var ok bool
		if port, ok = n.allocPortLocked(); !ok {
			return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: tcpAddr(0), Err: syscall.EADDRINUSE}
		}
	} else if _, used := n.ports[port]; used {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: tcpAddr(port), Err: syscall.EADDRINUSE}
	}
	ln := &listener{net: n, host: h, port: port, addr: tcpAddr(port), changed: make(chan struct{})}
	n.ports[port] = ln
	h.listeners[ln] = struct{}{}
	return ln, nil
}

// DialContext connects to a listener at addr. network must be a TCP one.
func (r rpcNetwork) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("simnet: network %q: %w", network, transport.ErrNoRoute)}
	}
	c, err := r.h.net.dial(ctx, r.h, addr, false)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// dial connects from host h to addr: to a listener, or with gossip set to a
// gossip transport. It waits out one delay (the handshake), then checks the
// route; all failures are *net.OpError{Op: "dial"} wrapping ErrNoRoute (or
// the context's error).
func (n *Net) dial(ctx context.Context, h *Host, addr string, gossip bool) (*conn, error) {
	port, err := parsePort(addr)
	if err != nil {
		n.stats.dialsRefused.Add(1)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("%w: %w", err, transport.ErrNoRoute)}
	}
	raddr := tcpAddr(port)
	if err := ctx.Err(); err != nil {
		n.stats.dialsRefused.Add(1)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: err}
	}
	n.mu.Lock()
	var to string
	if ep, ok := n.ports[port]; ok {
		to = ep.owner().name
	}
	n.mu.Unlock()
	if to != "" {
		if d := n.delay(h.name, to); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				n.stats.dialsRefused.Add(1)
				return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: ctx.Err()}
			case <-n.done:
				t.Stop()
			}
		}
	}
	c, reason := n.connect(h, port, gossip)
	if c == nil {
		n.stats.dialsRefused.Add(1)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: fmt.Errorf("simnet: %s: %w", reason, transport.ErrNoRoute)}
	}
	n.stats.dialsOK.Add(1)
	return c, nil
}

// connect makes a connection from h to whatever listens on port, handing
// the far end to it. On failure it returns nil and why.
func (n *Net) connect(h *Host, port int, gossip bool) (*conn, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return nil, err.Error()
	}
	ep, ok := n.ports[port]
	if !ok {
		return nil, fmt.Sprintf("connection refused: nothing listens on port %d", port)
	}
	to := ep.owner()
	if n.topo.Load().cut(h.name, to.name) {
		return nil, fmt.Sprintf("%s and %s are cut off", h.name, to.name)
	}
	if n.dropped(h.name, to.name) {
		return nil, fmt.Sprintf("dial from %s to %s dropped", h.name, to.name)
	}
	l := newLink(n, [2]string{h.name, to.name}, [2]*net.TCPAddr{tcpAddr(n.ephemeralLocked()), tcpAddr(port)})
	var delivered bool
	switch e := ep.(type) {
	case *listener:
		delivered = !gossip && e.enqueue(l.ends[1])
	case *gossipTransport:
		delivered = gossip && e.enqueueStream(l.ends[1])
	}
	if !delivered {
		return nil, fmt.Sprintf("connection refused: port %d is not a %s endpoint", port, kind(gossip))
	}
	n.links[l] = struct{}{}
	return l.ends[0], ""
}

func kind(gossip bool) string {
	if gossip {
		return "gossip"
	}
	return "RPC"
}

// listener is a simulated TCP listener.
type listener struct {
	net  *Net
	host *Host
	port int
	addr *net.TCPAddr

	// mu guards the fields below.
	mu      sync.Mutex
	queue   []*conn       // accepted by the network, not yet by Accept
	closed  bool          //
	changed chan struct{} // closed and replaced to wake Accept
}

var _ net.Listener = (*listener)(nil)

func (ln *listener) owner() *Host { return ln.host }

// enqueue hands a new connection to Accept; false if closed.
func (ln *listener) enqueue(c *conn) bool {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.closed {
		return false
	}
	ln.queue = append(ln.queue, c)
	close(ln.changed)
	ln.changed = make(chan struct{})
	return true
}

// Accept waits for the next connection, or for Close or Kill.
func (ln *listener) Accept() (net.Conn, error) {
	ln.mu.Lock()
	for {
		if ln.closed {
			ln.mu.Unlock()
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: ln.addr, Err: net.ErrClosed}
		}
		if len(ln.queue) > 0 {
			c := ln.queue[0]
			ln.queue[0] = nil
			ln.queue = ln.queue[1:]
			ln.mu.Unlock()
			return c, nil
		}
		ch := ln.changed
		ln.mu.Unlock()
		<-ch
		ln.mu.Lock()
	}
}

// Close stops the listener and resets connections not yet accepted.
// Accepted connections stay open.
func (ln *listener) Close() error {
	ln.net.release(ln.port, ln)
	if !ln.shut() {
		return &net.OpError{Op: "close", Net: "tcp", Addr: ln.addr, Err: net.ErrClosed}
	}
	return nil
}

// shut closes the listener; false if it was closed already.
func (ln *listener) shut() bool {
	ln.mu.Lock()
	if ln.closed {
		ln.mu.Unlock()
		return false
	}
	ln.closed = true
	q := ln.queue
	ln.queue = nil
	close(ln.changed)
	ln.mu.Unlock()
	for _, c := range q {
		c.l.reset()
		ln.net.forget(c.l)
	}
	return true
}

// Addr is the listener's simulated address.
func (ln *listener) Addr() net.Addr { return ln.addr }
