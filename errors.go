package freqd

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. Wrap them with fmt.Errorf("...: %w", Err...) to add the
// detail (which frequency, which partition); never match error strings.
var (
	// ErrNoFrequency means no free frequency: from a partition, that
	// partition is full; from the cluster, the whole pool is held.
	ErrNoFrequency = errors.New("freqd: no free frequency")
	// ErrNotHeld means a release named a frequency that is free.
	ErrNotHeld = errors.New("freqd: frequency is not held")
	// ErrNotHolder means a release named a frequency held by another client.
	ErrNotHolder = errors.New("freqd: frequency is held by another client")
	// ErrAlreadyHeld means a specific allocation named a frequency already
	// held by another client.
	ErrAlreadyHeld = errors.New("freqd: frequency is already held")
	// ErrOutOfRange means a frequency outside the pool (or, inside a node,
	// outside the partition it was routed to).
	ErrOutOfRange = errors.New("freqd: frequency outside the pool")
	// ErrInvalidClientID means an empty, oversized or malformed client id.
	ErrInvalidClientID = errors.New("freqd: invalid client id")
	// ErrInvalidArgument means any other malformed request.
	ErrInvalidArgument = errors.New("freqd: invalid argument")
	// ErrUnavailable means the partition or node needed is not reachable or
	// not serving now; the request was not applied.
	ErrUnavailable = errors.New("freqd: unavailable")
	// ErrOutcomeUnknown means the request may or may not have been applied:
	// it reached a leader that crashed, stepped down or could not commit
	// before the deadline. An allocation retried with the same request id,
	// or a release retried by its holder, is then safe.
	ErrOutcomeUnknown = errors.New("freqd: outcome unknown")
	// ErrNotOwner is node-to-node: the receiving node does not lead the
	// partition (leadership moved, or no leader is elected yet); the
	// request was not applied and the caller should route again.
	ErrNotOwner = errors.New("freqd: node does not lead the partition")
)

// MaxClientIDLen is the longest client id accepted, in bytes.
const MaxClientIDLen = 256

// ValidateClientID checks that id is 1..MaxClientIDLen bytes of UTF-8 with
// no control characters. The error wraps ErrInvalidClientID.
func ValidateClientID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("client id is empty: %w", ErrInvalidClientID)
	case len(id) > MaxClientIDLen:
		return fmt.Errorf("client id is %d bytes, longer than %d: %w", len(id), MaxClientIDLen, ErrInvalidClientID)
	case !utf8.ValidString(id):
		return fmt.Errorf("client id is not valid UTF-8: %w", ErrInvalidClientID)
	}
	for i, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("client id has control character %U at byte %d: %w", r, i, ErrInvalidClientID)
		}
	}
	return nil
}

// MaxRequestIDLen is the longest request id accepted, in bytes.
const MaxRequestIDLen = 128

// ValidateRequestID checks a client's request id: empty (no request id,
// so no deduplication of retries), or 1..MaxRequestIDLen bytes of UTF-8
// with no control characters. The error wraps ErrInvalidArgument.
func ValidateRequestID(id string) error {
	switch {
	case id == "":
		return nil
	case len(id) > MaxRequestIDLen:
		return fmt.Errorf("request id is %d bytes, longer than %d: %w", len(id), MaxRequestIDLen, ErrInvalidArgument)
	case !utf8.ValidString(id):
		return fmt.Errorf("request id is not valid UTF-8: %w", ErrInvalidArgument)
	}
	for i, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("request id has control character %U at byte %d: %w", r, i, ErrInvalidArgument)
		}
	}
	return nil
}
