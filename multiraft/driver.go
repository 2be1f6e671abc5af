package multiraft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/store"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// StateMachine is one group's replicated state. The driver calls it only
// from its loop goroutine, so it needs no lock of its own for that; a
// StateMachine read by other goroutines too guards itself.
type StateMachine interface {
	// Apply applies one committed command (the bytes given to Propose) at
	// raft index index and returns the result handed to the proposer.
	Apply(index uint64, cmd []byte) any
	// Snapshot returns the whole state as bytes.
	Snapshot() []byte
	// Restore replaces the state with a Snapshot's bytes; nil means the
	// initial (empty) state.
	Restore(data []byte) error
}

// Disk keeps the groups' raft state durable. *store.Store implements it:
// Append queues a record and returns its LSN without waiting, Wait blocks
// until an LSN is durable per the fsync policy (group commit), Checkpoint
// replaces a group's records up to an LSN.
type Disk interface {
	Append(group int, payload []byte) (uint64, error)
	Wait(ctx context.Context, lsn uint64) error
	Checkpoint(group int, lsn uint64, payload []byte) error
}

// Placement says, for a group, which replicas should be its voters and
// which of them should lead (0: no preference); ok false: no opinion (the
// ring is not known yet). The driver calls it from its loop, often: it
// must be cheap and must not block.
type Placement func(group int) (voters []uint64, preferred uint64, ok bool)

// Config configures a Driver. Zero values take the defaults noted.
type Config struct {
	// ID is this node's raft replica id in every group (nonzero): freqd
	// uses the node's incarnation, so a node that lost its data is a new
	// replica.
	ID uint64
	// Groups is the number of groups (partitions), ids 0..Groups-1.
	Groups int
	// Disk persists raft state; nil keeps it in memory only (tests).
	Disk Disk
	// Recovered is each group's durable state found at start (from
	// store.Open), by group id.
	Recovered map[int]*store.Recovered
	// Send hands one encoded batch (EncodeBatch) to the transport for
	// node to; false means it was dropped. It must not block.
	Send func(to uint64, batch []byte) bool
	// NewStateMachine returns a group's state machine in its initial state.
	NewStateMachine func(group int) StateMachine
	// Placement gives each group's target voters; nil: never reconfigure.
	Placement Placement
	// TickInterval is the period of one raft tick (default 50ms);
	// ElectionTicks and HeartbeatTicks are raft's ElectionTick (default 10)
	// and HeartbeatTick (default 2).
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	// MaxSizePerMsg and MaxInflightMsgs are raft's pipelining limits
	// (defaults 1 MiB and 256).
	MaxSizePerMsg   uint64
	MaxInflightMsgs int
	// SnapshotEntries: a group takes a snapshot (and compacts its log in
	// memory and on disk) after this many applied entries (default 8192).
	SnapshotEntries uint64
	// OnChange is called, on the loop goroutine, when a group's leader,
	// term or configuration changes. It must not block.
	OnChange func(group int, info GroupInfo)
	// Logger receives the driver's logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.ID == 0 {
		return fmt.Errorf("multiraft: zero replica id: %w", freqd.ErrInvalidArgument)
	}
	if c.Groups <= 0 {
		return fmt.Errorf("multiraft: %d groups: %w", c.Groups, freqd.ErrInvalidArgument)
	}
	if c.Send == nil || c.NewStateMachine == nil {
		return fmt.Errorf("multiraft: Send and NewStateMachine are required: %w", freqd.ErrInvalidArgument)
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 50 * time.Millisecond
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 2
	}
	if c.HeartbeatTicks >= c.ElectionTicks {
		return fmt.Errorf("multiraft: heartbeat ticks %d not below election ticks %d: %w", c.HeartbeatTicks, c.ElectionTicks, freqd.ErrInvalidArgument)
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = 1 << 20
	}
	if c.MaxInflightMsgs <= 0 {
		c.MaxInflightMsgs = 256
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// GroupInfo is what the driver publishes about one group on this node.
type GroupInfo struct {
	// Hosted: this node has a replica of the group that its applied
	// configuration names (a removed replica stays, passive, and is not
	// hosted).
	Hosted   bool
	Leader   uint64
	Term     uint64
	IsLeader bool
	// Role is "leader", "follower", "candidate", "pre-candidate" or
	// "learner".
	Role     string
	Voters   []uint64
	Learners []uint64
	Applied  uint64
}

// Driver runs every raft group of one node: one loop goroutine owns all
// RawNodes, their storage and state machines; other goroutines talk to it
// through queues (messages, proposals, reads, operations) guarded by mu.
// Each round it steps what arrived, ticks if due, gathers every group's
// Ready, writes all of them with one disk append batch and one wait
// (group commit across groups), sends the messages coalesced per
// destination node, applies committed entries and advances.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	nonce uint64 // marks this run's proposals, so a restart's seq numbers never match an old entry

	// mu guards the hand-off queues and closed.
	mu     sync.Mutex
	inbox  []GroupMessage
	props  []*proposal
	reads  []*readReq
	ops    []func()
	closed bool
	wake   chan struct{} // capacity 1: a round is wanted

	// info holds what the loop publishes per group, for any goroutine.
	info []atomic.Pointer[GroupInfo]

	// Owned by the loop goroutine (or the test driving rounds):
	groups   []*replica
	seq      uint64
	ticks    uint64
	readies  []pendingReady
	outbox   map[uint64][]GroupMessage
	dests    []uint64
	sendBuf  []byte
	recBuf   []byte
	failed   error // a disk write failed: nothing more is persisted or sent
	lastPlan uint64

	failErr atomic.Pointer[error] // failed, for Err from any goroutine
	started atomic.Bool

	stop chan struct{}
	done chan struct{}
}

// replica is one group's raft replica on this node; owned by the loop.
type replica struct {
	group    int
	rn       *raft.RawNode
	st       *raft.MemoryStorage
	sm       StateMachine
	conf     pb.ConfState
	applied  uint64
	snapIdx  uint64 // index of the latest snapshot in st
	lastLSN  uint64 // LSN of the group's latest disk record
	leader   uint64
	term     uint64
	waiters  map[uint64]*proposal
	reads    map[uint64]*readReq
	ready    []*readReq // reads whose index is known, waiting for apply
	pendConf uint64     // index of the last proposed conf change (0: none)
	// confChanged: a conf change was applied in this round.
	confChanged bool
	transfer    uint64 // tick of the last leadership transfer
	// removed: the replica's applied configuration does not name this
	// node (it stays, passive: see Quiesce); quiet: not ticked.
	removed bool
	quiet   bool
	// pendingReplay is a Ready taken at restore but not handled there; the
	// loop's first round handles it.
	pendingReplay *raft.Ready
}

type proposal struct {
	group int
	cmd   []byte
	seq   uint64
	done  chan result
	ctx   context.Context
}

type readReq struct {
	group int
	id    uint64
	fn    func(StateMachine) any
	index uint64
	done  chan result
	ctx   context.Context
	tick  uint64
}

type result struct {
	v   any
	err error
}

type pendingReady struct {
	r  *replica
	rd raft.Ready
}

// New builds a Driver and restores every group found in cfg.Recovered.
// Start runs its loop.
func New(cfg Config) (*Driver, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	d := &Driver{
		cfg:    cfg,
		log:    cfg.Logger,
		nonce:  rand.Uint64() | 1,
		wake:   make(chan struct{}, 1),
		info:   make([]atomic.Pointer[GroupInfo], cfg.Groups),
		groups: make([]*replica, cfg.Groups),
		outbox: make(map[uint64][]GroupMessage),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for g := range cfg.Groups {
		d.info[g].Store(&GroupInfo{})
	}
	for g, rec := range cfg.Recovered {
		if g < 0 || g >= cfg.Groups {
			return nil, fmt.Errorf("multiraft: recovered group %d of %d: %w", g, cfg.Groups, freqd.ErrInvalidArgument)
		}
		if err := d.restore(g, rec); err != nil {
			return nil, fmt.Errorf("multiraft: partition %d: %w", g, err)
		}
	}
	return d, nil
}

// restore rebuilds group g from its checkpoint and the log records after it.
func (d *Driver) restore(g int, rec *store.Recovered) error {
	st := raft.NewMemoryStorage()
	var hs pb.HardState
	removed := false
	if rec.Checkpoint != nil {
		c, err := decodeCheckpoint(rec.Checkpoint)
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if !raft.IsEmptySnap(c.snapshot) {
			if err := st.ApplySnapshot(c.snapshot); err != nil {
				return fmt.Errorf("checkpoint snapshot: %w", err)
			}
		}
		if err := st.Append(c.entries); err != nil {
			return fmt.Errorf("checkpoint entries: %w", err)
		}
		hs = c.hardState
	}
	for i, b := range rec.Records {
		r, err := decodeRecord(b)
		if err != nil {
			return fmt.Errorf("log record %d: %w", i, err)
		}
		if r.removed {
			removed = true
			st = raft.NewMemoryStorage()
			hs = pb.HardState{}
			continue
		}
		removed = false
		if r.snapshot != nil {
			if err := st.ApplySnapshot(*r.snapshot); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
				return fmt.Errorf("log record %d snapshot: %w", i, err)
			}
		}
		if len(r.entries) > 0 {
			if err := st.Append(r.entries); err != nil {
				return fmt.Errorf("log record %d entries: %w", i, err)
			}
		}
		if r.hardState != nil {
			hs = *r.hardState
		}
	}
	if removed {
		return nil // removed from the group for good; nothing to host
	}
	if err := st.SetHardState(hs); err != nil {
		return err
	}
	snap, err := st.Snapshot()
	if err != nil {
		return err
	}
	r, err := d.newReplica(g, st, snap)
	if err != nil {
		return err
	}
	r.lastLSN = rec.LastLSN
	d.groups[g] = r
	d.replay(r)
	d.publish(r)
	return nil
}

// replay applies, at once, the entries the disk shows committed after the
// snapshot, so a restarted node's state machines are current before it
// serves anything. Everything such a Ready holds is on disk already, and a
// replica that has not stepped a message has nothing to send.
func (d *Driver) replay(r *replica) {
	for r.rn.HasReady() {
		rd := r.rn.Ready()
		if len(rd.Entries) > 0 || len(rd.Messages) > 0 || len(rd.CommittedEntries) == 0 {
			// Not a pure replay: leave it to the loop.
			r.pendingReplay = &rd
			return
		}
		for i := range rd.CommittedEntries {
			d.apply(r, &rd.CommittedEntries[i])
		}
		if r.confChanged {
			r.confChanged = false
			d.memSnapshot(r)
		}
		r.rn.Advance(rd)
	}
}

// newReplica makes the RawNode of group g over st, whose snapshot snap
// the state machine starts from.
func (d *Driver) newReplica(g int, st *raft.MemoryStorage, snap pb.Snapshot) (*replica, error) {
	sm := d.cfg.NewStateMachine(g)
	if len(snap.Data) > 0 {
		if err := sm.Restore(snap.Data); err != nil {
			return nil, fmt.Errorf("restore snapshot at %d: %w", snap.Metadata.Index, err)
		}
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        d.cfg.ID,
		ElectionTick:              d.cfg.ElectionTicks,
		HeartbeatTick:             d.cfg.HeartbeatTicks,
		Storage:                   st,
		Applied:                   snap.Metadata.Index,
		MaxSizePerMsg:             d.cfg.MaxSizePerMsg,
		MaxCommittedSizePerReady:  4 << 20,
		MaxUncommittedEntriesSize: 64 << 20,
		MaxInflightMsgs:           d.cfg.MaxInflightMsgs,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{log: d.log.With("partition", g)},
	})
	if err != nil {
		return nil, err
	}
	return &replica{
		removed: !d.member(snap.Metadata.ConfState),
		group:   g,
		rn:      rn,
		st:      st,
		sm:      sm,
		conf:    snap.Metadata.ConfState,
		applied: snap.Metadata.Index,
		snapIdx: snap.Metadata.Index,
		waiters: make(map[uint64]*proposal),
		reads:   make(map[uint64]*readReq),
	}, nil
}

// Start runs the loop goroutine until Close.
func (d *Driver) Start() {
	if d.started.CompareAndSwap(false, true) {
		go d.run()
	}
}

// Close stops the loop and fails every pending call with ErrClosed.
func (d *Driver) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	close(d.stop)
	if d.started.Load() {
		<-d.done
	}
	d.mu.Lock()
	props, reads := d.props, d.reads
	d.props, d.reads, d.ops = nil, nil, nil
	d.mu.Unlock()
	for _, p := range props {
		p.done <- result{err: ErrClosed}
	}
	for _, r := range reads {
		r.done <- result{err: ErrClosed}
	}
	for _, r := range d.groups {
		if r != nil {
			// A proposal already in the log may commit without us.
			d.failPending(r, fmt.Errorf("partition %d: %w: %w", r.group, freqd.ErrOutcomeUnknown, ErrClosed))
		}
	}
}

func (d *Driver) run() {
	defer close(d.done)
	t := time.NewTicker(d.cfg.TickInterval)
	defer t.Stop()
	for {
		tick := false
		select {
		case <-d.stop:
			return
		case <-d.wake:
		case <-t.C:
			tick = true
		}
		d.round(tick)
	}
}

func (d *Driver) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Info returns what this node knows of group g (safe from any goroutine).
func (d *Driver) Info(g int) GroupInfo {
	if g < 0 || g >= len(d.info) {
		return GroupInfo{}
	}
	return *d.info[g].Load()
}

// HandleBatch takes an encoded batch from node from (as authenticated by
// the transport). Messages claiming another sender are dropped and
// logged: one peer cannot speak for another.
func (d *Driver) HandleBatch(from uint64, b []byte) error {
	msgs, err := DecodeBatch(b, d.cfg.Groups)
	if err != nil {
		return err
	}
	n := 0
	for _, m := range msgs {
		if m.Msg.From != from || m.Msg.To != d.cfg.ID || m.Msg.Type == pb.MsgProp || isLocalMsg(m.Msg.Type) {
			d.log.Warn("dropped a forged or misrouted raft message", "from", fmt.Sprintf("%016x", from),
				"claimed", fmt.Sprintf("%016x", m.Msg.From), "to", fmt.Sprintf("%016x", m.Msg.To), "type", m.Msg.Type.String(), "partition", m.Group)
			continue
		}
		msgs[n] = m
		n++
	}
	if n == 0 {
		return nil
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.inbox = append(d.inbox, msgs[:n]...)
	d.mu.Unlock()
	d.signal()
	return nil
}

func isLocalMsg(t pb.MessageType) bool {
	switch t {
	case pb.MsgHup, pb.MsgBeat, pb.MsgUnreachable, pb.MsgSnapStatus, pb.MsgCheckQuorum,
		pb.MsgStorageAppend, pb.MsgStorageAppendResp, pb.MsgStorageApply, pb.MsgStorageApplyResp:
		return true
	}
	return false
}

// Propose replicates cmd in group g through this node, which must lead it,
// and returns what the group's StateMachine.Apply returned for it. A
// *NotLeaderError means nothing was proposed; an error wrapping
// freqd.ErrOutcomeUnknown means the command may or may not commit.
func (d *Driver) Propose(ctx context.Context, g int, cmd []byte) (any, error) {
	if g < 0 || g >= d.cfg.Groups {
		return nil, fmt.Errorf("multiraft: partition %d of %d: %w", g, d.cfg.Groups, freqd.ErrInvalidArgument)
	}
	p := &proposal{group: g, cmd: cmd, done: make(chan result, 1), ctx: ctx}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrClosed
	}
	d.props = append(d.props, p)
	d.mu.Unlock()
	d.signal()
	select {
	case r := <-p.done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("partition %d: %w (%w)", g, freqd.ErrOutcomeUnknown, ctx.Err())
	}
}

// Read runs fn on group g's state machine once it reflects every write
// committed before Read was called (raft's ReadIndex, through the leader),
// and returns fn's result. fn runs on the loop goroutine: it must be quick.
func (d *Driver) Read(ctx context.Context, g int, fn func(StateMachine) any) (any, error) {
	if g < 0 || g >= d.cfg.Groups {
		return nil, fmt.Errorf("multiraft: partition %d of %d: %w", g, d.cfg.Groups, freqd.ErrInvalidArgument)
	}
	r := &readReq{group: g, fn: fn, done: make(chan result, 1), ctx: ctx}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrClosed
	}
	d.reads = append(d.reads, r)
	d.mu.Unlock()
	d.signal()
	select {
	case res := <-r.done:
		return res.v, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("partition %d: read: %w (%w)", g, freqd.ErrUnavailable, ctx.Err())
	}
}

// do runs op on the loop goroutine and waits for it.
func (d *Driver) do(ctx context.Context, op func()) error {
	done := make(chan struct{})
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.ops = append(d.ops, func() { op(); close(done) })
	d.mu.Unlock()
	d.signal()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.done:
		return ErrClosed
	}
}

// Bootstrap creates group g with this node as its only voter, in the
// state machine's initial state. It fails if the group is hosted already.
func (d *Driver) Bootstrap(ctx context.Context, g int) error {
	if g < 0 || g >= d.cfg.Groups {
		return fmt.Errorf("multiraft: partition %d of %d: %w", g, d.cfg.Groups, freqd.ErrInvalidArgument)
	}
	var err error
	if e := d.do(ctx, func() { err = d.bootstrap(g) }); e != nil {
		return e
	}
	return err
}

func (d *Driver) bootstrap(g int) error {
	if d.groups[g] != nil {
		return fmt.Errorf("multiraft: partition %d exists already: %w", g, freqd.ErrInvalidArgument)
	}
	st := raft.NewMemoryStorage()
	snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: pb.ConfState{Voters: []uint64{d.cfg.ID}}}}
	if err := st.ApplySnapshot(snap); err != nil {
		return err
	}
	r, err := d.newReplica(g, st, snap)
	if err != nil {
		return err
	}
	if err := d.persistNow(r, &diskRecord{snapshot: &snap}); err != nil {
		return err
	}
	d.groups[g] = r
	// A lone voter elects itself at once rather than after a timeout.
	if err := r.rn.Campaign(); err != nil {
		return err
	}
	d.publish(r)
	return nil
}

// persistNow writes one record of r and waits for it (outside the
// batched path: bootstrap and removal).
func (d *Driver) persistNow(r *replica, rec *diskRecord) error {
	if d.cfg.Disk == nil {
		return nil
	}
	lsn, err := d.cfg.Disk.Append(r.group, encodeRecord(nil, rec))
	if err != nil {
		return err
	}
	r.lastLSN = lsn
	return d.cfg.Disk.Wait(context.Background(), lsn)
}

// TransferLeadership asks group g's leader (this node) to hand over to id.
func (d *Driver) TransferLeadership(ctx context.Context, g int, id uint64) error {
	return d.do(ctx, func() {
		if r := d.groups[g]; r != nil {
			r.rn.TransferLeader(id)
			r.transfer = d.ticks
		}
	})
}

// Campaign makes this node's replica of g start an election now (after a
// pre-vote, so it cannot disrupt a healthy leader).
func (d *Driver) Campaign(ctx context.Context, g int) error {
	return d.do(ctx, func() {
		if r := d.groups[g]; r != nil {
			_ = r.rn.Campaign()
		}
	})
}

// round is one turn of the loop; see Driver.
func (d *Driver) round(tick bool) {
	d.mu.Lock()
	inbox, props, reads, ops := d.inbox, d.props, d.reads, d.ops
	d.inbox, d.props, d.reads, d.ops = nil, nil, nil, nil
	d.mu.Unlock()

	for _, op := range ops {
		op()
	}
	for i := range inbox {
		d.step(&inbox[i])
	}
	for _, p := range props {
		d.propose(p)
	}
	for _, rq := range reads {
		d.readIndex(rq)
	}
	if tick {
		d.ticks++
		for _, r := range d.groups {
			if r != nil && !r.quiet {
				r.rn.Tick()
			}
		}
		if d.cfg.Placement != nil && d.ticks-d.lastPlan >= 2 {
			d.lastPlan = d.ticks
			for _, r := range d.groups {
				if r != nil {
					d.reconcile(r)
				}
			}
		}
		d.expireReads()
	}
	d.handleReadies()
}

func (d *Driver) step(m *GroupMessage) {
	r := d.groups[m.Group]
	if r == nil {
		// A leader that added this node sends it appends or a snapshot:
		// create an empty replica, which raft fills by snapshot. Anything
		// else for an unknown group is stale: drop it. A heartbeat in
		// particular may come from a leader that has not yet applied this
		// node's removal and still counts its old match index: an empty
		// replica would be told to commit entries it does not have (raft
		// panics on that), whereas an append is checked against the log.
		switch m.Msg.Type {
		case pb.MsgApp, pb.MsgSnap:
		default:
			return
		}
		var err error
		r, err = d.newReplica(m.Group, raft.NewMemoryStorage(), pb.Snapshot{})
		if err != nil {
			d.log.Error("cannot create replica", "partition", m.Group, "err", err)
			return
		}
		d.groups[m.Group] = r
	}
	switch m.Msg.Type {
	case pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap:
		r.quiet = false // a leader speaks to it: it is a member again
	}
	if err := r.rn.Step(m.Msg); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		d.log.Debug("raft step", "partition", m.Group, "type", m.Msg.Type.String(), "err", err)
	}
}

func (d *Driver) propose(p *proposal) {
	r := d.groups[p.group]
	if p.ctx.Err() != nil {
		p.done <- result{err: fmt.Errorf("partition %d: %w", p.group, p.ctx.Err())}
		return
	}
	if d.failed != nil {
		p.done <- result{err: &NotLeaderError{Group: p.group}}
		return
	}
	if r == nil || r.rn.BasicStatus().RaftState != raft.StateLeader {
		e := &NotLeaderError{Group: p.group, Hosted: r != nil}
		if r != nil {
			e.Leader = r.rn.BasicStatus().Lead
		}
		p.done <- result{err: e}
		return
	}
	d.seq++
	p.seq = d.seq
	data := make([]byte, 16+len(p.cmd))
	binary.LittleEndian.PutUint64(data, d.nonce)
	binary.LittleEndian.PutUint64(data[8:], p.seq)
	copy(data[16:], p.cmd)
	if err := r.rn.Propose(data); err != nil {
		p.done <- result{err: &NotLeaderError{Group: p.group, Hosted: true, Leader: r.rn.BasicStatus().Lead}}
		return
	}
	r.waiters[p.seq] = p
}

func (d *Driver) readIndex(rq *readReq) {
	r := d.groups[rq.group]
	if r == nil || r.leader == 0 || d.failed != nil {
		e := &NotLeaderError{Group: rq.group, Hosted: r != nil}
		rq.done <- result{err: e}
		return
	}
	d.seq++
	rq.id = d.seq
	rq.tick = d.ticks
	var ctx [16]byte
	binary.LittleEndian.PutUint64(ctx[:], d.nonce)
	binary.LittleEndian.PutUint64(ctx[8:], rq.id)
	r.reads[rq.id] = rq
	r.rn.ReadIndex(ctx[:])
}

// expireReads fails reads that raft dropped silently (no leader answered
// within an election timeout) so their callers retry.
func (d *Driver) expireReads() {
	limit := uint64(2 * d.cfg.ElectionTicks)
	for _, r := range d.groups {
		if r == nil {
			continue
		}
		for id, rq := range r.reads {
			if d.ticks-rq.tick > limit || rq.ctx.Err() != nil {
				delete(r.reads, id)
				rq.done <- result{err: fmt.Errorf("partition %d: read index not confirmed: %w", r.group, freqd.ErrUnavailable)}
			}
		}
	}
}

// reconcile moves a group this node leads one step towards its placement.
func (d *Driver) reconcile(r *replica) {
	if r.removed || r.leader != d.cfg.ID {
		return
	}
	target, preferred, ok := d.cfg.Placement(r.group)
	if !ok {
		return
	}
	st := r.rn.Status()
	if st.RaftState != raft.StateLeader {
		return
	}
	in := planInput{
		self:        d.cfg.ID,
		conf:        r.conf,
		match:       make(map[uint64]uint64, len(st.Progress)),
		active:      make(map[uint64]bool, len(st.Progress)),
		lastIndex:   lastIndex(r.st),
		commit:      st.Commit,
		pending:     r.pendConf > r.applied,
		target:      target,
		preferred:   preferred,
		mayTransfer: r.transfer == 0 || d.ticks-r.transfer > uint64(2*d.cfg.ElectionTicks),
	}
	for id, pr := range st.Progress {
		in.match[id] = pr.Match
		in.active[id] = pr.RecentActive || id == d.cfg.ID
	}
	a := plan(in)
	switch a.kind {
	case actNone:
	case actTransfer:
		d.log.Debug("transferring leadership", "partition", r.group, "to", fmt.Sprintf("%016x", a.id))
		r.rn.TransferLeader(a.id)
		r.transfer = d.ticks
	default:
		cc := a.confChange()
		if err := r.rn.ProposeConfChange(cc); err != nil {
			d.log.Debug("conf change refused", "partition", r.group, "err", err)
			return
		}
		r.pendConf = lastIndex(r.st) + 1
		d.log.Debug("reconfiguring", "partition", r.group, "change", cc.String())
	}
}

// handleReadies is the heart of the loop: persist, send, apply, advance.
func (d *Driver) handleReadies() {
	if d.failed != nil {
		return
	}
	rs := d.readies[:0]
	for _, r := range d.groups {
		switch {
		case r == nil:
		case r.pendingReplay != nil:
			rs = append(rs, pendingReady{r: r, rd: *r.pendingReplay})
			r.pendingReplay = nil
		case r.rn.HasReady():
			rs = append(rs, pendingReady{r: r, rd: r.rn.Ready()})
		}
	}
	d.readies = rs
	if len(rs) == 0 {
		return
	}

	// 1. Persist every group's entries, HardState and snapshot: one append
	// per group, one wait for them all.
	var last uint64
	sync := false
	for i := range rs {
		r, rd := rs[i].r, &rs[i].rd
		hasHS := !raft.IsEmptyHardState(rd.HardState)
		hasSnap := !raft.IsEmptySnap(rd.Snapshot)
		if !hasHS && !hasSnap && len(rd.Entries) == 0 {
			continue
		}
		if d.cfg.Disk != nil {
			rec := diskRecord{entries: rd.Entries}
			if hasHS {
				rec.hardState = &rd.HardState
			}
			if hasSnap {
				rec.snapshot = &rd.Snapshot
			}
			d.recBuf = encodeRecord(d.recBuf[:0], &rec)
			lsn, err := d.cfg.Disk.Append(r.group, d.recBuf)
			if err != nil {
				d.fail(err)
				return
			}
			r.lastLSN, last = lsn, lsn
			sync = sync || rd.MustSync
		}
	}
	if last > 0 {
		_ = sync // the store's policy decides the fsync; every record is waited for
		if err := d.cfg.Disk.Wait(context.Background(), last); err != nil {
			d.fail(err)
			return
		}
	}
	for i := range rs {
		r, rd := rs[i].r, &rs[i].rd
		if !raft.IsEmptySnap(rd.Snapshot) {
			if err := r.st.ApplySnapshot(rd.Snapshot); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
				d.log.Error("apply snapshot to raft storage", "partition", r.group, "err", err)
			}
			if err := r.sm.Restore(rd.Snapshot.Data); err != nil {
				// The leader sent a snapshot we cannot read: a bug or
				// a corrupted transfer; refuse to go on with this group.
				d.log.Error("restore snapshot", "partition", r.group, "index", rd.Snapshot.Metadata.Index, "err", err)
			}
			r.conf = rd.Snapshot.Metadata.ConfState
			r.removed = !d.member(r.conf)
			r.quiet = false
			r.applied = rd.Snapshot.Metadata.Index
			r.snapIdx = rd.Snapshot.Metadata.Index
		}
		if len(rd.Entries) > 0 {
			if err := r.st.Append(rd.Entries); err != nil {
				d.log.Error("append to raft storage", "partition", r.group, "err", err)
			}
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			_ = r.st.SetHardState(rd.HardState)
		}
	}

	// 2. Send, coalesced per destination node.
	for i := range rs {
		for _, m := range rs[i].rd.Messages {
			d.outbox[m.To] = append(d.outbox[m.To], GroupMessage{Group: rs[i].r.group, Msg: m})
		}
	}
	// Destinations in id order, so a seeded in-memory run is repeatable.
	d.dests = d.dests[:0]
	for to := range d.outbox {
		d.dests = append(d.dests, to)
	}
	slices.Sort(d.dests)
	for _, to := range d.dests {
		msgs := d.outbox[to]
		d.sendBuf = EncodeBatch(d.sendBuf[:0], msgs)
		ok := d.cfg.Send(to, d.sendBuf)
		for _, gm := range msgs {
			r := d.groups[gm.Group]
			if r == nil {
				continue
			}
			if !ok {
				r.rn.ReportUnreachable(to)
			}
			if gm.Msg.Type == pb.MsgSnap {
				st := raft.SnapshotFinish
				if !ok {
					st = raft.SnapshotFailure
				}
				r.rn.ReportSnapshot(to, st)
			}
		}
		clear(msgs)
		delete(d.outbox, to)
	}

	// 3. Apply, answer, advance.
	for i := range rs {
		r, rd := rs[i].r, &rs[i].rd
		if rd.SoftState != nil {
			d.softState(r, rd.SoftState)
		}
		for _, rs := range rd.ReadStates {
			d.readState(r, rs)
		}
		for j := range rd.CommittedEntries {
			d.apply(r, &rd.CommittedEntries[j])
		}
		if !raft.IsEmptyHardState(rd.HardState) && rd.HardState.Term != r.term {
			r.term = rd.HardState.Term
		}
		d.serveReads(r)
		if r.confChanged {
			r.confChanged = false
			d.memSnapshot(r)
		}
		r.rn.Advance(*rd)
		d.publish(r)
		d.maybeSnapshot(r)
	}
	// Raft may have more (entries beyond MaxCommittedSizePerReady,
	// messages from the Advance): go round again soon.
	for _, r := range d.groups {
		if r != nil && r.rn.HasReady() {
			d.signal()
			break
		}
	}
}

func (d *Driver) softState(r *replica, ss *raft.SoftState) {
	wasLeader := r.leader == d.cfg.ID
	r.leader = ss.Lead
	if wasLeader && ss.RaftState != raft.StateLeader {
		d.failPending(r, fmt.Errorf("partition %d: %w: %w", r.group, freqd.ErrOutcomeUnknown, errLostLeadership))
	}
}

// failPending fails r's waiting proposals and reads with err.
func (d *Driver) failPending(r *replica, err error) {
	for seq, p := range r.waiters {
		delete(r.waiters, seq)
		p.done <- result{err: err}
	}
	for id, rq := range r.reads {
		delete(r.reads, id)
		rq.done <- result{err: fmt.Errorf("partition %d: read: %w", r.group, freqd.ErrUnavailable)}
	}
	for _, rq := range r.ready {
		rq.done <- result{err: fmt.Errorf("partition %d: read: %w", r.group, freqd.ErrUnavailable)}
	}
	r.ready = nil
}

func (d *Driver) readState(r *replica, rs raft.ReadState) {
	if len(rs.RequestCtx) != 16 || binary.LittleEndian.Uint64(rs.RequestCtx) != d.nonce {
		return
	}
	id := binary.LittleEndian.Uint64(rs.RequestCtx[8:])
	rq := r.reads[id]
	if rq == nil {
		return
	}
	delete(r.reads, id)
	rq.index = rs.Index
	r.ready = append(r.ready, rq)
}

func (d *Driver) serveReads(r *replica) {
	n := 0
	for _, rq := range r.ready {
		if rq.index <= r.applied {
			rq.done <- result{v: rq.fn(r.sm)}
			continue
		}
		r.ready[n] = rq
		n++
	}
	clear(r.ready[n:])
	r.ready = r.ready[:n]
}

func (d *Driver) apply(r *replica, e *pb.Entry) {
	if e.Index <= r.applied {
		return
	}
	switch e.Type {
	case pb.EntryNormal:
		if len(e.Data) >= 16 {
			nonce := binary.LittleEndian.Uint64(e.Data)
			seq := binary.LittleEndian.Uint64(e.Data[8:])
			v := r.sm.Apply(e.Index, e.Data[16:])
			if nonce == d.nonce {
				if p := r.waiters[seq]; p != nil {
					delete(r.waiters, seq)
					p.done <- result{v: v}
				}
			}
		}
	case pb.EntryConfChange, pb.EntryConfChangeV2:
		var cc pb.ConfChangeI
		if e.Type == pb.EntryConfChange {
			var c pb.ConfChange
			if err := c.Unmarshal(e.Data); err != nil {
				d.log.Error("bad conf change entry", "partition", r.group, "index", e.Index, "err", err)
				break
			}
			cc = c
		} else {
			var c pb.ConfChangeV2
			if err := c.Unmarshal(e.Data); err != nil {
				d.log.Error("bad conf change entry", "partition", r.group, "index", e.Index, "err", err)
				break
			}
			cc = c
		}
		cs := r.rn.ApplyConfChange(cc)
		r.conf = *cs
		// A snapshot sent to a new member must name it in its ConfState,
		// so the group's snapshot is retaken after the batch is applied.
		r.confChanged = true
		r.removed = !d.member(r.conf)
	}
	r.applied = e.Index
}

// member reports whether cs names this node as a voter or learner.
func (d *Driver) member(cs pb.ConfState) bool {
	id := d.cfg.ID
	return contains(cs.Voters, id) || contains(cs.Learners, id) || contains(cs.VotersOutgoing, id) || contains(cs.LearnersNext, id)
}

func contains(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// maybeSnapshot snapshots and compacts r once enough entries were applied
// since its last snapshot.
func (d *Driver) maybeSnapshot(r *replica) {
	if r.applied-r.snapIdx < d.cfg.SnapshotEntries {
		return
	}
	d.snapshot(r)
}

// snapshot takes r's snapshot at its applied index, compacts the
// in-memory log behind it (keeping a tail for slow followers) and writes
// it as the group's checkpoint, replacing its log records.
func (d *Driver) snapshot(r *replica) {
	snap, ok := d.memSnapshot(r)
	if !ok {
		// Nothing applied since the last snapshot: checkpoint that one.
		var err error
		if snap, err = r.st.Snapshot(); err != nil || raft.IsEmptySnap(snap) {
			return
		}
	}
	keep := d.cfg.SnapshotEntries / 4
	if r.applied > keep {
		if err := r.st.Compact(r.applied - keep); err != nil && !errors.Is(err, raft.ErrCompacted) {
			d.log.Error("compact", "partition", r.group, "err", err)
		}
	}
	if d.cfg.Disk == nil {
		return
	}
	last := lastIndex(r.st)
	var ents []pb.Entry
	var err error
	if last > snap.Metadata.Index {
		ents, err = r.st.Entries(snap.Metadata.Index+1, last+1, ^uint64(0))
		if err != nil {
			d.log.Error("read entries for checkpoint", "partition", r.group, "err", err)
			return
		}
	}
	hs, _, _ := r.st.InitialState()
	payload := encodeCheckpoint(nil, &checkpoint{snapshot: snap, hardState: hs, entries: ents})
	if err := d.cfg.Disk.Checkpoint(r.group, r.lastLSN, payload); err != nil {
		d.log.Warn("checkpoint", "partition", r.group, "err", err)
	}
}

// memSnapshot replaces r's in-memory snapshot (what raft sends to a
// follower that is too far behind) by one at the applied index.
func (d *Driver) memSnapshot(r *replica) (pb.Snapshot, bool) {
	cs := r.conf
	snap, err := r.st.CreateSnapshot(r.applied, &cs, r.sm.Snapshot())
	if err != nil {
		if !errors.Is(err, raft.ErrSnapOutOfDate) {
			d.log.Error("create snapshot", "partition", r.group, "err", err)
		}
		return pb.Snapshot{}, false
	}
	r.snapIdx = r.applied
	return snap, true
}

func (d *Driver) fail(err error) {
	d.failed = err
	d.failErr.Store(&err)
	d.log.Error("raft state cannot be written; this node stops replicating", "err", err)
	for _, r := range d.groups {
		if r != nil {
			// Proposals sent in earlier rounds may still commit on the
			// others: their outcome is unknown, not "unavailable".
			d.failPending(r, fmt.Errorf("partition %d: %w: %w", r.group, freqd.ErrOutcomeUnknown, err))
			// It leads nothing any more, as far as anyone here can tell:
			// requests go elsewhere instead of waiting on it.
			d.info[r.group].Store(&GroupInfo{})
			if d.cfg.OnChange != nil {
				d.cfg.OnChange(r.group, GroupInfo{})
			}
		}
	}
}

// Err is nil while the driver can persist, else the disk error that
// stopped it.
func (d *Driver) Err() error {
	if p := d.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Checkpoint writes the checkpoints of groups (those the store asks for,
// store.Store.Due): each replaces the group's older log records, so the
// store can drop segments that only they kept alive.
func (d *Driver) Checkpoint(ctx context.Context, groups []int) error {
	if !d.started.Load() {
		return nil
	}
	return d.do(ctx, func() {
		if d.failed != nil {
			return
		}
		for _, g := range groups {
			if g >= 0 && g < len(d.groups) && d.groups[g] != nil {
				d.snapshot(d.groups[g])
			}
		}
	})
}

// CheckpointAll writes every hosted group's checkpoint (its snapshot at
// the applied index, HardState and the entries after it), so that the
// next start replays no log. Close calls it first on a clean stop.
func (d *Driver) CheckpointAll(ctx context.Context) error {
	all := make([]int, len(d.groups))
	for g := range all {
		all[g] = g
	}
	return d.Checkpoint(ctx, all)
}

// publish stores r's GroupInfo for other goroutines and tells OnChange
// when the leader, term or configuration changed.
func (d *Driver) publish(r *replica) {
	old := d.info[r.group].Load()
	bs := r.rn.BasicStatus()
	role := roleName(bs.RaftState)
	if contains(r.conf.Learners, d.cfg.ID) {
		role = "learner"
	}
	hosted := !r.removed && !r.quiet
	if old.Hosted == hosted && old.Leader == bs.Lead && old.Term == bs.Term && old.Applied == r.applied && old.Role == role &&
		equalIDs(old.Voters, r.conf.Voters) && equalIDs(old.Learners, r.conf.Learners) {
		return
	}
	gi := &GroupInfo{
		Hosted:   hosted,
		Leader:   bs.Lead,
		Term:     bs.Term,
		IsLeader: bs.RaftState == raft.StateLeader,
		Role:     role,
		Voters:   append([]uint64(nil), r.conf.Voters...),
		Learners: append([]uint64(nil), r.conf.Learners...),
		Applied:  r.applied,
	}
	d.info[r.group].Store(gi)
	if d.cfg.OnChange != nil && (old.Leader != gi.Leader || old.Term != gi.Term || old.Hosted != gi.Hosted ||
		!equalIDs(old.Voters, gi.Voters) || !equalIDs(old.Learners, gi.Learners)) {
		d.cfg.OnChange(r.group, *gi)
	}
}

func roleName(s raft.StateType) string {
	switch s {
	case raft.StateLeader:
		return "leader"
	case raft.StateCandidate:
		return "candidate"
	case raft.StatePreCandidate:
		return "pre-candidate"
	}
	return "follower"
}

// Quiesce stops ticking this node's replica of group g, so that a
// replica its group removed without it ever learning so (a removed
// replica hears nothing more) stops campaigning. Its log and state stay:
// a replica is never dropped, so a leader that re-adds it, or still counts
// its old match index, finds every entry it acknowledged (an empty
// replica told to commit entries it lacks is a raft panic). A message
// from a leader wakes it. freqd calls it only once the group's leader
// shows it is not a member.
func (d *Driver) Quiesce(ctx context.Context, g int) error {
	if g < 0 || g >= d.cfg.Groups {
		return fmt.Errorf("multiraft: partition %d of %d: %w", g, d.cfg.Groups, freqd.ErrInvalidArgument)
	}
	return d.do(ctx, func() {
		if r := d.groups[g]; r != nil {
			r.quiet = true
			d.publish(r)
		}
	})
}

func equalIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// raftLogger sends raft's logs to slog; its chatty Info goes to Debug.
type raftLogger struct{ log *slog.Logger }

func (l raftLogger) Debug(v ...any)              { l.log.Debug(fmt.Sprint(v...)) }
func (l raftLogger) Debugf(f string, v ...any)   { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l raftLogger) Info(v ...any)               { l.log.Debug(fmt.Sprint(v...)) }
func (l raftLogger) Infof(f string, v ...any)    { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l raftLogger) Warning(v ...any)            { l.log.Warn(fmt.Sprint(v...)) }
func (l raftLogger) Warningf(f string, v ...any) { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l raftLogger) Error(v ...any)              { l.log.Error(fmt.Sprint(v...)) }
func (l raftLogger) Errorf(f string, v ...any)   { l.log.Error(fmt.Sprintf(f, v...)) }
func (l raftLogger) Fatal(v ...any)              { l.Panic(v...) }
func (l raftLogger) Fatalf(f string, v ...any)   { l.Panicf(f, v...) }
func (l raftLogger) Panic(v ...any)              { s := fmt.Sprint(v...); l.log.Error(s); panic(s) }
func (l raftLogger) Panicf(f string, v ...any)   { s := fmt.Sprintf(f, v...); l.log.Error(s); panic(s) }

func lastIndex(st *raft.MemoryStorage) uint64 {
	i, _ := st.LastIndex() // never fails on a MemoryStorage
	return i
}
