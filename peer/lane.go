package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// outLane is one lane (main or bulk) of the outbound state for a peer:
// a bounded queue filled by Send and Call, and one goroutine (run) that
// dials when there is work, writes everything queued in batches, and
// redials after a failure.
type outLane struct {
	t      *TCP
	p      *remote
	kind   lane
	ctx    context.Context // canceled by shutdown; bounds dials
	cancel context.CancelFunc
	kick   chan struct{} // buffered 1: work was queued

	// mu guards every field below.
	mu        sync.Mutex
	closed    bool
	buf       []byte           // main: encoded message and cancel frames not yet taken
	bufMsgs   int              // messages in buf
	bufFrames int              // frames in buf
	calls     []*call          // main: requests not yet taken, in order
	bulk      [][]byte         // bulk: messages not yet taken (copies), in order
	qbytes    int              // bytes queued in buf, calls and bulk
	sent      map[uint64]*call // main: calls written on cur, awaiting replies
	cur       *outConn         // the live connection, nil if none
	nextID    uint64           // last call or message id used on this lane
	backoff   time.Duration    // the last backoff; 0 after a healthy connection
	until     time.Time        // Send and Call fail fast before it
	lastErr   error            // why: the failed dial
	failures  int              // consecutive failed dials (the first is logged at WARN)
}

func newOutLane(t *TCP, p *remote, kind lane) *outLane {
	l := &outLane{t: t, p: p, kind: kind, kick: make(chan struct{}, 1), sent: make(map[uint64]*call)}
	l.ctx, l.cancel = context.WithCancel(t.ctx)
	return l
}

// call is one Call in flight.
type call struct {
	id       uint64
	frame    []byte    // the encoded call frame; the writer sets its deadline
	sum      uint32    // crc of the request
	deadline time.Time // zero: none
	done     <-chan struct{}
	state    callState       // guarded by the lane's mu
	res      chan callResult // buffered 1; gets exactly one result
}

type callState uint8

const (
	callQueued callState = iota
	callSent
	callDone
)

type callResult struct {
	reply []byte
	err   error
}

// finish delivers c's result unless it has one. l.mu must be held.
func (l *outLane) finish(c *call, r callResult) {
	if c.state == callDone {
		return
	}
	if c.state == callSent {
		delete(l.sent, c.id)
	}
	c.state = callDone
	c.res <- r
}

func (l *outLane) connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur != nil
}

// refuseLocked says why nothing of need bytes can be queued now, or nil.
func (l *outLane) refuseLocked(need, limit int) error {
	switch {
	case l.closed:
		return ErrClosed
	case !l.until.IsZero() && time.Now().Before(l.until):
		return l.lastErr
	case l.qbytes > 0 && l.qbytes+need > limit:
		return fmt.Errorf("%w: %d bytes queued for node %d", ErrQueueFull, l.qbytes, l.p.id)
	}
	return nil
}

// sendMsg queues one message of up to MaxFrame bytes.
func (l *outLane) sendMsg(msg []byte) bool {
	sum := crc(msg)
	need := frameHeaderSize + len(msg)
	l.mu.Lock()
	if l.refuseLocked(need, l.t.cfg.QueueBytes) != nil {
		l.mu.Unlock()
		l.p.stats.dropped.Add(1)
		return false
	}
	l.buf = appendFrame(l.buf, frameMsg, 0, 0, msg, sum)
	l.bufMsgs++
	l.bufFrames++
	l.qbytes += need
	l.mu.Unlock()
	l.p.stats.sent.Add(1)
	signal(l.kick)
	return true
}

// sendBulk queues one message over MaxFrame bytes for the bulk lane.
func (l *outLane) sendBulk(msg []byte) bool {
	l.mu.Lock()
	if l.refuseLocked(len(msg), l.t.cfg.BulkQueueBytes) != nil {
		l.mu.Unlock()
		l.p.stats.dropped.Add(1)
		return false
	}
	l.mu.Unlock()
	// Copy outside the lock; the queue may have moved on meanwhile,
	// which only matters for the bound, checked again.
	cp := append([]byte(nil), msg...)
	l.mu.Lock()
	if l.refuseLocked(len(msg), l.t.cfg.BulkQueueBytes) != nil {
		l.mu.Unlock()
		l.p.stats.dropped.Add(1)
		return false
	}
	l.bulk = append(l.bulk, cp)
	l.qbytes += len(cp)
	l.mu.Unlock()
	l.p.stats.sent.Add(1)
	signal(l.kick)
	return true
}

// call queues a request and waits for its result.
func (l *outLane) call(ctx context.Context, req []byte) ([]byte, error) {
	to := l.p.id
	c := &call{sum: crc(req), done: ctx.Done(), res: make(chan callResult, 1)}
	c.deadline, _ = ctx.Deadline()
	frame := appendFrame(make([]byte, 0, frameHeaderSize+len(req)), frameCall, 0, 0, req, c.sum)
	l.mu.Lock()
	if err := l.refuseLocked(len(frame), l.t.cfg.QueueBytes); err != nil {
		l.mu.Unlock()
		return nil, notDelivered(to, err)
	}
	l.nextID++
	c.id = l.nextID
	c.frame = frame
	l.calls = append(l.calls, c)
	l.qbytes += len(frame)
	l.mu.Unlock()
	l.p.stats.calls.Add(1)
	signal(l.kick)

	select {
	case r := <-c.res:
		return r.reply, r.err
	case <-ctx.Done():
	}
	l.mu.Lock()
	switch c.state {
	case callQueued:
		for i, q := range l.calls {
			if q == c {
				l.calls = append(l.calls[:i], l.calls[i+1:]...)
				l.qbytes -= len(c.frame)
				break
			}
		}
		l.finish(c, callResult{err: notDelivered(to, ctx.Err())})
	case callSent:
		// Tell the callee to cancel its handler; best effort.
		l.finish(c, callResult{err: outcomeUnknown(to, ctx.Err())})
		if l.cur != nil { // a new connection has no such call
			l.buf = appendFrame(l.buf, frameCancel, c.id, 0, nil, 0)
			l.bufFrames++
		}
	}
	l.mu.Unlock()
	signal(l.kick)
	r := <-c.res
	return r.reply, r.err
}

// shutdown stops the lane for good: queued work fails, the connection
// closes, the goroutine exits.
func (l *outLane) shutdown() {
	l.cancel()
	l.mu.Lock()
	l.closed = true
	l.failQueuedLocked(ErrClosed)
	cur := l.cur
	l.mu.Unlock()
	if cur != nil {
		cur.fail(ErrClosed)
	}
}

// failQueuedLocked fails every queued call as not delivered and drops
// every queued message. l.mu must be held.
func (l *outLane) failQueuedLocked(err error) {
	for _, c := range l.calls {
		l.finish(c, callResult{err: notDelivered(l.p.id, err)})
	}
	l.p.stats.dropped.Add(uint64(l.bufMsgs + len(l.bulk)))
	clear(l.calls)
	clear(l.bulk)
	l.calls, l.bulk, l.buf = l.calls[:0], l.bulk[:0], l.buf[:0]
	l.bufMsgs, l.bufFrames, l.qbytes = 0, 0, 0
}

func (l *outLane) hasWorkLocked() bool {
	return l.bufFrames > 0 || len(l.calls) > 0 || len(l.bulk) > 0
}

// waitWork blocks until something is queued; false once shut down.
func (l *outLane) waitWork() bool {
	for {
		l.mu.Lock()
		closed, work := l.closed, l.hasWorkLocked()
		l.mu.Unlock()
		if closed {
			return false
		}
		if work {
			return true
		}
		select {
		case <-l.ctx.Done():
			return false
		case <-l.kick:
		}
	}
}

// run is the lane's goroutine.
func (l *outLane) run() {
	t := l.t
	for l.waitWork() {
		oc, err := t.dialPeer(l.ctx, l.p.id, l.kind)
		if err != nil {
			l.dialFailed(err)
			continue
		}
		oc.l = l
		l.p.stats.dials.Add(1)
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			oc.nc.Close()
			return
		}
		if l.failures > 0 {
			t.log.Info("peer: connected after failures", "peer", oc.remote.String(), "lane", l.kind.String(), "failures", l.failures)
		}
		l.cur, l.failures, l.until, l.lastErr = oc, 0, time.Time{}, nil
		l.mu.Unlock()
		t.log.Debug("peer: connected", "peer", oc.remote.String(), "remote_addr", oc.addr, "lane", l.kind.String())

		if !t.goroutine(oc.read) {
			close(oc.readerDone)
			oc.fail(ErrClosed)
			return
		}
		var werr error
		if l.kind == laneMain {
			werr = l.writeMain(oc)
		} else {
			werr = l.writeBulk(oc)
		}
		oc.fail(werr)
		<-oc.readerDone
		// A connection that died young (the peer accepts and drops us)
		// is redialed after a growing pause; a healthy one at once.
		if time.Since(oc.started) < t.cfg.BackoffMax {
			// Meanwhile Send and Call fail fast, as after a failed dial:
			// a caller routes elsewhere instead of waiting for the redial.
			l.mu.Lock()
			d := l.nextBackoffLocked()
			if werr == nil {
				werr = errors.New("connection lost")
			}
			l.until, l.lastErr = time.Now().Add(d), werr
			l.failQueuedLocked(werr)
			l.mu.Unlock()
			if !sleepCtx(l.ctx, d) {
				return
			}
		} else {
			l.mu.Lock()
			l.backoff = 0
			l.mu.Unlock()
		}
	}
}

// nextBackoffLocked doubles the backoff and returns it with jitter.
func (l *outLane) nextBackoffLocked() time.Duration {
	cfg := &l.t.cfg
	l.backoff = min(max(2*l.backoff, cfg.BackoffMin), cfg.BackoffMax)
	return l.backoff/2 + rand.N(l.backoff/2+1)
}

// dialFailed fails the queued work and starts the backoff.
func (l *outLane) dialFailed(err error) {
	t := l.t
	if l.ctx.Err() != nil {
		return // shut down mid-dial: not a failure of the peer
	}
	l.p.stats.dialErrors.Add(1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	d := l.nextBackoffLocked()
	l.until, l.lastErr = time.Now().Add(d), err
	l.failures++
	first := l.failures == 1
	l.failQueuedLocked(err)
	l.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	t.log.Log(context.Background(), level, "peer: dial failed", "id", l.p.id, "lane", l.kind.String(), "retry_after", d, "err", err)
}

// take hands the writer what is queued on the main lane, appended to b:
// the message and cancel frames, then each request (its deadline set
// now); the requests move to sent. ok is false if oc is no longer the
// lane's connection.
func (l *outLane) take(oc *outConn, b []byte) (out []byte, msgs, frames int, ok bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != oc {
		return b, 0, 0, false
	}
	// The writer's last buffer becomes the queue; the queue becomes the
	// batch, the writer's until its write is done.
	out, msgs, frames = l.buf, l.bufMsgs, l.bufFrames
	l.buf = b[:0]
	for _, c := range l.calls {
		var arg uint64
		if !c.deadline.IsZero() {
			left := c.deadline.Sub(now)
			if left <= 0 {
				l.finish(c, callResult{err: notDelivered(l.p.id, context.DeadlineExceeded)})
				continue
			}
			arg = uint64(left)
		}
		select {
		case <-c.done:
			l.finish(c, callResult{err: notDelivered(l.p.id, context.Canceled)})
			continue
		default:
		}
		off := len(out)
		out = append(out, c.frame...)
		putHeader(out[off:], frameHeader{size: uint32(len(c.frame) - frameHeaderSize), typ: frameCall, id: c.id, arg: arg, sum: c.sum})
		c.state = callSent
		l.sent[c.id] = c
		frames++
	}
	clear(l.calls)
	l.calls = l.calls[:0]
	l.bufMsgs, l.bufFrames, l.qbytes = 0, 0, 0
	return out, msgs, frames, true
}

// writeMain is the main lane's writer while oc is up: on each wake-up it
// takes everything queued and writes it with one write call.
func (l *outLane) writeMain(oc *outConn) error {
	t := l.t
	tick := time.NewTicker(t.cfg.KeepAlive)
	defer tick.Stop()
	var spare []byte
	var pings uint64
	signal(l.kick) // waitWork took the kick for what is queued already
	for {
		ping := false
		select {
		case <-l.ctx.Done():
			return ErrClosed
		case <-oc.dead:
			return nil
		case <-l.kick:
		case <-tick.C:
			ping = true
		}
		b, msgs, frames, ok := l.take(oc, spare)
		if !ok {
			return nil
		}
		if ping {
			pings++
			b = appendFrame(b, framePing, pings, 0, nil, 0)
			frames++
		}
		if len(b) == 0 {
			spare = b
			continue
		}
		if err := oc.write(net.Buffers{b}, frames); err != nil {
			l.p.stats.dropped.Add(uint64(msgs))
			return err
		}
		if cap(b) <= maxSpare {
			spare = b[:0]
		} else {
			spare = nil
		}
	}
}

// takeBulk pops the next bulk message, or nil.
func (l *outLane) takeBulk(oc *outConn) (msg []byte, id uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != oc {
		return nil, 0, false
	}
	if len(l.bulk) == 0 {
		return nil, 0, true
	}
	msg = l.bulk[0]
	l.bulk[0] = nil
	l.bulk = l.bulk[1:]
	l.qbytes -= len(msg)
	l.nextID++
	return msg, l.nextID, true
}

// writeBulk is the bulk lane's writer while oc is up: it writes each
// queued message as chunks of MaxFrame bytes, one write call per chunk,
// with pings in between.
func (l *outLane) writeBulk(oc *outConn) error {
	t := l.t
	tick := time.NewTicker(t.cfg.KeepAlive)
	defer tick.Stop()
	var hdr [frameHeaderSize]byte
	var pings uint64
	ping := func() error {
		pings++
		putHeader(hdr[:], frameHeader{typ: framePing, id: pings})
		return oc.write(net.Buffers{hdr[:]}, 1)
	}
	signal(l.kick) // waitWork took the kick for what is queued already
	for {
		select {
		case <-l.ctx.Done():
			return ErrClosed
		case <-oc.dead:
			return nil
		case <-l.kick:
		case <-tick.C:
			if err := ping(); err != nil {
				return err
			}
			continue
		}
		for {
			msg, id, ok := l.takeBulk(oc)
			if !ok {
				return nil
			}
			if msg == nil {
				break
			}
			total := uint64(len(msg))
			for off := 0; off < len(msg); {
				select {
				case <-l.ctx.Done():
					l.p.stats.dropped.Add(1)
					return ErrClosed
				case <-oc.dead:
					l.p.stats.dropped.Add(1)
					return nil
				case <-tick.C:
					if err := ping(); err != nil {
						l.p.stats.dropped.Add(1)
						return err
					}
				default:
				}
				end := min(off+t.cfg.MaxFrame, len(msg))
				chunk := msg[off:end]
				putHeader(hdr[:], frameHeader{size: uint32(len(chunk)), typ: frameChunk, id: id, arg: uint64(off) | total<<32, sum: crc(chunk)})
				if err := oc.write(net.Buffers{hdr[:], chunk}, 1); err != nil {
					l.p.stats.dropped.Add(1)
					return err
				}
				off = end
			}
		}
	}
}

// outConn is one dialed, handshaken connection of a lane. The lane's
// goroutine writes; a reader goroutine of its own reads.
type outConn struct {
	l          *outLane
	nc         net.Conn
	addr       string
	remote     Identity
	started    time.Time
	dead       chan struct{} // closed by fail
	once       sync.Once
	readerDone chan struct{} // closed when the reader returns
}

// write writes bufs with one write call (one writev on TCP) under the
// write deadline, and counts it.
func (oc *outConn) write(bufs net.Buffers, frames int) error {
	t := oc.l.t
	oc.nc.SetWriteDeadline(time.Now().Add(t.cfg.IdleTimeout))
	n, err := bufs.WriteTo(oc.nc)
	s := &oc.l.p.stats
	s.writes.Add(1)
	s.bytes.Add(uint64(n))
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	s.frames.Add(uint64(frames))
	return nil
}

// fail closes the connection once; every call sent on it ends with an
// unknown outcome. err nil means the connection was already failed.
func (oc *outConn) fail(err error) {
	oc.once.Do(func() {
		close(oc.dead)
		oc.nc.Close()
		l := oc.l
		if err == nil {
			err = ErrConnLost
		}
		lost := err
		if !errors.Is(err, ErrConnLost) {
			lost = fmt.Errorf("%w: %w", ErrConnLost, err)
		}
		l.mu.Lock()
		if l.cur == oc {
			l.cur = nil
		}
		for _, c := range l.sent {
			l.finish(c, callResult{err: outcomeUnknown(l.p.id, lost)})
		}
		l.mu.Unlock()
		l.t.logConnErr("peer: connection lost", oc.remote, oc.addr, l.kind, err)
	})
}

// read is the dialer side's reader: replies, errors, fails and pongs.
func (oc *outConn) read() {
	defer close(oc.readerDone)
	l := oc.l
	t := l.t
	br := bufio.NewReaderSize(oc.nc, 32<<10)
	var hb [frameHeaderSize]byte
	for {
		oc.nc.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		h, p, err := readFrame(br, &hb, uint32(t.cfg.MaxFrame))
		if err != nil {
			oc.fail(readErr(err, t.cfg.IdleTimeout))
			return
		}
		var r callResult
		switch {
		case h.typ == framePong:
			continue
		case l.kind == laneMain && h.typ == frameReply:
			r.reply = p
		case l.kind == laneMain && h.typ == frameError:
			re := &RemoteError{From: l.p.id, Code: uint32(h.arg), Message: string(p)}
			re.Err = t.codec.DecodeError(re.Code, re.Message)
			r.err = re
		case l.kind == laneMain && h.typ == frameFail:
			switch h.arg {
			case failBusy:
				r.err = notDelivered(l.p.id, ErrBusy)
			case failClosing:
				r.err = notDelivered(l.p.id, ErrClosed)
			default:
				r.err = outcomeUnknown(l.p.id, fmt.Errorf("%w: the reply was over the frame limit", ErrTooLarge))
			}
		default:
			oc.fail(protoError(fmt.Errorf("unexpected %v from the acceptor on the %s lane", h, l.kind)))
			return
		}
		l.mu.Lock()
		if c := l.sent[h.id]; c != nil && l.cur == oc {
			l.finish(c, r)
		}
		l.mu.Unlock()
	}
}

// dialPeer resolves, dials and handshakes one connection to node to.
func (t *TCP) dialPeer(ctx context.Context, to uint64, ln lane) (*outConn, error) {
	addr, ok := t.cfg.Resolve(to)
	if !ok {
		return nil, fmt.Errorf("%w %d", ErrNoAddress, to)
	}
	dctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	nc, err := t.dial(dctx, addr)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("peer: dial node %d at %s: %w", to, addr, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	_, err = nc.Write(encodeHello(hello{kind: kindHello, lane: ln, id: t.cfg.Self, maxFrame: uint32(t.cfg.MaxFrame), maxMessage: uint32(t.cfg.MaxMessage)}))
	var h hello
	if err == nil {
		h, err = readHello(nc)
	}
	if !stop() {
		nc.Close()
		return nil, ErrClosed
	}
	fail := func(err error) (*outConn, error) {
		nc.Close()
		return nil, fmt.Errorf("peer: handshake with node %d at %s: %w", to, addr, err)
	}
	switch {
	case err != nil:
		return fail(err)
	case h.kind == kindRefusal:
		return fail(fmt.Errorf("%w %v: %s", ErrRefused, h.id, h.reason))
	case h.kind != kindWelcome || h.lane != ln:
		return fail(protoError(fmt.Errorf("answered with handshake kind %d on lane %d", h.kind, h.lane)))
	case h.id.Cluster != t.cfg.Self.Cluster || h.id.ID != to:
		return fail(fmt.Errorf("%w: reached %v, wanted node %d of cluster %#x", ErrWrongPeer, h.id, to, t.cfg.Self.Cluster))
	case h.maxFrame != uint32(t.cfg.MaxFrame) || h.maxMessage != uint32(t.cfg.MaxMessage):
		return fail(fmt.Errorf("%w: limits differ (max frame %d, max message %d)", ErrWrongPeer, h.maxFrame, h.maxMessage))
	}
	nc.SetDeadline(time.Time{})
	return &outConn{
		nc:         nc,
		addr:       addr,
		remote:     h.id,
		started:    time.Now(),
		dead:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}, nil
}
