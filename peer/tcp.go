package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var _ Transport = (*TCP)(nil)

// maxHandshakes bounds the accepted connections whose handshake is in
// progress; more are closed at once.
const maxHandshakes = 64

// maxSpare is the largest write buffer a writer keeps for reuse.
const maxSpare = 4 << 20

// TCP is the Transport over TCP, or over whatever Config.Listener and
// Config.Dial carry. The package doc describes its connections, wire
// format and goroutines.
type TCP struct {
	cfg   Config
	codec ErrorCodec
	log   *slog.Logger
	ln    net.Listener
	dial  func(ctx context.Context, addr string) (net.Conn, error)

	ctx        context.Context // canceled by Close: dials, handshakes and handlers end
	cancel     context.CancelFunc
	wg         sync.WaitGroup // every goroutine; Add only under mu while !closed
	handshakes chan struct{}  // semaphore: accepted connections in handshake

	// mu guards the fields below. It is never held while taking another
	// lock or doing I/O.
	mu      sync.Mutex
	closed  bool
	peers   map[uint64]*remote // outbound state, by node id
	inbound map[inKey]*inConn  // accepted connections, by node and lane
}

// remote is the outbound state for one peer: its two lanes and counters.
type remote struct {
	id    uint64
	stats peerStats
	main  *outLane
	bulk  *outLane
}

type inKey struct {
	id   uint64
	lane lane
}

// peerStats are a peer's outbound counters, updated atomically by the
// lanes and read by Stats.
type peerStats struct {
	sent, dropped, calls, frames, bytes, writes, dials, dialErrors atomic.Uint64
}

// PeerStats counts one peer's outbound traffic since the transport first
// sent to it.
type PeerStats struct {
	Sent       uint64 // messages Send queued
	Dropped    uint64 // messages Send refused, or queued and then lost with a failed dial or write
	Calls      uint64 // calls queued
	Frames     uint64 // frames written: messages, chunks, requests, cancels, pings
	Bytes      uint64 // bytes written, frame headers included
	Writes     uint64 // write calls on the connections (one per batch or chunk)
	Dials      uint64 // connections established, both lanes
	DialErrors uint64 // dials or handshakes that failed
	Connected  bool   // the main lane is connected now
}

// NewTCP starts a transport: it accepts on cfg.Listener at once and dials
// each peer when first sent to. It fails, wrapping
// freqd.ErrInvalidArgument, if cfg does not validate.
func NewTCP(cfg Config) (*TCP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t := &TCP{
		cfg:        cfg,
		codec:      cfg.ErrorCodec,
		log:        cfg.Logger,
		ln:         cfg.Listener,
		dial:       cfg.Dial,
		handshakes: make(chan struct{}, maxHandshakes),
		peers:      make(map[uint64]*remote),
		inbound:    make(map[inKey]*inConn),
	}
	if t.codec == nil {
		t.codec = plainCodec{}
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.dial == nil {
		d := &net.Dialer{}
		t.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.goroutine(t.acceptLoop)
	return t, nil
}

// Addr is the listener's address.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// goroutine runs f on a new goroutine that Close waits for, unless the
// transport is closed; it reports whether f was started.
func (t *TCP) goroutine(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// Send implements Transport.
func (t *TCP) Send(to uint64, msg []byte) bool {
	if len(msg) > t.cfg.MaxMessage {
		if p := t.existing(to); p != nil {
			p.stats.dropped.Add(1)
		}
		return false
	}
	p, err := t.peerFor(to)
	if err != nil {
		return false
	}
	if len(msg) <= t.cfg.MaxFrame {
		return p.main.sendMsg(msg)
	}
	return p.bulk.sendBulk(msg)
}

// Call implements Transport.
func (t *TCP) Call(ctx context.Context, to uint64, req []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, notDelivered(to, err)
	}
	if len(req) > t.cfg.MaxFrame {
		return nil, notDelivered(to, fmt.Errorf("%w: request of %d bytes over the frame limit %d", ErrTooLarge, len(req), t.cfg.MaxFrame))
	}
	p, err := t.peerFor(to)
	if err != nil {
		return nil, notDelivered(to, err)
	}
	return p.main.call(ctx, req)
}

// Close implements Transport. It closes the listener.
func (t *TCP) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	peers := make([]*remote, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	ins := make([]*inConn, 0, len(t.inbound))
	for _, ic := range t.inbound {
		ins = append(ins, ic)
	}
	t.mu.Unlock()

	t.cancel()
	err := t.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	for _, p := range peers {
		p.main.shutdown()
		p.bulk.shutdown()
	}
	for _, ic := range ins {
		ic.close(ErrClosed)
	}
	t.wg.Wait()
	return err
}

// Disconnect forgets node id: its queued messages are dropped, its
// pending calls fail, and its connections, both ways, are closed. A later
// Send or Call to id starts afresh. For a node that left the membership.
func (t *TCP) Disconnect(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	var ins []*inConn
	for k, ic := range t.inbound {
		if k.id == id {
			ins = append(ins, ic)
		}
	}
	t.mu.Unlock()
	if p != nil {
		p.main.shutdown()
		p.bulk.shutdown()
	}
	for _, ic := range ins {
		ic.close(errors.New("disconnected"))
	}
}

// Stats returns the counters of every peer sent to.
func (t *TCP) Stats() map[uint64]PeerStats {
	t.mu.Lock()
	ps := make([]*remote, 0, len(t.peers))
	for _, p := range t.peers {
		ps = append(ps, p)
	}
	t.mu.Unlock()
	out := make(map[uint64]PeerStats, len(ps))
	for _, p := range ps {
		out[p.id] = p.snapshot()
	}
	return out
}

// PeerStats returns node id's counters; false if nothing was sent to it.
func (t *TCP) PeerStats(id uint64) (PeerStats, bool) {
	p := t.existing(id)
	if p == nil {
		return PeerStats{}, false
	}
	return p.snapshot(), true
}

func (p *remote) snapshot() PeerStats {
	s := &p.stats
	return PeerStats{
		Sent: s.sent.Load(), Dropped: s.dropped.Load(), Calls: s.calls.Load(),
		Frames: s.frames.Load(), Bytes: s.bytes.Load(), Writes: s.writes.Load(),
		Dials: s.dials.Load(), DialErrors: s.dialErrors.Load(),
		Connected: p.main.connected(),
	}
}

func (t *TCP) existing(id uint64) *remote {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[id]
}

// peerFor returns the outbound state for node to, creating it (and
// starting its lanes' goroutines) if Resolve knows the node.
func (t *TCP) peerFor(to uint64) (*remote, error) {
	if p := t.existing(to); p != nil {
		return p, nil
	}
	if _, ok := t.cfg.Resolve(to); !ok {
		return nil, fmt.Errorf("%w %d", ErrNoAddress, to)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if p := t.peers[to]; p != nil {
		return p, nil
	}
	p := &remote{id: to}
	p.main = newOutLane(t, p, laneMain)
	p.bulk = newOutLane(t, p, laneBulk)
	t.peers[to] = p
	t.wg.Add(2)
	go func() { defer t.wg.Done(); p.main.run() }()
	go func() { defer t.wg.Done(); p.bulk.run() }()
	return p, nil
}

// acceptLoop accepts connections until the listener is closed, handing
// each to a goroutine of its own for the handshake and then the reads.
func (t *TCP) acceptLoop() {
	var delay time.Duration
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				t.log.Error("peer: listener closed under the transport; no longer accepting", "addr", t.ln.Addr().String())
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("peer: accept failed; retrying", "addr", t.ln.Addr().String(), "delay", delay, "err", err)
			if !sleepCtx(t.ctx, delay) {
				return
			}
			continue
		}
		delay = 0
		select {
		case t.handshakes <- struct{}{}:
		default:
			t.log.Warn("peer: too many handshakes in progress; closing connection", "remote_addr", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		if !t.goroutine(func() { t.serveAccepted(nc) }) {
			<-t.handshakes
			nc.Close()
			return
		}
	}
}

// sleepCtx waits d or until ctx is done; false if ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// serveAccepted runs the acceptor's side of the handshake and, if the
// peer is admitted, the connection's reader.
func (t *TCP) serveAccepted(nc net.Conn) {
	ic := t.handshakeIn(nc)
	<-t.handshakes
	if ic == nil {
		return
	}
	ic.read()
}

// handshakeIn reads the dialer's hello, checks it and answers with a
// welcome or a refusal. It returns the admitted connection, registered
// and with its writer running, or nil (the connection is then closed).
func (t *TCP) handshakeIn(nc net.Conn) *inConn {
	addr := nc.RemoteAddr().String()
	stop := context.AfterFunc(t.ctx, func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	h, err := readHello(nc)
	if err != nil {
		stop()
		nc.Close()
		if t.ctx.Err() == nil {
			t.log.Warn("peer: bad handshake; closing connection", "remote_addr", addr, "err", err)
		}
		return nil
	}
	var reason string
	switch {
	case h.kind != kindHello:
		reason = fmt.Sprintf("expected a hello, got handshake kind %d", h.kind)
	case h.id.Cluster != t.cfg.Self.Cluster:
		reason = fmt.Sprintf("wrong cluster %#x (this node is in %#x)", h.id.Cluster, t.cfg.Self.Cluster)
	case h.maxFrame != uint32(t.cfg.MaxFrame) || h.maxMessage != uint32(t.cfg.MaxMessage):
		reason = fmt.Sprintf("limits differ: max frame %d and max message %d (this node: %d and %d)", h.maxFrame, h.maxMessage, t.cfg.MaxFrame, t.cfg.MaxMessage)
	case t.cfg.Admit != nil:
		if err := t.cfg.Admit(h.id); err != nil {
			reason = "not admitted: " + err.Error()
		}
	}
	reply := hello{kind: kindWelcome, lane: h.lane, id: t.cfg.Self, maxFrame: uint32(t.cfg.MaxFrame), maxMessage: uint32(t.cfg.MaxMessage)}
	if reason != "" {
		reply.kind, reply.reason = kindRefusal, truncateReason(reason)
	}
	_, werr := nc.Write(encodeHello(reply))
	if !stop() || reason != "" || werr != nil {
		nc.Close()
		switch {
		case reason != "":
			t.log.Warn("peer: refused connection", "remote_addr", addr, "cluster", h.id.Cluster, "id", h.id.ID, "name", h.id.Name, "lane", h.lane.String(), "reason", reason)
		case werr != nil && t.ctx.Err() == nil:
			t.log.Warn("peer: handshake write failed", "remote_addr", addr, "peer", h.id.String(), "err", werr)
		}
		return nil
	}
	nc.SetDeadline(time.Time{})

	ic := newInConn(t, nc, h.id, h.lane)
	key := inKey{h.id.ID, h.lane}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		nc.Close()
		return nil
	}
	old := t.inbound[key]
	t.inbound[key] = ic
	t.wg.Add(1)
	go func() { defer t.wg.Done(); ic.write() }()
	t.mu.Unlock()
	if old != nil {
		// A peer redials only once it has given its last connection up:
		// the old one is half-open or draining. Wait for its reader so
		// that nothing from it is delivered after the new one's first
		// message (order per peer).
		old.close(errors.New("replaced by a new connection from the peer"))
		<-old.readerDone
	}
	t.log.Debug("peer: accepted connection", "remote_addr", addr, "peer", h.id.String(), "lane", h.lane.String())
	return ic
}

// logConnErr logs why a connection ended: protocol errors and timeouts at
// WARN (they name a broken or stuck peer), the rest at DEBUG.
func (t *TCP) logConnErr(msg string, id Identity, addr string, ln lane, err error) {
	if t.ctx.Err() != nil || errors.Is(err, ErrClosed) {
		return
	}
	level := slog.LevelDebug
	if errors.Is(err, ErrProtocol) || errors.Is(err, errIdle) {
		level = slog.LevelWarn
	}
	t.log.Log(context.Background(), level, msg, "peer", id.String(), "remote_addr", addr, "lane", ln.String(), "err", err)
}

// errIdle is why a connection on which nothing was read for IdleTimeout
// is closed.
var errIdle = errors.New("nothing read for the idle timeout")

// readErr names a read deadline's expiry.
func readErr(err error, idle time.Duration) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%v)", errIdle, idle)
	}
	return err
}
