package store

import (
	"io"
	"io/fs"
	"os"
)

// fileSys is every file operation the store makes, so that tests can
// inject failures (ENOSPC, EROFS, EIO) without root. osFS is the real one.
type fileSys interface {
	MkdirAll(dir string, perm fs.FileMode) error
	ReadDir(dir string) ([]fs.DirEntry, error)
	ReadFile(name string) ([]byte, error)
	// ReadPrefix reads the first n bytes of name (fewer if it is shorter).
	ReadPrefix(name string, n int) ([]byte, error)
	// Create opens name for writing, creating or truncating it (0600).
	Create(name string) (writeFile, error)
	// OpenAppend opens an existing file for appending.
	OpenAppend(name string) (writeFile, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	Truncate(name string, size int64) error
	// SyncDir fsyncs a directory, making renames, creations and removals
	// in it durable.
	SyncDir(dir string) error
}

// writeFile is an open file the store writes.
type writeFile interface {
	Write(b []byte) (int, error)
	Sync() error
	Close() error
}

// osFS is fileSys on the operating system's files.
type osFS struct{}

var _ fileSys = osFS{}

func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) ReadDir(dir string) ([]fs.DirEntry, error)   { return os.ReadDir(dir) }
func (osFS) ReadFile(name string) ([]byte, error)        { return os.ReadFile(name) }
func (osFS) Rename(oldpath, newpath string) error        { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Truncate(name string, size int64) error      { return os.Truncate(name, size) }

func (osFS) ReadPrefix(name string, n int) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := io.ReadFull(f, b)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return b[:k], err
}

func (osFS) Create(name string) (writeFile, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
}

func (osFS) OpenAppend(name string) (writeFile, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}
