package simnet

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/freqd/freqd/transport"
)

func TestCuts(t *testing.T) {
	type pair struct {
		a, b string
		cut  bool
	}
	tests := []struct {
		name  string
		apply func(n *Net)
		want  []pair
	}{
		{"none", func(n *Net) {}, []pair{{"a", "b", false}, {"a", "a", false}}},
		{"isolate", func(n *Net) { n.Isolate("a") }, []pair{
			{"a", "b", true}, {"b", "a", true}, {"a", "a", false}, {"b", "c", false},
		}},
		{"partition", func(n *Net) { n.Partition([]string{"a", "b"}, []string{"c"}) }, []pair{
			{"a", "b", false}, {"a", "c", true}, {"c", "b", true},
			{"a", "x", false}, {"c", "x", false}, // x is in no side
		}},
		{"partition replaces partition", func(n *Net) {
			n.Partition([]string{"a"}, []string{"b"})
			n.Partition([]string{"a", "b"}, []string{"c"})
		}, []pair{{"a", "b", false}, {"a", "c", true}}},
		{"partition keeps isolation", func(n *Net) {
			n.Isolate("x")
			n.Partition([]string{"a"}, []string{"b"})
		}, []pair{{"x", "a", true}, {"a", "b", true}}},
		{"isolations add up", func(n *Net) {
			n.Isolate("a")
			n.Isolate("b")
		}, []pair{{"a", "c", true}, {"b", "c", true}, {"a", "b", true}}},
		{"last side wins", func(n *Net) { n.Partition([]string{"a", "b"}, []string{"b"}) }, []pair{{"a", "b", true}}},
		{"heal", func(n *Net) {
			n.Isolate("a")
			n.Partition([]string{"b"}, []string{"c"})
			n.Heal()
		}, []pair{{"a", "b", false}, {"b", "c", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := New(1)
			defer n.Close()
			tt.apply(n)
			for _, p := range tt.want {
				if got := n.topo.Load().cut(p.a, p.b); got != p.cut {
					t.Errorf("cut(%s, %s) = %v, want %v", p.a, p.b, got, p.cut)
				}
			}
		})
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		addr string
		port int
		ok   bool
	}{
		{"127.0.0.1:0", 0, true},
		{"127.0.0.1:8080", 8080, true},
		{"localhost:1", 1, true},
		{":7946", 7946, true},
		{"127.0.0.1:65536", 0, false},
		{"127.0.0.1:-1", 0, false},
		{"127.0.0.1:http", 0, false},
		{"10.0.0.1:80", 0, false},
		{"[::1]:80", 0, false},
		{"127.0.0.1", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			port, err := parsePort(tt.addr)
			if (err == nil) != tt.ok || port != tt.port {
				t.Fatalf("parsePort(%q) = %d, %v; want %d, ok=%v", tt.addr, port, err, tt.port, tt.ok)
			}
		})
	}
}

// FuzzParsePort checks that parsePort never panics, only accepts ports in
// range, and accepts what it returns when written back as an address.
func FuzzParsePort(f *testing.F) {
	for _, s := range []string{"127.0.0.1:0", "localhost:65535", ":1", "1.2.3.4:5", "[::1]:2", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		port, err := parsePort(addr)
		if err != nil {
			return
		}
		if port < 0 || port > 65535 {
			t.Fatalf("parsePort(%q) = %d, out of range", addr, port)
		}
		again, err := parsePort(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil || again != port {
			t.Fatalf("round trip of %d: %d, %v", port, again, err)
		}
	})
}

// TestCloseStopsEverything checks that Net.Close leaves no goroutine of
// the network's behind and unblocks everything waiting on it.
func TestCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := New(1)
	g, err := n.Host("a").NewGossipTransport()
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.Host("b").NewGossipTransport()
	if err != nil {
		t.Fatal(err)
	}
	n.SetDelay(time.Hour, time.Hour)
	// A packet waiting out its delay in b's pump.
	if _, err := g.WriteTo([]byte("x"), gossipAddrOf(h)); err != nil {
		t.Fatal(err)
	}
	ln, err := n.Host("b").Network().Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A dial waiting out its delay, and an Accept waiting for it.
	dialed := make(chan error, 1)
	go func() {
		_, err := n.Host("a").Network().DialContext(context.Background(), "tcp", ln.Addr().String())
		dialed <- err
	}()
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	n.Close()
	n.Close()
	if err := <-dialed; !transport.NotSent(err) {
		t.Fatalf("dial = %v, want a NotSent error", err)
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept = %v, want net.ErrClosed", err)
	}
	if _, err := n.Host("c").Network().Listen("127.0.0.1:0"); !errors.Is(err, ErrHostDown) {
		t.Fatalf("listen after Close = %v, want ErrHostDown", err)
	}
	n.Restart("a")
	if _, err := n.Host("a").NewGossipTransport(); !errors.Is(err, ErrHostDown) {
		t.Fatalf("transport after Close and Restart = %v, want ErrHostDown", err)
	}
}
