package store

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/freqd/freqd"
)

// Open reads everything in opts.Dir and returns the store and what it
// recovered. A damaged file is not an error: it is reported in the
// Recovery (and logged with the file name, offset and what was wrong).
// Open returns an error only for invalid options or when the directory
// cannot be created or read at all. If the directory cannot be written
// (read-only, full), Open still returns the store and the recovery, with
// the store failed (see Err) so the node can report it and serve nothing;
// Rebase brings it back once writes work.
//
// Open also tidies the directory: it removes leftover temporary files and
// segments a Rebase superseded, truncates a torn tail, seals the last
// segment and starts a new one.
func Open(opts Options) (*Store, *Recovery, error) {
	switch {
	case opts.Dir == "":
		return nil, nil, fmt.Errorf("store: open: no directory: %w", freqd.ErrInvalidArgument)
	case opts.Sync < SyncAlways || opts.Sync > SyncNone:
		return nil, nil, fmt.Errorf("store: open: unknown sync policy %d: %w", int(opts.Sync), freqd.ErrInvalidArgument)
	case opts.SyncInterval < 0:
		return nil, nil, fmt.Errorf("store: open: negative sync interval %v: %w", opts.SyncInterval, freqd.ErrInvalidArgument)
	case opts.SegmentBytes < 0:
		return nil, nil, fmt.Errorf("store: open: negative segment size %d: %w", opts.SegmentBytes, freqd.ErrInvalidArgument)
	}
	s := &Store{
		dir: opts.Dir, fsys: opts.fsys, log: opts.Logger, policy: opts.Sync,
		interval: cmp.Or(opts.SyncInterval, defaultSyncInterval), segBytes: cmp.Or(opts.SegmentBytes, defaultSegmentBytes),
		notify: make(chan struct{}), ckpts: map[int]*ckptState{}, cov: map[int]uint64{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if s.fsys == nil {
		s.fsys = osFS{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.fsys.MkdirAll(s.dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("store: open: %w", err)
	}
	entries, err := s.fsys.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open: %w", err)
	}
	r := &recoverer{s: s, rec: &Recovery{Partitions: map[int]*Recovered{}, Damaged: map[int]string{}}, dropped: map[int]bool{}}
	r.run(entries)
	go s.run()
	return s, r.rec, nil
}

// recoverer holds the state of one Open's recovery.
type recoverer struct {
	s       *Store
	rec     *Recovery
	tmps    []string
	segs    []segFile
	ckpts   []int
	dropped map[int]bool // partitions whose later records are dropped (damage)
	maxSeen uint64       // highest LSN seen in any frame or seal
	maxName uint64       // highest first LSN in a segment's name
	// what Open must still write
	superseded []string // segments before the last base segment
	tornHeader string   // last segment whose header is torn
	truncate   int64    // truncate the last live segment to this size (-1: no)
	lastScan   segScan  // scan of the last live segment
}

type segFile struct {
	first uint64
	name  string
}

func (r *recoverer) note(msg string) {
	r.rec.Notes = append(r.rec.Notes, msg)
	r.s.log.Info("store recovery", "note", msg)
}

func (r *recoverer) damaged(part int, msg string) {
	if _, ok := r.rec.Damaged[part]; !ok {
		r.rec.Damaged[part] = msg
		r.s.log.Warn("store recovery: partition damaged", "partition", part, "problem", msg)
	}
}

func (r *recoverer) all(msg string) {
	if r.rec.All == "" {
		r.rec.All = msg
		r.s.log.Error("store recovery: log damaged; every partition must be treated as damaged", "problem", msg)
	}
}

func (r *recoverer) run(entries []fs.DirEntry) {
	s := r.s
	r.truncate = -1
	r.classify(entries)
	r.readCheckpoints()
	live := r.findBase()
	r.scan(live)
	if len(s.segs) == 0 && r.rec.All == "" && len(s.ckpts) > 0 {
		r.all(fmt.Sprintf("no log segment but %d checkpoint files: the log was lost", len(s.ckpts)))
	}
	next := max(r.maxSeen+1, 1)
	for p, c := range s.ckpts {
		if !c.damaged {
			next = max(next, c.lsn+1)
			s.cov[p] = c.lsn
		}
	}
	if n := len(s.segs); n > 0 && !s.segs[n-1].opaque {
		// The last segment's name is its first LSN: next is at least that.
		next = max(next, s.segs[n-1].first)
	}
	if r.rec.All != "" {
		// Nothing is written to the damaged segments: the new one starts
		// past every name, so names stay unique and in order.
		next = max(next, r.maxName+1)
	}
	s.nextLSN = next
	s.openHW, s.taken, s.written, s.durable = next-1, next-1, next-1, next-1
	for _, sg := range s.segs {
		if sg.opaque {
			sg.bound = next - 1
		}
	}
	r.finish()
	s.log.Info("store opened", "dir", s.dir, "files", r.rec.Files, "bytes", r.rec.Bytes,
		"partitions", len(r.rec.Partitions), "damaged", len(r.rec.Damaged), "all", r.rec.All,
		"next_lsn", next, "failed", s.failErr)
}

// classify sorts the directory's entries.
func (r *recoverer) classify(entries []fs.DirEntry) {
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			r.note(fmt.Sprintf("unknown directory %q left alone", name))
			continue
		}
		if base, ok := strings.CutSuffix(name, ".tmp"); ok && ours(base) {
			r.tmps = append(r.tmps, name)
			continue
		}
		if first, ok := parseSegName(name); ok {
			r.segs = append(r.segs, segFile{first: first, name: name})
			r.maxName = max(r.maxName, first)
			continue
		}
		if part, ok := parseCkptName(name); ok {
			r.ckpts = append(r.ckpts, part)
			continue
		}
		if base, ok := strings.CutSuffix(name, ".meta"); ok && validMetaName(base) {
			continue
		}
		r.note(fmt.Sprintf("unknown file %q left alone", name))
	}
	slices.SortFunc(r.segs, func(a, b segFile) int { return cmp.Compare(a.first, b.first) })
	slices.Sort(r.ckpts)
}

func ours(name string) bool {
	_, seg := parseSegName(name)
	_, ck := parseCkptName(name)
	base, meta := strings.CutSuffix(name, ".meta")
	return seg || ck || meta && validMetaName(base)
}

// parseSegName parses "wal-<16 lower-case hex digits>.log".
func parseSegName(name string) (uint64, bool) {
	hex, ok := strings.CutPrefix(name, "wal-")
	if !ok {
		return 0, false
	}
	hex, ok = strings.CutSuffix(hex, ".log")
	if !ok || len(hex) != 16 || strings.ToLower(hex) != hex {
		return 0, false
	}
	first, err := strconv.ParseUint(hex, 16, 64)
	if err != nil || first == 0 {
		return 0, false
	}
	return first, true
}

// parseCkptName parses "part-<id %06d>.ckpt".
func parseCkptName(name string) (int, bool) {
	dec, ok := strings.CutPrefix(name, "part-")
	if !ok {
		return 0, false
	}
	dec, ok = strings.CutSuffix(dec, ".ckpt")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(dec, 10, 32)
	if err != nil || n > maxPart || ckptName(int(n)) != name {
		return 0, false
	}
	return int(n), true
}

func (r *recoverer) readCheckpoints() {
	s := r.s
	for _, part := range r.ckpts {
		name := ckptName(part)
		data, err := s.fsys.ReadFile(s.path(name))
		st := &ckptState{bytes: int64(len(data))}
		s.ckpts[part] = st
		if err != nil {
			st.damaged = true
			r.damaged(part, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		r.rec.Files++
		r.rec.Bytes += int64(len(data))
		c, err := decodeCheckpoint(data)
		if err == nil && int(c.part) != part {
			err = fmt.Errorf("holds partition %d", c.part)
		}
		if err != nil {
			st.damaged = true
			r.damaged(part, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		st.lsn, st.none = c.lsn, c.payload == nil
		if c.payload != nil {
			r.rec.Partitions[part] = &Recovered{Checkpoint: c.payload, CheckpointLSN: c.lsn, LastLSN: c.lsn}
		}
	}
}

// findBase returns the segments to scan: from the last one Rebase wrote
// (whose header has the base flag) on. Older ones are superseded.
func (r *recoverer) findBase() []segFile {
	s := r.s
	for i := len(r.segs) - 1; i > 0; i-- {
		b, err := s.fsys.ReadPrefix(s.path(r.segs[i].name), segHeaderSize)
		if err != nil {
			continue
		}
		if h, err := decodeSegHeader(b); err == nil && h.base() {
			for _, sf := range r.segs[:i] {
				r.superseded = append(r.superseded, sf.name)
			}
			r.note(fmt.Sprintf("%d segments before %s superseded by its checkpoints; removed", i, r.segs[i].name))
			return r.segs[i:]
		}
	}
	return r.segs
}

// scan reads the live segments in order and attributes their records.
func (r *recoverer) scan(live []segFile) {
	s := r.s
	var expect uint64 // LSN the next segment must start at; 0 for the first
	bad := false      // damage not tied to partitions was found: later records are not attributed
	for i, sf := range live {
		last := i == len(live)-1
		sg := &segment{first: sf.first, name: sf.name, parts: map[uint32]span{}}
		data, err := s.fsys.ReadFile(s.path(sf.name))
		if err != nil {
			r.all(fmt.Sprintf("%s: %v", sf.name, err))
			bad, sg.opaque = true, true
			s.segs = append(s.segs, sg)
			continue
		}
		r.rec.Files++
		r.rec.Bytes += int64(len(data))
		sg.size = int64(len(data))
		sc := scanSegment(data)
		for _, f := range sc.frames {
			sg.add(f.part, f.lsn)
			r.maxSeen = max(r.maxSeen, f.lsn)
		}
		if sc.end == endSealed {
			r.maxSeen = max(r.maxSeen, sc.seal-1)
		}
		if bad {
			sg.opaque = true
			s.segs = append(s.segs, sg)
			continue
		}
		if !sc.hdrOK {
			if last && sc.end == endTorn {
				r.note(fmt.Sprintf("%s: %s; removed", sf.name, sc.problem))
				r.tornHeader = sf.name
				continue
			}
			r.all(fmt.Sprintf("%s: offset 0: %s", sf.name, sc.problem))
			bad, sg.opaque = true, true
			s.segs = append(s.segs, sg)
			continue
		}
		sg.base = sc.hdr.base()
		switch {
		case sc.hdr.first != sf.first:
			r.all(fmt.Sprintf("%s: header says first lsn %d, name says %d", sf.name, sc.hdr.first, sf.first))
		case expect != 0 && sc.hdr.first != expect:
			r.all(fmt.Sprintf("%s: starts at lsn %d, but the segment before was sealed at lsn %d: a segment is missing", sf.name, sc.hdr.first, expect))
		}
		if r.rec.All != "" {
			bad, sg.opaque = true, true
			s.segs = append(s.segs, sg)
			continue
		}
		for _, f := range sc.frames {
			r.attribute(sf.name, f)
		}
		switch sc.end {
		case endSealed:
			sg.sealed, expect = true, sc.seal
		case endClean:
			if !last {
				r.all(fmt.Sprintf("%s: ends at offset %d without its seal (truncated)", sf.name, len(data)))
			}
			expect = sc.next
		case endTorn:
			if last {
				dropped := int64(len(data)) - sc.good
				r.note(fmt.Sprintf("%s: torn tail truncated at offset %d (%s; %d bytes dropped)", sf.name, sc.good, sc.problem, dropped))
				r.truncate = sc.good
				sg.size = sc.good
			} else {
				r.all(fmt.Sprintf("%s: offset %d: %s (a sealed segment was truncated)", sf.name, sc.at, sc.problem))
			}
			expect = sc.next
		case endBad:
			r.all(fmt.Sprintf("%s: offset %d: %s", sf.name, sc.at, sc.problem))
		}
		if r.rec.All != "" {
			bad, sg.opaque = true, true
		}
		s.segs = append(s.segs, sg)
		r.lastScan = sc
	}
}

// attribute hands one frame to its partition.
func (r *recoverer) attribute(file string, f frame) {
	s := r.s
	part := int(f.part)
	ck := s.ckpts[part]
	switch {
	case ck != nil && ck.damaged, r.dropped[part]:
		return
	case ck != nil && f.lsn <= ck.lsn:
		return // covered by the checkpoint (damaged or not)
	case !f.ok:
		r.dropped[part] = true
		r.damaged(part, fmt.Sprintf("%s: offset %d: payload checksum mismatch (lsn %d); later records of the partition dropped", file, f.off, f.lsn))
		return
	}
	rp := r.rec.Partitions[part]
	if rp == nil {
		rp = &Recovered{}
		if ck != nil {
			rp.CheckpointLSN, rp.LastLSN = ck.lsn, ck.lsn
		}
		r.rec.Partitions[part] = rp
	}
	rp.Records = append(rp.Records, slices.Clone(f.payload))
	rp.LastLSN = f.lsn
}

// finish makes the directory ready to write: removes leftovers,
// truncates a torn tail, seals the last segment and starts a new one. The
// first failure fails the store (a read-only or full directory) and stops
// the rest; the recovery stands.
func (r *recoverer) finish() {
	s := r.s
	err := r.prepare()
	if err != nil {
		s.mu.Lock()
		s.failLocked(err)
		s.mu.Unlock()
	}
}

func (r *recoverer) prepare() error {
	s := r.s
	for _, name := range r.tmps {
		if err := s.fsys.Remove(s.path(name)); err != nil {
			return err
		}
		r.note(fmt.Sprintf("leftover temporary file %q removed", name))
	}
	for _, name := range append(r.superseded, r.tornHeader) {
		if name == "" {
			continue
		}
		if err := s.fsys.Remove(s.path(name)); err != nil {
			return err
		}
	}
	next := s.nextLSN
	var last *segment
	if n := len(s.segs); n > 0 {
		last = s.segs[n-1]
	}
	var flags uint16
	replace := last != nil && !last.opaque && len(last.parts) == 0 && last.first == next
	if replace && last.base {
		flags = segFlagBase
	}
	nf, tmp, err := s.createSegment(next, flags)
	if err != nil {
		return err
	}
	abort := func(err error) error {
		_ = nf.Close()
		_ = s.fsys.Remove(tmp)
		return err
	}
	if last != nil && !replace && !last.opaque {
		if err := r.seal(last, next); err != nil {
			return abort(err)
		}
	}
	ns := &segment{first: next, name: segName(next), size: segHeaderSize, parts: map[uint32]span{}, base: flags&segFlagBase != 0}
	if err := s.fsys.Rename(tmp, s.path(ns.name)); err != nil {
		return abort(err)
	}
	if err := s.fsys.SyncDir(s.dir); err != nil {
		_ = nf.Close()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if replace {
		s.segs = s.segs[:len(s.segs)-1]
	}
	s.segs = append(s.segs, ns)
	s.cur, s.active = ns, nf
	s.fsyncs += 2
	return nil
}

// seal makes last end with a seal frame naming next: it truncates a torn
// tail (or an old seal naming another LSN) and appends the seal, fsynced.
func (r *recoverer) seal(last *segment, next uint64) error {
	s := r.s
	sc := r.lastScan
	if sc.end == endSealed && sc.seal == next {
		return nil
	}
	size := last.size
	if sc.end == endSealed {
		size -= frameHeaderSize // an old seal naming an earlier LSN
	}
	path := s.path(last.name)
	if r.truncate >= 0 || sc.end == endSealed {
		if err := s.fsys.Truncate(path, size); err != nil {
			return err
		}
	}
	f, err := s.fsys.OpenAppend(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(appendFrame(nil, sealPart, next, nil, 0)); err != nil {
		_ = f.Close()
		return pathError("write", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return pathError("sync", path, err)
	}
	if err := f.Close(); err != nil {
		return pathError("close", path, err)
	}
	s.mu.Lock()
	last.sealed, last.size = true, size+frameHeaderSize
	s.fsyncs++
	s.mu.Unlock()
	return nil
}

// isNotExist reports a missing file.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[int]V) []int { return slices.Sorted(maps.Keys(m)) }
