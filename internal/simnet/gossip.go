package simnet

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// NewGossipTransport returns a memberlist transport for one memberlist
// instance on this host, on a fresh simulated 127.0.0.1 port, which
// FinalAdvertiseAddr reports. A restarted node makes a new one.
func (h *Host) NewGossipTransport() (memberlist.NodeAwareTransport, error) {
	return h.NewGossipTransportAt("127.0.0.1:0")
}

// NewGossipTransportAt is NewGossipTransport on a fixed address, which must
// be free; port 0 picks one. A node restarted after Kill should come back
// on its old address: memberlist refuses a known node name at a new
// address unless the old one left (or DeadNodeReclaimTime allows it).
func (h *Host) NewGossipTransportAt(addr string) (memberlist.NodeAwareTransport, error) {
	port, err := parsePort(addr)
	if err != nil {
		return nil, err
	}
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return nil, fmt.Errorf("simnet: gossip transport on %s: %w", h.name, err)
	}
	if port == 0 {
		var ok bool
		if port, ok = n.allocPortLocked(); !ok {
			return nil, fmt.Errorf("simnet: gossip transport on %s: no free port", h.name)
		}
	} else if _, used := n.ports[port]; used {
		return nil, fmt.Errorf("simnet: gossip transport on %s: port %d in use", h.name, port)
	}
	g := &gossipTransport{
		net:      n,
		host:     h,
		port:     port,
		udp:      &net.UDPAddr{IP: loopback, Port: port},
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	n.ports[port] = g
	h.transports[g] = struct{}{}
	g.wg.Add(1)
	go g.pump()
	return g, nil
}

// packet is a gossip packet in flight.
type packet struct {
	buf      []byte
	from     *net.UDPAddr
	fromHost string
	due      time.Time
	seq      uint64 // ties on due are delivered in send order
}

// inbox orders packets by due time.
type inbox []*packet

func (q inbox) Len() int { return len(q) }
func (q inbox) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q inbox) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *inbox) Push(x any)   { *q = append(*q, x.(*packet)) }
func (q *inbox) Pop() any {
	old := *q
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return p
}

// gossipTransport is a memberlist.NodeAwareTransport on a simulated port.
// One goroutine (pump) hands packets and streams to memberlist, so senders
// never block on a receiver.
type gossipTransport struct {
	net  *Net
	host *Host
	port int
	udp  *net.UDPAddr

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	wake     chan struct{} // poked (non-blocking) when the inbox changes
	done     chan struct{} // closed by shut; stops pump
	wg       sync.WaitGroup

	// mu guards the fields below.
	mu      sync.Mutex
	closed  bool
	packets inbox   // packets not yet due or not yet taken
	streams []*conn // connections not yet taken
	seq     uint64
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

func (g *gossipTransport) owner() *Host { return g.host }

func (g *gossipTransport) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// FinalAdvertiseAddr returns the transport's own address, whatever was
// configured.
func (g *gossipTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return loopback, g.port, nil
}

// WriteTo sends a packet to addr.
func (g *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return g.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet to a.Addr (the name is ignored). Like UDP,
// a packet to an unknown, dead or cut-off address is lost without error.
// It fails only if the transport is shut down or the address is not
// host:port.
func (g *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if _, _, err := net.SplitHostPort(a.Addr); err != nil {
		return now, &net.OpError{Op: "write", Net: "udp", Source: g.udp, Err: err}
	}
	port, perr := parsePort(a.Addr) // an error here is an unknown host
	n := g.net
	n.mu.Lock()
	defer n.mu.Unlock()
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return now, &net.OpError{Op: "write", Net: "udp", Source: g.udp, Err: net.ErrClosed}
	}
	n.stats.packetsSent.Add(1)
	dest, ok := n.ports[port].(*gossipTransport)
	if perr != nil || !ok || n.topo.Load().cut(g.host.name, dest.host.name) || n.dropped(g.host.name, dest.host.name) {
		n.stats.packetsDropped.Add(1)
		return now, nil
	}
	p := &packet{
		buf:      bytes.Clone(b),
		from:     g.udp,
		fromHost: g.host.name,
		due:      now.Add(n.delay(g.host.name, dest.host.name)),
	}
	if !dest.enqueuePacket(p) {
		n.stats.packetsDropped.Add(1)
	}
	return now, nil
}

// enqueuePacket queues p for delivery; false if shut or full.
func (g *gossipTransport) enqueuePacket(p *packet) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || len(g.packets) >= maxInbox {
		return false
	}
	g.seq++
	p.seq = g.seq
	heap.Push(&g.packets, p)
	g.poke()
	return true
}

// enqueueStream queues an incoming connection; false if shut.
func (g *gossipTransport) enqueueStream(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.streams = append(g.streams, c)
	g.poke()
	return true
}

// PacketCh delivers incoming packets.
func (g *gossipTransport) PacketCh() <-chan *memberlist.Packet { return g.packetCh }

// StreamCh delivers incoming stream connections.
func (g *gossipTransport) StreamCh() <-chan net.Conn { return g.streamCh }

// DialTimeout opens a stream connection to addr.
func (g *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return g.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream connection to a.Addr (the name is
// ignored), delivered on the receiver's StreamCh. A failure wraps
// transport.ErrNoRoute.
func (g *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := g.net.dial(ctx, g.host, a.Addr, true)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Shutdown closes the transport: packets and streams not yet taken are
// discarded (streams reset) and its goroutine has exited when it returns.
// It is idempotent.
func (g *gossipTransport) Shutdown() error {
	g.net.release(g.port, g)
	g.shut()
	return nil
}

func (g *gossipTransport) shut() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.done)
	}
	streams := g.streams
	g.streams = nil
	g.packets = nil
	g.mu.Unlock()
	for _, c := range streams {
		g.resetConn(c)
	}
	g.wg.Wait()
}

func (g *gossipTransport) resetConn(c *conn) {
	c.l.reset()
	g.net.forget(c.l)
}

// pump hands due packets and queued streams to memberlist until shut.
// Packets whose sender is cut off by the time they are due are lost.
func (g *gossipTransport) pump() {
	defer g.wg.Done()
	var (
		pkt  *memberlist.Packet // taken from the inbox, not yet handed over
		strm *conn
	)
	defer func() {
		if strm != nil {
			g.resetConn(strm)
		}
	}()
	for {
		wait := time.Duration(-1)
		g.mu.Lock()
		now := time.Now()
		for pkt == nil && len(g.packets) > 0 {
			next := g.packets[0]
			if d := next.due.Sub(now); d > 0 {
				wait = d
				break
			}
			heap.Pop(&g.packets)
			if g.net.topo.Load().cut(next.fromHost, g.host.name) {
				g.net.stats.packetsDropped.Add(1)
				continue
			}
			pkt = &memberlist.Packet{Buf: next.buf, From: next.from, Timestamp: now}
		}
		if strm == nil && len(g.streams) > 0 {
			strm = g.streams[0]
			g.streams[0] = nil
			g.streams = g.streams[1:]
		}
		g.mu.Unlock()

		var pc chan<- *memberlist.Packet
		if pkt != nil {
			pc = g.packetCh
		}
		var sc chan<- net.Conn
		if strm != nil {
			sc = g.streamCh
		}
		var (
			t     *time.Timer
			timer <-chan time.Time
		)
		if wait >= 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case pc <- pkt:
			g.net.stats.packetsDelivered.Add(1)
			pkt = nil
		case sc <- strm:
			strm = nil
		case <-g.wake:
		case <-timer:
		case <-g.done:
		}
		if t != nil {
			t.Stop()
		}
		select {
		case <-g.done:
			return
		default:
		}
	}
}
