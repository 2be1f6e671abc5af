package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

// tcpNode starts one TCP node on 127.0.0.1 for the TCP-only tests, with
// mod applied to its config. It resolves ids through addrs.
func tcpNode(t *testing.T, id uint64, h Handler, addrs *addrBook, mod func(*Config)) (*TCP, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	ln := listenRetry(t, addrs.get(id, "127.0.0.1:0"))
	addrs.set(id, ln.Addr().String())
	cfg := Config{
		Self:        ident(id),
		Listener:    ln,
		Resolve:     addrs.resolve,
		Handler:     h,
		ErrorCodec:  testCodec{},
		Logger:      logs.logger(),
		BackoffMin:  10 * time.Millisecond,
		BackoffMax:  100 * time.Millisecond,
		KeepAlive:   500 * time.Millisecond,
		IdleTimeout: 20 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := NewTCP(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		if t.Failed() {
			t.Logf("node %d log:\n%s", id, logs.String())
		}
	})
	return tr, logs
}

// addrBook maps node ids to addresses for Resolve.
type addrBook struct {
	mu sync.Mutex
	m  map[uint64]string
}

func (a *addrBook) get(id uint64, def string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.m[id]; ok {
		return s
	}
	return def
}

func (a *addrBook) set(id uint64, addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[uint64]string)
	}
	a.m[id] = addr
}

func (a *addrBook) resolve(id uint64) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.m[id]
	return s, ok
}

// rawHello is what a well-formed dialer sends.
func rawHello(id Identity, ln lane) hello {
	return hello{kind: kindHello, lane: ln, id: id, maxFrame: DefaultMaxFrame, maxMessage: DefaultMaxMessage}
}

// rawDial opens a plain connection to addr and runs the dialer's side of
// the handshake with h, returning the acceptor's answer.
func rawDial(t *testing.T, addr string, h hello) (net.Conn, hello) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(encodeHello(h)); err != nil {
		t.Fatal(err)
	}
	reply, err := readHello(nc)
	if err != nil {
		t.Fatalf("reading the acceptor's answer: %v", err)
	}
	return nc, reply
}

// waitClosed reads nc until the other side closes it (EOF or reset).
func waitClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection was not closed by the acceptor")
	}
}

// Connections that fail the handshake's checks are refused with a
// reason, logged at WARN with the remote address and the claimed
// identity, and nothing they send reaches the Handler.
func TestHandshakeRefused(t *testing.T) {
	members := map[uint64]string{1: "n1", 2: "n2"}
	admit := func(id Identity) error {
		name, ok := members[id.ID]
		switch {
		case !ok:
			return fmt.Errorf("node %d is not a member", id.ID)
		case name != id.Name:
			return fmt.Errorf("node %d is %q, not %q", id.ID, name, id.Name)
		}
		return nil
	}
	rec := &recorder{}
	addrs := &addrBook{}
	srv, logs := tcpNode(t, 1, rec, addrs, func(c *Config) { c.Admit = admit })
	addr := srv.Addr().String()

	tests := []struct {
		name   string
		hello  hello
		reason string
	}{
		{"wrong cluster", rawHello(Identity{Cluster: 0xBAD, ID: 2, Name: "n2"}, laneMain), "wrong cluster 0xbad"},
		{"unknown id", rawHello(Identity{Cluster: testCluster, ID: 77, Name: "n77"}, laneMain), "node 77 is not a member"},
		{"forged identity", rawHello(Identity{Cluster: testCluster, ID: 2, Name: "mallory"}, laneMain), `node 2 is "n2", not "mallory"`},
		{"forged on the bulk lane", rawHello(Identity{Cluster: testCluster, ID: 2, Name: "mallory"}, laneBulk), "not admitted"},
		{"other limits", hello{kind: kindHello, id: ident(2), maxFrame: 2 << 20, maxMessage: DefaultMaxMessage}, "limits differ"},
		{"welcome instead of hello", hello{kind: kindWelcome, id: ident(2), maxFrame: DefaultMaxFrame, maxMessage: DefaultMaxMessage}, "expected a hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, reply := rawDial(t, addr, tt.hello)
			if reply.kind != kindRefusal || !strings.Contains(reply.reason, tt.reason) {
				t.Fatalf("answer %+v, want a refusal with %q", reply, tt.reason)
			}
			if reply.id != ident(1) {
				t.Fatalf("refusal names %v, want the acceptor %v", reply.id, ident(1))
			}
			// A frame sent anyway must not reach the handler.
			nc.Write(appendFrame(nil, frameMsg, 0, 0, []byte("smuggled"), crc([]byte("smuggled"))))
			waitClosed(t, nc)
			// The acceptor logs after it closes: poll.
			var line string
			waitFor(t, 5*time.Second, "the refusal's log line", func() bool {
				line = findLine(logs.String(), "refused connection", "remote_addr="+nc.LocalAddr().String())
				return line != ""
			})
			for _, want := range []string{"level=WARN", fmt.Sprintf("id=%d", tt.hello.id.ID), "name=" + tt.hello.id.Name, fmt.Sprintf("cluster=%d", tt.hello.id.Cluster)} {
				if !strings.Contains(line, want) {
					t.Fatalf("log line %q lacks %q", line, want)
				}
			}
		})
	}

	// Not a handshake at all: closed without an answer, logged.
	t.Run("garbage", func(t *testing.T) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("x", 64)))
		waitClosed(t, nc)
		waitFor(t, 5*time.Second, "the garbage handshake's log line", func() bool {
			return findLine(logs.String(), "level=WARN", "bad handshake", "remote_addr="+nc.LocalAddr().String(), "bad handshake magic") != ""
		})
	})
	// A checksum that does not match.
	t.Run("bad checksum", func(t *testing.T) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		b := encodeHello(rawHello(ident(2), laneMain))
		b[len(b)-1] ^= 0xFF
		nc.Write(b)
		waitClosed(t, nc)
		waitFor(t, 5*time.Second, "the bad checksum's log line", func() bool {
			return findLine(logs.String(), "level=WARN", "bad handshake", "remote_addr="+nc.LocalAddr().String(), "checksum mismatch") != ""
		})
	})

	// The admitted member still gets through, and only its message
	// reaches the handler.
	n2, _ := tcpNode(t, 2, &recorder{}, addrs, nil)
	if !n2.Send(1, []byte("member")) {
		t.Fatal("Send dropped")
	}
	waitFor(t, 10*time.Second, "the member's message", func() bool { return rec.count() == 1 })
	if got := rec.snapshot(); len(got) != 1 || string(got[0].msg) != "member" {
		t.Fatalf("handler got %v", got)
	}
}

func findLine(logs string, subs ...string) string {
outer:
	for line := range strings.Lines(logs) {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue outer
			}
		}
		return line
	}
	return ""
}

// The dialer gets the refusal as ErrRefused (not delivered), and checks
// that the node it reached is the one it meant.
func TestDialerChecks(t *testing.T) {
	addrs := &addrBook{}
	n1, logs := tcpNode(t, 1, &recorder{}, addrs, nil)
	tcpNode(t, 2, &recorder{}, addrs, func(c *Config) {
		c.Admit = func(id Identity) error { return errors.New("go away") }
	})
	_, err := n1.Call(context.Background(), 2, []byte("x"))
	if ce := asCallError(t, err); !ce.NotDelivered || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "go away") {
		t.Fatalf("Call to a refusing node: %v", err)
	}
	// Node 3's address leads to node 4, which admits anyone.
	tcpNode(t, 4, &recorder{}, addrs, nil)
	addrs.set(3, addrs.get(4, ""))
	_, err = n1.Call(context.Background(), 3, []byte("x"))
	if ce := asCallError(t, err); !ce.NotDelivered || !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("Call to the wrong node: %v", err)
	}
	// The lane logs after it has failed the call: poll.
	waitFor(t, 5*time.Second, "a WARN log line for the wrong peer", func() bool {
		return findLine(logs.String(), "dial failed", "level=WARN", "id=3", "wrong peer") != ""
	})
	// A node of another cluster.
	other := &addrBook{}
	other.set(1, addrs.get(1, ""))
	n9, _ := tcpNode(t, 9, &recorder{}, other, func(c *Config) { c.Self.Cluster = 0xBAD })
	if _, err := n9.Call(context.Background(), 1, nil); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "wrong cluster") {
		t.Fatalf("Call from another cluster: %v", err)
	}
}

// admitted runs a valid handshake as node 2 against srv and returns the
// raw connection.
func admitted(t *testing.T, srv *TCP, ln lane) net.Conn {
	t.Helper()
	nc, reply := rawDial(t, srv.Addr().String(), rawHello(ident(2), ln))
	if reply.kind != kindWelcome {
		t.Fatalf("not admitted: %+v", reply)
	}
	nc.SetDeadline(time.Time{})
	return nc
}

// A frame that fails its checks closes the connection, with a log line
// naming the peer and the problem; an oversized length is refused before
// any allocation of that size.
func TestBadFrames(t *testing.T) {
	rec := &recorder{}
	srv, logs := tcpNode(t, 1, rec, &addrBook{}, nil)
	good := appendFrame(nil, frameMsg, 0, 0, []byte("hello"), crc([]byte("hello")))

	header := func(size uint32, typ uint8, id, arg uint64, sum uint32) []byte {
		return appendHeader(nil, frameHeader{size: size, typ: typ, id: id, arg: arg, sum: sum})
	}
	badPayload := bytes.Clone(good)
	badPayload[len(badPayload)-1] ^= 1
	badHeader := bytes.Clone(good)
	badHeader[10] ^= 1
	tests := []struct {
		name    string
		ln      lane
		data    []byte
		problem string
	}{
		{"payload checksum", laneMain, badPayload, "payload checksum mismatch"},
		{"header checksum", laneMain, badHeader, "frame header checksum mismatch"},
		{"oversized", laneMain, header(0xFFFFFFF0, frameMsg, 0, 0, 1), "over the frame limit"},
		{"one byte over", laneMain, header(DefaultMaxFrame+1, frameMsg, 0, 0, 1), "over the frame limit"},
		{"unknown type", laneMain, header(0, 42, 0, 0, 0), "unknown frame type 42"},
		{"reply from the dialer", laneMain, header(0, frameReply, 5, 0, 0), "unexpected reply frame"},
		{"message on the bulk lane", laneBulk, good, "unexpected message frame"},
		{"chunk that fits a frame", laneBulk, header(10, frameChunk, 1, 100<<32, crc(make([]byte, 10))), "fits one frame"},
		{"chunk not at 0", laneBulk, appendFrame(nil, frameChunk, 1, 5|(4<<20)<<32, []byte("x"), crc([]byte("x"))), "first chunk seen at offset 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := admitted(t, srv, tt.ln)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if _, err := nc.Write(tt.data); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, nc)
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Fatalf("%d bytes allocated while refusing the frame", grew)
			}
			waitFor(t, 5*time.Second, "the log line", func() bool {
				return findLine(logs.String(), "level=WARN", "closing accepted connection", "n2(id 2", tt.problem) != ""
			})
			if rec.count() != 0 {
				t.Fatalf("handler got %d messages", rec.count())
			}
		})
	}
	// The same connection with valid frames delivers.
	nc := admitted(t, srv, laneMain)
	nc.Write(good)
	waitFor(t, 5*time.Second, "a good frame", func() bool { return rec.count() == 1 })
}

// An admitted connection on which nothing arrives is closed after
// IdleTimeout; pings keep it open.
func TestIdleTimeout(t *testing.T) {
	srv, logs := tcpNode(t, 1, &recorder{}, &addrBook{}, func(c *Config) {
		c.KeepAlive, c.IdleTimeout = 50*time.Millisecond, 300*time.Millisecond
	})
	pinged := admitted(t, srv, laneMain)
	silent := admitted(t, srv, laneBulk)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				pinged.Write(appendHeader(nil, frameHeader{typ: framePing, id: i}))
			}
		}
	})
	start := time.Now()
	waitClosed(t, silent)
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", took)
	}
	waitFor(t, 5*time.Second, "the idle connection's log line", func() bool {
		return findLine(logs.String(), "level=WARN", "lane=bulk", "nothing read for the idle timeout") != ""
	})
	// The pinged one answers pongs and stays open.
	var hb [frameHeaderSize]byte
	pinged.SetReadDeadline(time.Now().Add(2 * time.Second))
	for range 10 {
		h, _, err := readFrame(pinged, &hb, DefaultMaxFrame)
		if err != nil || h.typ != framePong {
			t.Fatalf("pinged connection: %v, %v", h, err)
		}
	}
}

// 1000 small messages sent in a burst go out in far fewer writes.
func TestCoalescing(t *testing.T) {
	addrs := &addrBook{}
	rec := &recorder{}
	n1, _ := tcpNode(t, 1, &recorder{}, addrs, nil)
	tcpNode(t, 2, rec, addrs, nil)
	// Connect first, so the burst is not simply queued behind the dial.
	n1.Send(2, []byte("warm-up"))
	waitFor(t, 10*time.Second, "the warm-up message", func() bool { return rec.count() == 1 })
	before, _ := n1.PeerStats(2)
	const n = 1000
	msg := make([]byte, 100)
	for i := range n {
		binary.LittleEndian.PutUint32(msg, uint32(i))
		if !n1.Send(2, msg) {
			t.Fatalf("message %d dropped", i)
		}
	}
	waitFor(t, 10*time.Second, "every message", func() bool { return rec.count() == n+1 })
	// The writer counts a write once it returns, which may be after the
	// receiver has the bytes.
	var after PeerStats
	waitFor(t, 10*time.Second, "the stats", func() bool {
		after, _ = n1.PeerStats(2)
		return after.Frames-before.Frames >= n
	})
	writes, frames := after.Writes-before.Writes, after.Frames-before.Frames
	t.Logf("%d messages: %d frames in %d writes (%.1f per write), %d bytes", n, frames, writes, float64(frames)/float64(writes), after.Bytes-before.Bytes)
	if frames < n || writes > n/4 {
		t.Fatalf("%d frames in %d writes: want at least %d frames in at most %d writes", frames, writes, n, n/4)
	}
	if after.Sent-before.Sent != n || after.Dropped != 0 {
		t.Fatalf("stats %+v", after)
	}
}

// A failed dial fails queued calls as not delivered, and the backoff
// fails the next ones fast without dialing.
func TestDialFailureFailsFast(t *testing.T) {
	addrs := &addrBook{}
	n1, _ := tcpNode(t, 1, &recorder{}, addrs, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Second, 2*time.Second })
	// An address nobody listens on.
	ln := listenRetry(t, "127.0.0.1:0")
	addrs.set(2, ln.Addr().String())
	ln.Close()
	_, err := n1.Call(context.Background(), 2, []byte("x"))
	if ce := asCallError(t, err); !ce.NotDelivered || !errors.Is(err, freqd.ErrUnavailable) || !strings.Contains(err.Error(), "dial node 2") {
		t.Fatalf("Call to a dead address: %v", err)
	}
	start := time.Now()
	_, err = n1.Call(context.Background(), 2, []byte("x"))
	if ce := asCallError(t, err); !ce.NotDelivered || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second Call: %v after %v", err, time.Since(start))
	}
	if n1.Send(2, []byte("x")) {
		t.Fatal("Send during the backoff returned true")
	}
	st, _ := n1.PeerStats(2)
	if st.DialErrors != 1 || st.Dropped != 1 || st.Connected {
		t.Fatalf("stats %+v", st)
	}
}

// Calls beyond MaxCallsPerConn are refused unrun (ErrBusy); a reply over
// the frame limit comes back as an unknown outcome.
func TestBusyAndTooLarge(t *testing.T) {
	addrs := &addrBook{}
	n1, _ := tcpNode(t, 1, &recorder{}, addrs, nil)
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	tcpNode(t, 2, &recorder{onCall: func(ctx context.Context, _ Identity, req []byte) ([]byte, error) {
		switch string(req) {
		case "big":
			return make([]byte, DefaultMaxFrame+1), nil
		case "block":
			started.Done()
			<-release
		}
		return req, nil
	}}, addrs, func(c *Config) { c.MaxCallsPerConn = 2 })
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := n1.Call(context.Background(), 2, []byte("block"))
			errc <- err
		}()
	}
	started.Wait()
	_, err := n1.Call(context.Background(), 2, []byte("third"))
	if ce := asCallError(t, err); !ce.NotDelivered || !errors.Is(err, ErrBusy) {
		t.Fatalf("third call: %v", err)
	}
	close(release)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	_, err = n1.Call(context.Background(), 2, []byte("big"))
	if ce := asCallError(t, err); ce.NotDelivered || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("call with a huge reply: %v", err)
	}
	_, err = n1.Call(context.Background(), 2, make([]byte, DefaultMaxFrame+1))
	if ce := asCallError(t, err); !ce.NotDelivered || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("call with a huge request: %v", err)
	}
	if n1.Send(2, make([]byte, DefaultMaxMessage+1)) {
		t.Fatal("Send over MaxMessage returned true")
	}
}

// Disconnect drops a peer's state and connections; a later Send starts
// afresh.
func TestDisconnect(t *testing.T) {
	addrs := &addrBook{}
	r2 := &recorder{}
	n1, _ := tcpNode(t, 1, &recorder{}, addrs, nil)
	tcpNode(t, 2, r2, addrs, nil)
	n1.Send(2, []byte("a"))
	waitFor(t, 10*time.Second, "first message", func() bool { return r2.count() == 1 })
	n1.Disconnect(2)
	if _, ok := n1.PeerStats(2); ok {
		t.Fatal("stats survive Disconnect")
	}
	waitFor(t, 10*time.Second, "a message after Disconnect", func() bool {
		n1.Send(2, []byte("b"))
		return r2.has([]byte("b"))
	})
}

func TestConfigValidate(t *testing.T) {
	ln := listenRetry(t, "127.0.0.1:0")
	defer ln.Close()
	good := Config{Self: ident(1), Listener: ln, Resolve: (&addrBook{}).resolve, Handler: &recorder{}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Self = Identity{Name: "has space"}
	bad.Handler = nil
	bad.MaxFrame = 100
	bad.KeepAlive, bad.IdleTimeout = time.Second, time.Second
	err := bad.Validate()
	if !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Fatalf("Validate: %v", err)
	}
	for _, want := range []string{"cluster id is 0", "node id is 0", "no spaces", "Handler is required", "MaxFrame 100", "IdleTimeout 1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate's error lacks %q: %v", want, err)
		}
	}
	if _, err := NewTCP(bad); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Fatalf("NewTCP: %v", err)
	}
}

// gate holds the next Write of a gatedConn, once armed, until released.
type gate struct {
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func (g *gate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.entered, g.release = true, make(chan struct{}), make(chan struct{})
}

func (g *gate) pass() {
	g.mu.Lock()
	if !g.armed {
		g.mu.Unlock()
		return
	}
	g.armed = false
	entered, release := g.entered, g.release
	g.mu.Unlock()
	close(entered)
	<-release
}

type gatedConn struct {
	net.Conn
	g *gate
}

func (c *gatedConn) Write(b []byte) (int, error) {
	c.g.pass()
	return c.Conn.Write(b)
}

// Everything queued while a write is in progress goes out in the next
// single write: 1000 messages queued behind a stuck write cost one more
// write, exactly.
func TestCoalescingQueued(t *testing.T) {
	addrs := &addrBook{}
	rec := &recorder{}
	g := &gate{}
	n1, _ := tcpNode(t, 1, &recorder{}, addrs, func(c *Config) {
		c.KeepAlive, c.IdleTimeout = 10*time.Second, 30*time.Second // no pings in the count
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &gatedConn{nc, g}, nil
		}
	})
	tcpNode(t, 2, rec, addrs, nil)
	n1.Send(2, []byte("warm-up"))
	waitFor(t, 10*time.Second, "the warm-up message", func() bool { return rec.count() == 1 })

	g.arm()
	n1.Send(2, []byte("stuck"))
	<-g.entered // the writer is inside Write with "stuck"
	before, _ := n1.PeerStats(2)
	const n = 1000
	for i := range uint32(n) {
		if !n1.Send(2, seqMsg(i)) {
			t.Fatalf("message %d dropped", i)
		}
	}
	close(g.release)
	waitFor(t, 10*time.Second, "every message", func() bool { return rec.count() == n+2 })
	var after PeerStats
	waitFor(t, 10*time.Second, "the stats", func() bool {
		after, _ = n1.PeerStats(2)
		return after.Frames-before.Frames >= n+1
	})
	if w, f := after.Writes-before.Writes, after.Frames-before.Frames; w != 2 || f != n+1 {
		t.Fatalf("%d frames in %d writes after the stuck one; want %d in 2 (the stuck write and one batch)", f, w, n+1)
	}
	for i, d := range rec.snapshot()[2:] {
		if binary.LittleEndian.Uint32(d.msg) != uint32(i) {
			t.Fatalf("message %d out of order", i)
		}
	}
}
