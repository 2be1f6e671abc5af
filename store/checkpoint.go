package store

import (
	"fmt"
	"maps"
	"slices"

	"github.com/freqd/freqd"
)

// Checkpoint durably replaces partition part's checkpoint with payload,
// which covers every record of part with LSN <= lsn: the caller took it
// under its lock right after its last Append of part, so lsn is that
// Append's LSN, or 0 if it never appended. A checkpoint taken after Open
// covers every record recovered at Open too (lsn is raised to the last
// LSN at Open), and never covers less than the partition's previous
// checkpoint. The file is written as temporary file, fsync, rename,
// directory fsync. Afterwards, log segments all of whose records are
// covered by checkpoints are deleted. A nil payload means the partition
// holds nothing: its checkpoint is removed once no older record of it is
// left in the log.
//
// It fails with an error wrapping ErrFailed if the store has failed or
// the write fails (which fails the store), and freqd.ErrInvalidArgument
// for a partition out of range or an LSN not yet appended.
func (s *Store) Checkpoint(part int, lsn uint64, payload []byte) error {
	if err := checkPart("checkpoint", part); err != nil {
		return err
	}
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return &closedError{op: "checkpoint"}
	case s.failErr != nil:
		err := s.failErr
		s.mu.Unlock()
		return err
	case lsn >= s.nextLSN:
		last := s.nextLSN - 1
		s.mu.Unlock()
		return fmt.Errorf("store: checkpoint of partition %d: lsn %d not appended (last is %d): %w", part, lsn, last, freqd.ErrInvalidArgument)
	}
	cov := max(lsn, s.openHW, s.cov[part])
	remove := payload == nil && !s.olderRecordsLocked(part, cov)
	_, exists := s.ckpts[part]
	s.mu.Unlock()

	name := ckptName(part)
	var data []byte
	switch {
	case remove && exists:
		if err := s.fsys.Remove(s.path(name)); err != nil && !isNotExist(err) {
			return s.fail(err)
		}
		if err := s.fsys.SyncDir(s.dir); err != nil {
			return s.fail(err)
		}
	case !remove:
		data = encodeCheckpoint(ckptFile{part: uint32(part), lsn: cov, payload: payload})
		if err := s.writeAtomic(name, data); err != nil {
			return s.fail(err)
		}
	}
	s.mu.Lock()
	s.cov[part] = cov
	if remove {
		delete(s.ckpts, part)
	} else {
		s.ckpts[part] = &ckptState{lsn: cov, bytes: int64(len(data)), none: payload == nil}
	}
	s.mu.Unlock()
	s.compact()
	return nil
}

// olderRecordsLocked reports whether the log may still hold a record of
// part with LSN <= lsn: one not yet written, one in a live segment, or
// one hidden in a segment whose damage left records unattributed.
func (s *Store) olderRecordsLocked(part int, lsn uint64) bool {
	if s.written < lsn {
		return true
	}
	for _, sg := range s.segs {
		if sg.opaque {
			return true
		}
		if sp, ok := sg.parts[uint32(part)]; ok && sp.min <= lsn {
			return true
		}
	}
	return false
}

// coveredLocked reports whether every record in sg is covered by a
// checkpoint, so the segment may be deleted.
func (s *Store) coveredLocked(sg *segment) bool {
	if sg.opaque {
		return len(s.uncoveredLocked(sg)) == 0
	}
	for p, sp := range sg.parts {
		if s.cov[int(p)] < sp.max {
			return false
		}
	}
	return true
}

// uncoveredLocked lists the partitions whose checkpoints must be refreshed
// before sg can be deleted. For a segment whose records could not all be
// tied to partitions, that is every partition the store knows of (with a
// checkpoint file or records in a live segment) not covered up to its
// bound.
func (s *Store) uncoveredLocked(sg *segment) []int {
	var out []int
	if sg.opaque {
		known := map[int]bool{}
		for p := range s.ckpts {
			known[p] = true
		}
		for _, o := range s.segs {
			for p := range o.parts {
				known[int(p)] = true
			}
		}
		for p := range known {
			if s.cov[p] < sg.bound {
				out = append(out, p)
			}
		}
	} else {
		for p, sp := range sg.parts {
			if s.cov[int(p)] < sp.max {
				out = append(out, int(p))
			}
		}
	}
	slices.Sort(out)
	return out
}

// compact deletes the oldest segments while every record in them is
// covered by a checkpoint (never the segment being written), then removes
// "holds nothing" checkpoints no longer needed. Deletion failures are
// logged and retried next time: they put no acknowledged write at risk.
// Caller holds ckptMu.
func (s *Store) compact() {
	s.mu.Lock()
	var del []*segment
	for _, sg := range s.segs {
		if sg == s.cur || !s.coveredLocked(sg) {
			break
		}
		del = append(del, sg)
	}
	s.mu.Unlock()
	removed := 0
	for _, sg := range del {
		if err := s.fsys.Remove(s.path(sg.name)); err != nil && !isNotExist(err) {
			s.log.Warn("store: cannot delete a covered log segment; will retry", "err", err)
			break
		}
		removed++
	}
	if removed == 0 {
		return
	}
	s.mu.Lock()
	s.segs = s.segs[removed:]
	s.mu.Unlock()
	// The deletions must be durable before a "holds nothing" checkpoint
	// goes: else a crash could bring back old records without it.
	if err := s.fsys.SyncDir(s.dir); err != nil {
		s.log.Warn("store: cannot fsync the directory after deleting segments", "dir", s.dir, "err", err)
		return
	}
	s.removeEmptyCheckpoints()
}

// removeEmptyCheckpoints removes the "holds nothing" checkpoints of
// partitions with no older record left in the log. Caller holds ckptMu.
func (s *Store) removeEmptyCheckpoints() {
	s.mu.Lock()
	var drop []int
	for p, c := range s.ckpts {
		if c.none && !s.olderRecordsLocked(p, c.lsn) {
			drop = append(drop, p)
		}
	}
	s.mu.Unlock()
	slices.Sort(drop)
	for _, p := range drop {
		if err := s.fsys.Remove(s.path(ckptName(p))); err != nil && !isNotExist(err) {
			s.log.Warn("store: cannot remove an empty checkpoint; will retry", "err", err)
			return
		}
		s.mu.Lock()
		delete(s.ckpts, p)
		s.mu.Unlock()
	}
}

// Due lists the partitions whose checkpoints should be refreshed so that
// old segments can be deleted: those with records in the oldest live
// segment not yet covered, once the live log is over max(2*SegmentBytes,
// 2*the checkpoint bytes). Otherwise, or while the store is failed, it
// returns nil. It is cheap (the node calls it every second); if the
// oldest segments are already covered (a roll sealed a segment its
// checkpoints covered), it deletes them.
func (s *Store) Due() []int {
	s.mu.Lock()
	if s.failErr != nil || s.closed || len(s.segs) < 2 {
		s.mu.Unlock()
		return nil
	}
	var logBytes, ckptBytes int64
	for _, sg := range s.segs {
		logBytes += sg.size
	}
	for _, c := range s.ckpts {
		ckptBytes += c.bytes
	}
	if logBytes <= max(2*s.segBytes, 2*ckptBytes) {
		s.mu.Unlock()
		return nil
	}
	oldest := s.segs[0]
	out := s.uncoveredLocked(oldest)
	s.mu.Unlock()
	if len(out) == 0 && s.ckptMu.TryLock() {
		s.compact()
		s.ckptMu.Unlock()
	}
	return out
}

// Rebase recovers a failed store (and is also valid on a healthy one,
// with appends paused: a record appended while it runs must be covered
// by ckpts too). The caller passes EVERY partition's current state,
// taken after the failure: ckpts[part] = payload and lsn as for
// Checkpoint; partitions absent hold nothing. Rebase writes every
// checkpoint, starts a fresh segment that supersedes all older ones,
// deletes them, and clears the failure. If it fails (the disk is still
// full), the store stays failed and Rebase returns why. Records appended
// before a failure and not durable stay failed for Wait: nothing is
// silently skipped.
func (s *Store) Rebase(ckpts map[int]Checkpointed) error {
	for p := range ckpts {
		if err := checkPart("rebase", p); err != nil {
			return err
		}
	}
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	s.logMu.Lock()
	defer s.logMu.Unlock()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return &closedError{op: "rebase"}
	}
	for p, c := range ckpts {
		if c.LSN >= s.nextLSN {
			last := s.nextLSN - 1
			s.mu.Unlock()
			return fmt.Errorf("store: rebase: partition %d: lsn %d not appended (last is %d): %w", p, c.LSN, last, freqd.ErrInvalidArgument)
		}
	}
	// Every record up to cut was written or lost; the ones queued after
	// it will go to the new segment.
	cut := s.taken
	files := map[int]ckptFile{}
	for p, c := range ckpts {
		files[p] = ckptFile{part: uint32(p), lsn: max(c.LSN, cut), payload: c.Payload}
	}
	// Partitions absent that the directory knows of get a "holds nothing"
	// checkpoint until the new segment supersedes their old records.
	for p := range s.ckpts {
		if _, ok := files[p]; !ok {
			files[p] = ckptFile{part: uint32(p), lsn: cut}
		}
	}
	for _, sg := range s.segs {
		for p := range sg.parts {
			if _, ok := files[int(p)]; !ok {
				files[int(p)] = ckptFile{part: p, lsn: cut}
			}
		}
	}
	old := slices.Clone(s.segs)
	s.mu.Unlock()

	sizes, err := s.writeCheckpoints(files)
	if err != nil {
		return s.fail(err)
	}
	nf, tmp, err := s.createSegment(cut+1, segFlagBase)
	if err != nil {
		return s.fail(err)
	}
	base := &segment{first: cut + 1, name: segName(cut + 1), size: segHeaderSize, base: true, parts: map[uint32]span{}}
	if err := s.fsys.Rename(tmp, s.path(base.name)); err != nil {
		_ = nf.Close()
		_ = s.fsys.Remove(tmp)
		return s.fail(err)
	}
	if err := s.fsys.SyncDir(s.dir); err != nil {
		_ = nf.Close()
		return s.fail(err)
	}
	if s.active != nil {
		_ = s.active.Close()
	}
	s.active, s.dirty = nf, false

	s.mu.Lock()
	s.segs, s.cur = []*segment{base}, base
	s.ckpts = map[int]*ckptState{}
	for p, c := range files {
		s.ckpts[p] = &ckptState{lsn: c.lsn, bytes: sizes[p], none: c.payload == nil}
		s.cov[p] = max(s.cov[p], c.lsn)
	}
	s.failErr = nil
	s.written, s.durable = cut, cut
	s.fsyncs += 2
	s.wakeLocked()
	s.mu.Unlock()
	s.log.Info("store rebased: every checkpoint rewritten, older log segments superseded", "dir", s.dir, "partitions", len(files), "first_lsn", cut+1)

	s.removeOldSegments(old, base.name)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// writeCheckpoints writes every file (temporary file and fsync each, then
// rename each, then one directory fsync) and returns their sizes.
func (s *Store) writeCheckpoints(files map[int]ckptFile) (map[int]int64, error) {
	parts := sortedKeys(files)
	sizes := make(map[int]int64, len(files))
	var tmps []string
	cleanup := func(err error) (map[int]int64, error) {
		for _, t := range tmps {
			_ = s.fsys.Remove(t)
		}
		return nil, err
	}
	for _, p := range parts {
		data := encodeCheckpoint(files[p])
		sizes[p] = int64(len(data))
		tmp := s.path(ckptName(p) + ".tmp")
		if err := s.writeTmp(tmp, data); err != nil {
			return cleanup(err)
		}
		tmps = append(tmps, tmp)
	}
	for i, p := range parts {
		if err := s.fsys.Rename(tmps[i], s.path(ckptName(p))); err != nil {
			tmps = tmps[i:]
			return cleanup(err)
		}
	}
	if err := s.fsys.SyncDir(s.dir); err != nil {
		return nil, err
	}
	return sizes, nil
}

// removeOldSegments deletes every log segment but keep, after a Rebase,
// then the "holds nothing" checkpoints it wrote. Failures are logged: the
// new segment supersedes the old ones anyway. Caller holds ckptMu.
func (s *Store) removeOldSegments(old []*segment, keep string) {
	names := map[string]bool{}
	for _, sg := range old {
		names[sg.name] = true
	}
	if entries, err := s.fsys.ReadDir(s.dir); err == nil {
		for _, e := range entries {
			if _, ok := parseSegName(e.Name()); ok {
				names[e.Name()] = true
			}
		}
	}
	delete(names, keep)
	ok := true
	for _, name := range slices.Sorted(maps.Keys(names)) {
		if err := s.fsys.Remove(s.path(name)); err != nil && !isNotExist(err) {
			s.log.Warn("store: cannot delete a superseded log segment", "err", err)
			ok = false
		}
	}
	if err := s.fsys.SyncDir(s.dir); err != nil {
		s.log.Warn("store: cannot fsync the directory after deleting segments", "dir", s.dir, "err", err)
		ok = false
	}
	if ok {
		s.removeEmptyCheckpoints()
	}
}
