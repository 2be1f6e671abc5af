package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

// checkFailed checks an error of a failed store: ErrFailed, Unavailable,
// the errno, and a message naming the OS error and a file.
func checkFailed(t *testing.T, what string, err error, errno syscall.Errno, file string) {
	t.Helper()
	switch {
	case !errors.Is(err, ErrFailed):
		t.Fatalf("%s: %v does not wrap ErrFailed", what, err)
	case !errors.Is(err, freqd.ErrUnavailable):
		t.Fatalf("%s: %v does not wrap freqd.ErrUnavailable", what, err)
	case !errors.Is(err, errno):
		t.Fatalf("%s: %v does not wrap %v", what, err, errno)
	case !strings.HasPrefix(err.Error(), "store: ") || !strings.Contains(err.Error(), errno.Error()) || !strings.Contains(err.Error(), file):
		t.Fatalf("%s: message %q should name %q and %q", what, err, errno.Error(), file)
	}
}

// TestDiskFull: a write that fails (ENOSPC, half written) fails the store;
// waiters, Append, Checkpoint all get the error; Rebase fails while the
// disk is full, then recovers; the lost record never turns durable; a
// reopen sees the rebased state.
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    string
		errno syscall.Errno
	}{
		{"write ENOSPC", "write", syscall.ENOSPC},
		{"fsync EIO", "sync", syscall.EIO},
		{"fsync EROFS", "sync", syscall.EROFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ffs := &faultFS{partial: true}
			var full sync.Mutex // guarded flag below
			isFull := false
			ffs.set(func(op, path string) error {
				full.Lock()
				defer full.Unlock()
				if isFull && (op == tc.op || op == "create") {
					return tc.errno
				}
				return nil
			})
			setFull := func(v bool) { full.Lock(); isFull = v; full.Unlock() }
			opts := Options{Dir: dir, fsys: ffs}
			s, _ := mustOpen(t, opts)
			ok1 := appendWait(t, s, 1, []byte("one"))
			if err := s.Checkpoint(2, 0, []byte("two")); err != nil {
				t.Fatal(err)
			}

			setFull(true)
			lost, err := s.Append(1, []byte("lost"))
			if err != nil {
				t.Fatal(err)
			}
			err = s.Wait(t.Context(), lost)
			checkFailed(t, "Wait", err, tc.errno, "wal-")
			checkFailed(t, "Err", s.Err(), tc.errno, "wal-")
			if _, err := s.Append(1, []byte("refused")); !errors.Is(err, ErrFailed) {
				t.Fatalf("Append on a failed store = %v", err)
			}
			if err := s.Checkpoint(1, ok1, []byte("x")); !errors.Is(err, ErrFailed) {
				t.Fatalf("Checkpoint on a failed store = %v", err)
			}
			if err := s.Wait(t.Context(), ok1); err != nil {
				t.Fatalf("Wait on a record durable before the failure = %v", err)
			}
			if d := s.Due(); d != nil {
				t.Fatalf("Due on a failed store = %v", d)
			}

			state := map[int]Checkpointed{1: {LSN: lost, Payload: []byte("one+lost")}, 2: {Payload: []byte("two")}}
			if err := s.Rebase(state); !errors.Is(err, ErrFailed) || !errors.Is(err, tc.errno) {
				t.Fatalf("Rebase on a full disk = %v", err)
			}
			if s.Err() == nil {
				t.Fatal("store healthy after a failed Rebase")
			}
			setFull(false)
			if err := s.Rebase(state); err != nil {
				t.Fatalf("Rebase: %v", err)
			}
			if err := s.Err(); err != nil {
				t.Fatalf("Err after Rebase = %v", err)
			}
			if err := s.Wait(t.Context(), lost); !errors.Is(err, ErrFailed) {
				t.Fatalf("Wait on the lost record after Rebase = %v; it must never turn durable", err)
			}
			next := appendWait(t, s, 1, []byte("after"))
			if next != lost+1 {
				t.Fatalf("LSN after Rebase %d, want %d", next, lost+1)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, rec := mustOpen(t, Options{Dir: dir})
			if rec.All != "" || len(rec.Damaged) != 0 {
				t.Fatalf("after Rebase: %q %v", rec.All, rec.Damaged)
			}
			p1, p2 := rec.Partitions[1], rec.Partitions[2]
			if string(p1.Checkpoint) != "one+lost" || len(p1.Records) != 1 || string(p1.Records[0]) != "after" || string(p2.Checkpoint) != "two" {
				t.Fatalf("recovered %+v %+v", p1, p2)
			}
			if segs := segFiles(t, dir); len(segs) != 2 { // the Rebase's and this Open's
				t.Fatalf("segments %v", segs)
			}
		})
	}
}

// TestWaitersGetFailure: every waiter of a batch in flight when the write
// fails gets the error.
func TestWaitersGetFailure(t *testing.T) {
	ffs := &faultFS{}
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	s, _ := mustOpen(t, Options{Dir: t.TempDir(), fsys: ffs})
	ffs.set(func(op, path string) error {
		if op == "sync" && isWAL(path) {
			once.Do(func() { close(entered) })
			<-release
			return syscall.EIO
		}
		return nil
	})
	first, _ := s.Append(0, []byte("a"))
	<-entered // the writer is in the fsync of the first batch
	var lsns []uint64
	for i := range 10 {
		lsn, err := s.Append(i, []byte("b"))
		if err != nil {
			t.Fatal(err)
		}
		lsns = append(lsns, lsn)
	}
	errs := make(chan error, 11)
	for _, lsn := range append(lsns, first) {
		go func() { errs <- s.Wait(context.Background(), lsn) }()
	}
	close(release)
	for range 11 {
		if err := <-errs; !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("waiter got %v", err)
		}
	}
}

// TestCheckpointFailure: a rename that fails while checkpointing fails the
// store; Rebase recovers it.
func TestCheckpointFailure(t *testing.T) {
	ffs := &faultFS{}
	ffs.set(func(op, path string) error {
		if op == "rename" && strings.HasSuffix(path, ".ckpt.tmp") {
			return syscall.EIO
		}
		return nil
	})
	dir := t.TempDir()
	s, _ := mustOpen(t, Options{Dir: dir, fsys: ffs})
	lsn := appendWait(t, s, 3, []byte("x"))
	err := s.Checkpoint(3, lsn, []byte("state"))
	checkFailed(t, "Checkpoint", err, syscall.EIO, ckptName(3))
	if _, err := s.Append(3, nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after a failed checkpoint = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ckptName(3)+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
	ffs.set(nil)
	if err := s.Rebase(map[int]Checkpointed{3: {LSN: lsn, Payload: []byte("state")}}); err != nil {
		t.Fatal(err)
	}
	appendWait(t, s, 3, []byte("y"))
}

// TestRebaseCrash: a Rebase that fails after writing the checkpoints and
// before its segment exists leaves a directory that recovers to the
// rebased states (the old log's records are covered).
func TestRebaseCrash(t *testing.T) {
	dir := t.TempDir()
	ffs := &faultFS{partial: true}
	s, _ := mustOpen(t, Options{Dir: dir, fsys: ffs, SegmentBytes: 300})
	var last uint64
	for i := range 30 {
		last = appendWait(t, s, i%3, payload(i%3, i))
	}
	ffs.set(func(op, path string) error {
		if op == "write" && isWAL(path) {
			return syscall.ENOSPC
		}
		return nil
	})
	lsn, _ := s.Append(0, []byte("lost"))
	if err := s.Wait(t.Context(), lsn); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Wait = %v", err)
	}
	ffs.set(func(op, path string) error {
		if op == "create" && isWAL(path) {
			return syscall.ENOSPC
		}
		return nil
	})
	state := map[int]Checkpointed{0: {LSN: lsn, Payload: []byte("s0")}, 1: {LSN: last, Payload: []byte("s1")}}
	if err := s.Rebase(state); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Rebase = %v", err)
	}
	_ = s.Close() // the process dies here
	_, rec := mustOpen(t, Options{Dir: dir})
	if rec.All != "" || len(rec.Damaged) != 0 {
		t.Fatalf("recovery %q %v", rec.All, rec.Damaged)
	}
	if !hasNote(rec, "torn tail") {
		t.Fatalf("the half-written batch should be a torn tail: %v", rec.Notes)
	}
	if len(rec.Partitions) != 2 || string(rec.Partitions[0].Checkpoint) != "s0" || len(rec.Partitions[0].Records) != 0 ||
		string(rec.Partitions[1].Checkpoint) != "s1" || len(rec.Partitions[1].Records) != 0 {
		t.Fatalf("partitions %+v; want the rebased states (partition 2 absent: holds nothing)", rec.Partitions)
	}
}

// TestOpenUnwritable (injected): Open on a directory it cannot write
// returns a failed store with the recovery; Rebase brings it back.
func TestOpenUnwritable(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, Options{Dir: dir})
	appendWait(t, s, 4, []byte("kept"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ffs := &faultFS{}
	ffs.set(func(op, path string) error {
		switch op {
		case "create", "rename", "remove", "truncate", "append":
			return syscall.EROFS
		}
		return nil
	})
	s, rec, err := Open(Options{Dir: dir, fsys: ffs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkFailed(t, "Err", s.Err(), syscall.EROFS, dir)
	if got := rec.Partitions[4]; got == nil || string(got.Records[0]) != "kept" {
		t.Fatalf("recovery %+v", rec)
	}
	if _, err := s.Append(4, nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append = %v", err)
	}
	ffs.set(nil)
	if err := s.Rebase(map[int]Checkpointed{4: {LSN: rec.Partitions[4].LastLSN, Payload: []byte("kept")}}); err != nil {
		t.Fatal(err)
	}
	appendWait(t, s, 4, []byte("more"))
}

// TestOpenReadOnlyDir is the real thing: a directory chmod 0500.
func TestOpenReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	s, _ := mustOpen(t, Options{Dir: dir})
	appendWait(t, s, 4, []byte("kept"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	before := segFiles(t, dir)
	s, rec, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkFailed(t, "Err", s.Err(), syscall.EACCES, dir)
	if got := rec.Partitions[4]; got == nil || len(got.Records) != 1 || string(got.Records[0]) != "kept" {
		t.Fatalf("recovery %+v", rec)
	}
	if _, err := s.Append(4, nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append = %v", err)
	}
	if after := segFiles(t, dir); len(after) != len(before) {
		t.Fatalf("segments %v -> %v", before, after)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Rebase(map[int]Checkpointed{4: {LSN: rec.Partitions[4].LastLSN, Payload: []byte("kept")}}); err != nil {
		t.Fatal(err)
	}
	appendWait(t, s, 4, []byte("more"))
}

// TestWriteMetaFailure: a failed meta write fails the store.
func TestWriteMetaFailure(t *testing.T) {
	ffs := &faultFS{}
	ffs.set(func(op, path string) error {
		if op == "sync" && strings.HasSuffix(path, ".meta.tmp") {
			return syscall.EIO
		}
		return nil
	})
	dir := t.TempDir()
	s, _ := mustOpen(t, Options{Dir: dir, fsys: ffs})
	checkFailed(t, "WriteMeta", s.WriteMeta("node", []byte("x")), syscall.EIO, "node.meta")
	if s.Err() == nil {
		t.Fatal("store healthy after a failed meta write")
	}
	if b, err := s.ReadMeta("node"); b != nil || err != nil {
		t.Fatalf("ReadMeta after a failed first write = %q, %v", b, err)
	}
}

// TestSyncPolicies counts fsyncs: always fsyncs per batch; none never;
// interval in the background; Wait under interval does not wait for the
// fsync.
func TestSyncPolicies(t *testing.T) {
	t.Run("always group commit", func(t *testing.T) {
		// Deterministic: hold the first batch's fsync until 99 more
		// records are queued; they must share one write and one fsync.
		ffs := &faultFS{}
		entered := make(chan struct{})
		release := make(chan struct{})
		var once sync.Once
		s, _ := mustOpen(t, Options{Dir: t.TempDir(), fsys: ffs})
		ffs.set(func(op, path string) error {
			if op == "sync" && isWAL(path) {
				once.Do(func() { close(entered); <-release })
			}
			return nil
		})
		base := s.Stats()
		lsn, _ := s.Append(0, []byte("first"))
		<-entered
		for i := range 99 {
			if lsn, _ = s.Append(i%7, []byte("more")); lsn == 0 {
				t.Fatal("append failed")
			}
		}
		close(release)
		if err := s.Wait(t.Context(), lsn); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if b, f := st.Batches-base.Batches, st.Fsyncs-base.Fsyncs; b != 2 || f != 2 {
			t.Fatalf("100 records: %d batches, %d fsyncs; want 2 and 2", b, f)
		}
	})
	t.Run("always concurrent", func(t *testing.T) {
		s, _ := mustOpen(t, Options{Dir: t.TempDir()})
		base := s.Stats()
		const goroutines, each = 32, 50
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for range each {
					appendWait(t, s, g, []byte("rec"))
				}
			})
		}
		wg.Wait()
		st := s.Stats()
		f := st.Fsyncs - base.Fsyncs
		t.Logf("%d records, %d batches, %d fsyncs", goroutines*each, st.Batches-base.Batches, f)
		if f == 0 || f >= goroutines*each {
			t.Fatalf("%d fsyncs for %d records: want group commit", f, goroutines*each)
		}
	})
	t.Run("none", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := mustOpen(t, Options{Dir: dir, Sync: SyncNone})
		base := s.Stats()
		for i := range 500 {
			appendWait(t, s, i%5, []byte("rec"))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Fsyncs != base.Fsyncs || st.Batches == base.Batches {
			t.Fatalf("none: %d fsyncs, %d batches", st.Fsyncs-base.Fsyncs, st.Batches-base.Batches)
		}
		_, rec := mustOpen(t, Options{Dir: dir})
		if n := len(rec.Partitions[0].Records); n != 100 {
			t.Fatalf("recovered %d records", n)
		}
	})
	t.Run("interval", func(t *testing.T) {
		// Wait returns once written, without an fsync: with an interval
		// far longer than the test, 20 waited appends cause none. (A test
		// that blocks the fsync instead deadlocks when the interval fires
		// before the writes: the store's one goroutine writes and syncs.)
		slow, _ := mustOpen(t, Options{Dir: t.TempDir(), Sync: SyncInterval, SyncInterval: time.Hour})
		base0 := slow.Stats()
		for i := range 20 {
			appendWait(t, slow, i, []byte("rec"))
		}
		if st := slow.Stats(); st.Fsyncs != base0.Fsyncs {
			t.Fatalf("interval: %d fsyncs for waited appends; want none", st.Fsyncs-base0.Fsyncs)
		}
		if err := slow.Close(); err != nil {
			t.Fatal(err)
		}
		s, _ := mustOpen(t, Options{Dir: t.TempDir(), Sync: SyncInterval, SyncInterval: time.Millisecond})
		base := s.Stats()
		for i := range 20 {
			appendWait(t, s, i, []byte("rec"))
		}
		// The background fsync happens (poll with a generous deadline).
		deadline := time.Now().Add(20 * time.Second)
		for s.Stats().Fsyncs == base.Fsyncs {
			if time.Now().After(deadline) {
				t.Fatal("no background fsync")
			}
			time.Sleep(time.Millisecond)
		}
		// Nothing written: no more fsyncs than writes.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if f, b := st.Fsyncs-base.Fsyncs, st.Batches-base.Batches; f > b {
			t.Fatalf("interval: %d fsyncs for %d batches", f, b)
		}
	})
}
