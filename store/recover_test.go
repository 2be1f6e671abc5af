package store

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fixture is a closed store directory with records of 4 partitions over
// many segments, and partition 2 checkpointed part way.
type fixture struct {
	dir  string
	opts Options
	// recs[p] are partition p's records with their LSNs, in order.
	recs     map[int][]fixRec
	ckpt2    []byte
	ckpt2LSN uint64
	segs     []string // segment files, oldest first
}

type fixRec struct {
	lsn uint64
	b   []byte
}

const fixParts = 4

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), recs: map[int][]fixRec{}}
	f.opts = Options{Dir: f.dir, SegmentBytes: 600}
	s, _, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 120 {
		p := i % fixParts
		b := payload(p, i)
		lsn := appendWait(t, s, p, b)
		f.recs[p] = append(f.recs[p], fixRec{lsn, b})
		if i == 41 {
			f.ckpt2, f.ckpt2LSN = []byte("ckpt-2"), f.recs[2][len(f.recs[2])-1].lsn
			if err := s.Checkpoint(2, f.ckpt2LSN, f.ckpt2); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f.segs = segFiles(t, f.dir)
	if len(f.segs) < 6 {
		t.Fatalf("fixture has %d segments; want more", len(f.segs))
	}
	return f
}

func (f *fixture) path(name string) string { return filepath.Join(f.dir, name) }

// want is partition p's expected records: after the checkpoint, with LSN
// below upTo (0 = all).
func (f *fixture) want(p int, upTo uint64) [][]byte {
	var out [][]byte
	for _, r := range f.recs[p] {
		if p == 2 && r.lsn <= f.ckpt2LSN {
			continue
		}
		if upTo == 0 || r.lsn < upTo {
			out = append(out, r.b)
		}
	}
	return out
}

func (f *fixture) open(t *testing.T) (*Store, *Recovery) {
	t.Helper()
	return mustOpen(t, f.opts)
}

// checkParts checks every partition's records, each cut below upTo[p] (0 =
// all); partitions in skip are not checked.
func (f *fixture) checkParts(t *testing.T, rec *Recovery, upTo map[int]uint64, skip ...int) {
	t.Helper()
outer:
	for p := range fixParts {
		for _, s := range skip {
			if s == p {
				continue outer
			}
		}
		got := rec.Partitions[p]
		want := f.want(p, upTo[p])
		if got == nil {
			if len(want) > 0 {
				t.Fatalf("partition %d not recovered", p)
			}
			continue
		}
		if !equalRecs(got.Records, want) {
			t.Fatalf("partition %d: %d records, want %d", p, len(got.Records), len(want))
		}
		if p == 2 && (string(got.Checkpoint) != string(f.ckpt2) || got.CheckpointLSN != f.ckpt2LSN) {
			t.Fatalf("partition 2 checkpoint %q at %d", got.Checkpoint, got.CheckpointLSN)
		}
	}
}

// frameIn returns the i-th record frame of partition p in a segment file.
func (f *fixture) frameIn(t *testing.T, name string, p, i int) frame {
	t.Helper()
	for _, fr := range scanFile(t, f.dir, name).frames {
		if int(fr.part) == p {
			if i == 0 {
				return fr
			}
			i--
		}
	}
	t.Fatalf("%s has no frame %d of partition %d", name, i, p)
	return frame{}
}

func TestRecoverClean(t *testing.T) {
	f := newFixture(t)
	_, rec := f.open(t)
	if rec.All != "" || len(rec.Damaged) != 0 || len(rec.Notes) != 0 {
		t.Fatalf("clean: %+v", rec)
	}
	f.checkParts(t, rec, nil)
}

// A torn tail in the last segment is truncated and noted, not damage.
func TestRecoverTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(fr frame) int64 // new size of the file
	}{
		{"short header", func(fr frame) int64 { return fr.off + 10 }},
		{"short payload", func(fr frame) int64 { return fr.off + frameHeaderSize + int64(len(fr.payload)) - 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			last := f.segs[len(f.segs)-1]
			sc := scanFile(t, f.dir, last)
			if len(sc.frames) < 2 {
				t.Fatalf("last segment has %d frames", len(sc.frames))
			}
			fr := sc.frames[len(sc.frames)-1]
			size := tc.cut(fr)
			truncateFile(t, f.path(last), size)
			s, rec := f.open(t)
			if rec.All != "" || len(rec.Damaged) != 0 {
				t.Fatalf("torn tail reported as damage: %q %v", rec.All, rec.Damaged)
			}
			if !hasNote(rec, last, "torn tail", itoa(fr.off), itoa(size-fr.off)+" bytes dropped") {
				t.Fatalf("notes %v: want the file, offset and bytes dropped", rec.Notes)
			}
			f.checkParts(t, rec, map[int]uint64{int(fr.part): fr.lsn})
			// The file now ends at the frame before, plus a seal.
			if info, _ := os.Stat(f.path(last)); info.Size() != fr.off+frameHeaderSize {
				t.Fatalf("%s is %d bytes after recovery, want %d", last, info.Size(), fr.off+frameHeaderSize)
			}
			// LSNs continue after the last complete record.
			if lsn := appendWait(t, s, 0, []byte("x")); lsn != fr.lsn {
				t.Fatalf("next LSN %d, want %d", lsn, fr.lsn)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, rec = f.open(t)
			if rec.All != "" || len(rec.Damaged) != 0 || len(rec.Notes) != 0 {
				t.Fatalf("second reopen: %q %v %v", rec.All, rec.Damaged, rec.Notes)
			}
		})
	}
}

// Zeros after the last frame (a file extended but not written before a
// crash) are a torn tail too.
func TestRecoverZeroTail(t *testing.T) {
	f := newFixture(t)
	last := f.segs[len(f.segs)-1]
	b, _ := os.ReadFile(f.path(last))
	if err := os.WriteFile(f.path(last), append(b, make([]byte, 100)...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, rec := f.open(t)
	if rec.All != "" || len(rec.Damaged) != 0 || !hasNote(rec, last, "zero-filled", "100 bytes dropped") {
		t.Fatalf("zero tail: %q %v %v", rec.All, rec.Damaged, rec.Notes)
	}
	f.checkParts(t, rec, nil)
}

// A bad payload checksum damages that partition only: its records from
// there on are dropped, the others are intact.
func TestRecoverPayloadDamage(t *testing.T) {
	f := newFixture(t)
	mid := f.segs[len(f.segs)/2]
	fr := f.frameIn(t, mid, 1, 0)
	flipByte(t, f.path(mid), fr.off+frameHeaderSize+1)
	s, rec := f.open(t)
	if rec.All != "" || len(rec.Damaged) != 1 {
		t.Fatalf("want only partition 1 damaged: %q %v", rec.All, rec.Damaged)
	}
	if d := rec.Damaged[1]; !strings.Contains(d, mid) || !strings.Contains(d, "offset "+itoa(fr.off)) || !strings.Contains(d, "checksum") {
		t.Fatalf("Damaged[1] = %q: want file, offset and problem", d)
	}
	f.checkParts(t, rec, map[int]uint64{1: fr.lsn})

	// The node refetches partition 1 and checkpoints it: the damage is
	// covered, and the next Open reports nothing.
	if err := s.Checkpoint(1, 0, []byte("refetched")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, rec = f.open(t)
	if rec.All != "" || len(rec.Damaged) != 0 || string(rec.Partitions[1].Checkpoint) != "refetched" || len(rec.Partitions[1].Records) != 0 {
		t.Fatalf("after checkpoint: %q %v %+v", rec.All, rec.Damaged, rec.Partitions[1])
	}
}

// A bad frame header, a bad segment header, a truncated sealed segment,
// a missing segment: damage not tied to partitions (All), with what came
// before kept.
func TestRecoverAll(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *fixture) (file string, before uint64) // records with LSN < before stay
		want   string
	}{
		{"frame header", func(t *testing.T, f *fixture) (string, uint64) {
			mid := f.segs[2]
			fr := f.frameIn(t, mid, 3, 0)
			flipByte(t, f.path(mid), fr.off+9) // in the LSN
			return mid, fr.lsn
		}, "frame header checksum"},
		{"segment header", func(t *testing.T, f *fixture) (string, uint64) {
			mid := f.segs[2]
			flipByte(t, f.path(mid), 1)
			first, _ := parseSegName(mid)
			return mid, first
		}, "segment header"},
		{"sealed segment cut at a frame", func(t *testing.T, f *fixture) (string, uint64) {
			mid := f.segs[2]
			sc := scanFile(t, f.dir, mid)
			fr := sc.frames[len(sc.frames)-2]
			truncateFile(t, f.path(mid), fr.off)
			return mid, 1 << 62 // records after the cut are still attributed up to there
		}, "without its seal"},
		{"sealed segment cut mid-frame", func(t *testing.T, f *fixture) (string, uint64) {
			mid := f.segs[2]
			sc := scanFile(t, f.dir, mid)
			fr := sc.frames[len(sc.frames)-2]
			truncateFile(t, f.path(mid), fr.off+5)
			return mid, 1 << 62
		}, "truncated"},
		{"missing segment", func(t *testing.T, f *fixture) (string, uint64) {
			gone := f.segs[2]
			if err := os.Remove(f.path(gone)); err != nil {
				t.Fatal(err)
			}
			first, _ := parseSegName(gone)
			return f.segs[3], first
		}, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			file, before := tc.damage(t, f)
			s, rec := f.open(t)
			if !strings.Contains(rec.All, file) || !strings.Contains(rec.All, tc.want) {
				t.Fatalf("All = %q: want %q and %q", rec.All, file, tc.want)
			}
			if before == 1<<62 {
				// Cut: everything up to the cut is kept; compare prefixes.
				for p := range fixParts {
					got, want := rec.Partitions[p], f.want(p, 0)
					if got == nil || len(got.Records) == 0 || len(got.Records) >= len(want) || !equalRecs(got.Records, want[:len(got.Records)]) {
						t.Fatalf("partition %d: not a proper prefix", p)
					}
				}
			} else {
				f.checkParts(t, rec, map[int]uint64{0: before, 1: before, 2: before, 3: before})
			}
			// The damage is reported again at every Open until every
			// partition the store knows of is checkpointed; then the
			// damaged segments go.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, rec = f.open(t)
			if rec.All == "" {
				t.Fatal("damage not reported at the second Open")
			}
			for _, p := range s.Due() {
				if p < 0 || p >= fixParts {
					t.Fatalf("Due lists partition %d", p)
				}
			}
			for p := range fixParts {
				if err := s.Checkpoint(p, 0, []byte("again")); err != nil {
					t.Fatal(err)
				}
			}
			lsn := appendWait(t, s, 0, []byte("new"))
			if n := len(segFiles(t, f.dir)); n != 1 {
				t.Fatalf("%d segments left after checkpointing every partition", n)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, rec = f.open(t)
			if rec.All != "" || len(rec.Damaged) != 0 {
				t.Fatalf("after checkpoints: %q %v", rec.All, rec.Damaged)
			}
			if got := rec.Partitions[0]; string(got.Checkpoint) != "again" || len(got.Records) != 1 || got.LastLSN != lsn {
				t.Fatalf("partition 0: %+v", got)
			}
		})
	}
}

// A damaged checkpoint damages its partition; its log records are not
// returned.
func TestRecoverCheckpointDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string)
		want   string
	}{
		{"flipped byte", func(path string) { flipByte(t, path, ckptHeaderSize) }, "checksum mismatch"},
		{"truncated", func(path string) { truncateFile(t, path, 10) }, "too short"},
		{"other partition", func(path string) {
			_ = os.WriteFile(path, encodeCheckpoint(ckptFile{part: 3, lsn: 1, payload: []byte("x")}), 0o600)
		}, "holds partition 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.damage(f.path(ckptName(2)))
			_, rec := f.open(t)
			if rec.All != "" || len(rec.Damaged) != 1 || !strings.Contains(rec.Damaged[2], ckptName(2)) || !strings.Contains(rec.Damaged[2], tc.want) {
				t.Fatalf("damaged %v all %q", rec.Damaged, rec.All)
			}
			if rec.Partitions[2] != nil {
				t.Fatalf("partition 2 recovered with a damaged checkpoint")
			}
			f.checkParts(t, rec, nil, 2)
		})
	}
}

// LSNs out of sequence inside a segment: All, earlier records kept.
func TestRecoverLSNSequence(t *testing.T) {
	dir := t.TempDir()
	b := encodeSegHeader(segHeader{first: 1})
	for _, lsn := range []uint64{1, 2, 4, 5} {
		p := []byte{byte(lsn)}
		b = appendFrame(b, 7, lsn, p, crc(p))
	}
	if err := os.WriteFile(filepath.Join(dir, segName(1)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, rec := mustOpen(t, Options{Dir: dir})
	if !strings.Contains(rec.All, "lsn 4 out of sequence (expected 3)") || !strings.Contains(rec.All, segName(1)) {
		t.Fatalf("All = %q", rec.All)
	}
	if got := rec.Partitions[7]; got == nil || len(got.Records) != 2 || got.LastLSN != 2 {
		t.Fatalf("partition 7: %+v", got)
	}
	// New LSNs start past everything read, in a new segment.
	if lsn := appendWait(t, s, 7, nil); lsn != 3 {
		t.Fatalf("next LSN %d, want 3", lsn)
	}
	if segs := segFiles(t, dir); len(segs) != 2 || segs[1] != segName(3) {
		t.Fatalf("segments %v", segs)
	}
}

// A sealed last segment without its successor (a crash during a roll) is
// fine; a torn header of a new last segment is removed.
func TestRecoverRollCrash(t *testing.T) {
	dir := t.TempDir()
	b := encodeSegHeader(segHeader{first: 1})
	for lsn := uint64(1); lsn <= 3; lsn++ {
		b = appendFrame(b, 1, lsn, []byte("r"), crc([]byte("r")))
	}
	b = appendFrame(b, sealPart, 4, nil, 0)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(segName(1), b)
	write(segName(4), encodeSegHeader(segHeader{first: 4})[:7])
	s, rec := mustOpen(t, Options{Dir: dir})
	if rec.All != "" || len(rec.Damaged) != 0 || !hasNote(rec, segName(4), "torn segment header") {
		t.Fatalf("recovery %q %v %v", rec.All, rec.Damaged, rec.Notes)
	}
	if got := rec.Partitions[1]; got == nil || len(got.Records) != 3 {
		t.Fatalf("partition 1: %+v", got)
	}
	if lsn := appendWait(t, s, 1, nil); lsn != 4 {
		t.Fatalf("next LSN %d, want 4", lsn)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, rec = mustOpen(t, Options{Dir: dir})
	if rec.All != "" || len(rec.Notes) != 0 || len(rec.Partitions[1].Records) != 4 {
		t.Fatalf("reopen: %q %v %+v", rec.All, rec.Notes, rec.Partitions[1])
	}
}

// Checkpoints but no log at all: the log was lost.
func TestRecoverNoLog(t *testing.T) {
	f := newFixture(t)
	for _, name := range f.segs {
		if err := os.Remove(f.path(name)); err != nil {
			t.Fatal(err)
		}
	}
	s, rec := f.open(t)
	if !strings.Contains(rec.All, "no log segment") {
		t.Fatalf("All = %q", rec.All)
	}
	// LSNs continue past the checkpoint.
	if lsn := appendWait(t, s, 0, nil); lsn != f.ckpt2LSN+1 {
		t.Fatalf("next LSN %d, want %d", lsn, f.ckpt2LSN+1)
	}
}

// Leftover temporary files are removed; unknown files are left alone;
// both are noted.
func TestRecoverLeftovers(t *testing.T) {
	f := newFixture(t)
	tmps := []string{ckptName(1) + ".tmp", segName(999) + ".tmp", "node.meta.tmp"}
	unknown := []string{"README", "wal-1.log", "part-1.ckpt", "other.tmp"}
	for _, name := range append(append([]string{}, tmps...), unknown...) {
		if err := os.WriteFile(f.path(name), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(f.path("sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, rec := f.open(t)
	if rec.All != "" || len(rec.Damaged) != 0 {
		t.Fatalf("damage: %q %v", rec.All, rec.Damaged)
	}
	for _, name := range tmps {
		if _, err := os.Stat(f.path(name)); !os.IsNotExist(err) {
			t.Errorf("%s not removed", name)
		}
		if !hasNote(rec, name, "removed") {
			t.Errorf("no note for %s: %v", name, rec.Notes)
		}
	}
	for _, name := range append(unknown, "sub") {
		if _, err := os.Stat(f.path(name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !hasNote(rec, name, "left alone") {
			t.Errorf("no note for %s: %v", name, rec.Notes)
		}
	}
	f.checkParts(t, rec, nil)
}

// Segments before a Rebase's segment are superseded, even if left over.
func TestRecoverSuperseded(t *testing.T) {
	f := newFixture(t)
	old, err := os.ReadFile(f.path(f.segs[0]))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.open(t)
	if err := s.Rebase(map[int]Checkpointed{0: {Payload: []byte("zero")}, 2: {Payload: []byte("two")}}); err != nil {
		t.Fatal(err)
	}
	lsn := appendWait(t, s, 1, []byte("one"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, f.dir)); n != 1 {
		t.Fatalf("%d segments after Rebase", n)
	}
	// An old segment that a crash kept.
	if err := os.WriteFile(f.path(f.segs[0]), old, 0o600); err != nil {
		t.Fatal(err)
	}
	_, rec := f.open(t)
	if rec.All != "" || len(rec.Damaged) != 0 || !hasNote(rec, "superseded") {
		t.Fatalf("recovery %q %v %v", rec.All, rec.Damaged, rec.Notes)
	}
	if _, err := os.Stat(f.path(f.segs[0])); !os.IsNotExist(err) {
		t.Fatal("superseded segment not removed")
	}
	if len(rec.Partitions) != 3 || string(rec.Partitions[0].Checkpoint) != "zero" || string(rec.Partitions[2].Checkpoint) != "two" ||
		rec.Partitions[1].Checkpoint != nil || len(rec.Partitions[1].Records) != 1 || rec.Partitions[1].LastLSN != lsn {
		t.Fatalf("partitions %+v", rec.Partitions)
	}
	if _, err := os.Stat(f.path(ckptName(3))); !os.IsNotExist(err) {
		t.Fatal("partition 3 (absent from Rebase) still has a checkpoint")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
