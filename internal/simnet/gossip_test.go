package simnet

import (
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/freqd/freqd/transport"
)

// gossipAddr returns the address a transport advertises.
func gossipAddr(t *testing.T, g memberlist.NodeAwareTransport) string {
	t.Helper()
	ip, port, err := g.FinalAdvertiseAddr("", 0)
	if err != nil {
		t.Fatalf("FinalAdvertiseAddr: %v", err)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

func newGossip(t *testing.T, n *Net, host string) memberlist.NodeAwareTransport {
	t.Helper()
	g, err := n.Host(host).NewGossipTransport()
	if err != nil {
		t.Fatalf("gossip transport on %s: %v", host, err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return g
}

func TestGossipPacketDelivered(t *testing.T) {
	n := newNet(t, 1)
	a, b := newGossip(t, n, "a"), newGossip(t, n, "b")
	sent, err := a.WriteToAddress([]byte("ping"), memberlist.Address{Addr: gossipAddr(t, b), Name: "ignored"})
	if err != nil {
		t.Fatalf("WriteToAddress: %v", err)
	}
	p := <-b.PacketCh()
	if string(p.Buf) != "ping" {
		t.Fatalf("Buf = %q", p.Buf)
	}
	if p.From.String() != gossipAddr(t, a) {
		t.Fatalf("From = %v, want %s", p.From, gossipAddr(t, a))
	}
	if p.Timestamp.Before(sent) {
		t.Fatalf("Timestamp %v before send %v", p.Timestamp, sent)
	}
	if s := n.Stats(); s.PacketsSent != 1 || s.PacketsDelivered != 1 || s.PacketsDropped != 0 {
		t.Fatalf("Stats = %+v", s)
	}
}

func TestGossipPacketLost(t *testing.T) {
	tests := []struct {
		name  string
		setup func(n *Net, b memberlist.Transport) (addr string)
	}{
		{"unknown address", func(n *Net, b memberlist.Transport) string { return "127.0.0.1:1" }},
		{"not loopback", func(n *Net, b memberlist.Transport) string { return "10.0.0.1:7946" }},
		{"RPC port", func(n *Net, b memberlist.Transport) string { return listen(n, "b") }},
		{"receiver dead", func(n *Net, b memberlist.Transport) string {
			addr := gossipAddrOf(b)
			n.Kill("b")
			return addr
		}},
		{"receiver shut down", func(n *Net, b memberlist.Transport) string {
			addr := gossipAddrOf(b)
			_ = b.Shutdown()
			return addr
		}},
		{"isolated", func(n *Net, b memberlist.Transport) string {
			n.Isolate("a")
			return gossipAddrOf(b)
		}},
		{"partitioned", func(n *Net, b memberlist.Transport) string {
			n.Partition([]string{"a"}, []string{"b"})
			return gossipAddrOf(b)
		}},
		{"dropped", func(n *Net, b memberlist.Transport) string {
			n.SetDrop(1)
			return gossipAddrOf(b)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 1)
			a, b := newGossip(t, n, "a"), newGossip(t, n, "b")
			addr := tt.setup(n, b)
			if _, err := a.WriteTo([]byte("ping"), addr); err != nil {
				t.Fatalf("WriteTo = %v, want a silent loss", err)
			}
			if s := n.Stats(); s.PacketsSent != 1 || s.PacketsDropped != 1 || s.PacketsDelivered != 0 {
				t.Fatalf("Stats = %+v", s)
			}
		})
	}
}

func gossipAddrOf(g memberlist.Transport) string {
	ip, port, _ := g.FinalAdvertiseAddr("", 0)
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// TestGossipPacketCutInFlight checks that a delayed packet is lost if its
// hosts are cut off before it arrives.
func TestGossipPacketCutInFlight(t *testing.T) {
	n := newNet(t, 1)
	n.SetDelay(20*time.Millisecond, 20*time.Millisecond)
	a, b := newGossip(t, n, "a"), newGossip(t, n, "b")
	if _, err := a.WriteTo([]byte("ping"), gossipAddr(t, b)); err != nil {
		t.Fatal(err)
	}
	n.Isolate("b")
	waitUntil(t, 5*time.Second, "drop", func() bool { return n.Stats().PacketsDropped == 1 })
	if got := n.Stats().PacketsDelivered; got != 0 {
		t.Fatalf("PacketsDelivered = %d", got)
	}
}

func TestGossipPacketsDelayed(t *testing.T) {
	n := newNet(t, 9)
	n.SetDelay(time.Millisecond, 5*time.Millisecond)
	a, b := newGossip(t, n, "a"), newGossip(t, n, "b")
	const k = 50
	for i := range k {
		if _, err := a.WriteTo([]byte{byte(i)}, gossipAddr(t, b)); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	for range k {
		got = append(got, int((<-b.PacketCh()).Buf[0]))
	}
	slices.Sort(got)
	for i := range k {
		if got[i] != i {
			t.Fatalf("packets received %v, want each of 0..%d once", got, k-1)
		}
	}
}

func TestGossipClosed(t *testing.T) {
	tests := []struct {
		name  string
		close func(n *Net, a memberlist.Transport)
	}{
		{"shutdown", func(n *Net, a memberlist.Transport) { _ = a.Shutdown() }},
		{"kill", func(n *Net, a memberlist.Transport) { n.Kill("a") }},
		{"net close", func(n *Net, a memberlist.Transport) { n.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 1)
			a, b := newGossip(t, n, "a"), newGossip(t, n, "b")
			tt.close(n, a)
			if err := a.Shutdown(); err != nil {
				t.Fatalf("Shutdown after close: %v", err)
			}
			if _, err := a.WriteTo([]byte("x"), gossipAddr(t, b)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("WriteTo after close = %v, want net.ErrClosed", err)
			}
			if n.Stats().PacketsSent != 0 {
				t.Fatal("a closed transport sent a packet")
			}
		})
	}
}

func TestGossipPortFreedOnShutdown(t *testing.T) {
	n := newNet(t, 1)
	a := newGossip(t, n, "a")
	_ = a.Shutdown()
	g, err := n.Host("c").NewGossipTransportAt(gossipAddr(t, a))
	if err != nil {
		t.Fatalf("reuse port: %v", err)
	}
	_ = g.Shutdown()
}

func TestGossipTransportAt(t *testing.T) {
	n := newNet(t, 1)
	g, err := n.Host("a").NewGossipTransportAt("127.0.0.1:7946")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	ip, port, err := g.FinalAdvertiseAddr("10.0.0.1", 1234)
	if err != nil || ip.String() != "127.0.0.1" || port != 7946 {
		t.Fatalf("FinalAdvertiseAddr = %v, %d, %v", ip, port, err)
	}
	if _, err := n.Host("b").NewGossipTransportAt("127.0.0.1:7946"); err == nil {
		t.Fatal("second transport on a used port")
	}
	if _, err := n.Host("b").Network().Listen("127.0.0.1:7946"); err == nil {
		t.Fatal("listener on a gossip port")
	}
	n.Kill("c")
	if _, err := n.Host("c").NewGossipTransport(); !errors.Is(err, ErrHostDown) {
		t.Fatalf("transport on a dead host = %v, want ErrHostDown", err)
	}
}

func TestGossipStream(t *testing.T) {
	n := newNet(t, 1)
	a, b := newGossip(t, n, "a"), newGossip(t, n, "b")
	c, err := a.DialAddressTimeout(memberlist.Address{Addr: gossipAddr(t, b)}, time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	s := <-b.StreamCh()
	defer s.Close()
	if _, err := c.Write([]byte("push")); err != nil {
		t.Fatal(err)
	}
	if got := string(readN(t, s, 4)); got != "push" {
		t.Fatalf("read %q", got)
	}
	if _, err := s.Write([]byte("pull")); err != nil {
		t.Fatal(err)
	}
	if got := string(readN(t, c, 4)); got != "pull" {
		t.Fatalf("read %q", got)
	}
}

func TestGossipDialFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(n *Net, b memberlist.Transport) string
	}{
		{"unknown", func(n *Net, b memberlist.Transport) string { return "127.0.0.1:1" }},
		{"RPC port", func(n *Net, b memberlist.Transport) string { return listen(n, "b") }},
		{"dead", func(n *Net, b memberlist.Transport) string {
			addr := gossipAddrOf(b)
			n.Kill("b")
			return addr
		}},
		{"cut", func(n *Net, b memberlist.Transport) string {
			n.Isolate("b")
			return gossipAddrOf(b)
		}},
		{"timeout during delay", func(n *Net, b memberlist.Transport) string {
			n.SetDelay(time.Hour, time.Hour)
			return gossipAddrOf(b)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 1)
			a, b := newGossip(t, n, "a"), newGossip(t, n, "b")
			addr := tt.setup(n, b)
			c, err := a.DialTimeout(addr, 10*time.Millisecond)
			if err == nil {
				_ = c.Close()
				t.Fatal("dial succeeded")
			}
			if !transport.NotSent(err) {
				t.Fatalf("NotSent(%v) = false", err)
			}
		})
	}
}

// TestGossipShutdownResetsPendingStream checks that a stream memberlist
// never took is reset when the transport shuts down.
func TestGossipShutdownResetsPendingStream(t *testing.T) {
	n := newNet(t, 1)
	a := newGossip(t, n, "a")
	b, err := n.Host("b").NewGossipTransport()
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.DialTimeout(gossipAddr(t, b), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = b.Shutdown()
	if _, err := io.ReadAll(c); !errors.Is(err, ErrConnReset) {
		t.Fatalf("read = %v, want ErrConnReset", err)
	}
}
