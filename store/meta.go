package store

import (
	"fmt"

	"github.com/freqd/freqd"
)

// maxMetaName is the longest meta file name accepted.
const maxMetaName = 64

// validMetaName reports whether name is 1..64 letters, digits, '-' or '_'.
func validMetaName(name string) bool {
	if name == "" || len(name) > maxMetaName {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkMetaName(op, name string) error {
	if !validMetaName(name) {
		return fmt.Errorf("store: %s: meta name %q is not 1..%d letters, digits, '-' or '_': %w", op, name, maxMetaName, freqd.ErrInvalidArgument)
	}
	return nil
}

// ReadMeta returns the data of the meta file name ("<name>.meta"), or
// (nil, nil) when there is none. A damaged file is an error naming the
// file and the problem. It reads the disk whether or not the store has
// failed or is closed.
func (s *Store) ReadMeta(name string) ([]byte, error) {
	if err := checkMetaName("read meta", name); err != nil {
		return nil, err
	}
	file := name + ".meta"
	b, err := s.fsys.ReadFile(s.path(file))
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read meta: %w", err)
	}
	data, err := decodeMeta(b)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", s.path(file), err)
	}
	return data, nil
}

// WriteMeta atomically replaces the meta file name with data (temporary
// file, fsync, rename, directory fsync). Names are 1..64 letters, digits,
// '-' or '_'; data at most MaxRecord bytes. It writes even when the store
// has failed (the file does not depend on the log); a failed write fails
// the store like any other, and returns an error wrapping ErrFailed.
func (s *Store) WriteMeta(name string, data []byte) error {
	if err := checkMetaName("write meta", name); err != nil {
		return err
	}
	if len(data) > MaxRecord {
		return fmt.Errorf("store: write meta %q: %d bytes is over %d: %w", name, len(data), MaxRecord, freqd.ErrInvalidArgument)
	}
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return &closedError{op: "write meta"}
	}
	if err := s.writeAtomic(name+".meta", encodeMeta(data)); err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.failErr != nil {
			return &failure{err: err}
		}
		return s.failLocked(err)
	}
	return nil
}
