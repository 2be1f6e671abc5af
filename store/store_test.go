package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/freqd/freqd"
)

func TestParseSyncPolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SyncPolicy
		ok   bool
	}{
		{"always", SyncAlways, true},
		{"interval", SyncInterval, true},
		{"none", SyncNone, true},
		{"", 0, false},
		{"Always", 0, false},
		{"fsync", 0, false},
	} {
		got, err := ParseSyncPolicy(tc.in)
		if tc.ok {
			if err != nil || got != tc.want {
				t.Errorf("ParseSyncPolicy(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
			}
			continue
		}
		if !errors.Is(err, freqd.ErrInvalidArgument) || !strings.Contains(err.Error(), `"`+tc.in+`"`) {
			t.Errorf("ParseSyncPolicy(%q) error %v: want ErrInvalidArgument naming the value", tc.in, err)
		}
	}
	if s := SyncPolicy(7).String(); s != "SyncPolicy(7)" {
		t.Errorf("unknown policy String() = %q", s)
	}
}

func TestOpenOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{},
		{Dir: dir, Sync: SyncPolicy(9)},
		{Dir: dir, SyncInterval: -1},
		{Dir: dir, SegmentBytes: -1},
	} {
		if _, _, err := Open(o); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("Open(%+v) = %v, want ErrInvalidArgument", o, err)
		}
	}
	// A directory that cannot even be created is an error.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(Options{Dir: filepath.Join(file, "sub")}); err == nil {
		t.Fatal("Open under a regular file succeeded")
	}
	// A missing directory is created 0700.
	sub := filepath.Join(dir, "a", "b")
	s, rec := mustOpen(t, Options{Dir: sub})
	if info, err := os.Stat(sub); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("created dir: %v, %v", info, err)
	}
	if len(rec.Partitions) != 0 || rec.All != "" || len(rec.Damaged) != 0 {
		t.Fatalf("empty dir recovered %+v", rec)
	}
	if lsn := appendWait(t, s, 0, []byte("x")); lsn != 1 {
		t.Fatalf("first LSN in an empty dir = %d, want 1", lsn)
	}
}

// TestRoundTrip appends records of many partitions from many goroutines,
// reopens, and checks every partition's records in order and that LSNs
// continue.
func TestRoundTrip(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, Sync: policy, SegmentBytes: 4096}
			s, _ := mustOpen(t, opts)
			const goroutines, parts, perG = 8, 32, 200
			want := make([][][]byte, parts)
			var mu sync.Mutex // guards want and maxLSN
			var maxLSN uint64
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					for i := range perG {
						// goroutine g owns partitions g, g+8, g+16, g+24,
						// so its order is each partition's order.
						part := g + goroutines*rng.IntN(parts/goroutines)
						p := payload(part, g*perG+i)
						lsn, err := s.Append(part, p)
						if err != nil {
							t.Errorf("Append: %v", err)
							return
						}
						mu.Lock()
						want[part] = append(want[part], p)
						maxLSN = max(maxLSN, lsn)
						mu.Unlock()
						if i%10 == 9 {
							if err := s.Wait(context.Background(), lsn); err != nil {
								t.Errorf("Wait: %v", err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if maxLSN != goroutines*perG {
				t.Fatalf("last LSN %d, want %d (consecutive)", maxLSN, goroutines*perG)
			}
			if n := len(segFiles(t, dir)); n < 10 {
				t.Fatalf("only %d segments: the test should roll the log", n)
			}
			s2, rec := mustOpen(t, opts)
			if rec.All != "" || len(rec.Damaged) != 0 || len(rec.Notes) != 0 {
				t.Fatalf("clean reopen: all %q, damaged %v, notes %v", rec.All, rec.Damaged, rec.Notes)
			}
			for part := range parts {
				got := rec.Partitions[part]
				if got == nil {
					t.Fatalf("partition %d not recovered", part)
				}
				if !equalRecs(got.Records, want[part]) || got.Checkpoint != nil || got.CheckpointLSN != 0 {
					t.Fatalf("partition %d: recovered %d records, want %d", part, len(got.Records), len(want[part]))
				}
			}
			if lsn := appendWait(t, s2, 3, []byte("next")); lsn != maxLSN+1 {
				t.Fatalf("LSN after reopen = %d, want %d", lsn, maxLSN+1)
			}
			if rec.Files != len(segFiles(t, dir))-1 || rec.Bytes == 0 {
				t.Fatalf("recovery read %d files, %d bytes", rec.Files, rec.Bytes)
			}
		})
	}
}

func TestAppendWaitErrors(t *testing.T) {
	s, _ := mustOpen(t, Options{Dir: t.TempDir()})
	for _, part := range []int{-1, int(maxPart) + 1} {
		if _, err := s.Append(part, nil); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("Append(part %d) = %v, want ErrInvalidArgument", part, err)
		}
	}
	if _, err := s.Append(1, make([]byte, MaxRecord+1)); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Errorf("oversized Append = %v, want ErrInvalidArgument", err)
	}
	if err := s.Wait(t.Context(), 0); err != nil {
		t.Errorf("Wait(0) = %v", err)
	}
	if err := s.Wait(t.Context(), 1); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Errorf("Wait(not appended) = %v, want ErrInvalidArgument", err)
	}
	lsn := appendWait(t, s, int(maxPart), []byte{})
	if err := s.Checkpoint(0, lsn+1, nil); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Errorf("Checkpoint(lsn not appended) = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := s.Append(1, nil)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, freqd.ErrUnavailable) {
		t.Errorf("Append after Close = %v, want ErrClosed and ErrUnavailable", err)
	}
	if err := s.Wait(t.Context(), lsn); err != nil {
		t.Errorf("Wait(durable) after Close = %v", err)
	}
	for name, err := range map[string]error{
		"checkpoint": s.Checkpoint(1, 0, []byte("x")),
		"rebase":     s.Rebase(nil),
		"writemeta":  s.WriteMeta("x", nil),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// TestWaitContext: Wait returns the context's error while the fsync hangs,
// and the record is durable once it ends.
func TestWaitContext(t *testing.T) {
	ffs := &faultFS{}
	release := make(chan struct{})
	s, _ := mustOpen(t, Options{Dir: t.TempDir(), fsys: ffs})
	ffs.set(func(op, path string) error {
		if op == "sync" && isWAL(path) {
			<-release
		}
		return nil
	})
	lsn, err := s.Append(1, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Wait(ctx, lsn); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with canceled ctx = %v", err)
	}
	close(release)
	if err := s.Wait(t.Context(), lsn); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointCompaction: checkpoints of every partition with records in
// old segments delete those segments; a reopen returns the checkpoints and
// the records after them.
func TestCheckpointCompaction(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1024}
	s, _ := mustOpen(t, opts)
	const parts = 4
	hist := make([][][]byte, parts)
	last := make([]uint64, parts)
	for i := range 200 {
		p := i % parts
		hist[p] = append(hist[p], payload(p, i))
		last[p] = appendWait(t, s, p, hist[p][len(hist[p])-1])
	}
	before := len(segFiles(t, dir))
	if before < 5 {
		t.Fatalf("%d segments; want the log to roll", before)
	}
	for p := range parts - 1 {
		if err := s.Checkpoint(p, last[p], encodeState(hist[p])); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(segFiles(t, dir)); n != before {
		t.Fatalf("segments %d -> %d with partition 3 not checkpointed", before, n)
	}
	if err := s.Checkpoint(parts-1, last[parts-1], encodeState(hist[parts-1])); err != nil {
		t.Fatal(err)
	}
	if segs := segFiles(t, dir); len(segs) != 1 {
		t.Fatalf("after checkpointing every partition: segments %v, want only the current one", segs)
	}
	st := s.Stats()
	if st.Segments != 1 || st.Checkpoints != parts || st.CheckpointBytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	// Records after the checkpoints come back after them.
	for p := range parts {
		hist[p] = append(hist[p], payload(p, 1000))
		last[p] = appendWait(t, s, p, hist[p][len(hist[p])-1])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, rec := mustOpen(t, opts)
	for p := range parts {
		got := rec.Partitions[p]
		if got == nil || len(got.Records) != 1 || got.LastLSN != last[p] || !equalRecs(stateOf(t, got), hist[p]) {
			t.Fatalf("partition %d recovered %+v", p, got)
		}
	}
}

// TestCheckpointNone: a nil checkpoint means the partition holds nothing;
// its older records are not replayed, and its file goes once they are out
// of the log.
func TestCheckpointNone(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 256}
	s, _ := mustOpen(t, opts)
	var lsn uint64
	for i := range 20 {
		lsn = appendWait(t, s, 5, payload(5, i))
		appendWait(t, s, 6, payload(6, i))
	}
	if err := s.Checkpoint(5, lsn, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ckptName(5))); err != nil {
		t.Fatalf("no 'holds nothing' checkpoint while old records are in the log: %v", err)
	}
	after := appendWait(t, s, 5, []byte("after"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, rec := mustOpen(t, opts)
	got := rec.Partitions[5]
	if got == nil || got.Checkpoint != nil || got.CheckpointLSN != lsn || len(got.Records) != 1 || string(got.Records[0]) != "after" || got.LastLSN != after {
		t.Fatalf("partition 5 recovered %+v", got)
	}
	// Cover partition 6 and 5's new record: every old segment goes, and
	// with it the empty checkpoint.
	if err := s.Checkpoint(6, 0, []byte("six")); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(5, 0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ckptName(5))); !os.IsNotExist(err) {
		t.Fatalf("empty checkpoint still there: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, rec = mustOpen(t, opts)
	if rec.Partitions[5] != nil || string(rec.Partitions[6].Checkpoint) != "six" || len(rec.Partitions[6].Records) != 0 {
		t.Fatalf("recovered %+v / %+v", rec.Partitions[5], rec.Partitions[6])
	}
}

// TestDiskBounded: a long run of appends with the checkpoints Due asks for
// keeps the directory within a bound proportional to the live state, while
// the history grows far past it.
func TestDiskBounded(t *testing.T) {
	dir := t.TempDir()
	const (
		parts     = 32
		segBytes  = 16 << 10
		stateSize = 200
		chunk     = 100
		records   = 40000
		recSize   = 100
	)
	s, _ := mustOpen(t, Options{Dir: dir, SegmentBytes: segBytes, Sync: SyncNone})
	rng := rand.New(rand.NewPCG(7, 7))
	last := make([]uint64, parts)
	state := make([][]byte, parts)
	rec := make([]byte, recSize)
	var history, maxDisk int64
	var checkpoints int
	for i := 0; i < records; i += chunk {
		var lsn uint64
		for range chunk {
			p := rng.IntN(parts)
			for k := range rec {
				rec[k] = byte(rng.Uint32())
			}
			var err error
			if lsn, err = s.Append(p, rec); err != nil {
				t.Fatal(err)
			}
			last[p] = lsn
			// The live state is small: the last record, padded.
			state[p] = append(append(state[p][:0], rec...), make([]byte, stateSize-recSize)...)
			history += frameHeaderSize + recSize
		}
		if err := s.Wait(t.Context(), lsn); err != nil {
			t.Fatal(err)
		}
		maxDisk = max(maxDisk, dirBytes(t, dir)) // before the checkpoints
		for range 100 {
			due := s.Due()
			if len(due) == 0 {
				break
			}
			for _, p := range due {
				if err := s.Checkpoint(p, last[p], state[p]); err != nil {
					t.Fatal(err)
				}
				checkpoints++
			}
		}
		maxDisk = max(maxDisk, dirBytes(t, dir))
	}
	ckptBytes := int64(parts * (ckptHeaderSize + stateSize + ckptTrailer))
	threshold := max(2*segBytes, 2*ckptBytes)
	// Past the threshold, Due frees segments after each chunk; the log
	// also holds the chunk written since and the segment being written.
	bound := threshold + 2*segBytes + chunk*(frameHeaderSize+recSize) + ckptBytes
	t.Logf("history %d bytes, max dir %d bytes, bound %d, %d checkpoints", history, maxDisk, bound, checkpoints)
	if maxDisk > bound {
		t.Fatalf("directory reached %d bytes, over the bound %d", maxDisk, bound)
	}
	if history < 40*bound {
		t.Fatalf("history %d is not much larger than the bound %d: the test proves nothing", history, bound)
	}
}

// TestDue: nothing is due below the threshold; above it, the partitions
// with uncovered records in the oldest segment.
func TestDue(t *testing.T) {
	s, _ := mustOpen(t, Options{Dir: t.TempDir(), SegmentBytes: 512})
	if d := s.Due(); d != nil {
		t.Fatalf("Due on an empty store = %v", d)
	}
	lsns := map[int]uint64{}
	for i := range 14 { // 14 frames of 37 bytes fill the first segment
		lsns[i%2] = appendWait(t, s, i%2, payload(0, 40))
	}
	for i := range 30 {
		lsns[2+i%3] = appendWait(t, s, 2+i%3, payload(0, 40))
	}
	if st := s.Stats(); st.LogBytes <= 2*512 {
		t.Fatalf("log %d bytes: want it past the threshold", st.LogBytes)
	}
	if d := s.Due(); !slices.Equal(d, []int{0, 1}) {
		t.Fatalf("Due = %v, want [0 1]", d)
	}
	if err := s.Checkpoint(0, lsns[0], []byte("0")); err != nil {
		t.Fatal(err)
	}
	if d := s.Due(); !slices.Equal(d, []int{1}) {
		t.Fatalf("Due = %v, want [1]", d)
	}
}

// TestModel runs random appends, checkpoints, empty checkpoints, rebases
// and reopens against a naive model: each partition's state is its whole
// history, and what Open recovers must equal it.
func TestModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run("", func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentBytes: int64(200 + rng.IntN(2000)), Sync: SyncNone}
			s, _ := mustOpen(t, opts)
			const parts = 6
			model := make([][][]byte, parts)
			last := make([]uint64, parts)
			var top uint64
			check := func() {
				t.Helper()
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				var rec *Recovery
				s, rec = mustOpen(t, opts)
				if rec.All != "" || len(rec.Damaged) != 0 {
					t.Fatalf("damage: %q %v", rec.All, rec.Damaged)
				}
				for p := range parts {
					got := stateOf(t, rec.Partitions[p])
					if !equalRecs(got, model[p]) {
						t.Fatalf("partition %d: recovered %d records, model has %d", p, len(got), len(model[p]))
					}
					if r := rec.Partitions[p]; r != nil {
						last[p] = r.LastLSN
					}
				}
				for name := range rec.Partitions {
					if name < 0 || name >= parts {
						t.Fatalf("unknown partition %d recovered", name)
					}
				}
			}
			for i := range 3000 {
				p := rng.IntN(parts)
				switch op := rng.IntN(100); {
				case op < 80:
					b := payload(p, i)
					lsn, err := s.Append(p, b)
					if err != nil {
						t.Fatal(err)
					}
					if lsn <= top {
						t.Fatalf("LSN %d after %d", lsn, top)
					}
					top, last[p] = lsn, lsn
					model[p] = append(model[p], b)
				case op < 90:
					if err := s.Checkpoint(p, last[p], encodeState(model[p])); err != nil {
						t.Fatal(err)
					}
				case op < 93:
					model[p] = nil
					if err := s.Checkpoint(p, last[p], nil); err != nil {
						t.Fatal(err)
					}
				case op < 95:
					all := map[int]Checkpointed{}
					for q := range parts {
						if model[q] != nil || rng.IntN(2) == 0 {
							all[q] = Checkpointed{LSN: last[q], Payload: encodeState(model[q])}
						}
					}
					if err := s.Rebase(all); err != nil {
						t.Fatal(err)
					}
				case op < 98:
					for _, q := range s.Due() {
						if err := s.Checkpoint(q, last[q], encodeState(model[q])); err != nil {
							t.Fatal(err)
						}
					}
				default:
					check()
				}
			}
			check()
		})
	}
}

// TestMeta: write, read back, replace, absent, damaged, bad names.
func TestMeta(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, Options{Dir: dir})
	if b, err := s.ReadMeta("node"); b != nil || err != nil {
		t.Fatalf("absent meta = %q, %v", b, err)
	}
	for _, data := range [][]byte{[]byte("v1"), {}, []byte(strings.Repeat("z", 5000))} {
		if err := s.WriteMeta("node", data); err != nil {
			t.Fatal(err)
		}
		got, err := s.ReadMeta("node")
		if err != nil || got == nil || string(got) != string(data) {
			t.Fatalf("ReadMeta = %q, %v; want %q", got, err, data)
		}
	}
	for _, bad := range []string{"", "a/b", "../x", "x.meta", strings.Repeat("a", 65), "é"} {
		if err := s.WriteMeta(bad, nil); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("WriteMeta(%q) = %v", bad, err)
		}
		if _, err := s.ReadMeta(bad); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("ReadMeta(%q) = %v", bad, err)
		}
	}
	flipByte(t, filepath.Join(dir, "node.meta"), 10)
	if _, err := s.ReadMeta("node"); err == nil || !strings.Contains(err.Error(), "node.meta") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("damaged meta: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Meta files are not "unknown files".
	_, rec := mustOpen(t, Options{Dir: dir})
	if len(rec.Notes) != 0 {
		t.Fatalf("notes %v", rec.Notes)
	}
}

// TestStatsAndErr: counters move, Err is nil while healthy.
func TestStatsAndErr(t *testing.T) {
	s, _ := mustOpen(t, Options{Dir: t.TempDir()})
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	lsn := appendWait(t, s, 1, []byte("a"))
	st := s.Stats()
	if st.Appends != 1 || st.Batches != 1 || st.LastLSN != lsn || st.DurableLSN != lsn || st.Segments != 1 || st.LogBytes != segHeaderSize+frameHeaderSize+1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestConcurrentCheckpoints runs appenders and a checkpointer the way the
// node does (a lock per partition around Append and taking the state), with
// rolls and compaction under way, then checks every partition's history.
func TestConcurrentCheckpoints(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 2048}
	s, _ := mustOpen(t, opts)
	const parts, goroutines, perG = 12, 4, 600
	type part struct {
		mu   sync.Mutex
		hist [][]byte
		lsn  uint64
	}
	ps := make([]*part, parts)
	for i := range ps {
		ps[i] = &part{}
	}
	checkpoint := func(p int) {
		ps[p].mu.Lock()
		state, lsn := encodeState(ps[p].hist), ps[p].lsn
		ps[p].mu.Unlock()
		if err := s.Checkpoint(p, lsn, state); err != nil {
			t.Error(err)
		}
	}
	stop := make(chan struct{})
	var cp sync.WaitGroup
	cp.Go(func() {
		rng := rand.New(rand.NewPCG(3, 3))
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, p := range s.Due() {
				checkpoint(p)
			}
			checkpoint(rng.IntN(parts))
		}
	})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for i := range perG {
				idx := rng.IntN(parts)
				p := ps[idx]
				b := payload(g, i)
				p.mu.Lock()
				lsn, err := s.Append(int(rng.Uint32()%parts), nil) // another partition's noise
				if err == nil {
					lsn, err = s.Append(idx, b)
				}
				if err != nil {
					p.mu.Unlock()
					t.Error(err)
					return
				}
				p.hist, p.lsn = append(p.hist, b), lsn
				p.mu.Unlock()
				if err := s.Wait(t.Context(), lsn); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	cp.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, rec := mustOpen(t, opts)
	if rec.All != "" || len(rec.Damaged) != 0 {
		t.Fatalf("damage %q %v", rec.All, rec.Damaged)
	}
	for i, p := range ps {
		// The noise records (nil payloads) belong to the history too.
		got := stateOf(t, rec.Partitions[i])
		var nonNoise [][]byte
		for _, b := range got {
			if len(b) > 0 {
				nonNoise = append(nonNoise, b)
			}
		}
		if !equalRecs(nonNoise, p.hist) {
			t.Fatalf("partition %d: %d records, want %d", i, len(nonNoise), len(p.hist))
		}
	}
}
