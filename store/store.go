package store

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/freqd/freqd"
)

// Options configure Open.
type Options struct {
	// Dir is the data directory; required. Created (0700) if missing.
	Dir string
	// Sync says when the log is fsynced; zero is SyncAlways.
	Sync SyncPolicy
	// SyncInterval is how often the log is fsynced under SyncInterval;
	// 0 means 100ms. Ignored by the other policies.
	SyncInterval time.Duration
	// SegmentBytes: the log rolls to a new segment file once the current
	// one is past this size; 0 means 64 MiB.
	SegmentBytes int64
	// Logger receives damage reports, recovery notes and failures; nil
	// discards them.
	Logger *slog.Logger

	// fsys replaces the operating system's files (tests inject faults);
	// nil means osFS.
	fsys fileSys
}

const (
	defaultSyncInterval = 100 * time.Millisecond
	defaultSegmentBytes = 64 << 20
	// maxSpare is the largest batch buffer the writer keeps for reuse.
	maxSpare = 4 << 20
)

// Recovery is what Open found in the directory.
type Recovery struct {
	// Partitions holds, by partition id, the last checkpoint and the log
	// records after it. A partition in Damaged may be here too, with what
	// came before the damage.
	Partitions map[int]*Recovered
	// Damaged maps a partition id to what is wrong with its files, naming
	// the file and offset ("part-000007.ckpt: checksum mismatch ...").
	Damaged map[int]string
	// All is non-empty when damage could not be tied to partitions (a bad
	// frame header, a missing or truncated sealed segment, an LSN gap):
	// every partition must then be treated as damaged. It says what and
	// where. Partitions still holds what came before the damage.
	All string
	// Notes are events worth a log line that are not damage: a torn tail
	// truncated (file, offset, bytes dropped), a leftover temporary file
	// removed, an unknown file left alone.
	Notes []string
	// Files and Bytes describe what was read.
	Files int
	Bytes int64
}

// Recovered is one partition's durable state.
type Recovered struct {
	// Checkpoint is the last checkpoint payload, nil if none (or if the
	// partition held nothing when it was taken).
	Checkpoint []byte
	// CheckpointLSN is the LSN the checkpoint covers (0 if none).
	CheckpointLSN uint64
	// Records are the payloads of the partition's log records with LSN
	// above CheckpointLSN, in LSN order.
	Records [][]byte
	// LastLSN is the LSN of the last of Records, or CheckpointLSN.
	LastLSN uint64
}

// Checkpointed is one partition's state for Rebase.
type Checkpointed struct {
	// LSN is the LSN the payload covers, as for Checkpoint.
	LSN uint64
	// Payload is the state; nil means the partition holds nothing.
	Payload []byte
}

// Stats are counters for status pages and metrics.
type Stats struct {
	Segments        int    // live log segment files
	LogBytes        int64  // bytes in live log segments
	Checkpoints     int    // checkpoint files
	CheckpointBytes int64  // bytes in checkpoint files
	Appends         uint64 // records appended since Open
	Batches         uint64 // batch writes to the log since Open
	Fsyncs          uint64 // fsyncs of log segments and of the directory for them, since Open
	LastLSN         uint64 // LSN of the last record appended (or recovered)
	DurableLSN      uint64 // every LSN up to this one is durable per the policy
}

// segment is one live log segment file.
type segment struct {
	first  uint64 // first LSN, in its name
	name   string // base name
	size   int64
	base   bool // written by Rebase: older segments are superseded
	sealed bool
	// parts holds the LSN span of each partition's records in the file.
	parts map[uint32]span
	// opaque: damage found at Open left records of this segment (or
	// missing before it) that cannot be tied to partitions. It is deleted
	// only once every known partition has a checkpoint covering bound.
	opaque bool
	bound  uint64
}

type span struct{ min, max uint64 }

func (sg *segment) add(part uint32, lsn uint64) {
	sp, ok := sg.parts[part]
	if !ok {
		sp.min = lsn
	}
	sp.max = max(sp.max, lsn)
	sg.parts[part] = sp
}

// ckptState is one checkpoint file on disk.
type ckptState struct {
	lsn     uint64
	bytes   int64
	none    bool // "holds nothing" (nil payload)
	damaged bool // unreadable at Open
}

// lostRange is LSNs appended but never made durable before a failure.
type lostRange struct {
	lo, hi uint64
	err    error
}

// Store is a write-ahead log shared by every partition plus one checkpoint
// file per partition, in one directory. See the package doc.
type Store struct {
	dir      string
	fsys     fileSys
	log      *slog.Logger
	policy   SyncPolicy
	interval time.Duration
	segBytes int64

	// ckptMu serializes Checkpoint, Rebase and compaction: it guards the
	// checkpoint files and the deletion of sealed segments.
	ckptMu sync.Mutex
	// metaMu serializes WriteMeta.
	metaMu sync.Mutex

	// logMu is held by the writer goroutine while it writes, rolls or
	// syncs the log, and by Rebase while it replaces the log. It guards
	// active, dirty and the segment files' contents. Lock order: ckptMu,
	// logMu, mu.
	logMu  sync.Mutex
	active writeFile // the last segment's file; nil if Open could not create it
	dirty  bool      // written since the last fsync

	// mu guards every field below. Fields of *segment in segs are also
	// guarded by mu; the writer (holding logMu) changes cur only with mu
	// held too, so it may read cur without mu.
	mu      sync.Mutex
	nextLSN uint64
	queue   []byte   // frames appended and not yet taken by the writer
	qparts  []uint32 // the partition of each queued frame
	qfirst  uint64   // LSN of the first queued frame
	spare   []byte
	spareP  []uint32
	taken   uint64 // last LSN taken by the writer (written, in flight, or lost)
	written uint64 // last LSN written to the file
	durable uint64 // last LSN Wait reports durable
	openHW  uint64 // last LSN at Open: a later checkpoint covers every LSN up to it
	failErr error
	lost    []lostRange
	closed  bool
	stopped bool          // the writer goroutine has exited
	notify  chan struct{} // closed and replaced whenever the above changes
	segs    []*segment    // live segments, oldest first
	cur     *segment      // the segment being written (last of segs), nil if none
	ckpts   map[int]*ckptState
	cov     map[int]uint64 // LSN each partition's checkpoint covers
	appends uint64
	batches uint64
	fsyncs  uint64

	kick chan struct{} // wakes the writer (buffered 1)
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the writer exits
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

func segName(first uint64) string { return fmt.Sprintf("wal-%016x.log", first) }
func ckptName(part int) string    { return fmt.Sprintf("part-%06d.ckpt", part) }

func checkPart(op string, part int) error {
	if part < 0 || uint64(part) > maxPart {
		return fmt.Errorf("store: %s: partition %d out of range 0..%d: %w", op, part, uint64(maxPart), freqd.ErrInvalidArgument)
	}
	return nil
}

// Append queues one record for partition part and returns its LSN: global,
// consecutive, starting at 1 in an empty directory and continuing after
// the recovered ones. It never blocks on I/O (the writer goroutine writes
// the queue) and is safe for concurrent use; callers that need
// per-partition order call it under their own per-partition lock. It fails
// at once with an error wrapping ErrFailed when the store has failed,
// ErrClosed after Close, and freqd.ErrInvalidArgument for a payload over
// MaxRecord or a partition out of range. The payload is copied.
func (s *Store) Append(part int, payload []byte) (uint64, error) {
	if err := checkPart("append", part); err != nil {
		return 0, err
	}
	if len(payload) > MaxRecord {
		return 0, fmt.Errorf("store: append to partition %d: record of %d bytes is over %d: %w", part, len(payload), MaxRecord, freqd.ErrInvalidArgument)
	}
	sum := crc(payload)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, &closedError{op: "append"}
	}
	if err := s.failErr; err != nil {
		s.mu.Unlock()
		return 0, err
	}
	lsn := s.nextLSN
	s.nextLSN++
	if len(s.qparts) == 0 {
		s.qfirst = lsn
	}
	s.queue = appendFrame(s.queue, uint32(part), lsn, payload, sum)
	s.qparts = append(s.qparts, uint32(part))
	s.appends++
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return lsn, nil
}

// Wait blocks until the record at lsn is durable per the policy (always:
// written and fsynced; interval, none: written to the file), ctx ends
// (ctx.Err() wrapped), or the store fails (an error wrapping ErrFailed,
// freqd.ErrUnavailable and the OS error). A record that was not durable
// when the store failed is never reported durable, even after Rebase.
// Waiting for LSN 0 returns nil; for an LSN not yet appended, an error
// wrapping freqd.ErrInvalidArgument.
func (s *Store) Wait(ctx context.Context, lsn uint64) error {
	for {
		s.mu.Lock()
		done, err := s.waitLocked(lsn)
		ch := s.notify
		s.mu.Unlock()
		if done {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("store: wait for lsn %d: %w", lsn, ctx.Err())
		}
	}
}

func (s *Store) waitLocked(lsn uint64) (bool, error) {
	if lsn == 0 {
		return true, nil
	}
	if lsn >= s.nextLSN {
		return true, fmt.Errorf("store: wait for lsn %d: not appended (last is %d): %w", lsn, s.nextLSN-1, freqd.ErrInvalidArgument)
	}
	for _, r := range s.lost {
		if r.lo <= lsn && lsn <= r.hi {
			return true, r.err
		}
	}
	switch {
	case lsn <= s.durable:
		return true, nil
	case s.failErr != nil:
		return true, s.failErr
	case s.stopped:
		return true, &closedError{op: fmt.Sprintf("wait for lsn %d", lsn)}
	}
	return false, nil
}

// Err is nil while the store is healthy, else the error that failed it
// (it wraps ErrFailed, freqd.ErrUnavailable and the OS error).
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failErr
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Segments: len(s.segs), Checkpoints: len(s.ckpts),
		Appends: s.appends, Batches: s.batches, Fsyncs: s.fsyncs,
		LastLSN: s.nextLSN - 1, DurableLSN: s.durable,
	}
	for _, sg := range s.segs {
		st.LogBytes += sg.size
	}
	for _, c := range s.ckpts {
		st.CheckpointBytes += c.bytes
	}
	return st
}

// Close stops the writer goroutine after writing what is queued (and, for
// SyncAlways and SyncInterval, fsyncing it) and closes the log. It returns
// the error if that last write failed. Idempotent; after Close the other
// methods return errors wrapping ErrClosed (ReadMeta still reads).
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	before := s.failErr
	s.mu.Unlock()
	close(s.stop)
	<-s.done

	s.logMu.Lock()
	var cerr error
	if s.active != nil {
		if err := s.active.Close(); err != nil {
			cerr = fmt.Errorf("store: close %s: %w", s.path(s.cur.name), err)
		}
		s.active = nil
	}
	s.logMu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	s.wakeLocked()
	if s.failErr != nil && s.failErr != before {
		return s.failErr
	}
	return cerr
}

// wakeLocked wakes every Wait to look again.
func (s *Store) wakeLocked() {
	close(s.notify)
	s.notify = make(chan struct{})
}

// failLocked fails the store with err (an OS error naming the file).
// Every record not yet durable is lost: its Wait gets the error, now and
// after a Rebase.
func (s *Store) failLocked(err error) error {
	f := &failure{err: err}
	if s.failErr == nil {
		s.log.Error("store failed: nothing more is written or acknowledged until Rebase", "dir", s.dir, "err", err)
	} else {
		s.log.Debug("store still failing", "dir", s.dir, "err", err)
	}
	s.failErr = f
	lo := s.durable + 1
	if n := len(s.lost); n > 0 {
		lo = max(lo, s.lost[n-1].hi+1)
	}
	if hi := s.nextLSN - 1; lo <= hi {
		s.lost = append(s.lost, lostRange{lo: lo, hi: hi, err: f})
	}
	s.queue, s.qparts = s.queue[:0], s.qparts[:0]
	s.taken = s.nextLSN - 1
	s.wakeLocked()
	return f
}

func (s *Store) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failLocked(err)
}

// run is the writer goroutine: it takes everything queued, writes it with
// one write call, fsyncs once (SyncAlways), then wakes the waiters. Appends
// that arrive meanwhile make the next batch. It stops when stop closes,
// after writing (and syncing) what is queued.
func (s *Store) run() {
	defer close(s.done)
	var tick <-chan time.Time
	if s.policy == SyncInterval {
		t := time.NewTicker(s.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.kick:
			s.flush()
		case <-tick:
			s.syncDirty()
		case <-s.stop:
			s.flush()
			if s.policy == SyncInterval {
				s.syncDirty()
			}
			return
		}
	}
}

// flush writes batches until the queue is empty.
func (s *Store) flush() {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	for {
		s.mu.Lock()
		if len(s.qparts) == 0 || s.failErr != nil || s.active == nil {
			s.mu.Unlock()
			return
		}
		buf, parts, first := s.queue, s.qparts, s.qfirst
		s.queue, s.qparts, s.spare, s.spareP = s.spare[:0], s.spareP[:0], nil, nil
		last := first + uint64(len(parts)) - 1
		s.taken = last
		s.mu.Unlock()

		err := s.writeBatch(buf)

		s.mu.Lock()
		if err != nil {
			s.failLocked(err)
		} else {
			for i, p := range parts {
				s.cur.add(p, first+uint64(i))
			}
			s.cur.size += int64(len(buf))
			s.written, s.durable = last, last
			s.batches++
		}
		s.wakeLocked()
		if cap(buf) <= maxSpare {
			s.spare, s.spareP = buf[:0], parts[:0]
		}
		s.mu.Unlock()
	}
}

// writeBatch writes buf (whole frames, the first with LSN first) to the
// current segment, rolling first if it is full. Caller holds logMu.
func (s *Store) writeBatch(buf []byte) error {
	first := s.nextOf(buf)
	if s.cur.size >= s.segBytes && len(s.cur.parts) > 0 {
		if err := s.roll(first); err != nil {
			return err
		}
	}
	if _, err := s.active.Write(buf); err != nil {
		return pathError("write", s.path(s.cur.name), err)
	}
	if s.policy != SyncAlways {
		s.dirty = true
		return nil
	}
	return s.syncActive()
}

// nextOf returns the LSN of the first frame in buf.
func (s *Store) nextOf(buf []byte) uint64 {
	fh, _ := decodeFrameHeader(buf)
	return fh.lsn
}

// syncActive fsyncs the current segment. Caller holds logMu.
func (s *Store) syncActive() error {
	if err := s.active.Sync(); err != nil {
		return pathError("sync", s.path(s.cur.name), err)
	}
	s.dirty = false
	s.mu.Lock()
	s.fsyncs++
	s.mu.Unlock()
	return nil
}

// syncDirty fsyncs the current segment if anything was written since the
// last fsync (SyncInterval).
func (s *Store) syncDirty() {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if !s.dirty || s.active == nil || s.Err() != nil {
		return
	}
	if err := s.syncActive(); err != nil {
		s.fail(err)
	}
}

// roll seals the current segment and makes the next one, starting at LSN
// next, current. The new file is made first (under a temporary name, header
// fsynced), then the seal is written and fsynced, then the new file is
// renamed into place and the directory fsynced: a segment is used only
// after its predecessor's seal is durable. Caller holds logMu.
func (s *Store) roll(next uint64) error {
	nf, tmp, err := s.createSegment(next, 0)
	if err != nil {
		return err
	}
	abort := func(err error) error {
		_ = nf.Close()
		_ = s.fsys.Remove(tmp)
		return err
	}
	old := s.cur
	if _, err := s.active.Write(appendFrame(nil, sealPart, next, nil, 0)); err != nil {
		return abort(pathError("write", s.path(old.name), err))
	}
	if err := s.active.Sync(); err != nil {
		return abort(pathError("sync", s.path(old.name), err))
	}
	ns := &segment{first: next, name: segName(next), size: segHeaderSize, parts: map[uint32]span{}}
	if err := s.fsys.Rename(tmp, s.path(ns.name)); err != nil {
		return abort(err)
	}
	if err := s.fsys.SyncDir(s.dir); err != nil {
		_ = nf.Close()
		return err
	}
	_ = s.active.Close()
	s.active, s.dirty = nf, false
	s.mu.Lock()
	old.sealed = true
	old.size += frameHeaderSize
	s.segs = append(s.segs, ns)
	s.cur = ns
	s.fsyncs += 3 // old segment, new header, directory
	s.mu.Unlock()
	return nil
}

// createSegment writes a new segment header starting at first to a
// temporary file and fsyncs it. The caller renames it into place (or
// removes it).
func (s *Store) createSegment(first uint64, flags uint16) (writeFile, string, error) {
	tmp := s.path(segName(first) + ".tmp")
	f, err := s.fsys.Create(tmp)
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (writeFile, string, error) {
		_ = f.Close()
		_ = s.fsys.Remove(tmp)
		return nil, "", err
	}
	if _, err := f.Write(encodeSegHeader(segHeader{flags: flags, first: first})); err != nil {
		return fail(pathError("write", tmp, err))
	}
	if err := f.Sync(); err != nil {
		return fail(pathError("sync", tmp, err))
	}
	return f, tmp, nil
}

// writeAtomic replaces the file name with data: temporary file, fsync,
// rename, directory fsync.
func (s *Store) writeAtomic(name string, data []byte) error {
	tmp := s.path(name + ".tmp")
	if err := s.writeTmp(tmp, data); err != nil {
		return err
	}
	if err := s.fsys.Rename(tmp, s.path(name)); err != nil {
		_ = s.fsys.Remove(tmp)
		return err
	}
	return s.fsys.SyncDir(s.dir)
}

// writeTmp creates tmp holding data, fsynced and closed; on failure it
// removes what it created.
func (s *Store) writeTmp(tmp string, data []byte) error {
	f, err := s.fsys.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err != nil {
		err = pathError("write", tmp, err)
	} else if err = f.Sync(); err != nil {
		err = pathError("sync", tmp, err)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = pathError("close", tmp, cerr)
	}
	if err != nil {
		_ = s.fsys.Remove(tmp)
	}
	return err
}
