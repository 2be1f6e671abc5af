package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/multiraft"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/peer"
	"github.com/freqd/freqd/transport"
)

// This file ties the node to its raft groups (package multiraft) and to
// the peer transport (package peer): who is who (the directory), where
// each group's voters should be (placement, from the ring), and the
// proposal and read paths every operation goes through.

// directory maps raft ids (incarnations) to members and back, from
// gossip. Immutable once built; rebuilt with the ring.
type directory struct {
	byID   map[uint64]dirEntry
	byName map[string]uint64
}

type dirEntry struct {
	name     string
	peerAddr string
	apiAddr  string
}

// name returns the member name of raft id, or its id in hex if unknown.
func (d *directory) name(id uint64) string {
	if e, ok := d.byID[id]; ok {
		return e.name
	}
	if id == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", id)
}

// label is "name#incarnation" for status output.
func (d *directory) label(id uint64) string {
	return fmt.Sprintf("%s#%08x", d.name(id), id&0xffffffff)
}

func (n *Node) rebuildDirectory() {
	d := &directory{byID: make(map[uint64]dirEntry), byName: make(map[string]uint64)}
	for _, m := range n.ml.Members() {
		if m.Meta.Incarnation == 0 {
			continue
		}
		d.byID[m.Meta.Incarnation] = dirEntry{name: m.Name, peerAddr: m.Meta.PeerAddr, apiAddr: m.Meta.APIAddr}
		if m.Health != membership.HealthDead && m.Health != membership.HealthLeft {
			d.byName[m.Name] = m.Meta.Incarnation
		}
	}
	d.byID[n.id] = dirEntry{name: n.opts.Name, peerAddr: n.PeerAddr(), apiAddr: n.APIAddr()}
	d.byName[n.opts.Name] = n.id
	n.dir.Store(d)
}

// placement is each group's target voters and preferred leader, from one
// ring. Immutable; rebuilt with the ring.
type placement struct {
	voters    [][]uint64
	preferred []uint64
}

func (n *Node) rebuildPlacement() {
	r, d := n.ring.Load(), n.dir.Load()
	P := n.layout.Partitions()
	pl := &placement{voters: make([][]uint64, P), preferred: make([]uint64, P)}
	if len(r.Members()) > 0 {
		for id := 0; id < P; id++ {
			for i, name := range r.Replicas(id) {
				rid, ok := d.byName[name]
				if !ok {
					pl.voters[id] = nil // a replica we cannot name: no opinion yet
					break
				}
				pl.voters[id] = append(pl.voters[id], rid)
				if i == 0 {
					pl.preferred[id] = rid
				}
			}
		}
	}
	n.place.Store(pl)
}

// placementOf is the driver's Placement: cheap, lock-free.
func (n *Node) placementOf(g int) ([]uint64, uint64, bool) {
	pl := n.place.Load()
	if pl == nil || g >= len(pl.voters) || len(pl.voters[g]) == 0 {
		return nil, 0, false
	}
	return pl.voters[g], pl.preferred[g], true
}

// quorumNeed is the fewest voters a group must have to accept writes:
// a majority of the replication factor, so that an acknowledged write is
// on at least that many disks even while a group is being formed or has
// shrunk with the ring (a pool created by one node waits for a second).
func (n *Node) quorumNeed() int { return n.opts.ReplicationFactor/2 + 1 }

// newDriver builds the raft driver over the recovered state: every
// partition this node has a replica of is restored, its committed
// commands applied.
func (n *Node) newDriver() error {
	cfg := multiraft.Config{
		ID:              n.id,
		Groups:          n.layout.Partitions(),
		Recovered:       n.groups,
		Send:            n.sendBatch,
		NewStateMachine: func(g int) multiraft.StateMachine { return n.shards[g] },
		Placement:       n.placementOf,
		TickInterval:    n.opts.TickInterval,
		ElectionTicks:   n.opts.ElectionTicks,
		HeartbeatTicks:  n.opts.HeartbeatTicks,
		SnapshotEntries: n.opts.SnapshotEntries,
		OnChange:        n.onGroupChange,
		Logger:          n.log,
	}
	if n.st != nil {
		cfg.Disk = n.st
	}
	drv, err := multiraft.New(cfg)
	if err != nil {
		return fmt.Errorf("node %s: raft: %w", n.opts.Name, err)
	}
	n.groups = nil // the driver has them now
	n.drv = drv
	return nil
}

// startRaft binds the peer listener and starts the driver. The peer
// transport itself starts once gossip is up and the node knows its
// cluster id (startPeers): its handshake carries the id, and admitting a
// peer asks gossip.
func (n *Node) startRaft() error {
	ln, err := n.opts.Network.Listen(n.opts.PeerAddr)
	if err != nil {
		return fmt.Errorf("node %s: peer listener on %s: %w", n.opts.Name, n.opts.PeerAddr, err)
	}
	n.peerLn = ln.Addr().String()
	n.peerListener = ln
	n.drv.Start()
	return nil
}

// startPeers starts the peer transport for cluster cid (once).
func (n *Node) startPeers(cid uint64) error {
	var err error
	n.peerOnce.Do(func() {
		nw := n.opts.Network
		cfg := peer.DefaultConfig()
		cfg.Self = peer.Identity{Cluster: cid, ID: n.id, Name: n.opts.Name}
		cfg.Listener = n.peerListener
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return nw.DialContext(ctx, "tcp", addr) }
		cfg.Resolve = n.resolve
		cfg.Admit = n.admit
		cfg.Handler = &peerHandler{n: n}
		cfg.ErrorCodec = peerCodec{}
		cfg.Logger = n.log
		// Raft heartbeats flow every few ticks; a dead connection must be
		// noticed within an election timeout or so.
		cfg.KeepAlive = max(200*time.Millisecond, n.opts.TickInterval*time.Duration(n.opts.ElectionTicks))
		cfg.IdleTimeout = 5 * cfg.KeepAlive
		cfg.BackoffMin = max(20*time.Millisecond, n.opts.TickInterval)
		cfg.BackoffMax = time.Second
		var t *peer.TCP
		if t, err = peer.NewTCP(cfg); err != nil {
			err = fmt.Errorf("node %s: peer transport: %w", n.opts.Name, err)
			return
		}
		n.peers.Store(t)
	})
	return err
}

// stopRaft checkpoints and stops the driver, then the peer transport.
func (n *Node) stopRaft() {
	if n.drv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := n.drv.CheckpointAll(ctx); err != nil {
			n.log.Warn("checkpoint at close", "err", err)
		}
		cancel()
		n.drv.Close()
	}
	if t := n.peers.Load(); t != nil {
		_ = t.Close()
	} else if n.peerListener != nil {
		_ = n.peerListener.Close()
	}
}

// sendBatch is the driver's Send: one batch of raft messages for node to.
func (n *Node) sendBatch(to uint64, b []byte) bool {
	t := n.peers.Load()
	if t == nil {
		return false
	}
	return t.Send(to, b)
}

// resolve is the transport's address book: a member's peer address.
func (n *Node) resolve(id uint64) (string, bool) {
	e, ok := n.dir.Load().byID[id]
	if !ok || e.peerAddr == "" {
		return "", false
	}
	return e.peerAddr, true
}

// admit lets in only a current member of this cluster under its own
// name: the incarnation it claims must be the one gossip knows for that
// name. (The transport has already checked the cluster id.)
func (n *Node) admit(remote peer.Identity) error {
	for _, m := range n.ml.Members() {
		if m.Meta.Incarnation != remote.ID {
			continue
		}
		if m.Name != remote.Name {
			return fmt.Errorf("incarnation %016x belongs to member %s, not %s", remote.ID, m.Name, remote.Name)
		}
		if m.Health == membership.HealthDead || m.Health == membership.HealthLeft {
			return fmt.Errorf("member %s is %s", m.Name, m.Health)
		}
		return nil
	}
	return fmt.Errorf("%s is not a member of this cluster", remote)
}

// onGroupChange runs on the driver's loop when a group's leader, term or
// voters change: routing must look again, and waiters wake.
func (n *Node) onGroupChange(int, multiraft.GroupInfo) {
	n.view.Store(nil)
	n.signalChange()
}

// signalChange wakes everyone waiting in changes.
func (n *Node) signalChange() {
	n.chMu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.chMu.Unlock()
}

// changes returns a channel closed at the next group change.
func (n *Node) changes() <-chan struct{} {
	n.chMu.Lock()
	defer n.chMu.Unlock()
	return n.changed
}

// leads reports whether this node leads partition id now.
func (n *Node) leads(id int) bool { return n.drv.Info(id).IsLeader }

// leaderShard returns partition id's shard if this node leads it and the
// group has enough voters to commit, else an error: a *NotOwnerError
// naming the leader this node knows, or Unavailable.
func (n *Node) leaderShard(id int) (*shard, error) {
	if id < 0 || id >= len(n.shards) {
		return nil, fmt.Errorf("partition %d: no such partition in a pool of %d: %w", id, len(n.shards), freqd.ErrInvalidArgument)
	}
	info := n.drv.Info(id)
	if !info.IsLeader {
		return nil, n.notOwner(id, info)
	}
	if need := n.quorumNeed(); len(info.Voters) < need {
		return nil, fmt.Errorf("partition %d (%s) has %d voter(s) (%s) and needs %d to commit a write (replication factor %d); waiting for replicas to join: %w",
			id, n.spanString(id), len(info.Voters), n.labels(info.Voters), need, n.opts.ReplicationFactor, freqd.ErrUnavailable)
	}
	return n.shards[id], nil
}

func (n *Node) notOwner(id int, info multiraft.GroupInfo) error {
	holder := ""
	if info.Leader != 0 && info.Leader != n.id {
		holder = n.dir.Load().name(info.Leader)
		if _, ok := n.dir.Load().byID[info.Leader]; !ok {
			holder = ""
		}
	}
	return &NotOwnerError{Partition: id, Holder: holder, Node: n.opts.Name}
}

func (n *Node) labels(ids []uint64) string {
	d := n.dir.Load()
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = d.label(id)
	}
	return strings.Join(out, ",")
}

// propose replicates c in its partition through this node, which must
// lead it, and returns the result of applying it.
func (n *Node) propose(ctx context.Context, s *shard, c partition.Command) (*shardResult, error) {
	b, err := c.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w: %w", s.id, err, freqd.ErrInvalidArgument)
	}
	v, err := n.drv.Propose(ctx, s.id, b)
	if err != nil {
		return nil, n.raftErr(s.id, err)
	}
	return v.(*shardResult), nil
}

// readLinear runs fn on partition s once it reflects every write
// committed before the call (ReadIndex through the leader).
func (n *Node) readLinear(ctx context.Context, s *shard, fn func(p *partition.Partition) any) (any, error) {
	v, err := n.drv.Read(ctx, s.id, func(sm multiraft.StateMachine) any {
		sh := sm.(*shard)
		sh.mu.RLock()
		defer sh.mu.RUnlock()
		return fn(sh.p)
	})
	if err != nil {
		return nil, n.raftErr(s.id, err)
	}
	return v, nil
}

// raftErr turns the driver's errors into the node's: not-leader into a
// NotOwnerError with the leader's name.
func (n *Node) raftErr(id int, err error) error {
	var nl *multiraft.NotLeaderError
	if errors.As(err, &nl) {
		return n.notOwner(id, multiraft.GroupInfo{Leader: nl.Leader})
	}
	return err
}

// waitLeader waits, up to ArrivalWait or ctx, until partition id has a
// leader this node knows of (from its replica or from gossip), and
// reports whether it has.
func (n *Node) waitLeader(ctx context.Context, id int) bool {
	deadline := time.NewTimer(n.opts.ArrivalWait)
	defer deadline.Stop()
	for {
		ch := n.changes()
		if info := n.drv.Info(id); info.Leader != 0 {
			return true
		}
		// A node without a replica learns of leaders from gossip (the
		// view is at most viewTTL old).
		if h := n.currentView().holder[id]; h != "" && h != n.opts.Name {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// hostedGroups counts the partitions this node has a replica of.
func (n *Node) hostedGroups() int {
	k := 0
	for id := range n.shards {
		if n.drv.Info(id).Hosted {
			k++
		}
	}
	return k
}

// missingVoters names the voters of a group that this node has not heard
// of as alive members, for "no leader" answers.
func (n *Node) missingVoters(info multiraft.GroupInfo) []string {
	alive := make(map[uint64]bool)
	for _, m := range n.ml.Alive() {
		alive[m.Meta.Incarnation] = true
	}
	var out []string
	d := n.dir.Load()
	for _, v := range info.Voters {
		if !alive[v] && v != n.id {
			out = append(out, d.label(v))
		}
	}
	slices.Sort(out)
	return out
}

// peerCallErr maps a failed peer call to the transport package's errors:
// not delivered is a dial failure (transport.NotSent), anything else an
// unknown outcome.
func peerCallErr(to string, err error) error {
	var ce *peer.CallError
	if errors.As(err, &ce) {
		if ce.NotDelivered {
			return fmt.Errorf("call to %s not delivered: %w: %w", to, transport.ErrNoRoute, err)
		}
		return fmt.Errorf("call to %s: %w: %w", to, freqd.ErrOutcomeUnknown, err)
	}
	return err
}

// peerSet is the lazily started transport (see startPeers).
type peerSet = atomic.Pointer[peer.TCP]
