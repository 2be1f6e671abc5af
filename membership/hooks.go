package membership

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"

	"github.com/hashicorp/memberlist"
)

// hooks receives memberlist's callbacks for a Membership. The callbacks
// only decode, record under mu and signal (non-blocking); they never call
// back into memberlist and never block on the network. memberlist calls
// the event callbacks with its own node lock held.
type hooks struct{ m *Membership }

var (
	_ memberlist.Delegate      = hooks{}
	_ memberlist.EventDelegate = hooks{}
	_ memberlist.AliveDelegate = hooks{}
	_ memberlist.MergeDelegate = hooks{}
)

// NodeMeta returns the encoded local metadata (always within limit:
// MarshalBinary output fits memberlist.MetaMaxSize).
func (h hooks) NodeMeta(limit int) []byte {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if len(h.m.metaBytes) > limit {
		h.m.log.Error("local metadata does not fit", slog.Int("bytes", len(h.m.metaBytes)), slog.Int("limit", limit))
		return nil
	}
	return slices.Clone(h.m.metaBytes)
}

// NotifyMsg takes one load message (gossip delivers one user message per
// call) and, if it was news, queues it again so it spreads epidemically.
func (h hooks) NotifyMsg(b []byte) {
	c, err := decodeLoadMessage(b)
	if err != nil {
		h.m.log.Warn("dropping malformed gossip message", slog.Any("err", err))
		return
	}
	h.m.mu.Lock()
	news := h.m.applyChunkLocked(c)
	h.m.mu.Unlock()
	if news {
		h.m.queue.QueueBroadcast(&loadBroadcast{sender: c.sender, seq: c.seq, msg: slices.Clone(b)})
	}
}

// GetBroadcasts hands memberlist the queued load messages that fit.
func (h hooks) GetBroadcasts(overhead, limit int) [][]byte {
	return h.m.queue.GetBroadcasts(overhead, limit)
}

// LocalState returns every node's latest complete load, ours included.
func (h hooks) LocalState(join bool) []byte {
	m := h.m
	m.mu.Lock()
	recs := make([]loadRecord, 0, len(m.loads)+1)
	recs = append(recs, loadRecord{name: m.cfg.Name, seq: m.localSeq, load: m.localLoad})
	for name, e := range m.loads {
		if e.have {
			recs = append(recs, loadRecord{name: name, seq: e.seq, load: e.load})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(recs, func(a, b loadRecord) int { return cmp.Compare(a.name, b.name) })
	return encodeLoadState(recs)
}

// MergeRemoteState merges a peer's load table: each node's entry is
// taken if its seq is newer than ours.
func (h hooks) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	recs, err := decodeLoadState(buf)
	if err != nil {
		h.m.log.Warn("dropping malformed push-pull load state", slog.Any("err", err))
		return
	}
	m := h.m
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rec := range recs {
		if rec.name == m.cfg.Name {
			m.seenOwnSeqLocked(rec.seq)
			continue
		}
		e := m.loadEntryLocked(rec.name)
		if e.have && rec.seq <= e.seq {
			continue
		}
		e.have, e.seq, e.load, e.updated = true, rec.seq, rec.load, now
		if e.pend != nil && e.pend.seq <= rec.seq {
			e.pend = nil
		}
	}
}

// NotifyJoin records a member that joined (or came back).
func (h hooks) NotifyJoin(n *memberlist.Node) { h.m.recordAlive(n) }

// NotifyUpdate records a member's new metadata.
func (h hooks) NotifyUpdate(n *memberlist.Node) { h.m.recordAlive(n) }

// NotifyLeave records a member that memberlist declared dead or left.
// memberlist does not tell which (Node.State is not maintained for
// callbacks), so a member whose last metadata said StateLeaving is
// HealthLeft and any other HealthDead.
func (h hooks) NotifyLeave(n *memberlist.Node) {
	m := h.m
	now := m.cfg.Now()
	m.mu.Lock()
	e := m.members[n.Name]
	if e == nil {
		e = &memberEntry{m: m.memberFromNodeLocked(n)}
		m.members[n.Name] = e
	}
	health := HealthDead
	if e.m.Meta.State == StateLeaving {
		health = HealthLeft
	}
	changed := e.m.Health != health
	e.m.Health = health
	if changed {
		e.since = now
	}
	m.mu.Unlock()
	m.log.Debug("member gone", slog.String("member", n.Name), slog.String("health", health.String()))
	m.signal()
}

// NotifyAlive refuses a member whose metadata does not decode or whose
// pool fingerprint differs from ours.
func (h hooks) NotifyAlive(peer *memberlist.Node) error {
	return h.m.admit(peer.Name, peer.Meta)
}

// NotifyMerge refuses a join exchange if any live member the peer knows
// would be refused by NotifyAlive.
func (h hooks) NotifyMerge(peers []*memberlist.Node) error {
	for _, p := range peers {
		if p.State == memberlist.StateDead || p.State == memberlist.StateLeft {
			continue
		}
		if err := h.m.admit(p.Name, p.Meta); err != nil {
			return err
		}
	}
	return nil
}

// admit checks a peer's metadata against ours. The first refusal of a
// given member and fingerprint is logged at error, later ones at debug
// (memberlist repeats alive messages).
func (m *Membership) admit(name string, raw []byte) error {
	if name == m.cfg.Name {
		return nil
	}
	var meta Meta
	if err := meta.UnmarshalBinary(raw); err != nil {
		m.log.Warn("refusing member with malformed metadata", slog.String("member", name), slog.Any("err", err))
		return fmt.Errorf("membership: member %q metadata: %w", name, err)
	}
	m.mu.Lock()
	ours := m.localMeta.Fingerprint
	ourCluster := m.localMeta.ClusterID
	logged, seen := m.refused[name]
	if meta.Fingerprint != ours {
		m.refused[name] = meta.Fingerprint
	}
	m.mu.Unlock()
	if meta.Fingerprint == ours {
		if ourCluster != 0 && meta.ClusterID != 0 && meta.ClusterID != ourCluster {
			m.log.Log(m.ctx, slog.LevelError, "refusing member of another cluster (two clusters formed apart must not merge: each has its own copy of the pool)",
				slog.String("member", name),
				slog.String("their_cluster", fmt.Sprintf("%#016x", meta.ClusterID)),
				slog.String("our_cluster", fmt.Sprintf("%#016x", ourCluster)))
			return fmt.Errorf("membership: member %q belongs to cluster %#016x, ours is %#016x", name, meta.ClusterID, ourCluster)
		}
		return nil
	}
	err := fmt.Errorf("membership: member %q has pool fingerprint %#016x, ours is %#016x", name, meta.Fingerprint, ours)
	level := slog.LevelError
	if seen && logged == meta.Fingerprint {
		level = slog.LevelDebug
	}
	m.log.Log(m.ctx, level, "refusing member with a different pool fingerprint",
		slog.String("member", name),
		slog.String("their_fingerprint", fmt.Sprintf("%#016x", meta.Fingerprint)),
		slog.String("our_fingerprint", fmt.Sprintf("%#016x", ours)))
	return err
}

func (m *Membership) recordAlive(n *memberlist.Node) {
	now := m.cfg.Now()
	m.mu.Lock()
	mem := m.memberFromNodeLocked(n)
	e := m.members[n.Name]
	if e == nil {
		e = &memberEntry{since: now}
		m.members[n.Name] = e
	} else if e.m.Health != HealthAlive {
		e.since = now
	}
	e.m = mem
	m.mu.Unlock()
	m.signal()
}

// memberFromNodeLocked converts a memberlist node (alive) to a Member.
func (m *Membership) memberFromNodeLocked(n *memberlist.Node) Member {
	mem := Member{Name: n.Name, GossipAddr: n.Address(), Health: HealthAlive}
	if n.Name == m.cfg.Name {
		mem.Meta = m.localMeta
	} else if err := mem.Meta.UnmarshalBinary(n.Meta); err != nil {
		// NotifyAlive refused such metadata, so this is not expected.
		m.log.Warn("member metadata does not decode", slog.String("member", n.Name), slog.Any("err", err))
	}
	return mem
}

func (m *Membership) loadEntryLocked(name string) *loadEntry {
	e := m.loads[name]
	if e == nil {
		e = &loadEntry{updated: m.cfg.Now()}
		m.loads[name] = e
	}
	return e
}

// seenOwnSeqLocked keeps our seq above any seq peers hold for us that we
// did not issue (from before a restart whose clock went back): it jumps
// past it and marks the load for a new broadcast. Our own current seq
// echoed back is normal and changes nothing.
func (m *Membership) seenOwnSeqLocked(seq uint64) {
	if seq > m.localSeq {
		m.localSeq = seq + 1
		m.loadDirty = true
	}
}

// applyChunkLocked records one load message; it returns true if the
// message was news (so it should be gossiped on).
func (m *Membership) applyChunkLocked(c loadChunk) bool {
	if c.sender == m.cfg.Name {
		m.seenOwnSeqLocked(c.seq)
		return false
	}
	e := m.loadEntryLocked(c.sender)
	if e.have && c.seq <= e.seq {
		return false
	}
	switch {
	case e.pend == nil || c.seq > e.pend.seq:
		e.pend = &pendingLoad{seq: c.seq, chunks: make([][]PartitionLoad, c.count), got: make([]bool, c.count)}
	case c.seq < e.pend.seq:
		return false
	}
	p := e.pend
	if c.count != len(p.got) || p.got[c.index] {
		return false
	}
	p.got[c.index], p.chunks[c.index] = true, c.partitions
	p.n++
	if p.n < len(p.got) {
		return true
	}
	e.pend = nil
	var parts []PartitionLoad
	for _, ch := range p.chunks {
		if len(parts) > 0 && len(ch) > 0 && ch[0].ID <= parts[len(parts)-1].ID {
			m.log.Warn("dropping load whose chunks overlap", slog.String("member", c.sender), slog.Uint64("seq", c.seq))
			return false
		}
		parts = append(parts, ch...)
	}
	e.have, e.seq, e.load, e.updated = true, p.seq, Load{Partitions: parts}, m.cfg.Now()
	return true
}
