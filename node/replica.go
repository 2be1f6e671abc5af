package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"sync"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/partition"
)

// role is what a node does for one partition.
type role uint8

const (
	roleNone     role = iota // no state, or state that is no longer current
	roleFollower             // holds state installed by a configuration's primary
	rolePrimary              // orders and commits commands (R1)
	roleStepping             // primary letting its in-flight commands commit before promising a newer epoch (T2)
)

func (r role) String() string {
	return [...]string{"none", "follower", "primary", "stepping-down"}[r]
}

// record is this node's knowledge of one partition (docs/replication.md,
// "Each node keeps, per partition, a record"). mu guards every field; it is
// never held across network I/O. Records are created with the node and
// never deleted.
type record struct {
	id int

	mu        sync.Mutex
	promised  Epoch  // highest epoch promised; older messages are refused
	committed Config // newest configuration known committed
	accepted  Config // configuration the state was installed under
	p         *partition.Partition
	// stateEpoch is the epoch of the primary that last wrote p; index the
	// number of commands applied to it since the pool was created.
	stateEpoch Epoch
	index      uint64
	role       role
	prim       *primary // non-nil while role is primary or stepping down
	stepping   Epoch    // the epoch a stepping-down primary is about to promise
	// reason says why this node's last takeover of the partition failed
	// ("" when it has not or it succeeded).
	reason string
	// lost is set when this node lost the partition's state and promises
	// on disk (a damaged file): its promise then counts for nothing, and
	// it accepts only an epoch it promised since, until a takeover
	// installs the state again (docs/storage.md).
	lost bool
	// lsn is the store position of the record's last change on disk; an
	// answer acknowledging a change waits until the store is durable up
	// to it.
	lsn uint64
}

// position is a state's place in history (rule T4): newer epoch first,
// then more commands.
type position struct {
	epoch Epoch
	index uint64
}

func (a position) compare(b position) int {
	if c := a.epoch.Compare(b.epoch); c != 0 {
		return c
	}
	switch {
	case a.index < b.index:
		return -1
	case a.index > b.index:
		return 1
	}
	return 0
}

func (r *record) positionLocked() position { return position{r.stateEpoch, r.index} }

// primary is the state a primary keeps for one configuration. Guarded by
// the record's mu, except followers' wake channels.
type primary struct {
	cfg    Config
	wq     int // write quorum, counting the primary
	factor int
	// log holds the resolved commands (base, record.index], encoded.
	log  [][]byte
	base uint64
	// commit is the highest index applied by wq members; durable is the
	// highest index on this primary's own disk (its own vote).
	commit  uint64
	durable uint64
	// round is the newest heartbeat round a read asked for (R5); followers
	// acknowledge rounds, and a read waits for wq acknowledgements.
	round     uint64
	followers []*follower
	// progress is closed and replaced whenever commit or a round's
	// acknowledgements advance, or the primary stops.
	progress chan struct{}
	// lastProgress is when an acknowledgement last arrived, or when the
	// primary last went from idle to waiting (monotonic clock).
	lastProgress time.Time
	stopped      bool
	cancel       context.CancelFunc
	// leases is the primary's clock for the partition's leases.
	leases *leaseTable
}

// follower is the primary's view of one follower; its fields are guarded
// by the record's mu.
type follower struct {
	id          ReplicaID
	match       uint64 // highest index known to be applied there
	ackRound    uint64 // newest heartbeat round it acknowledged
	needInstall bool
	lastErr     string
	wake        chan struct{} // capacity 1
}

// maxLog bounds the primary's in-memory log; a follower further behind gets
// a snapshot instead.
const maxLog = 1 << 16

func (ps *primary) signal(now time.Time) {
	ps.lastProgress = now
	close(ps.progress)
	ps.progress = make(chan struct{})
}

func (ps *primary) wakeAll() {
	for _, f := range ps.followers {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// pending reports whether the primary waits for acknowledgements.
func (ps *primary) pending(index uint64) bool { return ps.commit < index || !ps.confirmed(ps.round) }

// stalled reports whether it has waited longer than d without any.
func (ps *primary) stalled(index uint64, now time.Time, d time.Duration) bool {
	return ps.pending(index) && now.Sub(ps.lastProgress) > d
}

// confirmed reports whether wq members (the primary included) have
// acknowledged round.
func (ps *primary) confirmed(round uint64) bool {
	if round == 0 {
		return true
	}
	k := 1
	for _, f := range ps.followers {
		if f.ackRound >= round {
			k++
		}
	}
	return k >= ps.wq
}

// advance recomputes the commit index from the followers' matches, trims
// the log and wakes the waiters. Caller holds mu.
func (r *record) advance(now time.Time) {
	ps := r.prim
	matches := make([]uint64, 0, len(ps.followers)+1)
	matches = append(matches, ps.durable)
	low := r.index
	for _, f := range ps.followers {
		matches = append(matches, f.match)
		low = min(low, f.match)
	}
	slices.Sort(matches)
	slices.Reverse(matches)
	commit := ps.commit
	if ps.wq <= len(matches) {
		commit = max(commit, matches[ps.wq-1])
	}
	// Trim what every follower has; cap the rest.
	if low > ps.base {
		drop := min(low-ps.base, uint64(len(ps.log)))
		ps.log = slices.Delete(ps.log, 0, int(drop))
		ps.base += drop
	}
	if len(ps.log) > maxLog {
		drop := uint64(len(ps.log) - maxLog)
		ps.log = slices.Delete(ps.log, 0, int(drop))
		ps.base += drop
	}
	ps.commit = commit
	ps.signal(now)
}

// stopPrimary ends this node's primary role for r: waiters wake and find
// the primary gone, senders stop. Caller holds mu.
func (r *record) stopPrimary() {
	if r.prim == nil {
		return
	}
	ps := r.prim
	ps.stopped = true
	ps.cancel()
	close(ps.progress)
	ps.progress = make(chan struct{})
	r.prim = nil
	if r.role == rolePrimary || r.role == roleStepping {
		r.role = roleFollower
	}
}

// promiseLocked raises the promise to e (if newer), stepping a primary of
// an older epoch down. Caller holds mu.
func (r *record) promiseLocked(e Epoch) {
	if e.Compare(r.promised) > 0 {
		r.promised = e
	}
	if r.prim != nil && r.prim.cfg.Epoch.Compare(r.promised) < 0 {
		r.stopPrimary()
	}
}

// commitLocked records that c is committed (rule T6/T7). A replica not in
// c drops its state; a member whose state was installed in c follows.
func (r *record) commitLocked(c Config, self ReplicaID) {
	if c.Epoch.Compare(r.committed.Epoch) > 0 {
		r.committed = c
	}
	if !c.Has(self) {
		if r.p != nil && r.stateEpoch.Compare(c.Epoch) < 0 {
			r.stopPrimary()
			r.p, r.role = nil, roleNone
			r.accepted = Config{}
		}
		return
	}
	if r.stateEpoch == c.Epoch && r.role == roleNone {
		r.role = roleFollower
	}
}

// exec runs fn against the partition on this primary and waits until its
// effect is committed (rule R2) or, for a command that changed nothing,
// until the read is confirmed (R5). fn returns the resolved command to log
// when it changed the state, nil otherwise. The error is a *NotOwnerError
// when this node is not the primary (nothing was applied), or wraps
// ErrUnavailable.
func (n *Node) exec(ctx context.Context, r *record, fn func(p *partition.Partition) *partition.Command) error {
	if err := n.storeErr(); err != nil {
		return fmt.Errorf("partition %d (%s): %w", r.id, n.spanString(r.id), err)
	}
	r.mu.Lock()
	if r.role != rolePrimary || r.prim == nil {
		err := n.notPrimaryLocked(r)
		r.mu.Unlock()
		return err
	}
	ps := r.prim
	now := time.Now()
	if len(ps.cfg.Members) < ps.wq {
		r.mu.Unlock()
		return fmt.Errorf("partition %d (%s) has %d replicas, fewer than %d (a majority of replication factor %d); it grants nothing: %w",
			r.id, n.spanString(r.id), len(ps.cfg.Members), ps.wq, ps.factor, freqd.ErrUnavailable)
	}
	if ps.stalled(r.index, now, n.opts.StallTimeout) {
		err := fmt.Errorf("partition %d (%s): primary %s cannot reach a quorum (%d of %d replicas needed; %s): %w",
			r.id, n.spanString(r.id), n.self, ps.wq, len(ps.cfg.Members), n.laggards(ps), freqd.ErrUnavailable)
		r.mu.Unlock()
		return err
	}
	if !ps.pending(r.index) {
		ps.lastProgress = now // idle until now: the stall clock starts here
	}
	cmd := fn(r.p)
	var pos, round uint64
	write := cmd != nil
	if write {
		b, err := cmd.AppendBinary(nil)
		if err != nil {
			// The command was applied but cannot be shipped: a bug. Step
			// down so the partition is rebuilt from the replicas.
			n.log.Error("cannot encode applied command; stepping down", "partition", r.id, "cmd", cmd.String(), "err", err)
			r.stopPrimary()
			r.role, r.p = roleNone, nil
			if d, err := stateLocked(r, false); err == nil {
				_ = n.persistLocked(r, d)
			}
			r.mu.Unlock()
			return fmt.Errorf("partition %d: encode command: %w: %w", r.id, freqd.ErrOutcomeUnknown, err)
		}
		r.index++
		ps.log = append(ps.log, b)
		pos = r.index
		// A failed append leaves the command to the followers' votes: it
		// commits only if wq of them have it on disk.
		_ = n.persistLocked(r, commandsRecord(ps.cfg.Epoch, pos-1, [][]byte{b}))
	} else {
		pos = r.index
		if len(ps.followers) > 0 {
			ps.round++
			round = ps.round
		}
	}
	lsn := r.lsn
	if ps.wq <= 1 {
		r.mu.Unlock()
		if !write {
			return nil
		}
		if err := n.durable(ctx, r.id, lsn); err != nil {
			return fmt.Errorf("partition %d (%s): applied but not on disk: %w: %w", r.id, n.spanString(r.id), freqd.ErrOutcomeUnknown, err)
		}
		r.mu.Lock()
		ps.durable = max(ps.durable, pos)
		ps.commit = max(ps.commit, pos)
		r.mu.Unlock()
		return nil
	}
	ps.wakeAll()
	if write {
		r.mu.Unlock()
		err := n.durable(ctx, r.id, lsn)
		r.mu.Lock()
		if err == nil && !ps.stopped {
			ps.durable = max(ps.durable, pos)
			r.advance(time.Now())
		}
	}
	stall := time.NewTimer(n.opts.StallTimeout)
	defer stall.Stop()
	for {
		if ps.stopped {
			r.mu.Unlock()
			if write {
				return fmt.Errorf("partition %d (%s): primary %s stepped down before the command committed: %w", r.id, n.spanString(r.id), n.self, freqd.ErrOutcomeUnknown)
			}
			return &NotOwnerError{Partition: r.id, Node: n.opts.Name}
		}
		if ps.commit >= pos && ps.confirmed(round) {
			r.mu.Unlock()
			return nil
		}
		if ps.stalled(r.index, time.Now(), n.opts.StallTimeout) {
			err := fmt.Errorf("partition %d (%s): primary %s lost its quorum (%d of %d replicas needed; %s)",
				r.id, n.spanString(r.id), n.self, ps.wq, len(ps.cfg.Members), n.laggards(ps))
			r.mu.Unlock()
			if write {
				return fmt.Errorf("%w: %w", err, freqd.ErrOutcomeUnknown)
			}
			return fmt.Errorf("%w: %w", err, freqd.ErrUnavailable)
		}
		ch := ps.progress
		r.mu.Unlock()
		select {
		case <-ch:
		case <-stall.C:
			stall.Reset(n.opts.StallTimeout / 4)
		case <-ctx.Done():
			if write {
				return fmt.Errorf("partition %d (%s): not committed before the deadline: %w: %w", r.id, n.spanString(r.id), freqd.ErrOutcomeUnknown, ctx.Err())
			}
			return fmt.Errorf("partition %d (%s): read not confirmed before the deadline: %w: %w", r.id, n.spanString(r.id), freqd.ErrUnavailable, ctx.Err())
		}
		r.mu.Lock()
	}
}

// notPrimaryLocked is the answer of a node that is not r's primary: a
// *NotOwnerError naming the node most likely to be. Caller holds mu.
func (n *Node) notPrimaryLocked(r *record) error {
	hint := ""
	switch {
	case r.role == roleStepping:
		hint = r.stepping.Node
	case r.promised.Compare(r.committed.Epoch) > 0 && r.promised.Node != n.opts.Name:
		hint = r.promised.Node // a takeover is under way
	case !r.committed.IsZero() && r.committed.Primary().Name != n.opts.Name:
		hint = r.committed.Primary().Name
	}
	return &NotOwnerError{Partition: r.id, Holder: hint, Node: n.opts.Name}
}

// laggards describes the followers that are not acknowledging. Caller
// holds mu.
func (n *Node) laggards(ps *primary) string {
	var out []string
	for _, f := range ps.followers {
		if f.match < ps.commit || f.lastErr != "" {
			s := f.id.String()
			if f.lastErr != "" {
				s += ": " + f.lastErr
			}
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return "no follower reported an error"
	}
	return fmt.Sprintf("not acknowledging: %v", out)
}

// writableLocked reports whether r's primary could commit now, and why
// not. Caller holds mu.
func (n *Node) writableLocked(r *record) (bool, string) {
	if r.role != rolePrimary || r.prim == nil {
		if r.reason != "" {
			return false, r.reason
		}
		return false, "this node is not the primary"
	}
	if err := n.storeErr(); err != nil {
		return false, err.Error()
	}
	ps := r.prim
	if len(ps.cfg.Members) < ps.wq {
		return false, fmt.Sprintf("%d replicas, fewer than %d (a majority of replication factor %d)", len(ps.cfg.Members), ps.wq, ps.factor)
	}
	if now := time.Now(); ps.stalled(r.index, now, n.opts.StallTimeout) {
		return false, fmt.Sprintf("no quorum for %v: %s", now.Sub(ps.lastProgress).Round(time.Millisecond), n.laggards(ps))
	}
	return true, ""
}
