package node

import (
	"context"
	"slices"
	"time"

	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
)

// becomePrimaryLocked makes this node the primary of r in cfg, whose state
// r now holds, and starts one sender per follower (rule R3). Caller holds
// r.mu.
func (n *Node) becomePrimaryLocked(r *record, cfg Config) {
	r.stopPrimary()
	ctx, cancel := context.WithCancel(n.ctx)
	ps := &primary{
		cfg:          cfg,
		wq:           cfg.WriteQuorum(n.opts.ReplicationFactor),
		factor:       n.opts.ReplicationFactor,
		base:         r.index,
		commit:       r.index,
		durable:      r.index,
		progress:     make(chan struct{}),
		lastProgress: time.Now(),
		cancel:       cancel,
		leases:       newLeaseTable(r.p, n.opts.Now()),
	}
	for _, m := range cfg.Members[1:] {
		// Every member got the state by Install in the takeover, or will
		// be told to install it (match 0 forces a check on first contact).
		ps.followers = append(ps.followers, &follower{id: m, wake: make(chan struct{}, 1), needInstall: true})
	}
	r.prim = ps
	r.role = rolePrimary
	r.reason = ""
	for _, f := range ps.followers {
		n.spawnCtx(ctx, func(ctx context.Context) { n.sendLoop(ctx, r, ps, f) })
	}
	ps.wakeAll()
}

// sendLoop ships r's log to one follower in order, batching whatever has
// accumulated since the last call (group commit), and installs a snapshot
// when the follower lacks the state (R3).
func (n *Node) sendLoop(ctx context.Context, r *record, ps *primary, f *follower) {
	backoff := time.Duration(0)
	timer := time.NewTimer(n.opts.RebalanceInterval)
	defer timer.Stop()
	for {
		// Idle, the sender still beats every RebalanceInterval: a primary
		// deposed while it was cut off learns it from the follower's
		// stale-epoch answer instead of believing itself primary until a
		// client happens to call it.
		wait := n.opts.RebalanceInterval
		if backoff > 0 {
			wait = backoff
		}
		timer.Reset(wait)
		beat := false
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-timer.C:
			beat = backoff == 0
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		ok := n.sendOnce(ctx, r, ps, f, beat)
		switch {
		case ctx.Err() != nil:
			return
		case ok:
			backoff = 0
		case backoff == 0:
			backoff = 20 * time.Millisecond
		default:
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}
}

// sendOnce brings f up to date once; with beat it sends an Append even if
// there is nothing new (a heartbeat). It reports false if it must retry.
func (n *Node) sendOnce(ctx context.Context, r *record, ps *primary, f *follower, beat bool) bool {
	for first := true; ; first = false {
		addr := n.addrOf(f.id.Name) // before r.mu: the view locks every record
		r.mu.Lock()
		if ps.stopped {
			r.mu.Unlock()
			return true
		}
		if f.match >= r.index && f.ackRound >= ps.round && !f.needInstall && !(beat && first) {
			r.mu.Unlock()
			return true
		}
		if addr == "" {
			f.lastErr = "not a live member"
			r.mu.Unlock()
			return false
		}
		if f.needInstall || f.match < ps.base {
			if !n.sendInstall(ctx, r, ps, f, addr) {
				return false
			}
			continue
		}
		prev, round := f.match, ps.round
		cmds := slices.Clone(ps.log[prev-ps.base : r.index-ps.base])
		epoch, id := ps.cfg.Epoch, r.id
		r.mu.Unlock()

		m, err := peerCall(ctx, n, addr, n.opts.RPCTimeout, freqdv1connect.PeerServiceClient.Append, &freqdv1.AppendRequest{
			Partition: uint32(id), Epoch: epochToPB(epoch), To: replicaToPB(f.id), PrevIndex: prev, Commands: cmds,
		})

		r.mu.Lock()
		if ps.stopped {
			r.mu.Unlock()
			return true
		}
		if err != nil {
			f.lastErr = err.Error()
			r.mu.Unlock()
			return false
		}
		switch {
		case m.GetStale():
			n.log.Info("follower promised a newer epoch; stepping down", "partition", r.id, "follower", f.id, "epoch", epoch, "newer", epochFromPB(m.GetHighest()))
			r.promiseLocked(epochFromPB(m.GetHighest()))
			r.stopPrimary()
			r.mu.Unlock()
			return true
		case m.GetNeedInstall():
			f.needInstall = true
			r.mu.Unlock()
			continue
		case m.GetOk():
			if len(cmds) > 0 {
				n.appends.Add(1)
				n.appended.Add(uint64(len(cmds)))
			}
			f.lastErr = ""
			if m.GetIndex() > f.match && m.GetIndex() <= r.index {
				f.match = m.GetIndex()
			}
			f.ackRound = max(f.ackRound, round)
			r.advance(time.Now())
		default:
			// Behind: it holds fewer commands than we sent after.
			if m.GetIndex() < f.match || m.GetIndex() < ps.base {
				f.needInstall = true
			} else {
				f.match = min(m.GetIndex(), r.index)
			}
		}
		r.mu.Unlock()
	}
}

// sendInstall sends f a snapshot of r at the primary's current index.
// Called with r.mu held; returns with it released, reporting success.
func (n *Node) sendInstall(ctx context.Context, r *record, ps *primary, f *follower, addr string) bool {
	snap, err := r.p.Snapshot()
	if err != nil {
		f.lastErr = err.Error()
		r.mu.Unlock()
		n.log.Error("snapshot for a follower", "partition", r.id, "err", err)
		return false
	}
	idx, round, cfg := r.index, ps.round, ps.cfg
	r.mu.Unlock()

	res, err := peerCall(ctx, n, addr, 4*n.opts.RPCTimeout, freqdv1connect.PeerServiceClient.Install, &freqdv1.InstallRequest{
		Partition: uint32(r.id), Config: configToPB(cfg), To: replicaToPB(f.id),
		Snapshot: snap, Index: idx, Committed: true, From: n.opts.Name,
	})

	r.mu.Lock()
	defer r.mu.Unlock()
	if ps.stopped {
		return true
	}
	if err != nil {
		f.lastErr = err.Error()
		return false
	}
	if res.GetStale() {
		n.log.Info("follower promised a newer epoch; stepping down", "partition", r.id, "follower", f.id, "newer", epochFromPB(res.GetHighest()))
		r.promiseLocked(epochFromPB(res.GetHighest()))
		r.stopPrimary()
		return true
	}
	f.needInstall, f.lastErr = false, ""
	f.match = max(f.match, idx)
	f.ackRound = max(f.ackRound, round)
	r.advance(time.Now())
	return true
}
