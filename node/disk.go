package node

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/store"
)

// This file is what a node keeps in its data directory and how it reads
// it back (docs/storage.md, "How the node uses it"): the node file (its
// identity) and, per partition, the raft records and checkpoints the
// driver writes (package multiraft). The driver waits for the disk before
// it sends or applies anything of a round, so what a peer or a client was
// told is on disk.

// identityFile is the store meta file holding the node's identity.
const identityFile = "node"

// storeEvery is how often the node looks at the data directory's health.
const storeEvery = 250 * time.Millisecond

// storeErr says why this node cannot persist anything now, or nil.
func (n *Node) storeErr() error {
	if n.st == nil {
		return nil
	}
	err := n.st.Err()
	if err == nil && n.drv != nil {
		err = n.drv.Err()
	}
	if err != nil {
		return fmt.Errorf("node %s cannot write its data directory %s (it acknowledges nothing until it is restarted with a writable one): %w", n.opts.Name, n.opts.DataDir, err)
	}
	return nil
}

// storeLoop watches the data directory: once a write fails (disk full,
// read-only, I/O error), the raft driver stops persisting and sending
// (nothing unpersisted is ever acknowledged), and the node announces
// itself degraded, so it leaves the ring and every group moves its
// replica elsewhere. It recovers by a restart with a writable directory.
//
// It also keeps disk use proportional to the live state: every
// checkpointEvery it checkpoints the partitions the store names (those
// whose old records keep the oldest log segment alive).
func (n *Node) storeLoop(ctx context.Context) {
	t := time.NewTicker(storeEvery)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.storeErr(); err != nil {
			if !n.degraded.Load() {
				n.log.Error("data directory failed; this node stops replicating and leaves the ring until restarted", "dir", n.opts.DataDir, "err", err)
				n.setDegraded(true)
			}
			continue
		}
		if time.Since(last) < checkpointEvery {
			continue
		}
		last = time.Now()
		if due := n.st.Due(); len(due) > 0 {
			if err := n.drv.Checkpoint(ctx, due); err != nil && ctx.Err() == nil {
				n.log.Warn("checkpoint", "partitions", due, "err", err)
			}
		}
	}
}

// checkpointEvery is how often the store is asked which partitions to
// checkpoint.
const checkpointEvery = time.Second

// setDegraded announces whether this node can keep partitions (gossip
// meta), and rebuilds the ring: a degraded node owns none.
func (n *Node) setDegraded(on bool) {
	n.degraded.Store(on)
	n.view.Store(nil)
	meta := n.ml.LocalMeta()
	if meta.Degraded != on {
		meta.Degraded = on
		if err := n.ml.SetMeta(meta); err != nil {
			n.log.Warn("announce the data directory state", "degraded", on, "err", err)
		}
	}
	n.rebuildRing()
	n.signalChange()
}

// identity is the node file's content.
func (n *Node) identity(initialized bool, clusterID uint64) *freqdv1.NodeIdentity {
	return &freqdv1.NodeIdentity{
		Name: n.opts.Name, Incarnation: n.opts.Incarnation, Fingerprint: n.layout.Fingerprint(),
		Initialized: initialized, ClusterId: clusterID,
	}
}

// saveIdentity writes the node file.
func (n *Node) saveIdentity(id *freqdv1.NodeIdentity) error {
	if n.st == nil {
		return nil
	}
	b, err := proto.Marshal(id)
	if err != nil {
		return fmt.Errorf("encode node identity: %w", err)
	}
	if err := n.st.WriteMeta(identityFile, b); err != nil {
		return fmt.Errorf("write node identity: %w", err)
	}
	return nil
}

// parseIdentity decodes and checks the node file: it must be this node's,
// for this pool layout, with an incarnation.
func (n *Node) parseIdentity(raw []byte) (*freqdv1.NodeIdentity, error) {
	var id freqdv1.NodeIdentity
	if err := proto.Unmarshal(raw, &id); err != nil {
		return nil, fmt.Errorf("node %s: node file in %s: %w: %w", n.opts.Name, n.opts.DataDir, err, freqd.ErrInvalidArgument)
	}
	switch {
	case id.GetName() != n.opts.Name:
		return nil, fmt.Errorf("node %s: data directory %s belongs to node %q: %w", n.opts.Name, n.opts.DataDir, id.GetName(), freqd.ErrInvalidArgument)
	case id.GetFingerprint() != n.layout.Fingerprint():
		return nil, fmt.Errorf("node %s: data directory %s holds a pool of another layout (fingerprint %016x, configured %016x): %w",
			n.opts.Name, n.opts.DataDir, id.GetFingerprint(), n.layout.Fingerprint(), freqd.ErrInvalidArgument)
	case id.GetIncarnation() == 0:
		return nil, fmt.Errorf("node %s: node file in %s has no incarnation: %w", n.opts.Name, n.opts.DataDir, freqd.ErrInvalidArgument)
	}
	return &id, nil
}

// openStore opens the data directory and adopts the identity it records
// (the same incarnation: the node is the same raft replica in every group
// and catches up from its own log). Damage to any partition's files makes
// this node's raft state unusable (a replica that lost its log or votes
// must never vote again under its id): it then discards all of it and
// starts as a new incarnation, which the groups add back from snapshots.
func (n *Node) openStore() error {
	st, rec, err := store.Open(store.Options{
		Dir: n.opts.DataDir, Sync: n.opts.Sync, SyncInterval: n.opts.SyncInterval, Logger: n.log,
	})
	if err != nil {
		return fmt.Errorf("node %s: open data directory: %w", n.opts.Name, err)
	}
	n.st = st
	start := time.Now()
	raw, err := st.ReadMeta(identityFile)
	if err != nil {
		// The identity is the one thing that cannot be refetched: without
		// it the node cannot tell its own data from another's.
		_ = st.Close()
		return fmt.Errorf("node %s: %w; move the data directory %s away to start afresh as a new incarnation", n.opts.Name, err, n.opts.DataDir)
	}
	hasData := len(rec.Partitions) > 0 || rec.All != "" || len(rec.Damaged) > 0
	if raw == nil {
		if hasData {
			_ = st.Close()
			return fmt.Errorf("node %s: data directory %s holds partition data but no node file: %w", n.opts.Name, n.opts.DataDir, freqd.ErrInvalidArgument)
		}
		if err := n.saveIdentity(n.identity(false, 0)); err != nil {
			n.log.Error("cannot write the data directory; serving nothing writable", "dir", n.opts.DataDir, "err", err)
		}
		return nil
	}
	id, err := n.parseIdentity(raw)
	if err != nil {
		_ = st.Close()
		return err
	}
	n.opts.Incarnation = id.GetIncarnation()
	n.recovered = id
	for _, note := range rec.Notes {
		n.log.Warn("data directory", "note", note)
	}
	if !id.GetInitialized() {
		// Never a member: whatever raft state is here comes from a pool
		// creation that crashed before it was recorded, was never served,
		// and must not pass for state later. Start empty.
		if hasData {
			n.log.Warn("data directory holds partition data of a cluster this node never joined (an interrupted pool creation); discarding it", "dir", n.opts.DataDir)
			if err := st.Rebase(nil); err != nil {
				n.log.Error("cannot discard the data; serving nothing writable", "err", err)
			}
		}
		return nil
	}
	damage := rec.All
	if damage == "" && len(rec.Damaged) > 0 {
		first := slices.Min(slices.Collect(maps.Keys(rec.Damaged)))
		damage = fmt.Sprintf("partition %d: %s (%d damaged in all)", first, rec.Damaged[first], len(rec.Damaged))
	}
	for g := range rec.Partitions {
		if g < 0 || g >= len(n.shards) {
			damage = fmt.Sprintf("the data holds partition %d, outside the pool of %d", g, len(n.shards))
		}
	}
	if damage != "" {
		return n.discardDamaged(id, damage, rec)
	}
	n.groups = rec.Partitions
	n.log.Info("recovered from the data directory", "dir", n.opts.DataDir, "incarnation", fmt.Sprintf("%08x", id.GetIncarnation()&0xffffffff),
		"partitions", len(rec.Partitions), "files", rec.Files, "bytes", rec.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// discardDamaged drops all raft state and takes a new incarnation, keeping
// the cluster membership: the node rejoins as a new replica everywhere.
func (n *Node) discardDamaged(id *freqdv1.NodeIdentity, damage string, rec *store.Recovery) error {
	for id := range rec.Damaged {
		n.lostAtStart = append(n.lostAtStart, id)
	}
	slices.Sort(n.lostAtStart)
	inc := rand.Uint64()
	for inc == 0 || inc == id.GetIncarnation() {
		inc = rand.Uint64()
	}
	n.log.Error("raft state damaged on disk; discarding all of it and rejoining as a new incarnation (the partitions are copied back from their other replicas)",
		"dir", n.opts.DataDir, "problem", damage, "old_incarnation", fmt.Sprintf("%08x", id.GetIncarnation()&0xffffffff), "new_incarnation", fmt.Sprintf("%08x", inc&0xffffffff))
	if err := n.st.Rebase(nil); err != nil {
		_ = n.st.Close()
		return fmt.Errorf("node %s: discard damaged raft state in %s: %w", n.opts.Name, n.opts.DataDir, err)
	}
	n.opts.Incarnation = inc
	id.Incarnation = inc
	n.recovered = id
	if err := n.saveIdentity(n.identity(true, id.GetClusterId())); err != nil {
		_ = n.st.Close()
		return fmt.Errorf("node %s: record the new incarnation: %w", n.opts.Name, err)
	}
	return nil
}
