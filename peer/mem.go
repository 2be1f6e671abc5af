package peer

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

var _ Transport = (*memTransport)(nil)

// Faults are the faults a MemNetwork injects on a link. Probabilities are
// in [0, 1].
type Faults struct {
	// Drop is the probability that a message, request or reply is lost.
	Drop float64
	// Duplicate is the probability that a message is delivered twice
	// (requests and replies never are).
	Duplicate float64
	// Reorder is the probability that a message may overtake others on
	// its link: in real-time mode it ignores the link's order and waits
	// up to an extra 2*(Delay+Jitter)+1ms; in manual mode the Step that
	// would deliver the oldest pending envelope delivers a random one.
	Reorder float64
	// Delay and Jitter delay each delivery by Delay plus a uniform
	// random duration in [0, Jitter), in real-time mode only.
	Delay, Jitter time.Duration
}

func (f Faults) validate() {
	for _, p := range []float64{f.Drop, f.Duplicate, f.Reorder} {
		if !(p >= 0 && p <= 1) {
			panic(fmt.Sprintf("peer: fault probability %v outside [0, 1]", p))
		}
	}
	if f.Delay < 0 || f.Jitter < 0 {
		panic(fmt.Sprintf("peer: negative fault delay %v or jitter %v", f.Delay, f.Jitter))
	}
}

// MemNetwork connects in-memory Transports, for tests: a whole cluster in
// one process, with faults (drops, duplicates, reordering, delays,
// partitions) decided by one seeded random source.
//
// In real-time mode (the default) each link has a delivery goroutine,
// owned by the receiving transport, that delivers in order (unless
// Faults.Reorder) after Faults' delay; calls are served on goroutines of
// their own. In manual mode (SetManual) nothing moves until the test calls
// Step or DeliverAll, which deliver on the caller's goroutine, so one seed
// and one sequence of sends and steps give one run: every fault is
// decided by the seeded source at the Step.
//
// Admission: a transport reaches only transports of its own cluster,
// currently open on the network (a node never added, closed, or in
// another cluster is refused: Send returns false, Call fails with
// ErrNoAddress or ErrRefused, not delivered).
type MemNetwork struct {
	// mu guards every field below, and the fields of every memTransport,
	// memLink, memCall and envelope of the network that say so.
	mu         sync.Mutex
	rng        *rand.Rand
	manual     bool
	codec      ErrorCodec
	queueBytes int
	faults     Faults
	links      map[[2]uint64]Faults     // per-direction overrides of faults
	group      map[uint64]int           // partition group per node; absent is 0
	nextGroup  int                      // for Isolate
	nodes      map[uint64]*memTransport // the open transport of each node id
	created    int                      // transports ever created
	pending    []*envelope              // manual mode: everything in flight, oldest first
	pendBytes  map[memLinkID]int        // manual mode: message bytes pending per link
	seq        uint64                   // envelope sequence numbers
	maxFrame   int
	maxMessage int
}

// memLinkID names one direction and lane between two transports.
type memLinkID struct {
	from, to *memTransport
	bulk     bool
}

// NewMemNetwork returns an empty network in real-time mode whose faults
// are drawn from a source seeded with seed.
func NewMemNetwork(seed uint64) *MemNetwork {
	return &MemNetwork{
		rng:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		codec:      plainCodec{},
		queueBytes: DefaultQueueBytes,
		links:      make(map[[2]uint64]Faults),
		group:      make(map[uint64]int),
		nextGroup:  1 << 30,
		nodes:      make(map[uint64]*memTransport),
		pendBytes:  make(map[memLinkID]int),
		maxFrame:   DefaultMaxFrame,
		maxMessage: DefaultMaxMessage,
	}
}

// SetManual switches manual mode on or off. It panics once a transport
// has been created.
func (n *MemNetwork) SetManual(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.created > 0 {
		panic("peer: MemNetwork.SetManual after the first Transport")
	}
	n.manual = on
}

// SetErrorCodec sets the ErrorCodec every transport of the network uses
// (nil: code 0 and the error's text, as for TCP).
func (n *MemNetwork) SetErrorCodec(c ErrorCodec) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c == nil {
		c = plainCodec{}
	}
	n.codec = c
}

// SetQueueBytes bounds the bytes of messages and requests in flight on
// each link's main lane (Config.QueueBytes); 0 means the default.
func (n *MemNetwork) SetQueueBytes(b int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if b <= 0 {
		b = DefaultQueueBytes
	}
	n.queueBytes = b
}

// SetFaults sets the faults of every link without an override.
func (n *MemNetwork) SetFaults(f Faults) {
	f.validate()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults = f
}

// SetLinkFaults overrides the faults of the link from node from to node
// to (one direction); the zero Faults removes the override.
func (n *MemNetwork) SetLinkFaults(from, to uint64, f Faults) {
	f.validate()
	n.mu.Lock()
	defer n.mu.Unlock()
	if f == (Faults{}) {
		delete(n.links, [2]uint64{from, to})
		return
	}
	n.links[[2]uint64{from, to}] = f
}

// Partition splits the network: nodes in different groups cannot reach
// each other; nodes in no group form one more group. It replaces any
// earlier partition or isolation. What is in flight across the cut when
// it is delivered is lost.
func (n *MemNetwork) Partition(groups ...[]uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
	for i, g := range groups {
		for _, id := range g {
			n.group[id] = i + 1
		}
	}
}

// Isolate cuts node id off from every other node.
func (n *MemNetwork) Isolate(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nextGroup++
	n.group[id] = n.nextGroup
}

// Heal undoes Partition and Isolate (not link faults).
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
}

// Pending is the number of envelopes (messages, requests, replies) in
// flight.
func (n *MemNetwork) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.manual {
		return len(n.pending)
	}
	c := 0
	for _, t := range n.nodes {
		for _, lk := range t.links {
			c += len(lk.q)
		}
	}
	return c
}

func (n *MemNetwork) faultsLocked(from, to uint64) Faults {
	if f, ok := n.links[[2]uint64{from, to}]; ok {
		return f
	}
	return n.faults
}

func (n *MemNetwork) chance(p float64) bool { return p > 0 && n.rng.Float64() < p }

// routableLocked reports whether an envelope from one transport reaches
// the other now.
func (n *MemNetwork) routableLocked(from, to *memTransport) bool {
	return !from.closed && !to.closed && n.nodes[to.self.ID] == to &&
		from.self.Cluster == to.self.Cluster && n.group[from.self.ID] == n.group[to.self.ID]
}

// Transport adds a node to the network and returns its transport. A
// transport still open with the same node id is closed first (a restart).
// It panics if self does not validate or h is nil.
func (n *MemNetwork) Transport(self Identity, h Handler) Transport {
	if err := self.Validate(); err != nil {
		panic(err)
	}
	if h == nil {
		panic("peer: MemNetwork.Transport with a nil Handler")
	}
	n.mu.Lock()
	old := n.nodes[self.ID]
	n.mu.Unlock()
	if old != nil {
		old.Close()
	}
	m := &memTransport{
		n:       n,
		self:    self,
		h:       h,
		links:   make(map[memLinkID]*memLink),
		calls:   make(map[*memCall]struct{}),
		inbound: make(map[*memCall]struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	n.mu.Lock()
	n.created++
	if o := n.nodes[self.ID]; o != nil && !o.closed {
		n.mu.Unlock()
		panic(fmt.Sprintf("peer: MemNetwork.Transport for node %d raced with another", self.ID))
	}
	n.nodes[self.ID] = m
	n.mu.Unlock()
	return m
}

// Step delivers (or loses, per the faults) the oldest envelope in flight,
// on the caller's goroutine, and reports whether there was one. Manual
// mode only.
//
// A message is handed to HandleMessage (twice if duplicated). A request
// runs HandleCall on the caller's goroutine with the caller's deadline,
// and its reply (or error) joins the envelopes in flight, to be delivered
// (or lost) at a later Step, which ends the Call; a handler must therefore
// not wait for a later Step. A request whose Call gave up first is
// skipped.
func (n *MemNetwork) Step() bool {
	n.mu.Lock()
	if !n.manual {
		n.mu.Unlock()
		panic("peer: MemNetwork.Step outside manual mode")
	}
	for len(n.pending) > 0 {
		i := 0
		if len(n.pending) > 1 {
			e := n.pending[0]
			if n.chance(n.faultsLocked(e.from.self.ID, e.to.self.ID).Reorder) {
				i = n.rng.IntN(len(n.pending))
			}
		}
		e := n.pending[i]
		n.pending = append(n.pending[:i], n.pending[i+1:]...)
		if e.kind == envMessage || e.kind == envRequest {
			n.pendBytes[e.link()] -= len(e.msg)
		}
		if e.call != nil && e.kind == envRequest && e.call.state != callQueued {
			continue // the caller gave up before delivery
		}
		f := n.faultsLocked(e.from.self.ID, e.to.self.ID)
		ok := n.routableLocked(e.from, e.to) && !n.chance(f.Drop)
		times := 1
		if ok && e.kind == envMessage && n.chance(f.Duplicate) {
			times = 2
		}
		run := n.prepareLocked(e, ok, true)
		n.mu.Unlock()
		for range times {
			if run != nil {
				run()
			}
		}
		if run != nil && e.kind == envMessage {
			e.to.wg.Done()
		}
		return true
	}
	n.mu.Unlock()
	return false
}

// DeliverAll steps until nothing is in flight and returns the number of
// steps. Manual mode only. It does not return while the nodes keep
// answering each other.
func (n *MemNetwork) DeliverAll() int {
	c := 0
	for n.Step() {
		c++
	}
	return c
}

// prepareLocked makes what delivers e (or nil if nothing is to run);
// ok false means e is lost. sync means the caller runs it itself (manual
// mode): a message's delivery then holds a slot of the receiver's wait
// group, released by the caller, and a request's handler runs inline.
func (n *MemNetwork) prepareLocked(e *envelope, ok, sync bool) func() {
	c := e.call
	switch e.kind {
	case envMessage:
		if !ok {
			return nil
		}
		if sync {
			e.to.wg.Add(1)
		}
		to, from, msg := e.to, e.from.self, e.msg
		first := true
		return func() {
			m := msg
			if !first { // a duplicate gets a copy of its own
				m = append([]byte(nil), msg...)
			}
			first = false
			to.h.HandleMessage(from, m)
		}
	case envRequest:
		if c.state != callQueued {
			return nil
		}
		c.state = callSent // past the point of surely not delivered
		if !ok {
			return nil
		}
		to := e.to
		var ctx context.Context
		var cancel context.CancelFunc
		if c.deadline.IsZero() {
			ctx, cancel = context.WithCancel(to.ctx)
		} else {
			ctx, cancel = context.WithDeadline(to.ctx, c.deadline)
		}
		c.cancel = cancel
		run := func() {
			reply, err := to.h.HandleCall(ctx, e.from.self, e.msg)
			cancel()
			n.reply(c, to, reply, err)
		}
		to.wg.Add(1)
		if sync {
			return func() { defer to.wg.Done(); run() }
		}
		go func() { defer to.wg.Done(); run() }()
		return nil
	default: // envReply
		if ok && c.state != callDone {
			n.finishLocked(c, e.result)
		}
		return nil
	}
}

// reply sends the handler's answer back to the caller as an envelope.
func (n *MemNetwork) reply(c *memCall, callee *memTransport, reply []byte, err error) {
	var r callResult
	switch {
	case err != nil:
		code, msg := n.codecNow().EncodeError(err)
		if len(msg) > n.maxFrame {
			msg = msg[:n.maxFrame]
		}
		re := &RemoteError{From: callee.self.ID, Code: code, Message: msg}
		re.Err = n.codecNow().DecodeError(code, msg)
		r.err = re
	case len(reply) > n.maxFrame:
		r.err = outcomeUnknown(callee.self.ID, fmt.Errorf("%w: the reply was over the frame limit", ErrTooLarge))
	default:
		r.reply = append([]byte(nil), reply...)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.state == callDone {
		return
	}
	e := &envelope{kind: envReply, from: callee, to: c.caller, call: c, result: r}
	n.enqueueLocked(e, false)
}

func (n *MemNetwork) codecNow() ErrorCodec {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.codec
}

// finishLocked ends c with r unless it has ended.
func (n *MemNetwork) finishLocked(c *memCall, r callResult) {
	if c.state == callDone {
		return
	}
	c.state = callDone
	delete(c.caller.calls, c)
	delete(c.callee.inbound, c)
	if c.cancel != nil {
		c.cancel()
	}
	c.res <- r
}

// enqueueLocked puts e in flight: in manual mode at the end of the
// pending list; in real-time mode on its link (a goroutine of the
// receiver's) with the faults of the link drawn now. check applies the
// link's queue bound; false means e was refused.
func (n *MemNetwork) enqueueLocked(e *envelope, check bool) bool {
	n.seq++
	e.seq = n.seq
	id := e.link()
	limit := n.queueBytes
	if id.bulk {
		limit = DefaultBulkQueueBytes
	}
	if n.manual {
		if e.kind != envReply {
			if q := n.pendBytes[id]; check && q > 0 && q+len(e.msg) > limit {
				return false
			}
			n.pendBytes[id] += len(e.msg)
		}
		n.pending = append(n.pending, e)
		return true
	}
	lk := e.to.linkLocked(id)
	if lk == nil {
		return false // the receiver is closed
	}
	if check && lk.bytes > 0 && lk.bytes+len(e.msg) > limit {
		return false
	}
	f := n.faultsLocked(e.from.self.ID, e.to.self.ID)
	if n.chance(f.Drop) {
		if e.call != nil && e.kind == envRequest {
			e.call.state = callSent // lost on the way: the caller cannot tell
		}
		return true
	}
	copies := 1
	if e.kind == envMessage && n.chance(f.Duplicate) {
		copies = 2
	}
	now := time.Now()
	for i := range copies {
		d := f.Delay
		if f.Jitter > 0 {
			d += time.Duration(n.rng.Int64N(int64(f.Jitter)))
		}
		x := *e
		x.seq += uint64(i)
		x.at = now.Add(d)
		if i > 0 {
			x.msg = append([]byte(nil), e.msg...)
		}
		if n.chance(f.Reorder) {
			x.at = x.at.Add(time.Duration(n.rng.Int64N(int64(2*(f.Delay+f.Jitter) + time.Millisecond))))
		} else {
			if x.at.Before(lk.last) {
				x.at = lk.last
			}
			lk.last = x.at
		}
		heap.Push(&lk.q, &x)
		if x.kind != envReply {
			lk.bytes += len(x.msg)
		}
	}
	n.seq += uint64(copies - 1)
	signal(lk.kick)
	return true
}

type envKind uint8

const (
	envMessage envKind = iota
	envRequest
	envReply
)

// envelope is one message, request or reply in flight.
type envelope struct {
	kind   envKind
	from   *memTransport
	to     *memTransport
	bulk   bool
	msg    []byte     // message or request (a copy)
	call   *memCall   // request, reply
	result callResult // reply
	at     time.Time  // real-time mode: when due
	seq    uint64
}

func (e *envelope) link() memLinkID { return memLinkID{e.from, e.to, e.bulk} }

// memCall is one Call in flight on a MemNetwork.
type memCall struct {
	caller, callee *memTransport
	deadline       time.Time
	state          callState          // guarded by the network's mu
	cancel         context.CancelFunc // the handler's ctx; guarded by the network's mu
	res            chan callResult    // buffered 1; gets exactly one result
}

// memLink is the real-time queue of one direction and lane, drained by a
// goroutine of the receiving transport. Its fields are guarded by the
// network's mu.
type memLink struct {
	id    memLinkID
	q     envHeap
	bytes int       // bytes of messages and requests queued
	last  time.Time // due time of the last in-order envelope
	dead  bool      // the sender closed: the goroutine exits
	kick  chan struct{}
}

type envHeap []*envelope

func (h envHeap) Len() int { return len(h) }
func (h envHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h envHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *envHeap) Push(x any)   { *h = append(*h, x.(*envelope)) }
func (h *envHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// memTransport is one node's Transport on a MemNetwork.
type memTransport struct {
	n      *MemNetwork
	self   Identity
	h      Handler
	ctx    context.Context // canceled by Close: the parent of the handlers' ctx
	cancel context.CancelFunc
	// wg counts the goroutines the transport owns (the delivery
	// goroutines of its inbound links, its handlers) and deliveries into
	// it in progress; Add only under the network's mu while !closed.
	wg sync.WaitGroup

	// Guarded by the network's mu:
	closed   bool
	links    map[memLinkID]*memLink // inbound links (real-time mode)
	outLinks []*memLink             // outbound links, to end them on Close
	calls    map[*memCall]struct{}  // calls it made, not done
	inbound  map[*memCall]struct{}  // calls made to it, not done
}

// linkLocked returns the inbound link id, starting its goroutine if new;
// nil if m is closed.
func (m *memTransport) linkLocked(id memLinkID) *memLink {
	if m.closed {
		return nil
	}
	if lk := m.links[id]; lk != nil {
		return lk
	}
	lk := &memLink{id: id, kick: make(chan struct{}, 1)}
	m.links[id] = lk
	id.from.outLinks = append(id.from.outLinks, lk)
	m.wg.Add(1)
	go m.deliverLoop(lk)
	return lk
}

// deliverLoop delivers lk's envelopes as they fall due, until m closes.
func (m *memTransport) deliverLoop(lk *memLink) {
	defer m.wg.Done()
	n := m.n
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.mu.Lock()
		var e *envelope
		for e == nil {
			if m.closed || lk.dead {
				n.mu.Unlock()
				return
			}
			var wait <-chan time.Time
			if len(lk.q) > 0 {
				d := time.Until(lk.q[0].at)
				if d <= 0 {
					e = heap.Pop(&lk.q).(*envelope)
					if e.kind != envReply {
						lk.bytes -= len(e.msg)
					}
					break
				}
				timer.Reset(d)
				wait = timer.C
			}
			n.mu.Unlock()
			select {
			case <-m.ctx.Done():
			case <-lk.kick:
			case <-wait:
			}
			n.mu.Lock()
		}
		run := n.prepareLocked(e, n.routableLocked(e.from, e.to), false)
		n.mu.Unlock()
		if run != nil {
			run()
		}
	}
}

// Send implements Transport.
func (m *memTransport) Send(to uint64, msg []byte) bool {
	n := m.n
	if len(msg) > n.maxMessage {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	dst := n.nodes[to]
	if m.closed || dst == nil || dst.self.Cluster != m.self.Cluster {
		return false
	}
	e := &envelope{kind: envMessage, from: m, to: dst, bulk: len(msg) > n.maxFrame, msg: append([]byte(nil), msg...)}
	return n.enqueueLocked(e, true)
}

// Call implements Transport.
func (m *memTransport) Call(ctx context.Context, to uint64, req []byte) ([]byte, error) {
	n := m.n
	if err := ctx.Err(); err != nil {
		return nil, notDelivered(to, err)
	}
	if len(req) > n.maxFrame {
		return nil, notDelivered(to, fmt.Errorf("%w: request of %d bytes over the frame limit %d", ErrTooLarge, len(req), n.maxFrame))
	}
	n.mu.Lock()
	dst := n.nodes[to]
	var err error
	switch {
	case m.closed:
		err = ErrClosed
	case dst == nil:
		err = fmt.Errorf("%w %d", ErrNoAddress, to)
	case dst.self.Cluster != m.self.Cluster:
		err = fmt.Errorf("%w %v: wrong cluster %#x (this node is in %#x)", ErrRefused, dst.self, m.self.Cluster, dst.self.Cluster)
	}
	if err != nil {
		n.mu.Unlock()
		return nil, notDelivered(to, err)
	}
	c := &memCall{caller: m, callee: dst, res: make(chan callResult, 1)}
	c.deadline, _ = ctx.Deadline()
	e := &envelope{kind: envRequest, from: m, to: dst, msg: append([]byte(nil), req...), call: c}
	if !n.enqueueLocked(e, true) {
		n.mu.Unlock()
		return nil, notDelivered(to, fmt.Errorf("%w: for node %d", ErrQueueFull, to))
	}
	m.calls[c] = struct{}{}
	dst.inbound[c] = struct{}{}
	n.mu.Unlock()

	select {
	case r := <-c.res:
		return r.reply, r.err
	case <-ctx.Done():
	}
	n.mu.Lock()
	if c.state == callQueued {
		n.finishLocked(c, callResult{err: notDelivered(to, ctx.Err())})
	} else {
		n.finishLocked(c, callResult{err: outcomeUnknown(to, ctx.Err())})
	}
	n.mu.Unlock()
	r := <-c.res
	return r.reply, r.err
}

// Close implements Transport. It removes the node from the network.
func (m *memTransport) Close() error {
	n := m.n
	n.mu.Lock()
	if m.closed {
		n.mu.Unlock()
		return nil
	}
	m.closed = true
	if n.nodes[m.self.ID] == m {
		delete(n.nodes, m.self.ID)
	}
	for c := range m.calls {
		if c.state == callQueued {
			n.finishLocked(c, callResult{err: notDelivered(c.callee.self.ID, ErrClosed)})
		} else {
			n.finishLocked(c, callResult{err: outcomeUnknown(c.callee.self.ID, ErrClosed)})
		}
	}
	for c := range m.inbound {
		if c.state == callQueued {
			n.finishLocked(c, callResult{err: notDelivered(m.self.ID, ErrClosed)})
		} else {
			n.finishLocked(c, callResult{err: outcomeUnknown(m.self.ID, ErrConnLost)})
		}
	}
	for _, lk := range m.links {
		clear(lk.q)
		lk.q, lk.bytes = lk.q[:0], 0
	}
	// Links from m end: their envelopes would be dropped anyway, and a
	// restarted node gets links of its own.
	for _, lk := range m.outLinks {
		lk.dead = true
		clear(lk.q)
		lk.q, lk.bytes = lk.q[:0], 0
		if r := lk.id.to; r.links[lk.id] == lk {
			delete(r.links, lk.id)
		}
		signal(lk.kick)
	}
	m.outLinks = nil
	m.cancel()
	n.mu.Unlock()
	m.wg.Wait()
	return nil
}
