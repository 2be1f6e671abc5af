package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/freqd/freqd"
)

// cluster starts the nodes of one conformance test. Node ids 1..9 are
// members; any other id is unknown.
type cluster interface {
	// start starts node id (again, after stop: a restart on the same
	// address) with handler h.
	start(t *testing.T, id uint64, h Handler) Transport
	// stop closes node id's transport.
	stop(id uint64)
}

type clusterOpts struct {
	queueBytes int // per-peer main-lane queue bound; 0: default
}

type factory func(t *testing.T, o clusterOpts) cluster

func TestConformance(t *testing.T) {
	for _, f := range []struct {
		name string
		new  factory
	}{
		{"tcp", newTCPCluster},
		{"mem", newMemCluster},
	} {
		t.Run(f.name, func(t *testing.T) { runConformance(t, f.new) })
	}
}

func runConformance(t *testing.T, newCluster factory) {
	t.Run("OrderedDelivery", func(t *testing.T) { testOrderedDelivery(t, newCluster) })
	t.Run("UnknownPeer", func(t *testing.T) { testUnknownPeer(t, newCluster) })
	t.Run("CallRoundTrip", func(t *testing.T) { testCallRoundTrip(t, newCluster) })
	t.Run("RemoteError", func(t *testing.T) { testRemoteError(t, newCluster) })
	t.Run("CallDeadline", func(t *testing.T) { testCallDeadline(t, newCluster) })
	t.Run("CallCancel", func(t *testing.T) { testCallCancel(t, newCluster) })
	t.Run("BigMessage", func(t *testing.T) { testBigMessage(t, newCluster) })
	t.Run("Reconnect", func(t *testing.T) { testReconnect(t, newCluster) })
	t.Run("QueueFull", func(t *testing.T) { testQueueFull(t, newCluster) })
	t.Run("Close", func(t *testing.T) { testClose(t, newCluster) })
}

func seqMsg(i uint32) []byte { return binary.LittleEndian.AppendUint32(nil, i) }

// Messages from each peer arrive in the order sent, both ways at once.
func testOrderedDelivery(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	r1, r2 := &recorder{}, &recorder{}
	n1, n2 := c.start(t, 1, r1), c.start(t, 2, r2)
	const n = 3000
	var wg sync.WaitGroup
	for _, p := range []struct {
		from Transport
		to   uint64
	}{{n1, 2}, {n2, 1}} {
		wg.Go(func() {
			for i := range uint32(n) {
				if !p.from.Send(p.to, seqMsg(i)) {
					t.Errorf("Send %d to %d dropped", i, p.to)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, r := range []*recorder{r1, r2} {
		waitFor(t, 10*time.Second, "every message", func() bool { return r.count() >= n })
		for i, d := range r.snapshot() {
			if got := binary.LittleEndian.Uint32(d.msg); got != uint32(i) {
				t.Fatalf("message %d is %d: out of order", i, got)
			}
		}
	}
	if got := r2.snapshot()[0].from; got != ident(1) {
		t.Fatalf("from = %v, want %v", got, ident(1))
	}
}

func testUnknownPeer(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	n1 := c.start(t, 1, &recorder{})
	if n1.Send(99, []byte("x")) {
		t.Fatal("Send to an unknown node returned true")
	}
	_, err := n1.Call(context.Background(), 99, []byte("x"))
	ce := asCallError(t, err)
	if !ce.NotDelivered || !errors.Is(err, ErrNoAddress) || !errors.Is(err, freqd.ErrUnavailable) {
		t.Fatalf("Call to an unknown node: %v (not delivered %v)", err, ce.NotDelivered)
	}
}

// Many concurrent calls each get their own reply.
func testCallRoundTrip(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	r2 := &recorder{onCall: func(_ context.Context, from Identity, req []byte) ([]byte, error) {
		return append([]byte(from.Name+":"), req...), nil
	}}
	n1 := c.start(t, 1, &recorder{})
	c.start(t, 2, r2)
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 25 {
				req := fmt.Appendf(nil, "req-%d-%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				reply, err := n1.Call(ctx, 2, req)
				cancel()
				if err != nil {
					t.Errorf("Call: %v", err)
					return
				}
				if want := append([]byte("n1:"), req...); !bytes.Equal(reply, want) {
					t.Errorf("reply %q, want %q", reply, want)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := r2.callCount(); got != 500 {
		t.Fatalf("handler ran %d times, want 500", got)
	}
	// An empty request is fine. (The hooks are never changed once traffic
	// flows: the race detector cannot see the order a socket gives.)
	if reply, err := n1.Call(context.Background(), 2, nil); err != nil || string(reply) != "n1:" {
		t.Fatalf("empty call: %q, %v", reply, err)
	}
}

// A handler's error comes back as a *RemoteError whose code the codecs
// map to the same sentinel.
func testRemoteError(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	n1 := c.start(t, 1, &recorder{})
	c.start(t, 2, &recorder{onCall: func(_ context.Context, _ Identity, req []byte) ([]byte, error) {
		if string(req) == "plain" {
			return []byte("ignored"), errors.New("no sentinel here")
		}
		return nil, fmt.Errorf("partition 7: %w", freqd.ErrNotOwner)
	}})
	_, err := n1.Call(context.Background(), 2, []byte("x"))
	var re *RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *RemoteError", err, err)
	}
	if re.Code != 1 || re.From != 2 || re.Message != "partition 7: freqd: node does not lead the partition" {
		t.Fatalf("remote error %+v", re)
	}
	if !errors.Is(err, freqd.ErrNotOwner) || errors.Is(err, freqd.ErrUnavailable) {
		t.Fatalf("errors.Is across the hop: %v", err)
	}
	var ce *CallError
	if errors.As(err, &ce) {
		t.Fatalf("a handler's error came back as a CallError: %v", err)
	}
	reply, err := n1.Call(context.Background(), 2, []byte("plain"))
	if !errors.As(err, &re) || re.Code != 0 || re.Err != nil || re.Message != "no sentinel here" || reply != nil {
		t.Fatalf("plain error: %q, %v", reply, err)
	}
}

// The caller's deadline is the handler's; a call that outlives it ends
// with an unknown outcome and a canceled handler.
func testCallDeadline(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	handlerDone := make(chan error, 1)
	// The blocking handler answers only once the caller has returned, so
	// that the caller's own deadline (not the handler's error, racing it)
	// ends the call.
	callerBack := make(chan struct{})
	n1 := c.start(t, 1, &recorder{})
	c.start(t, 2, &recorder{onCall: func(ctx context.Context, _ Identity, req []byte) ([]byte, error) {
		if string(req) == "deadline?" {
			d, ok := ctx.Deadline()
			if !ok {
				return []byte("none"), nil
			}
			return []byte(time.Until(d).String()), nil
		}
		<-ctx.Done()
		handlerDone <- ctx.Err()
		<-callerBack
		return nil, ctx.Err()
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	reply, err := n1.Call(ctx, 2, []byte("deadline?"))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	left, err := time.ParseDuration(string(reply))
	if err != nil {
		t.Fatalf("handler saw no deadline: %q", reply)
	}
	if left <= time.Second || left > 3*time.Second {
		t.Fatalf("handler's deadline is %v away, want about 3s", left)
	}
	if reply, err := n1.Call(context.Background(), 2, []byte("deadline?")); err != nil || string(reply) != "none" {
		t.Fatalf("no deadline: %q, %v", reply, err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = n1.Call(ctx, 2, []byte("block"))
	close(callerBack)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Call took %v past a 200ms deadline", took)
	}
	ce := asCallError(t, err)
	if ce.NotDelivered || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, freqd.ErrOutcomeUnknown) {
		t.Fatalf("call past its deadline: %v", err)
	}
	select {
	case herr := <-handlerDone:
		// Its own deadline, or the caller's cancel when the caller's
		// deadline (reached first: the callee's clock starts later) ended
		// the call.
		if !errors.Is(herr, context.DeadlineExceeded) && !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler's ctx ended with %v", herr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler's ctx never ended")
	}

	// A deadline already passed: not delivered, handler not run.
	ctx, cancel = context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	_, err = n1.Call(ctx, 2, []byte("block"))
	if ce := asCallError(t, err); !ce.NotDelivered {
		t.Fatalf("call with a passed deadline: %v", err)
	}
}

// A caller that gives up cancels the handler's ctx.
func testCallCancel(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	started := make(chan struct{}, 1)
	handlerDone := make(chan error, 1)
	n1 := c.start(t, 1, &recorder{})
	c.start(t, 2, &recorder{onCall: func(ctx context.Context, _ Identity, _ []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		handlerDone <- ctx.Err()
		return nil, ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := n1.Call(ctx, 2, []byte("x"))
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never started")
	}
	cancel()
	err := <-errc
	if ce := asCallError(t, err); ce.NotDelivered || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled call: %v", err)
	}
	select {
	case herr := <-handlerDone:
		if !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler's ctx ended with %v", herr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the caller's cancel never reached the handler")
	}
}

// A 20 MiB message arrives intact through the bulk lane; small messages
// keep flowing while the bulk lane is stuck (its receiver blocked in the
// handler with a second large message queued behind).
func testBigMessage(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	// The first big message blocks the handler (so the bulk lane's reader)
	// until release; the recorder records after onMsg returns.
	release, entered := make(chan struct{}), make(chan struct{})
	var blockOnce, releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // never leave the handler blocked on failure
	r2 := &recorder{onMsg: func(_ Identity, msg []byte) {
		if len(msg) > DefaultMaxFrame {
			blockOnce.Do(func() { close(entered); <-release })
		}
	}}
	big := make([][]byte, 2)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = make([]byte, 20<<20+i*12345)
		for j := range big[i] {
			big[i][j] = byte(rng.Uint32())
		}
	}
	n1 := c.start(t, 1, &recorder{})
	c.start(t, 2, r2)
	if !n1.Send(2, big[0]) {
		t.Fatal("Send of the first big message dropped")
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("first big message never arrived")
	}
	if !n1.Send(2, big[1]) {
		t.Fatal("Send of the second big message dropped")
	}
	for i := range uint32(200) {
		if !n1.Send(2, seqMsg(i)) {
			t.Fatalf("small message %d dropped", i)
		}
	}
	waitFor(t, 10*time.Second, "small messages while the bulk lane is stuck", func() bool { return r2.count() >= 200 })
	unblock()
	waitFor(t, 30*time.Second, "both big messages", func() bool { return r2.count() >= 202 })
	var bigs [][]byte
	small := uint32(0)
	for _, d := range r2.snapshot() {
		if len(d.msg) > DefaultMaxFrame {
			bigs = append(bigs, d.msg)
			continue
		}
		if got := binary.LittleEndian.Uint32(d.msg); got != small {
			t.Fatalf("small message %d is %d", small, got)
		}
		small++
	}
	if len(bigs) != 2 || !bytes.Equal(bigs[0], big[0]) || !bytes.Equal(bigs[1], big[1]) {
		t.Fatalf("big messages damaged or out of order (%d received)", len(bigs))
	}
}

// After a peer restarts on the same address, messages and calls reach
// the new incarnation.
func testReconnect(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	r2 := &recorder{}
	n1 := c.start(t, 1, &recorder{})
	c.start(t, 2, r2)
	if !n1.Send(2, []byte("before")) {
		t.Fatal("Send dropped")
	}
	waitFor(t, 10*time.Second, "first message", func() bool { return r2.count() == 1 })
	c.stop(2)
	r2b := &recorder{}
	c.start(t, 2, r2b)
	waitFor(t, 20*time.Second, "a message to the restarted node", func() bool {
		n1.Send(2, []byte("after"))
		return r2b.count() > 0
	})
	waitFor(t, 20*time.Second, "a call to the restarted node", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		reply, err := n1.Call(ctx, 2, []byte("ping"))
		return err == nil && string(reply) == "ping"
	})
}

// A receiver that stops reading fills the sender's queue: Send then
// returns false, and recovers once the receiver reads again.
func testQueueFull(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{queueBytes: 2 << 20})
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	r2 := &recorder{onMsg: func(_ Identity, msg []byte) {
		if string(msg) != "marker" {
			<-release
		}
	}}
	n1 := c.start(t, 1, &recorder{})
	c.start(t, 2, r2)
	msg := make([]byte, 64<<10)
	dropped := false
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 200000 && time.Now().Before(deadline); i++ {
		if !n1.Send(2, msg) {
			dropped = true
			break
		}
	}
	if !dropped {
		t.Fatal("Send never reported a full queue")
	}
	if tcp, ok := n1.(*TCP); ok {
		if st, _ := tcp.PeerStats(2); st.Dropped == 0 {
			t.Fatalf("stats show no drop: %+v", st)
		}
	}
	unblock()
	waitFor(t, 20*time.Second, "delivery to resume", func() bool {
		n1.Send(2, []byte("marker"))
		return r2.has([]byte("marker"))
	})
}

// Close ends pending calls on both sides, stops every goroutine, and
// the transport refuses work afterwards.
func testClose(t *testing.T, newCluster factory) {
	c := newCluster(t, clusterOpts{})
	var running sync.WaitGroup
	n1 := c.start(t, 1, &recorder{})
	c.start(t, 2, &recorder{onCall: func(ctx context.Context, _ Identity, _ []byte) ([]byte, error) {
		running.Done()
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	const calls = 5
	running.Add(calls)
	errc := make(chan error, calls)
	for range calls {
		go func() {
			_, err := n1.Call(context.Background(), 2, []byte("wait"))
			errc <- err
		}()
	}
	running.Wait() // every handler is running
	for range 10 {
		n1.Send(2, []byte("m"))
	}
	c.stop(2) // the callee closes: its handlers see ctx canceled
	for range calls {
		select {
		case err := <-errc:
			if ce := asCallError(t, err); ce.NotDelivered || !errors.Is(err, ErrConnLost) {
				t.Fatalf("call to a node that closed: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a call outlived the callee's Close")
		}
	}
	c.stop(1)
	if n1.Send(2, []byte("late")) {
		t.Fatal("Send after Close returned true")
	}
	_, err := n1.Call(context.Background(), 2, []byte("late"))
	if ce := asCallError(t, err); !ce.NotDelivered || !errors.Is(err, ErrClosed) {
		t.Fatalf("Call after Close: %v", err)
	}
	if err := n1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	goleak.VerifyNone(t)
}

// tcpCluster runs nodes on 127.0.0.1, each restart on its first address.
type tcpCluster struct {
	o   clusterOpts
	log *logBuf

	mu    sync.Mutex
	addrs map[uint64]string
	nodes map[uint64]*TCP
}

func newTCPCluster(t *testing.T, o clusterOpts) cluster {
	c := &tcpCluster{o: o, log: &logBuf{}, addrs: make(map[uint64]string), nodes: make(map[uint64]*TCP)}
	t.Cleanup(func() {
		c.mu.Lock()
		nodes := c.nodes
		c.nodes = nil
		c.mu.Unlock()
		for _, n := range nodes {
			n.Close()
		}
		if t.Failed() {
			t.Logf("transport log:\n%s", c.log.String())
		}
	})
	return c
}

func (c *tcpCluster) resolve(id uint64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.addrs[id]
	return a, ok
}

func (c *tcpCluster) start(t *testing.T, id uint64, h Handler) Transport {
	t.Helper()
	c.mu.Lock()
	addr, ok := c.addrs[id]
	c.mu.Unlock()
	if !ok {
		addr = "127.0.0.1:0"
	}
	ln := listenRetry(t, addr)
	c.mu.Lock()
	c.addrs[id] = ln.Addr().String()
	c.mu.Unlock()
	tr, err := NewTCP(Config{
		Self:        ident(id),
		Listener:    ln,
		Resolve:     c.resolve,
		Handler:     h,
		ErrorCodec:  testCodec{},
		Logger:      c.log.logger().With("node", id),
		QueueBytes:  c.o.queueBytes,
		BackoffMin:  10 * time.Millisecond,
		BackoffMax:  200 * time.Millisecond,
		KeepAlive:   500 * time.Millisecond,
		IdleTimeout: 20 * time.Second,
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes[id] = tr
	c.mu.Unlock()
	return tr
}

func (c *tcpCluster) stop(id uint64) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

// listenRetry binds addr, retrying while the port is still in use.
func listenRetry(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	waitFor(t, 10*time.Second, "listening on "+addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		if err != nil && !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
		return err == nil
	})
	return ln
}

// memCluster runs nodes on a real-time MemNetwork without faults.
type memCluster struct {
	net *MemNetwork

	mu    sync.Mutex
	nodes map[uint64]Transport
}

func newMemCluster(t *testing.T, o clusterOpts) cluster {
	c := &memCluster{net: NewMemNetwork(1), nodes: make(map[uint64]Transport)}
	c.net.SetErrorCodec(testCodec{})
	c.net.SetQueueBytes(o.queueBytes)
	t.Cleanup(func() {
		c.mu.Lock()
		nodes := c.nodes
		c.nodes = nil
		c.mu.Unlock()
		for _, n := range nodes {
			n.Close()
		}
	})
	return c
}

func (c *memCluster) start(_ *testing.T, id uint64, h Handler) Transport {
	tr := c.net.Transport(ident(id), h)
	c.mu.Lock()
	c.nodes[id] = tr
	c.mu.Unlock()
	return tr
}

func (c *memCluster) stop(id uint64) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}
