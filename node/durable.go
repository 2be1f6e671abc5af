package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/store"
)

// This file is what a node keeps in its data directory and how it reads
// it back (docs/storage.md, "How the node uses it").
//
// Every change to a record (a promise, a committed configuration, an
// installed or dropped state, applied commands) is appended to the store's
// log under the record's mu, so each partition's records are in the order
// of its changes, and the answer that acknowledges the change is sent only
// once the log is durable up to the record's last append (r.lsn). Memory
// may run ahead of the disk (a write that failed, a wait cut short), but
// never an acknowledgement: what a peer or a client was told is on disk.

// identityFile is the store meta file holding the node's identity.
const identityFile = "node"

// checkpointEvery is how often the node refreshes the checkpoints the
// store asks for, and retries a failed store.
const checkpointEvery = time.Second

// persistLocked appends d for r to the store and advances r.lsn. Without a
// store it does nothing. Caller holds r.mu.
func (n *Node) persistLocked(r *record, d *freqdv1.DiskRecord) error {
	if n.st == nil {
		return nil
	}
	d.Partition = uint32(r.id)
	b, err := proto.Marshal(d)
	if err != nil {
		return fmt.Errorf("partition %d: encode disk record: %w", r.id, err)
	}
	lsn, err := n.st.Append(r.id, b)
	if err != nil {
		return fmt.Errorf("partition %d: %w", r.id, err)
	}
	r.lsn = lsn
	return nil
}

// durable waits until the store holds the log up to lsn (per the fsync
// policy). Without a store, or for lsn 0, it returns at once.
func (n *Node) durable(ctx context.Context, id int, lsn uint64) error {
	if n.st == nil || lsn == 0 {
		return nil
	}
	if err := n.st.Wait(ctx, lsn); err != nil {
		return fmt.Errorf("partition %d: %w", id, err)
	}
	return nil
}

// storeErr says why this node cannot persist anything now, or nil.
func (n *Node) storeErr() error {
	if n.st == nil {
		return nil
	}
	if err := n.st.Err(); err != nil {
		return fmt.Errorf("node %s cannot write its data directory %s (it acknowledges nothing until it can): %w", n.opts.Name, n.opts.DataDir, err)
	}
	return nil
}

// metaLocked is r's promise and configurations as a disk record.
func metaLocked(r *record, kind freqdv1.DiskRecord_Kind) *freqdv1.DiskRecord {
	return &freqdv1.DiskRecord{
		Kind:      kind,
		Promised:  epochToPB(r.promised),
		Committed: configToPB(r.committed),
		Accepted:  configToPB(r.accepted),
		Lost:      r.lost,
	}
}

// stateLocked is r's meta and state as a disk record: with full, the
// whole state (a checkpoint, or an installed snapshot), else a note that
// the state now stands at (stateEpoch, index) without change. Caller
// holds r.mu.
func stateLocked(r *record, full bool) (*freqdv1.DiskRecord, error) {
	d := metaLocked(r, freqdv1.DiskRecord_KIND_STATE)
	switch {
	case r.p == nil:
		d.Mode = freqdv1.DiskRecord_MODE_DROP
		return d, nil
	case full:
		snap, err := r.p.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("partition %d: snapshot: %w", r.id, err)
		}
		d.Mode, d.Snapshot = freqdv1.DiskRecord_MODE_REPLACE, snap
	default:
		d.Mode = freqdv1.DiskRecord_MODE_KEEP
	}
	d.StateEpoch, d.Index = epochToPB(r.stateEpoch), r.index
	return d, nil
}

// commandsRecord is the record of cmds applied in epoch e after index prev.
func commandsRecord(e Epoch, prev uint64, cmds [][]byte) *freqdv1.DiskRecord {
	return &freqdv1.DiskRecord{Kind: freqdv1.DiskRecord_KIND_COMMANDS, Epoch: epochToPB(e), PrevIndex: prev, Commands: cmds}
}

// errDisk marks a disk record that cannot be replayed.
var errDisk = errors.New("bad disk record")

// replay applies one disk record to r while recovering. It mirrors what
// the live code did when it wrote the record; any record that does not fit
// the state before it is an error (the partition is then treated as lost).
func (n *Node) replay(r *record, b []byte) error {
	var d freqdv1.DiskRecord
	if err := proto.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("%w: %w", errDisk, err)
	}
	if int(d.GetPartition()) != r.id {
		return fmt.Errorf("%w: record of partition %d in partition %d's log", errDisk, d.GetPartition(), r.id)
	}
	setMeta := func() error {
		committed, accepted := configFromPB(d.GetCommitted()), configFromPB(d.GetAccepted())
		for _, c := range []Config{committed, accepted} {
			if !c.IsZero() {
				if err := n.validConfig(r.id, c); err != nil {
					return fmt.Errorf("%w: %w", errDisk, err)
				}
			}
		}
		r.promised, r.committed, r.accepted, r.lost = epochFromPB(d.GetPromised()), committed, accepted, d.GetLost()
		return nil
	}
	switch d.GetKind() {
	case freqdv1.DiskRecord_KIND_META:
		return setMeta()
	case freqdv1.DiskRecord_KIND_STATE:
		if err := setMeta(); err != nil {
			return err
		}
		switch d.GetMode() {
		case freqdv1.DiskRecord_MODE_DROP:
			r.p, r.stateEpoch, r.index = nil, Epoch{}, 0
			return nil
		case freqdv1.DiskRecord_MODE_KEEP:
			if r.p == nil {
				return fmt.Errorf("%w: state kept at %v/%d, but none was recovered", errDisk, epochFromPB(d.GetStateEpoch()), d.GetIndex())
			}
		case freqdv1.DiskRecord_MODE_REPLACE:
			p, err := n.restoreFor(r.id, d.GetSnapshot())
			if err != nil {
				return fmt.Errorf("%w: %w", errDisk, err)
			}
			r.p = p
		default:
			return fmt.Errorf("%w: unknown state mode %v", errDisk, d.GetMode())
		}
		r.stateEpoch, r.index = epochFromPB(d.GetStateEpoch()), d.GetIndex()
		return nil
	case freqdv1.DiskRecord_KIND_COMMANDS:
		e, prev, cmds := epochFromPB(d.GetEpoch()), d.GetPrevIndex(), d.GetCommands()
		switch {
		case r.p == nil:
			return fmt.Errorf("%w: commands after %v/%d, but no state", errDisk, e, prev)
		case r.stateEpoch != e || prev > r.index || r.index-prev > uint64(len(cmds)):
			return fmt.Errorf("%w: commands %v/%d-%d do not follow the state at %v/%d", errDisk, e, prev+1, prev+uint64(len(cmds)), r.stateEpoch, r.index)
		}
		for k := r.index - prev; k < uint64(len(cmds)); k++ {
			var c partition.Command
			if err := c.UnmarshalBinary(cmds[k]); err != nil {
				return fmt.Errorf("%w: command %v/%d: %w", errDisk, e, prev+k+1, err)
			}
			v := r.p.Version()
			if res := r.p.Apply(c); res.Err != nil || r.p.Version() != v+1 {
				return fmt.Errorf("%w: command %v/%d (%v) does not apply: %v", errDisk, e, prev+k+1, c, res.Err)
			}
			r.index++
		}
		if r.accepted.Epoch == e && e.Compare(r.committed.Epoch) > 0 {
			r.committed = r.accepted
		}
		return nil
	}
	return fmt.Errorf("%w: unknown kind %v", errDisk, d.GetKind())
}

// recover rebuilds the records from what the store recovered. A partition
// whose files were damaged, or whose records do not replay, is lost: it
// holds nothing and its promises are unknown, so it refuses every message
// until a new takeover prepares it, and it is not counted in that takeover
// (docs/storage.md). It returns how many partitions it recovered with
// state and how many it lost.
func (n *Node) recover(rec *store.Recovery) (held, lost int) {
	damaged := maps.Clone(rec.Damaged)
	if damaged == nil {
		damaged = make(map[int]string)
	}
	for _, note := range rec.Notes {
		n.log.Warn("data directory", "note", note)
	}
	for _, id := range slices.Sorted(maps.Keys(rec.Partitions)) {
		if id < 0 || id >= len(n.recs) {
			n.log.Warn("data directory holds a partition outside the pool; ignored", "partition", id)
			continue
		}
		if rec.All != "" || damaged[id] != "" {
			continue
		}
		r := n.recs[id]
		got := rec.Partitions[id]
		r.lsn = got.LastLSN
		payloads := got.Records
		if got.Checkpoint != nil {
			payloads = append([][]byte{got.Checkpoint}, payloads...)
		}
		for i, b := range payloads {
			if err := n.replay(r, b); err != nil {
				damaged[id] = fmt.Sprintf("record %d of %d does not replay: %v", i+1, len(payloads), err)
				break
			}
		}
	}
	for _, r := range n.recs {
		why := damaged[r.id]
		if rec.All != "" {
			why = rec.All
		}
		if why == "" && !r.lost {
			if r.p != nil {
				r.role = roleFollower
				held++
			}
			if r.promised.Term > 0 {
				n.seeTerm(r.promised.Term)
			}
			continue
		}
		if why != "" {
			n.log.Error("partition state damaged on disk; it will be fetched again from its replicas", "partition", r.id, "problem", why)
		}
		r.p, r.stateEpoch, r.index, r.role = nil, Epoch{}, 0, roleNone
		r.promised, r.committed, r.accepted = Epoch{}, Config{}, Config{}
		r.lost, r.reason = true, "state lost on disk ("+cmpOr(why, "recorded at an earlier start")+"); waiting for a takeover to install it again"
		n.lostAtStart = append(n.lostAtStart, r.id)
		lost++
	}
	return held, lost
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// markLost writes a lost partition's record as its checkpoint, so that a
// restart before the state comes back still knows it is lost. Called once
// at start, before anything else runs.
func (n *Node) markLost() error {
	for _, r := range n.recs {
		if !r.lost {
			continue
		}
		// The appended record gets an LSN above every old record of the
		// partition, so the checkpoint covers (and retires) them all.
		if err := n.persistLocked(r, metaLocked(r, freqdv1.DiskRecord_KIND_META)); err != nil {
			return err
		}
		if err := n.checkpoint(r); err != nil {
			return fmt.Errorf("partition %d: checkpoint the lost state: %w", r.id, err)
		}
	}
	return nil
}

// whole encodes r's whole record (a checkpoint) and the LSN it covers.
func whole(r *record) (store.Checkpointed, error) {
	r.mu.Lock()
	d, err := stateLocked(r, true)
	lsn := r.lsn
	r.mu.Unlock()
	if err != nil {
		return store.Checkpointed{}, err
	}
	d.Partition = uint32(r.id)
	b, err := proto.Marshal(d)
	if err != nil {
		return store.Checkpointed{}, fmt.Errorf("partition %d: encode checkpoint: %w", r.id, err)
	}
	return store.Checkpointed{LSN: lsn, Payload: b}, nil
}

// checkpoint writes r's whole record as its checkpoint.
func (n *Node) checkpoint(r *record) error {
	c, err := whole(r)
	if err != nil {
		return err
	}
	return n.st.Checkpoint(r.id, c.LSN, c.Payload)
}

// storeLoop keeps the data directory compact (checkpoints of the
// partitions the store asks for) and, after a write failure, retries
// writing every partition's state afresh until the disk takes it again.
func (n *Node) storeLoop(ctx context.Context) {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.st.Err(); err != nil {
			if !failed {
				n.log.Error("data directory failed; refusing writes and handing its partitions to other nodes until it can be written again", "dir", n.opts.DataDir, "err", err)
				failed = true
				n.setDegraded(true)
			}
			if err := n.rebase(); err != nil {
				continue
			}
			if meta := n.ml.LocalMeta(); meta.Initialized {
				// A write that failed with the disk may have been this one.
				if err := n.saveIdentity(n.identity(true, meta.ClusterID)); err != nil {
					n.log.Warn("rewrite the node file", "err", err)
				}
			}
			n.log.Info("data directory writable again; state rewritten", "dir", n.opts.DataDir)
			failed = false
			n.setDegraded(false)
			n.signalChange()
			continue
		}
		for _, id := range n.st.Due() {
			if id < 0 || id >= len(n.recs) {
				continue
			}
			if err := n.checkpoint(n.recs[id]); err != nil {
				n.log.Warn("checkpoint", "partition", id, "err", err)
				break
			}
		}
	}
}

// setDegraded announces whether this node can keep partitions (gossip
// meta), and rebuilds the ring: a degraded node owns none, so its
// partitions move to nodes that can write (docs/storage.md).
func (n *Node) setDegraded(on bool) {
	if on {
		// A primary that cannot keep its commands only refuses them:
		// step down, so requests go to the nodes taking over.
		for _, r := range n.recs {
			r.mu.Lock()
			r.stopPrimary()
			r.mu.Unlock()
		}
		n.view.Store(nil)
	}
	meta := n.ml.LocalMeta()
	if meta.Degraded != on {
		meta.Degraded = on
		if err := n.ml.SetMeta(meta); err != nil {
			n.log.Warn("announce the data directory state", "degraded", on, "err", err)
		}
	}
	n.rebuildRing()
}

// rebase rewrites every partition's record to a failed store.
func (n *Node) rebase() error {
	all := make(map[int]store.Checkpointed, len(n.recs))
	for _, r := range n.recs {
		c, err := whole(r)
		if err != nil {
			return err
		}
		all[r.id] = c
	}
	return n.st.Rebase(all)
}

// identity is the node file's content.
func (n *Node) identity(initialized bool, clusterID uint64) *freqdv1.NodeIdentity {
	return &freqdv1.NodeIdentity{
		Name: n.opts.Name, Incarnation: n.self.Incarnation, Fingerprint: n.layout.Fingerprint(),
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

// openStore opens the data directory, adopts the identity it records (the
// same incarnation: this node's promises and states are still its own)
// and rebuilds the records from it.
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
	if raw == nil {
		if len(rec.Partitions) > 0 || rec.All != "" || len(rec.Damaged) > 0 {
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
	n.self.Incarnation, n.opts.Incarnation = id.GetIncarnation(), id.GetIncarnation()
	n.recovered = id
	if !id.GetInitialized() {
		// Never a member: whatever partition data is here comes from a
		// pool creation that crashed before it was recorded, was never
		// served, and must not pass for state later. Start empty.
		if len(rec.Partitions) > 0 || rec.All != "" || len(rec.Damaged) > 0 {
			n.log.Warn("data directory holds partition data of a cluster this node never joined (an interrupted pool creation); discarding it", "dir", n.opts.DataDir)
			if err := st.Rebase(nil); err != nil {
				n.log.Error("cannot discard the data; serving nothing writable", "err", err)
			}
		}
		return nil
	}
	held, lost := n.recover(rec)
	if lost > 0 && st.Err() == nil {
		if err := n.markLost(); err != nil {
			n.log.Error("cannot record lost partitions", "err", err)
		}
	}
	n.log.Info("recovered from the data directory", "dir", n.opts.DataDir, "incarnation", fmt.Sprintf("%08x", n.self.Incarnation&0xffffffff),
		"partitions", held, "lost", lost, "files", rec.Files, "bytes", rec.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
