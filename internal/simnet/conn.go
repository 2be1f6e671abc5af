package simnet

import (
	"bytes"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// segment is one write (or the closing FIN) on its way to the reader.
type segment struct {
	data []byte
	fin  bool
	due  time.Time // when it reaches the reader, cuts permitting
}

// flow is one direction of a connection: what one end wrote that the other
// has not read yet.
type flow struct {
	arrived  []byte    // reached the reader: readable whatever the cuts
	inflight []segment // on the way, in order of due time
	lastDue  time.Time // due time of the last segment, for ordering
	eof      bool      // the writer's FIN has arrived
}

// advance moves segments due by now into arrived, unless the hosts are cut
// off (then the flow stalls, like TCP retransmitting into a partition).
func (f *flow) advance(now time.Time, up bool) {
	if !up {
		return
	}
	i := 0
	for ; i < len(f.inflight) && !f.inflight[i].due.After(now); i++ {
		s := f.inflight[i]
		if s.fin {
			f.eof = true
		} else {
			f.arrived = append(f.arrived, s.data...)
		}
		f.inflight[i] = segment{}
	}
	f.inflight = f.inflight[i:]
	if len(f.inflight) == 0 {
		f.inflight = nil
	}
}

// push queues a segment delay from now, never before the one queued last.
func (f *flow) push(s segment, now time.Time, delay time.Duration) {
	s.due = now.Add(delay)
	if s.due.Before(f.lastDue) {
		s.due = f.lastDue
	}
	f.lastDue = s.due
	f.inflight = append(f.inflight, s)
}

// link is one connection: two ends, two flows. It starts no goroutines:
// delayed bytes wait in the flow and the reader waits for their due time.
type link struct {
	net   *Net
	hosts [2]string // hosts[0] dialled hosts[1]
	addrs [2]*net.TCPAddr
	ends  [2]*conn

	// mu guards the fields below.
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change, to wake waiters
	flows    [2]flow       // flows[i] carries bytes written by end i
	closed   [2]bool       // end i was closed by its owner
	rdl, wdl [2]time.Time  // read and write deadlines of end i
	isReset  bool          // reset: both ends fail with ErrConnReset
	readers  int           // Read calls blocked now (for tests)
}

func newLink(n *Net, hosts [2]string, addrs [2]*net.TCPAddr) *link {
	l := &link{net: n, hosts: hosts, addrs: addrs, changed: make(chan struct{})}
	l.ends = [2]*conn{{l: l, i: 0}, {l: l, i: 1}}
	return l
}

// signalLocked wakes everyone waiting on the link.
func (l *link) signalLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// settle moves bytes that have arrived under topology t into the readers'
// buffers, before t is replaced.
func (l *link) settle(now time.Time, t *topology) {
	l.mu.Lock()
	defer l.mu.Unlock()
	up := !t.cut(l.hosts[0], l.hosts[1])
	l.flows[0].advance(now, up)
	l.flows[1].advance(now, up)
}

// reset fails both ends at once, discarding buffered bytes.
func (l *link) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isReset {
		return
	}
	l.isReset = true
	l.flows = [2]flow{}
	l.signalLocked()
	l.net.stats.connsReset.Add(1)
}

// conn is one end of a link. It implements net.Conn.
type conn struct {
	l *link
	i int // which end
}

var _ net.Conn = (*conn)(nil)

func (c *conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Read reads bytes the peer wrote once they have arrived: after their
// delay, and not while the two hosts are cut off.
func (c *conn) Read(b []byte) (int, error) {
	l := c.l
	f := &l.flows[1-c.i]
	l.mu.Lock()
	for {
		switch {
		case l.closed[c.i]:
			l.mu.Unlock()
			return 0, c.opErr("read", net.ErrClosed)
		case l.isReset:
			l.mu.Unlock()
			return 0, c.opErr("read", ErrConnReset)
		case len(b) == 0:
			l.mu.Unlock()
			return 0, nil
		}
		now := time.Now()
		topo := l.net.topo.Load()
		up := !topo.cut(l.hosts[0], l.hosts[1])
		f.advance(now, up)
		if len(f.arrived) > 0 {
			k := copy(b, f.arrived)
			f.arrived = f.arrived[k:]
			if len(f.arrived) == 0 {
				f.arrived = nil
			}
			l.mu.Unlock()
			return k, nil
		}
		if f.eof {
			l.mu.Unlock()
			return 0, io.EOF
		}
		dl := l.rdl[c.i]
		if !dl.IsZero() && !now.Before(dl) {
			l.mu.Unlock()
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		wait := time.Duration(-1)
		if !dl.IsZero() {
			wait = dl.Sub(now)
		}
		if up && len(f.inflight) > 0 {
			if d := f.inflight[0].due.Sub(now); wait < 0 || d < wait {
				wait = d
			}
		}
		ch := l.changed
		l.readers++
		l.mu.Unlock()
		waitFor(ch, topo.changed, wait)
		l.mu.Lock()
		l.readers--
	}
}

// waitFor blocks until a or b is closed or, if d >= 0, d has passed.
func waitFor(a, b <-chan struct{}, d time.Duration) {
	if d < 0 {
		select {
		case <-a:
		case <-b:
		}
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a:
	case <-b:
	case <-t.C:
	}
}

// Write queues b for the peer and returns at once: the buffer is
// unbounded, and a cut stalls delivery rather than the writer. It fails if
// the connection was reset, closed, past its write deadline, or closed by
// a peer this host can reach.
func (c *conn) Write(b []byte) (int, error) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed[c.i]:
		return 0, c.opErr("write", net.ErrClosed)
	case l.isReset:
		return 0, c.opErr("write", ErrConnReset)
	}
	now := time.Now()
	if dl := l.wdl[c.i]; !dl.IsZero() && !now.Before(dl) {
		return 0, c.opErr("write", os.ErrDeadlineExceeded)
	}
	if l.closed[1-c.i] {
		if !l.net.topo.Load().cut(l.hosts[0], l.hosts[1]) {
			return 0, c.opErr("write", syscall.EPIPE)
		}
		return len(b), nil // into the void, as far as this host can tell
	}
	if len(b) == 0 {
		return 0, nil
	}
	delay := l.net.delay(l.hosts[c.i], l.hosts[1-c.i])
	l.flows[c.i].push(segment{data: bytes.Clone(b)}, now, delay)
	l.signalLocked()
	return len(b), nil
}

// Close closes this end. The peer reads what was written before, then EOF
// (delivered like data: delayed, and held back by a cut). Unread incoming
// bytes are discarded. Blocked Read calls on this end return at once.
func (c *conn) Close() error {
	l := c.l
	l.mu.Lock()
	if l.closed[c.i] {
		l.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	l.closed[c.i] = true
	if !l.isReset {
		l.flows[c.i].push(segment{fin: true}, time.Now(), l.net.delay(l.hosts[c.i], l.hosts[1-c.i]))
		l.flows[1-c.i] = flow{}
	}
	done := l.isReset || l.closed[1-c.i]
	l.signalLocked()
	l.mu.Unlock()
	if done {
		l.net.forget(l)
	}
	return nil
}

// LocalAddr is this end's simulated address.
func (c *conn) LocalAddr() net.Addr { return c.l.addrs[c.i] }

// RemoteAddr is the peer's simulated address.
func (c *conn) RemoteAddr() net.Addr { return c.l.addrs[1-c.i] }

// SetDeadline sets both deadlines.
func (c *conn) SetDeadline(t time.Time) error {
	return c.setDeadlines(t, true, true)
}

// SetReadDeadline sets the read deadline; a blocked Read sees the change.
func (c *conn) SetReadDeadline(t time.Time) error {
	return c.setDeadlines(t, true, false)
}

// SetWriteDeadline sets the write deadline. Writes never block, so it only
// makes writes after it fail.
func (c *conn) SetWriteDeadline(t time.Time) error {
	return c.setDeadlines(t, false, true)
}

func (c *conn) setDeadlines(t time.Time, r, w bool) error {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed[c.i] {
		return c.opErr("set deadline", net.ErrClosed)
	}
	if r {
		l.rdl[c.i] = t
	}
	if w {
		l.wdl[c.i] = t
	}
	l.signalLocked()
	return nil
}
