package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/ring"
	"github.com/freqd/freqd/transport"
)

// ringMembers is the set of nodes that own partitions: alive (or suspect)
// active members with our pool layout, plus ourselves while active.
func (n *Node) ringMembers() []string {
	var names []string
	fp := n.layout.Fingerprint()
	for _, m := range n.ml.Alive() {
		if m.Meta.State != membership.StateActive || m.Meta.Fingerprint != fp {
			continue
		}
		if m.Name == n.opts.Name && n.leaving.Load() {
			continue
		}
		names = append(names, m.Name)
	}
	return names
}

// rebuildRing builds the ring whole from the current members and publishes
// it; readers never see a half-built ring.
func (n *Node) rebuildRing() {
	members := n.ringMembers()
	old := n.ring.Load()
	if old != nil && slices.Equal(old.Members(), sortedCopy(members)) {
		return
	}
	r, err := ring.New(old.Config(), members)
	if err != nil {
		n.log.Error("cannot build ring; keeping the old one", "members", members, "err", err)
		return
	}
	n.ring.Store(r)
	n.view.Store(nil)
	n.log.Info("ring rebuilt", "members", r.Members(), "moved", len(ring.Moves(old, r)))
	n.kickRebalance()
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// ringLoop owns ring rebuilding: one token from membership per batch of
// changes, plus a slow tick as a safety net.
func (n *Node) ringLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		n.rebuildRing()
		select {
		case <-ctx.Done():
			return
		case <-n.ml.Changes():
		case <-t.C:
		}
	}
}

// loadLoop publishes the partitions this node holds, with their free and
// held counts, to gossip, so every node can route without asking.
func (n *Node) loadLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.ml.SetLoad(n.localLoad())
	}
}

func (n *Node) localLoad() membership.Load {
	var l membership.Load
	for _, s := range n.heldShards() {
		free, held, _, epoch, ok := s.load()
		if !ok {
			continue
		}
		l.Partitions = append(l.Partitions, membership.PartitionLoad{ID: uint32(s.id), Epoch: epoch, Free: uint64(free), Held: uint64(held)})
	}
	return l
}

// bootstrapLoop makes the node active: at once if it meets an initialised
// cluster, or by creating the pool if it is the lowest-named of at least
// BootstrapExpect uninitialised members (so exactly one node creates it).
func (n *Node) bootstrapLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		done, err := n.bootstrapStep()
		if err != nil {
			n.log.Error("bootstrap", "err", err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) bootstrapStep() (bool, error) {
	meta := n.ml.LocalMeta()
	if meta.Initialized {
		return true, nil
	}
	fp := n.layout.Fingerprint()
	var waiting []string
	for _, m := range n.ml.Alive() {
		if m.Meta.Fingerprint != fp {
			continue
		}
		if m.Meta.Initialized && m.Name != n.opts.Name {
			meta.Initialized, meta.State, meta.ClusterID = true, membership.StateActive, m.Meta.ClusterID
			if err := n.ml.SetMeta(meta); err != nil {
				return false, fmt.Errorf("join initialised cluster: %w", err)
			}
			n.log.Info("joined the cluster", "via", m.Name)
			n.rebuildRing()
			return true, nil
		}
		if m.Meta.State == membership.StateJoining {
			waiting = append(waiting, m.Name)
		}
	}
	if len(waiting) < n.opts.BootstrapExpect || slices.Min(waiting) != n.opts.Name {
		return false, nil
	}
	for id := 0; id < n.layout.Partitions(); id++ {
		n.install(newShard(n.newPartition(id), 1))
	}
	meta.Initialized, meta.State = true, membership.StateActive
	for meta.ClusterID == 0 {
		n.rndMu.Lock()
		meta.ClusterID = n.rnd.Uint64()
		n.rndMu.Unlock()
	}
	if err := n.ml.SetMeta(meta); err != nil {
		return false, fmt.Errorf("announce new cluster: %w", err)
	}
	n.log.Info("created the pool", "partitions", n.layout.Partitions(), "frequencies", n.layout.Size(), "members", waiting)
	n.ml.SetLoad(n.localLoad())
	n.rebuildRing()
	return true, nil
}

// rebalanceLoop hands each held partition to its ring owner when that is
// another node, and retries handoffs whose outcome was unknown.
func (n *Node) rebalanceLoop(ctx context.Context) {
	t := time.NewTicker(n.opts.RebalanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		case <-t.C:
		}
		n.rebalance(ctx)
	}
}

func (n *Node) rebalance(ctx context.Context) {
	r := n.ring.Load()
	addrs := n.apiAddrs()
	for _, s := range n.heldShards() {
		if ctx.Err() != nil {
			return
		}
		n.mu.Lock()
		pm, isPending := n.pending[s.id]
		n.mu.Unlock()
		if isPending {
			n.retryHandoff(ctx, s, pm, addrs)
			continue
		}
		owner, ok := r.Owner(s.id)
		if !ok || owner == n.opts.Name {
			continue
		}
		addr, ok := addrs[owner]
		if !ok {
			continue
		}
		n.handoff(ctx, s, owner, addr)
	}
}

// apiAddrs maps alive members to their API addresses.
func (n *Node) apiAddrs() map[string]string {
	out := make(map[string]string)
	for _, m := range n.ml.Alive() {
		out[m.Name] = m.Meta.APIAddr
	}
	return out
}

// handoff moves one partition to its new owner: freeze, send the snapshot
// with the next epoch, and drop it once the owner has it. If the transfer
// surely did not land the partition serves here again; if the outcome is
// unknown it stays frozen and the transfer is retried, because serving it
// here could fork the state.
func (n *Node) handoff(ctx context.Context, s *shard, to, addr string) {
	snap, epoch, ok, err := s.beginHandoff()
	if err != nil {
		n.log.Error("handoff", "partition", s.id, "err", err)
		return
	}
	if !ok {
		return
	}
	n.finishHandoff(ctx, s, pendingMove{to: to, epoch: epoch, snap: snap}, addr)
}

func (n *Node) retryHandoff(ctx context.Context, s *shard, pm pendingMove, addrs map[string]string) {
	addr, ok := addrs[pm.to]
	if !ok {
		n.log.Warn("handoff in doubt and its target is not alive; partition unavailable until it returns", "partition", s.id, "to", pm.to)
		return
	}
	n.finishHandoff(ctx, s, pm, addr)
}

func (n *Node) finishHandoff(ctx context.Context, s *shard, pm pendingMove, addr string) {
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := n.peer(addr).peer.Transfer(tctx, connect.NewRequest(&freqdv1.TransferRequest{
		Partition: uint32(s.id), Epoch: pm.epoch, Snapshot: pm.snap, From: n.opts.Name,
	}))
	err = transport.FromWire(err)
	switch {
	case err == nil || errors.Is(err, freqd.ErrStaleEpoch):
		s.endHandoff(true, pm.to)
		n.mu.Lock()
		delete(n.pending, s.id)
		n.mu.Unlock()
		n.drop(s, pm.epoch)
		n.view.Store(nil)
		n.log.Info("partition handed off", "partition", s.id, "to", pm.to, "epoch", pm.epoch)
	case transport.NotSent(err) || transport.Answered(err):
		// The receiver surely did not install it: serve it here again.
		n.mu.Lock()
		delete(n.pending, s.id)
		n.mu.Unlock()
		s.endHandoff(false, "")
		n.log.Warn("handoff refused or not delivered; serving here again", "partition", s.id, "to", pm.to, "err", err)
	default:
		n.mu.Lock()
		n.pending[s.id] = pm
		n.mu.Unlock()
		n.log.Warn("handoff outcome unknown; partition frozen until the transfer is confirmed", "partition", s.id, "to", pm.to, "err", err)
	}
}

// receive installs a partition sent by its previous holder.
func (n *Node) receive(req *freqdv1.TransferRequest) error {
	id := int(req.GetPartition())
	sp, ok := n.layout.Span(id)
	if !ok {
		return fmt.Errorf("transfer of partition %d: no such partition in a pool of %d: %w", id, n.layout.Partitions(), freqd.ErrInvalidArgument)
	}
	if n.leaving.Load() {
		return fmt.Errorf("transfer of partition %d: node %s is leaving: %w", id, n.opts.Name, freqd.ErrUnavailable)
	}
	if !n.isActive() {
		return fmt.Errorf("transfer of partition %d: node %s has not joined the cluster yet: %w", id, n.opts.Name, freqd.ErrUnavailable)
	}
	n.mu.Lock()
	have := n.epochs[id]
	_, holding := n.shards[id]
	n.mu.Unlock()
	switch {
	case req.GetEpoch() == have && holding:
		return nil // a retry of a transfer that already landed
	case req.GetEpoch() <= have:
		return fmt.Errorf("transfer of partition %d at epoch %d: already saw epoch %d: %w", id, req.GetEpoch(), have, freqd.ErrStaleEpoch)
	}
	p, err := partition.Restore(req.GetSnapshot())
	if err != nil {
		return fmt.Errorf("transfer of partition %d: %w", id, err)
	}
	if p.ID() != id || p.First() != sp.First || p.Last() != sp.Last {
		return fmt.Errorf("transfer of partition %d: snapshot is partition %d (%d-%d), want %d-%d: %w", id, p.ID(), p.First(), p.Last(), sp.First, sp.Last, freqd.ErrInvalidArgument)
	}
	held := p.Held() // read before install: from then on the shard's lock guards p
	n.install(newShard(p, req.GetEpoch()))
	n.view.Store(nil)
	n.log.Info("partition received", "partition", id, "from", req.GetFrom(), "epoch", req.GetEpoch(), "held", held)
	return nil
}

func (n *Node) isActive() bool {
	return n.ml.LocalMeta().State == membership.StateActive
}

// Leave hands every partition this node holds to its new owner, then
// leaves the gossip cluster. It returns how many partitions moved.
func (n *Node) Leave(ctx context.Context) (int, error) {
	held := len(n.heldShards())
	if held > 0 {
		others := 0
		for _, name := range n.ringMembers() {
			if name != n.opts.Name {
				others++
			}
		}
		if others == 0 {
			return 0, fmt.Errorf("node %s holds %d partitions and no other active member can take them: %w", n.opts.Name, held, freqd.ErrUnavailable)
		}
	}
	n.leaving.Store(true)
	meta := n.ml.LocalMeta()
	meta.State = membership.StateLeaving
	if err := n.ml.SetMeta(meta); err != nil {
		n.leaving.Store(false)
		return 0, fmt.Errorf("node %s: announce leaving: %w", n.opts.Name, err)
	}
	n.rebuildRing()
	n.kickRebalance()
	for {
		n.mu.Lock()
		left := len(n.shards)
		ch := n.changed
		n.mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			n.kickRebalance()
		case <-ctx.Done():
			return held - left, fmt.Errorf("node %s: leave: %d partitions still to hand off: %w: %w", n.opts.Name, left, freqd.ErrUnavailable, ctx.Err())
		}
	}
	if err := n.ml.Leave(2 * time.Second); err != nil {
		n.log.Warn("gossip leave", "err", err)
	}
	n.leftOnce.Do(func() { close(n.left) })
	n.log.Info("left the cluster", "handed_off", held)
	return held, nil
}
