package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// faultFS is osFS with a hook called before every operation; an error
// from the hook is returned instead of doing the operation (for "write",
// after writing half the bytes when partial is set, like a disk that
// fills up mid-write). Ops: mkdir, readdir, read, create, append, rename,
// remove, truncate, syncdir, write, sync, close.
type faultFS struct {
	osFS
	mu      sync.Mutex
	hook    func(op, path string) error
	partial bool
}

func (f *faultFS) set(hook func(op, path string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

func (f *faultFS) check(op, path string) error {
	f.mu.Lock()
	h := f.hook
	f.mu.Unlock()
	if h == nil {
		return nil
	}
	return h(op, path)
}

func (f *faultFS) MkdirAll(dir string, perm fs.FileMode) error {
	if err := f.check("mkdir", dir); err != nil {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return f.osFS.MkdirAll(dir, perm)
}

func (f *faultFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	if err := f.check("readdir", dir); err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return f.osFS.ReadDir(dir)
}

func (f *faultFS) ReadFile(name string) ([]byte, error) {
	if err := f.check("read", name); err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return f.osFS.ReadFile(name)
}

func (f *faultFS) Create(name string) (writeFile, error) {
	if err := f.check("create", name); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	w, err := f.osFS.Create(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, name: name, w: w}, nil
}

func (f *faultFS) OpenAppend(name string) (writeFile, error) {
	if err := f.check("append", name); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	w, err := f.osFS.OpenAppend(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, name: name, w: w}, nil
}

func (f *faultFS) Rename(oldpath, newpath string) error {
	if err := f.check("rename", oldpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return f.osFS.Rename(oldpath, newpath)
}

func (f *faultFS) Remove(name string) error {
	if err := f.check("remove", name); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	return f.osFS.Remove(name)
}

func (f *faultFS) Truncate(name string, size int64) error {
	if err := f.check("truncate", name); err != nil {
		return &fs.PathError{Op: "truncate", Path: name, Err: err}
	}
	return f.osFS.Truncate(name, size)
}

func (f *faultFS) SyncDir(dir string) error {
	if err := f.check("syncdir", dir); err != nil {
		return &fs.PathError{Op: "sync", Path: dir, Err: err}
	}
	return f.osFS.SyncDir(dir)
}

type faultFile struct {
	fs   *faultFS
	name string
	w    writeFile
}

func (f *faultFile) Write(b []byte) (int, error) {
	if err := f.fs.check("write", f.name); err != nil {
		n := 0
		f.fs.mu.Lock()
		partial := f.fs.partial
		f.fs.mu.Unlock()
		if partial {
			n, _ = f.w.Write(b[:len(b)/2])
		}
		return n, &fs.PathError{Op: "write", Path: f.name, Err: err}
	}
	return f.w.Write(b)
}

func (f *faultFile) Sync() error {
	if err := f.fs.check("sync", f.name); err != nil {
		return &fs.PathError{Op: "sync", Path: f.name, Err: err}
	}
	return f.w.Sync()
}

func (f *faultFile) Close() error {
	if err := f.fs.check("close", f.name); err != nil {
		_ = f.w.Close()
		return &fs.PathError{Op: "close", Path: f.name, Err: err}
	}
	return f.w.Close()
}

// isWAL reports a log segment path (final or temporary).
func isWAL(path string) bool { return strings.HasPrefix(filepath.Base(path), "wal-") }

// mustOpen opens dir and fails the test on error.
func mustOpen(t testing.TB, opts Options) (*Store, *Recovery) {
	t.Helper()
	s, rec, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, rec
}

// appendWait appends and waits, failing the test on error.
func appendWait(t testing.TB, s *Store, part int, payload []byte) uint64 {
	t.Helper()
	lsn, err := s.Append(part, payload)
	if err != nil {
		t.Fatalf("Append(%d): %v", part, err)
	}
	if err := s.Wait(t.Context(), lsn); err != nil {
		t.Fatalf("Wait(%d): %v", lsn, err)
	}
	return lsn
}

// segFiles lists the log segments in dir, oldest first.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, ok := parseSegName(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// dirBytes is the total size of the files in dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

// scanFile scans one segment file of dir.
func scanFile(t testing.TB, dir, name string) segScan {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return scanSegment(b)
}

// flipByte inverts one byte of a file.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func truncateFile(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// payload is a recognisable record payload.
func payload(part, i int) []byte {
	return fmt.Appendf(nil, "p%d-r%d-%s", part, i, strings.Repeat("x", i%17))
}

// encodeState / decodeState turn a list of payloads (a partition's whole
// history, the test's "state") into a checkpoint payload and back.
func encodeState(recs [][]byte) []byte {
	b := []byte{}
	for _, r := range recs {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return b
}

func decodeState(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			t.Fatalf("bad state encoding")
		}
		out = append(out, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return out
}

// stateOf is a recovered partition's history: its checkpoint state then
// its records.
func stateOf(t testing.TB, r *Recovered) [][]byte {
	t.Helper()
	if r == nil {
		return nil
	}
	out := decodeState(t, r.Checkpoint)
	return append(out, r.Records...)
}

func equalRecs(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}

func hasNote(rec *Recovery, subs ...string) bool {
	for _, n := range rec.Notes {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(n, s)
		}
		if ok {
			return true
		}
	}
	return false
}
