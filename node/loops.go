package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
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
	// Several goroutines rebuild (ringLoop, bootstrap, Leave, a disk
	// failure); one at a time, so ring, directory and placement are
	// published in order.
	n.ringMu.Lock()
	defer n.ringMu.Unlock()
	n.rebuildDirectory()
	members := n.ringMembers()
	old := n.ring.Load()
	if old != nil && slices.Equal(old.Members(), sortedCopy(members)) {
		n.rebuildPlacement() // an incarnation may have changed
		return
	}
	r, err := ring.New(old.Config(), members)
	if err != nil {
		n.log.Error("cannot build ring; keeping the old one", "members", members, "err", err)
		return
	}
	n.ring.Store(r)
	n.rebuildPlacement()
	n.view.Store(nil)
	n.log.Info("ring rebuilt", "members", r.Members(), "moved", len(ring.Moves(old, r)))
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
	for _, s := range n.shards {
		if info := n.drv.Info(s.id); info.IsLeader {
			free, held := s.counts()
			l.Partitions = append(l.Partitions, membership.PartitionLoad{ID: uint32(s.id), Term: info.Term, Free: free, Held: held})
		}
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
			if err := n.startPeers(meta.ClusterID); err != nil {
				return false, err
			}
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
	// Every partition's raft group starts with this node as its only
	// voter; placement then adds the ring's other replicas (as learners
	// first), and writes wait until a group has a majority of the
	// replication factor (quorumNeed).
	if err := n.storeErr(); err != nil {
		return false, fmt.Errorf("create the pool: %w", err)
	}
	for meta.ClusterID == 0 {
		n.rndMu.Lock()
		meta.ClusterID = n.rnd.Uint64()
		n.rndMu.Unlock()
	}
	for id := range n.shards {
		if n.drv.Info(id).Hosted {
			continue // a creation interrupted before the identity was saved
		}
		if err := n.drv.Bootstrap(n.ctx, id); err != nil {
			return false, fmt.Errorf("create the pool: partition %d: %w", id, err)
		}
	}
	// The identity is written after the groups: a crash in between leaves
	// raft state with an uninitialised node file, which restarts as an
	// uninitialised member and discards it (openStore).
	if err := n.saveIdentity(n.identity(true, meta.ClusterID)); err != nil {
		return false, fmt.Errorf("create the pool: %w", err)
	}
	if err := n.startPeers(meta.ClusterID); err != nil {
		return false, err
	}
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

// Leave takes this node out of the ring and waits until no raft group
// has it as a replica any more: each group's leader adds the ring's new
// replica (a learner that catches up by snapshot), promotes it, moves
// leadership away from this node if it leads, and removes it. Then it
// leaves the gossip cluster. It returns how many partitions it handed off.
func (n *Node) Leave(ctx context.Context) (int, error) {
	held := n.hostedGroups()
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
		left := n.hostedGroups()
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

// retireInterval is how often a node checks the replicas it hosts outside
// their placement.
const retireInterval = 500 * time.Millisecond

// retireLoop quiesces replicas that their group has removed without them
// learning it (a removed replica receives nothing more, so it may never
// apply its own removal, and would campaign in vain): for each hosted
// group whose placement does not name this node, it asks the group's
// leader for its view, and quiesces the replica (multiraft.Quiesce: it
// keeps its log) once a leader at a term and applied index at least this
// replica's lists it neither as voter nor as learner.
func (n *Node) retireLoop(ctx context.Context) {
	t := time.NewTicker(retireInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		views := make(map[uint64]map[uint32]*freqdv1.ReplicaState)
		d := n.dir.Load()
		self := d.label(n.id)
		for id := range n.shards {
			info := n.drv.Info(id)
			if !info.Hosted || info.IsLeader || info.Leader == 0 || info.Leader == n.id {
				continue
			}
			if voters, _, ok := n.placementOf(id); !ok || slices.Contains(voters, n.id) {
				continue
			}
			view, ok := views[info.Leader]
			if !ok {
				view = make(map[uint32]*freqdv1.ReplicaState)
				cctx, cancel := context.WithTimeout(ctx, n.opts.RPCTimeout)
				var res freqdv1.ReplicasResponse
				if err := n.call(cctx, info.Leader, methodReplicas, &freqdv1.ReplicasRequest{}, &res); err == nil {
					for _, st := range res.GetReplicas() {
						view[st.GetPartition()] = st
					}
				}
				cancel()
				views[info.Leader] = view
			}
			st := view[uint32(id)]
			if st == nil || st.GetRole() != "leader" || st.GetTerm() < info.Term || st.GetApplied() < info.Applied ||
				slices.Contains(st.GetVoters(), self) || slices.Contains(st.GetLearners(), self) {
				continue
			}
			if err := n.drv.Quiesce(ctx, id); err == nil {
				n.log.Debug("quiesced a replica its group removed", "partition", id, "leader", st.GetLeader(), "term", st.GetTerm())
				n.signalChange()
			}
		}
	}
}
