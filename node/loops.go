package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/ring"
)

// ringMembers is the set of nodes that own partitions: alive (or suspect)
// active members with our pool layout that can write their data
// directories (not degraded), plus ourselves while active and able to.
func (n *Node) ringMembers() []string {
	var names []string
	fp := n.layout.Fingerprint()
	for _, m := range n.ml.Alive() {
		if m.Meta.State != membership.StateActive || m.Meta.Fingerprint != fp || m.Meta.Degraded {
			continue
		}
		if m.Name == n.opts.Name && (n.leaving.Load() || n.storeErr() != nil) {
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
	n.kickReconcile()
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
	for _, r := range n.recs {
		r.mu.Lock()
		if r.role == rolePrimary && r.p != nil {
			l.Partitions = append(l.Partitions, membership.PartitionLoad{ID: uint32(r.id), Epoch: r.prim.cfg.Epoch.Term, Free: uint64(r.p.Free()), Held: uint64(r.p.Held())})
		}
		r.mu.Unlock()
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
			if err := n.saveIdentity(n.identity(true, meta.ClusterID)); err != nil {
				// It joins anyway (to report its state); it will refuse
				// every write that it cannot keep.
				n.log.Error("cannot record joining the cluster in the data directory", "err", err)
			}
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
	// B1: every partition empty, committed in ((1, self), [self]).
	if err := n.storeErr(); err != nil {
		return false, fmt.Errorf("create the pool: %w", err)
	}
	for meta.ClusterID == 0 {
		n.rndMu.Lock()
		meta.ClusterID = n.rnd.Uint64()
		n.rndMu.Unlock()
	}
	c1 := Config{Epoch: Epoch{Term: 1, Node: n.opts.Name, Incarnation: n.self.Incarnation}, Members: []ReplicaID{n.self}}
	var lsn uint64
	for _, r := range n.recs {
		r.mu.Lock()
		r.promised, r.committed, r.accepted = c1.Epoch, c1, c1
		r.p, r.stateEpoch, r.index = n.newPartition(r.id), c1.Epoch, 0
		d, err := stateLocked(r, true)
		if err == nil {
			err = n.persistLocked(r, d)
		}
		lsn = max(lsn, r.lsn)
		r.mu.Unlock()
		if err != nil {
			return false, fmt.Errorf("create the pool: %w", err)
		}
	}
	if err := n.durable(n.ctx, 0, lsn); err != nil {
		return false, fmt.Errorf("create the pool: %w", err)
	}
	// The identity is written after the pool: a crash in between leaves
	// partition data with an uninitialised node file, which restarts as
	// an uninitialised member and bootstraps again over it.
	if err := n.saveIdentity(n.identity(true, meta.ClusterID)); err != nil {
		return false, fmt.Errorf("create the pool: %w", err)
	}
	for _, r := range n.recs {
		r.mu.Lock()
		n.becomePrimaryLocked(r, c1)
		r.mu.Unlock()
	}
	n.seeTerm(1)
	meta.Initialized, meta.State = true, membership.StateActive
	if err := n.ml.SetMeta(meta); err != nil {
		return false, fmt.Errorf("announce new cluster: %w", err)
	}
	n.log.Info("created the pool", "partitions", n.layout.Partitions(), "frequencies", n.layout.Size(), "members", waiting)
	n.ml.SetLoad(n.localLoad())
	n.rebuildRing()
	return true, nil
}

// apiAddrs maps alive members to their API addresses.
func (n *Node) apiAddrs() map[string]string {
	out := make(map[string]string)
	for _, m := range n.ml.Alive() {
		out[m.Name] = m.Meta.APIAddr
	}
	return out
}

func (n *Node) isActive() bool {
	return n.ml.LocalMeta().State == membership.StateActive
}

// replicating counts the partitions this node still holds state for.
func (n *Node) replicating() int {
	k := 0
	for _, r := range n.recs {
		r.mu.Lock()
		if r.p != nil {
			k++
		}
		r.mu.Unlock()
	}
	return k
}

// Leave takes this node out of the ring, waits until every partition it
// replicated has a committed configuration without it (the owners' takeovers
// fetch its state first, rule T7), then leaves the gossip cluster. It
// returns how many partitions it handed off.
func (n *Node) Leave(ctx context.Context) (int, error) {
	held := n.replicating()
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
	for {
		ch := n.changes()
		left := n.replicating()
		if left == 0 {
			break
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
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
