package simnet

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/freqd/freqd/transport"
)

// pair returns a connection dialled from host a to a listener on host b,
// and the accepted end. The Net is closed when the test ends.
func pair(t *testing.T, n *Net, a, b string) (client, server net.Conn) {
	t.Helper()
	ln, err := n.Host(b).Network().Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	client, err = n.Host(a).Network().DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	return client, server
}

func newNet(t *testing.T, seed uint64) *Net {
	t.Helper()
	n := New(seed)
	t.Cleanup(n.Close)
	return n
}

// readN reads exactly k bytes or fails the test.
func readN(t *testing.T, c net.Conn, k int) []byte {
	t.Helper()
	buf := make([]byte, k)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v", k, err)
	}
	return buf
}

func TestDialAcceptReadWrite(t *testing.T) {
	tests := []struct {
		name string
		a, b string
	}{
		{"between hosts", "a", "b"},
		{"same host", "a", "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 1)
			c, s := pair(t, n, tt.a, tt.b)
			if c.RemoteAddr().String() != s.LocalAddr().String() || c.LocalAddr().String() != s.RemoteAddr().String() {
				t.Fatalf("addresses do not match: client %v->%v, server %v->%v", c.LocalAddr(), c.RemoteAddr(), s.LocalAddr(), s.RemoteAddr())
			}
			for _, msg := range []string{"hello", "", "world"} {
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			if got := string(readN(t, s, 10)); got != "helloworld" {
				t.Fatalf("server read %q", got)
			}
			if _, err := s.Write([]byte("back")); err != nil {
				t.Fatalf("write: %v", err)
			}
			if got := string(readN(t, c, 4)); got != "back" {
				t.Fatalf("client read %q", got)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			if err := c.Close(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("second close = %v, want net.ErrClosed", err)
			}
			if _, err := s.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after peer close = %v, want EOF", err)
			}
			if _, err := s.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write after peer close = %v, want EPIPE", err)
			}
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after close = %v, want net.ErrClosed", err)
			}
			_ = s.Close()
		})
	}
}

func TestDialFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(n *Net) (from, addr string)
		ctx   func() (context.Context, context.CancelFunc)
	}{
		{"nothing listens", func(n *Net) (string, string) { return "a", "127.0.0.1:12345" }, nil},
		{"not loopback", func(n *Net) (string, string) { return "a", "10.0.0.1:80" }, nil},
		{"malformed", func(n *Net) (string, string) { return "a", "nonsense" }, nil},
		{"target dead", func(n *Net) (string, string) {
			addr := listen(n, "b")
			n.Kill("b")
			return "a", addr
		}, nil},
		{"source dead", func(n *Net) (string, string) {
			addr := listen(n, "b")
			n.Kill("a")
			return "a", addr
		}, nil},
		{"isolated", func(n *Net) (string, string) {
			addr := listen(n, "b")
			n.Isolate("b")
			return "a", addr
		}, nil},
		{"partitioned", func(n *Net) (string, string) {
			addr := listen(n, "b")
			n.Partition([]string{"a"}, []string{"b", "c"})
			return "a", addr
		}, nil},
		{"dropped", func(n *Net) (string, string) {
			addr := listen(n, "b")
			n.SetDrop(1)
			return "a", addr
		}, nil},
		{"gossip port", func(n *Net) (string, string) {
			g, err := n.Host("b").NewGossipTransport()
			if err != nil {
				panic(err)
			}
			_, port, _ := g.FinalAdvertiseAddr("", 0)
			return "a", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}, nil},
		{"context ends during delay", func(n *Net) (string, string) {
			addr := listen(n, "b")
			n.SetDelay(time.Hour, time.Hour)
			return "a", addr
		}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Millisecond)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 1)
			from, addr := tt.setup(n)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			c, err := n.Host(from).Network().DialContext(ctx, "tcp", addr)
			if err == nil {
				_ = c.Close()
				t.Fatal("dial succeeded")
			}
			if !transport.NotSent(err) {
				t.Fatalf("NotSent(%v) = false", err)
			}
			if tt.ctx == nil && !errors.Is(err, transport.ErrNoRoute) {
				t.Fatalf("error %v does not wrap ErrNoRoute", err)
			}
			if got := n.Stats().DialsRefused; got != 1 {
				t.Fatalf("DialsRefused = %d, want 1", got)
			}
		})
	}
}

// listen opens a listener on host and returns its address; the Net's
// Close shuts it.
func listen(n *Net, host string) string {
	ln, err := n.Host(host).Network().Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return ln.Addr().String()
}

func TestListen(t *testing.T) {
	n := newNet(t, 1)
	nw := n.Host("a").Network()
	ln, err := nw.Listen("127.0.0.1:7000")
	if err != nil {
		t.Fatalf("listen on fixed port: %v", err)
	}
	if got := ln.Addr().String(); got != "127.0.0.1:7000" {
		t.Fatalf("Addr = %s", got)
	}
	if _, err := n.Host("b").Network().Listen("127.0.0.1:7000"); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second listen = %v, want EADDRINUSE", err)
	}
	if _, err := nw.Listen("10.1.1.1:0"); err == nil {
		t.Fatal("listen on a non-loopback address succeeded")
	}
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	if err := ln.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
	if err := ln.Close(); err == nil {
		t.Fatal("second close succeeded")
	}
	ln2, err := nw.Listen("127.0.0.1:7000")
	if err != nil {
		t.Fatalf("listen on a freed port: %v", err)
	}
	_ = ln2.Close()
}

func TestDeadlines(t *testing.T) {
	past := time.Now().Add(-time.Second)
	tests := []struct {
		name string
		set  func(c net.Conn) error
		op   func(c net.Conn) error
	}{
		{"read deadline passed", func(c net.Conn) error { return c.SetReadDeadline(past) },
			func(c net.Conn) error { _, err := c.Read(make([]byte, 1)); return err }},
		{"deadline passed on read", func(c net.Conn) error { return c.SetDeadline(past) },
			func(c net.Conn) error { _, err := c.Read(make([]byte, 1)); return err }},
		{"read deadline expires while blocked", func(c net.Conn) error { return c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)) },
			func(c net.Conn) error { _, err := c.Read(make([]byte, 1)); return err }},
		{"write deadline passed", func(c net.Conn) error { return c.SetWriteDeadline(past) },
			func(c net.Conn) error { _, err := c.Write([]byte("x")); return err }},
		{"deadline passed on write", func(c net.Conn) error { return c.SetDeadline(past) },
			func(c net.Conn) error { _, err := c.Write([]byte("x")); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 1)
			c, _ := pair(t, n, "a", "b")
			if err := tt.set(c); err != nil {
				t.Fatalf("set deadline: %v", err)
			}
			err := tt.op(c)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want os.ErrDeadlineExceeded", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("err = %v, want a net.Error with Timeout()", err)
			}
			// Clearing the deadline makes the conn usable again.
			if err := c.SetDeadline(time.Time{}); err != nil {
				t.Fatalf("clear deadline: %v", err)
			}
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatalf("write after clearing: %v", err)
			}
		})
	}
}

// TestDeadlineMovedWakesReader checks that setting a deadline in the past
// wakes a Read already blocked without one.
func TestDeadlineMovedWakesReader(t *testing.T) {
	n := newNet(t, 1)
	c, _ := pair(t, n, "a", "b")
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	waitBlocked(t, c)
	if err := c.SetReadDeadline(time.Now()); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want os.ErrDeadlineExceeded", err)
	}
}

// waitBlocked waits until a Read is blocked on c, so that the test
// exercises the wake-up path.
func waitBlocked(t *testing.T, c net.Conn) {
	t.Helper()
	l := c.(*conn).l
	waitUntil(t, 5*time.Second, "a blocked Read", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.readers > 0
	})
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, within)
		}
		<-tick.C
	}
}

func TestCloseWakesReader(t *testing.T) {
	tests := []struct {
		name  string
		close func(c, s net.Conn, n *Net)
		want  error
	}{
		{"own close", func(c, s net.Conn, n *Net) { _ = c.Close() }, net.ErrClosed},
		{"peer close", func(c, s net.Conn, n *Net) { _ = s.Close() }, io.EOF},
		{"peer killed", func(c, s net.Conn, n *Net) { n.Kill("b") }, ErrConnReset},
		{"self killed", func(c, s net.Conn, n *Net) { n.Kill("a") }, ErrConnReset},
		{"net closed", func(c, s net.Conn, n *Net) { n.Close() }, ErrConnReset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 1)
			c, s := pair(t, n, "a", "b")
			done := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 1))
				done <- err
			}()
			waitBlocked(t, c)
			tt.close(c, s, n)
			if err := <-done; !errors.Is(err, tt.want) {
				t.Fatalf("read = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestKillResets(t *testing.T) {
	n := newNet(t, 1)
	ln, err := n.Host("b").Network().Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.Host("a").Network().DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// A second connection is never accepted: Kill resets it too.
	c2, err := n.Host("a").Network().DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// Bytes in flight are lost with the connection.
	if _, err := s.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	n.Kill("b")
	for i, conn := range []net.Conn{c, s, c2} {
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, ErrConnReset) {
			t.Errorf("conn %d: read = %v, want ErrConnReset", i, err)
		}
		if _, err := conn.Write([]byte("x")); !errors.Is(err, ErrConnReset) {
			t.Errorf("conn %d: write = %v, want ErrConnReset", i, err)
		}
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Kill = %v", err)
	}
	if got := n.Stats().ConnsReset; got != 2 {
		t.Fatalf("ConnsReset = %d, want 2", got)
	}
	if _, err := n.Host("b").Network().Listen("127.0.0.1:0"); !errors.Is(err, ErrHostDown) {
		t.Fatalf("listen on a dead host = %v, want ErrHostDown", err)
	}
	n.Restart("b")
	addr := listen(n, "b")
	c3, err := n.Host("a").Network().DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial after restart: %v", err)
	}
	_ = c3.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("old listener after restart: Accept = %v", err)
	}
}

func TestPartitionStallsThenHeals(t *testing.T) {
	tests := []struct {
		name string
		cut  func(n *Net)
	}{
		{"isolate", func(n *Net) { n.Isolate("b") }},
		{"partition", func(n *Net) { n.Partition([]string{"a", "c"}, []string{"b"}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 1)
			c, s := pair(t, n, "a", "b")
			c3, s3 := pair(t, n, "a", "c") // not cut in either case
			if _, err := c.Write([]byte("before ")); err != nil {
				t.Fatal(err)
			}
			tt.cut(n)
			for _, msg := range []string{"during ", "the ", "cut"} {
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatalf("write across a cut: %v", err)
				}
			}
			// What arrived before the cut is readable; the rest stalls.
			if got := string(readN(t, s, 7)); got != "before " {
				t.Fatalf("read %q", got)
			}
			_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read across a cut = %v, want a timeout", err)
			}
			// Other links are unaffected.
			if _, err := c3.Write([]byte("ok")); err != nil {
				t.Fatal(err)
			}
			if got := string(readN(t, s3, 2)); got != "ok" {
				t.Fatalf("uncut link read %q", got)
			}
			_ = s.SetReadDeadline(time.Time{})
			done := make(chan string, 1)
			go func() {
				buf := make([]byte, 14)
				_, err := io.ReadFull(s, buf)
				if err != nil {
					done <- err.Error()
					return
				}
				done <- string(buf)
			}()
			waitBlocked(t, s)
			n.Heal()
			if got := <-done; got != "during the cut" {
				t.Fatalf("after heal read %q", got)
			}
		})
	}
}

func TestCloseAcrossCutStalls(t *testing.T) {
	n := newNet(t, 1)
	c, s := pair(t, n, "a", "b")
	n.Isolate("a")
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	// b cannot tell a closed: its writes are accepted and its reads stall.
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatalf("write to a closed peer across a cut: %v", err)
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %v, want a timeout", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	n.Heal()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "bye" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestDelayKeepsOrder(t *testing.T) {
	n := newNet(t, 7)
	n.SetDelay(0, 3*time.Millisecond)
	c, s := pair(t, n, "a", "b")
	const k = 200
	want := make([]byte, k)
	for i := range k {
		want[i] = byte(i)
		if _, err := c.Write(want[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	got := readN(t, s, k)
	for i := range k {
		if got[i] != want[i] {
			t.Fatalf("byte %d = %d, want %d", i, got[i], want[i])
		}
	}
}

func TestSetDelayBounds(t *testing.T) {
	tests := []struct {
		name      string
		lo, hi    time.Duration
		wantLo    time.Duration
		wantHi    time.Duration
		sameHost  bool
		wantExact bool
	}{
		{"range", time.Millisecond, 5 * time.Millisecond, time.Millisecond, 5 * time.Millisecond, false, false},
		{"fixed", 2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond, false, true},
		{"hi below lo", 3 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond, false, true},
		{"negative", -time.Second, -time.Second, 0, 0, false, true},
		{"same host", time.Second, time.Second, 0, 0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := New(3)
			defer n.Close()
			n.SetDelay(tt.lo, tt.hi)
			to := "b"
			if tt.sameHost {
				to = "a"
			}
			for range 100 {
				d := n.delay("a", to)
				if d < tt.wantLo || d > tt.wantHi {
					t.Fatalf("delay %v outside [%v, %v]", d, tt.wantLo, tt.wantHi)
				}
			}
		})
	}
}

// TestSeedDecidesDrops checks that the same seed drops the same packets
// when the same traffic asks in the same order.
func TestSeedDecidesDrops(t *testing.T) {
	run := func(seed uint64) []bool {
		n := New(seed)
		defer n.Close()
		n.SetDrop(0.5)
		out := make([]bool, 100)
		for i := range out {
			out[i] = n.dropped("a", "b")
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	same := func(x, y []bool) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatal("same seed gave different drops")
	}
	if same(a, c) {
		t.Fatal("different seeds gave the same 100 drops")
	}
	if New(42).Seed() != 42 {
		t.Fatal("Seed() does not return the seed")
	}
}

func TestSetDropBounds(t *testing.T) {
	tests := []struct {
		p        float64
		to       string
		wantDrop bool
	}{
		{0, "b", false},
		{-1, "b", false},
		{1, "b", true},
		{2, "b", true},
		{1, "a", false}, // within a host nothing is dropped
	}
	for _, tt := range tests {
		t.Run(strconv.FormatFloat(tt.p, 'g', -1, 64)+"->"+tt.to, func(t *testing.T) {
			n := New(1)
			defer n.Close()
			n.SetDrop(tt.p)
			for range 20 {
				if got := n.dropped("a", tt.to); got != tt.wantDrop {
					t.Fatalf("dropped = %v, want %v", got, tt.wantDrop)
				}
			}
		})
	}
}
