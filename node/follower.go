package node

import (
	"context"
	"fmt"
	"time"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/partition"
)

// maxMembers bounds a configuration received from a peer.
const maxMembers = 64

// validConfig checks a configuration received from a peer.
func (n *Node) validConfig(id int, c Config) error {
	switch {
	case c.Epoch.Term == 0 || c.Epoch.Node == "":
		return fmt.Errorf("partition %d: configuration has no epoch: %w", id, freqd.ErrInvalidArgument)
	case len(c.Members) == 0 || len(c.Members) > maxMembers:
		return fmt.Errorf("partition %d: configuration has %d members (want 1..%d): %w", id, len(c.Members), maxMembers, freqd.ErrInvalidArgument)
	}
	seen := make(map[string]bool, len(c.Members))
	for _, m := range c.Members {
		if m.Name == "" || seen[m.Name] {
			return fmt.Errorf("partition %d: configuration member %q is empty or repeated: %w", id, m.Name, freqd.ErrInvalidArgument)
		}
		seen[m.Name] = true
	}
	return nil
}

// record returns the record of partition id, or an error naming the bad id.
func (n *Node) record(id uint32) (*record, error) {
	if int(id) >= len(n.recs) {
		return nil, fmt.Errorf("partition %d: no such partition in a pool of %d: %w", id, len(n.recs), freqd.ErrInvalidArgument)
	}
	return n.recs[id], nil
}

// stepDownWait bounds how long a primary asked to promise a newer epoch
// lets its in-flight commands commit first (rule T2).
const stepDownWait = 500 * time.Millisecond

// prepare is a replica's side of takeover phase 1 (rule T2). The answer
// waits until the promise is on disk.
func (n *Node) prepare(ctx context.Context, r *record, e Epoch) (*freqdv1.PrepareResponse, error) {
	if err := n.storeErr(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if e.Compare(r.promised) > 0 && r.role == rolePrimary && r.prim != nil {
		// Let what is in flight commit, refusing new commands meanwhile,
		// so that a graceful move fails no request.
		r.role, r.stepping = roleStepping, e
		ps := r.prim
		deadline := time.Now().Add(stepDownWait)
		for !ps.stopped && ps.commit < r.index && time.Now().Before(deadline) {
			ch := ps.progress
			r.mu.Unlock()
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-ch:
			case <-t.C:
			case <-n.ctx.Done():
			}
			t.Stop()
			r.mu.Lock()
		}
		if r.role == roleStepping {
			r.role = rolePrimary
		}
	}
	ok := e.Compare(r.promised) >= 0
	var err error
	if ok && e != r.promised {
		r.promiseLocked(e)
		err = n.persistLocked(r, metaLocked(r, freqdv1.DiskRecord_KIND_META))
	}
	out := n.prepareAnswerLocked(r, ok)
	if err := n.unlockDurable(ctx, r, err); err != nil {
		return nil, err
	}
	return out, nil
}

// unlockDurable releases r.mu, then waits until everything logged for r
// so far is on disk: an acknowledgement sent after it is never ahead of
// the disk. err is a failure to log, returned as it is.
func (n *Node) unlockDurable(ctx context.Context, r *record, err error) error {
	lsn := r.lsn
	r.mu.Unlock()
	if err != nil {
		return err
	}
	return n.durable(ctx, r.id, lsn)
}

// prepareAnswerLocked is a replica's answer to Prepare: whether it promised,
// its promise, committed configuration and state position. Caller holds mu.
func (n *Node) prepareAnswerLocked(r *record, promised bool) *freqdv1.PrepareResponse {
	out := &freqdv1.PrepareResponse{Self: replicaToPB(n.self), Promised: promised, Highest: epochToPB(r.promised), Committed: configToPB(r.committed), Lost: r.lost}
	if r.p != nil {
		out.HasState, out.StateEpoch, out.Index = true, epochToPB(r.stateEpoch), r.index
	}
	return out
}

// peek is what prepare(r, e) would answer, without promising anything.
func (n *Node) peek(r *record, e Epoch) *freqdv1.PrepareResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	return n.prepareAnswerLocked(r, e.Compare(r.promised) >= 0)
}

// fetch returns the state of a replica that promised e (rule T4).
func (n *Node) fetch(r *record, e Epoch) (*freqdv1.FetchResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.promised != e {
		return nil, fmt.Errorf("partition %d: fetch for epoch %v but promised %v: %w", r.id, e, r.promised, freqd.ErrStaleEpoch)
	}
	if r.p == nil {
		return nil, fmt.Errorf("partition %d: node %s holds no state: %w", r.id, n.self, freqd.ErrUnavailable)
	}
	snap, err := r.p.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("partition %d: snapshot: %w", r.id, err)
	}
	return &freqdv1.FetchResponse{Snapshot: snap, StateEpoch: epochToPB(r.stateEpoch), Index: r.index}, nil
}

// restoreFor decodes a snapshot and checks it is partition id's.
func (n *Node) restoreFor(id int, snap []byte) (*partition.Partition, error) {
	p, err := partition.Restore(snap)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", id, err)
	}
	sp, _ := n.layout.Span(id)
	if p.ID() != id || p.First() != sp.First || p.Last() != sp.Last {
		return nil, fmt.Errorf("partition %d: snapshot is partition %d (%d-%d), want %d-%d: %w", id, p.ID(), p.First(), p.Last(), sp.First, sp.Last, freqd.ErrInvalidArgument)
	}
	return p, nil
}

// install puts cfg's state on this replica (rule T5; also a primary's
// catch-up of a follower). p is the decoded snapshot, or nil when the
// replica must already hold exactly (base, index). The answer waits until
// the state is on disk.
func (n *Node) install(ctx context.Context, r *record, cfg Config, p *partition.Partition, base Epoch, index uint64, committed bool) (*freqdv1.InstallResponse, error) {
	if err := n.storeErr(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if cfg.Epoch.Compare(r.promised) < 0 || r.lost && cfg.Epoch != r.promised {
		// A lost replica accepts only the epoch it promised since (its
		// older promises are unknown).
		defer r.mu.Unlock()
		return &freqdv1.InstallResponse{Stale: true, Highest: epochToPB(r.promised)}, nil
	}
	r.promiseLocked(cfg.Epoch)
	full := false
	switch {
	case r.p != nil && r.stateEpoch == cfg.Epoch && r.index >= index:
		// A repeated or late install in this epoch: we are already there
		// or beyond (the rest came by Append). Never go back.
	case p != nil:
		r.stopPrimary()
		r.p, r.index, full = p, index, true
	case r.p != nil && r.stateEpoch == base && r.index == index:
		// We already hold exactly the chosen state.
	default:
		defer r.mu.Unlock()
		return nil, fmt.Errorf("partition %d: install without a snapshot, but node %s is at %v/%d, not %v/%d: %w",
			r.id, n.self, r.stateEpoch, r.index, base, index, freqd.ErrInvalidArgument)
	}
	r.stateEpoch = cfg.Epoch
	r.accepted = cfg
	r.lost = false
	if r.role == roleNone {
		r.role = roleFollower
	}
	if committed {
		r.commitLocked(cfg, n.self)
	}
	d, err := stateLocked(r, full)
	if err == nil {
		err = n.persistLocked(r, d)
	}
	n.signalChange()
	if err := n.unlockDurable(ctx, r, err); err != nil {
		return nil, err
	}
	return &freqdv1.InstallResponse{}, nil
}

// commit records a committed configuration (rules T6, T7). The answer
// waits until it is on disk.
func (n *Node) commit(ctx context.Context, r *record, cfg Config) (*freqdv1.CommitResponse, error) {
	if err := n.storeErr(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	out := &freqdv1.CommitResponse{Self: replicaToPB(n.self)}
	if cfg.Epoch.Compare(r.promised) < 0 || r.lost && cfg.Epoch != r.promised {
		out.Highest = epochToPB(r.promised)
		r.mu.Unlock()
		return out, nil
	}
	r.promiseLocked(cfg.Epoch)
	held := r.p != nil
	r.commitLocked(cfg, n.self)
	d := metaLocked(r, freqdv1.DiskRecord_KIND_META)
	if held && r.p == nil {
		d, _ = stateLocked(r, false) // dropped
	}
	err := n.persistLocked(r, d)
	out.Ok, out.Highest = true, epochToPB(r.promised)
	n.signalChange()
	if err := n.unlockDurable(ctx, r, err); err != nil {
		return nil, err
	}
	return out, nil
}

// appendCmds applies a primary's commands on this follower (rule R4). The
// answer waits until they are on disk.
func (n *Node) appendCmds(ctx context.Context, r *record, e Epoch, prev uint64, cmds [][]byte) (*freqdv1.AppendResponse, error) {
	if err := n.storeErr(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	out, err := n.appendLocked(r, e, prev, cmds)
	if err := n.unlockDurable(ctx, r, err); err != nil {
		return nil, err
	}
	return out, nil
}

// appendLocked applies and logs what appendCmds received. Caller holds mu.
func (n *Node) appendLocked(r *record, e Epoch, prev uint64, cmds [][]byte) (*freqdv1.AppendResponse, error) {
	switch c := e.Compare(r.promised); {
	case c < 0 || r.lost && c > 0:
		return &freqdv1.AppendResponse{Stale: true, Highest: epochToPB(r.promised), Index: r.index}, nil
	case c > 0 || r.p == nil || r.stateEpoch != e:
		return &freqdv1.AppendResponse{NeedInstall: true, Index: r.index}, nil
	}
	if prev > r.index {
		return &freqdv1.AppendResponse{Index: r.index}, nil // a gap: resend from our index
	}
	from := r.index
	for k := r.index - prev; k < uint64(len(cmds)); k++ {
		var c partition.Command
		if err := c.UnmarshalBinary(cmds[k]); err != nil {
			n.log.Error("undecodable command from the primary; asking for a snapshot", "partition", r.id, "index", prev+k+1, "err", err)
			return n.dropLocked(r)
		}
		v := r.p.Version()
		if res := r.p.Apply(c); res.Err != nil || r.p.Version() != v+1 {
			// Replicas apply the primary's resolved commands to the same
			// state, so this means divergence: drop the copy and take a
			// snapshot instead of serving a forked state.
			n.log.Error("command did not apply as on the primary; asking for a snapshot", "partition", r.id, "index", prev+k+1, "cmd", c.String(), "err", res.Err)
			return n.dropLocked(r)
		}
		r.index++
	}
	if r.accepted.Epoch == e {
		r.commitLocked(r.accepted, n.self)
	}
	if r.role == roleNone {
		r.role = roleFollower
	}
	if r.index > from {
		if err := n.persistLocked(r, commandsRecord(e, from, cmds[from-prev:])); err != nil {
			return nil, err
		}
	}
	return &freqdv1.AppendResponse{Ok: true, Index: r.index}, nil
}

// dropLocked drops a follower's state that diverged from its primary's
// (a bug guard) and asks for a snapshot instead. Caller holds mu.
func (n *Node) dropLocked(r *record) (*freqdv1.AppendResponse, error) {
	r.p, r.stateEpoch, r.index = nil, Epoch{}, 0
	d, _ := stateLocked(r, false)
	if err := n.persistLocked(r, d); err != nil {
		return nil, err
	}
	return &freqdv1.AppendResponse{NeedInstall: true}, nil
}

// signalChange wakes whoever waits for a partition to get a primary here.
func (n *Node) signalChange() {
	n.chMu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.chMu.Unlock()
}

// changes returns a channel closed at the next signalChange.
func (n *Node) changes() <-chan struct{} {
	n.chMu.Lock()
	defer n.chMu.Unlock()
	return n.changed
}

// waitPrimary waits until this node is partition id's primary, ctx ends or
// ArrivalWait passes; it reports whether it became primary.
func (n *Node) waitPrimary(ctx context.Context, r *record) bool {
	timer := time.NewTimer(n.opts.ArrivalWait)
	defer timer.Stop()
	for {
		ch := n.changes()
		r.mu.Lock()
		ok, failed := r.role == rolePrimary, r.reason != ""
		r.mu.Unlock()
		if ok {
			return true
		}
		if failed {
			// The last takeover failed for a reason it recorded; unless
			// one is running again, waiting only delays that answer.
			n.mu.Lock()
			running := n.running[r.id]
			n.mu.Unlock()
			if !running {
				return false
			}
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		case <-n.ctx.Done():
			return false
		}
	}
}
