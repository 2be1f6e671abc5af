package store

import (
	"errors"
	"io/fs"

	"github.com/freqd/freqd"
)

// ErrFailed is wrapped by every error of a store that a write, fsync or
// rename failed: nothing more is written or reported durable until Rebase
// succeeds. Those errors also wrap freqd.ErrUnavailable (so the node's
// clients see Unavailable) and the OS error (for example syscall.ENOSPC).
var ErrFailed = errors.New("store: failed")

// ErrClosed is wrapped by the errors of a store's methods after Close.
// Those errors also wrap freqd.ErrUnavailable.
var ErrClosed = errors.New("store: closed")

// MaxRecord is the largest payload Append accepts, in bytes.
const MaxRecord = 256 << 20

// failure is the error that failed a store. Its text is "store: " and the
// OS error ("store: write /data/wal-...: no space left on device").
type failure struct{ err error }

func (f *failure) Error() string   { return "store: " + f.err.Error() }
func (f *failure) Unwrap() []error { return []error{ErrFailed, freqd.ErrUnavailable, f.err} }

// closedError is returned after Close.
type closedError struct{ op string }

func (c *closedError) Error() string   { return "store: " + c.op + ": closed" }
func (c *closedError) Unwrap() []error { return []error{ErrClosed, freqd.ErrUnavailable} }

// pathError names path in an OS error: files are written through a handle
// opened under a temporary name, so the error names the final one.
func pathError(op, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}
