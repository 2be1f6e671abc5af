package store

import (
	"fmt"

	"github.com/freqd/freqd"
)

// SyncPolicy says when the log is fsynced.
type SyncPolicy int

const (
	// SyncAlways: Wait returns once the record is written and fsynced.
	// One fsync covers every record written in the same batch (group
	// commit). The default.
	SyncAlways SyncPolicy = iota
	// SyncInterval: Wait returns once the record is written to the file;
	// the log is fsynced every Options.SyncInterval (if anything was
	// written since the last fsync).
	SyncInterval
	// SyncNone: Wait returns once the record is written to the file; the
	// log is never fsynced for a batch (only when a segment is sealed or
	// created), so the page cache holds what was acknowledged.
	SyncNone
)

// ParseSyncPolicy parses "always", "interval" or "none". Any other value
// is an error wrapping freqd.ErrInvalidArgument that names it.
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("store: sync policy %q is not one of always, interval, none: %w", s, freqd.ErrInvalidArgument)
}

// String returns the name ParseSyncPolicy accepts, or "SyncPolicy(n)" for
// an unknown value.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}
