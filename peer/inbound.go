package peer

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// inConn is an accepted, admitted connection. Its reader goroutine (the
// one that ran the handshake) reads frames and hands them to the Handler;
// one goroutine per call runs HandleCall; its writer goroutine writes
// replies and pongs.
type inConn struct {
	t      *TCP
	nc     net.Conn
	addr   string
	remote Identity
	lane   lane
	ctx    context.Context // canceled by close: the parent of every handler's ctx
	cancel context.CancelFunc
	kick   chan struct{} // buffered 1: frames were queued for the writer
	dead   atomic.Bool   // set by close; the reader delivers nothing after it
	once   sync.Once
	// readerDone is closed when the reader goroutine returns.
	readerDone chan struct{}

	// mu guards the fields below.
	mu     sync.Mutex
	closed bool
	buf    []byte                        // frames queued for the writer
	spare  []byte                        // the writer's buffer, returned after a write
	calls  map[uint64]context.CancelFunc // calls being served, by call id
}

func newInConn(t *TCP, nc net.Conn, remote Identity, ln lane) *inConn {
	ic := &inConn{
		t:          t,
		nc:         nc,
		addr:       nc.RemoteAddr().String(),
		remote:     remote,
		lane:       ln,
		kick:       make(chan struct{}, 1),
		readerDone: make(chan struct{}),
		calls:      make(map[uint64]context.CancelFunc),
	}
	ic.ctx, ic.cancel = context.WithCancel(t.ctx)
	return ic
}

// close closes the connection once: handlers see their ctx canceled,
// queued replies are dropped, the reader delivers nothing more.
func (ic *inConn) close(err error) {
	ic.once.Do(func() {
		ic.dead.Store(true)
		ic.mu.Lock()
		ic.closed = true
		ic.buf = nil
		ic.mu.Unlock()
		ic.cancel()
		ic.nc.Close()
		t := ic.t
		t.mu.Lock()
		if k := (inKey{ic.remote.ID, ic.lane}); t.inbound[k] == ic {
			delete(t.inbound, k)
		}
		t.mu.Unlock()
		t.logConnErr("peer: closing accepted connection", ic.remote, ic.addr, ic.lane, err)
	})
}

// queue appends one frame for the writer, unless the connection is
// closed.
func (ic *inConn) queue(typ uint8, id, arg uint64, payload []byte) {
	sum := crc(payload)
	ic.mu.Lock()
	if !ic.closed {
		ic.buf = appendFrame(ic.buf, typ, id, arg, payload, sum)
	}
	ic.mu.Unlock()
	signal(ic.kick)
}

// signal wakes the goroutine waiting on a buffered-1 channel, without
// blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// write is the writer goroutine: it writes everything queued with one
// write call per wake-up.
func (ic *inConn) write() {
	for {
		select {
		case <-ic.ctx.Done():
			return
		case <-ic.kick:
		}
		ic.mu.Lock()
		b := ic.buf
		ic.buf, ic.spare = ic.spare[:0], nil
		ic.mu.Unlock()
		if len(b) == 0 {
			ic.giveBack(b)
			continue
		}
		ic.nc.SetWriteDeadline(time.Now().Add(ic.t.cfg.IdleTimeout))
		if _, err := ic.nc.Write(b); err != nil {
			ic.close(fmt.Errorf("write: %w", err))
			return
		}
		ic.giveBack(b)
	}
}

func (ic *inConn) giveBack(b []byte) {
	if cap(b) > maxSpare {
		return
	}
	ic.mu.Lock()
	if ic.spare == nil {
		ic.spare = b[:0]
	}
	ic.mu.Unlock()
}

// read is the reader: it runs until the connection fails or is closed.
func (ic *inConn) read() {
	defer close(ic.readerDone)
	t := ic.t
	br := bufio.NewReaderSize(ic.nc, 64<<10)
	var hb [frameHeaderSize]byte
	re := reassembly{maxFrame: uint32(t.cfg.MaxFrame), maxMessage: uint32(t.cfg.MaxMessage)}
	for {
		ic.nc.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		h, p, err := readFrame(br, &hb, uint32(t.cfg.MaxFrame))
		if err != nil {
			ic.close(readErr(err, t.cfg.IdleTimeout))
			return
		}
		if ic.dead.Load() {
			return
		}
		if err := ic.dispatch(h, p, &re); err != nil {
			ic.close(protoError(err))
			return
		}
	}
}

func (ic *inConn) dispatch(h frameHeader, p []byte, re *reassembly) error {
	t := ic.t
	switch {
	case h.typ == framePing:
		ic.queue(framePong, h.id, 0, nil)
	case ic.lane == laneMain && h.typ == frameMsg:
		t.cfg.Handler.HandleMessage(ic.remote, p)
	case ic.lane == laneMain && h.typ == frameCall:
		return ic.serveCall(h, p)
	case ic.lane == laneMain && h.typ == frameCancel:
		ic.mu.Lock()
		if cancel := ic.calls[h.id]; cancel != nil {
			cancel()
		}
		ic.mu.Unlock()
	case ic.lane == laneBulk && h.typ == frameChunk:
		msg, err := re.add(h, p)
		if err != nil {
			return err
		}
		if msg != nil {
			t.cfg.Handler.HandleMessage(ic.remote, msg)
		}
	default:
		return fmt.Errorf("unexpected %v from the dialer on the %s lane", h, ic.lane)
	}
	return nil
}

// serveCall starts a handler goroutine for one call, or refuses the call
// with a fail frame (busy, closing).
func (ic *inConn) serveCall(h frameHeader, req []byte) error {
	t := ic.t
	ic.mu.Lock()
	if ic.closed {
		ic.mu.Unlock()
		return nil
	}
	if _, dup := ic.calls[h.id]; dup {
		ic.mu.Unlock()
		return fmt.Errorf("call id %d already in flight", h.id)
	}
	if len(ic.calls) >= t.cfg.MaxCallsPerConn {
		ic.mu.Unlock()
		ic.queue(frameFail, h.id, failBusy, nil)
		return nil
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if h.arg == 0 {
		ctx, cancel = context.WithCancel(ic.ctx)
	} else {
		ctx, cancel = context.WithTimeout(ic.ctx, time.Duration(min(h.arg, math.MaxInt64)))
	}
	ic.calls[h.id] = cancel
	ic.mu.Unlock()
	if !t.goroutine(func() { ic.runCall(ctx, cancel, h.id, req) }) {
		cancel()
		ic.mu.Lock()
		delete(ic.calls, h.id)
		ic.mu.Unlock()
		ic.queue(frameFail, h.id, failClosing, nil)
	}
	return nil
}

func (ic *inConn) runCall(ctx context.Context, cancel context.CancelFunc, id uint64, req []byte) {
	t := ic.t
	reply, err := t.cfg.Handler.HandleCall(ctx, ic.remote, req)
	cancel()
	ic.mu.Lock()
	delete(ic.calls, id)
	ic.mu.Unlock()
	switch {
	case err != nil:
		code, msg := t.codec.EncodeError(err)
		if len(msg) > t.cfg.MaxFrame {
			msg = msg[:t.cfg.MaxFrame]
		}
		ic.queue(frameError, id, uint64(code), []byte(msg))
	case len(reply) > t.cfg.MaxFrame:
		t.log.Warn("peer: reply over the frame limit dropped", "peer", ic.remote.String(), "bytes", len(reply), "max_frame", t.cfg.MaxFrame)
		ic.queue(frameFail, id, failTooLarge, nil)
	default:
		ic.queue(frameReply, id, 0, reply)
	}
}

// maxPartials bounds the messages being reassembled at once on one
// connection; their total sizes together are bounded by MaxMessage.
const maxPartials = 2

// reassembly puts chunked messages back together. It is owned by one
// reader goroutine.
type reassembly struct {
	maxFrame, maxMessage uint32
	parts                map[uint64]*partial // by message id
	bytes                uint64              // sum of the parts' totals
}

type partial struct {
	buf   []byte
	total uint32
}

// add takes one chunk frame (already checked by decodeHeader) and returns
// the whole message once its last chunk is in. Chunks of one message must
// come in order.
func (r *reassembly) add(h frameHeader, p []byte) ([]byte, error) {
	off, total := h.chunk()
	if total > r.maxMessage {
		return nil, fmt.Errorf("%v: message of %d bytes over the limit %d", h, total, r.maxMessage)
	}
	pt := r.parts[h.id]
	if pt == nil {
		switch {
		case off != 0:
			return nil, fmt.Errorf("%v: first chunk seen at offset %d", h, off)
		case len(r.parts) >= maxPartials:
			return nil, fmt.Errorf("%v: more than %d messages in reassembly", h, maxPartials)
		case r.bytes+uint64(total) > uint64(r.maxMessage):
			return nil, fmt.Errorf("%v: messages in reassembly would total %d bytes, over %d", h, r.bytes+uint64(total), r.maxMessage)
		}
		if r.parts == nil {
			r.parts = make(map[uint64]*partial)
		}
		// Grow as the chunks come rather than trusting the claimed total
		// for the whole allocation up front.
		pt = &partial{buf: make([]byte, 0, min(total, 64*r.maxFrame)), total: total}
		r.parts[h.id] = pt
		r.bytes += uint64(total)
	} else if total != pt.total || int(off) != len(pt.buf) {
		return nil, fmt.Errorf("%v: expected offset %d of %d", h, len(pt.buf), pt.total)
	}
	pt.buf = append(pt.buf, p...)
	if len(pt.buf) < int(pt.total) {
		return nil, nil
	}
	delete(r.parts, h.id)
	r.bytes -= uint64(pt.total)
	return pt.buf, nil
}
