package transport

import (
	"context"
	"errors"
	"net"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
)

// ErrorReasonKey is the metadata key that carries a freqd error's reason on
// the wire, next to its code. Several sentinels share a code (for example
// InvalidArgument), so the reason is what tells them apart.
const ErrorReasonKey = "Freqd-Error"

type wireError struct {
	sentinel error
	code     connect.Code
	reason   string
}

// wireErrors is the one table mapping sentinels to wire codes and back.
var wireErrors = []wireError{
	{freqd.ErrNoFrequency, connect.CodeResourceExhausted, "no-frequency"},
	{freqd.ErrNotHeld, connect.CodeNotFound, "not-held"},
	{freqd.ErrNotHolder, connect.CodePermissionDenied, "not-holder"},
	{freqd.ErrAlreadyHeld, connect.CodeAlreadyExists, "already-held"},
	{freqd.ErrOutOfRange, connect.CodeInvalidArgument, "out-of-range"},
	{freqd.ErrInvalidClientID, connect.CodeInvalidArgument, "invalid-client-id"},
	{freqd.ErrInvalidArgument, connect.CodeInvalidArgument, "invalid-argument"},
	{freqd.ErrOutcomeUnknown, connect.CodeUnavailable, "outcome-unknown"},
	{freqd.ErrUnavailable, connect.CodeUnavailable, "unavailable"},
	{freqd.ErrNotOwner, connect.CodeFailedPrecondition, "not-owner"},
}

// ToWire turns an error from the node into a *connect.Error with the code of
// its sentinel and the reason in metadata. The message keeps the whole
// wrapped text, so it names the problem. Errors with no sentinel become
// Canceled or DeadlineExceeded for context errors and Internal otherwise.
func ToWire(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) && !errors.Is(err, errRemoteMarker) {
		return err
	}
	for _, w := range wireErrors {
		if errors.Is(err, w.sentinel) {
			out := connect.NewError(w.code, errors.New(err.Error()))
			out.Meta().Set(ErrorReasonKey, w.reason)
			return out
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// errRemoteMarker tags errors decoded by FromWire, so that ToWire re-encodes
// them from their sentinel rather than passing the peer's error through.
var errRemoteMarker = errors.New("remote")

// RemoteError is an error decoded from the wire. errors.Is matches its
// freqd sentinel (when it has one), and errors.As finds the *connect.Error.
type RemoteError struct {
	// Sentinel is the freqd sentinel named by the error's reason or, for
	// errors from other servers, implied by its code; nil if none fits.
	Sentinel error
	// Wire is the error as received.
	Wire *connect.Error
}

// Error returns the peer's message (which names the problem).
func (e *RemoteError) Error() string {
	return e.Wire.Message()
}

// Unwrap exposes the sentinel and the connect error to errors.Is and As.
func (e *RemoteError) Unwrap() []error {
	if e.Sentinel == nil {
		return []error{e.Wire, errRemoteMarker}
	}
	return []error{e.Sentinel, e.Wire, errRemoteMarker}
}

// FromWire turns an error returned by a connect client into a RemoteError
// whose sentinel errors.Is can match. A nil error stays nil; errors that are
// not *connect.Error are returned unchanged.
func FromWire(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	re := &RemoteError{Wire: ce}
	reason := ce.Meta().Get(ErrorReasonKey)
	for _, w := range wireErrors {
		if reason != "" && w.reason == reason {
			re.Sentinel = w.sentinel
			return re
		}
	}
	switch ce.Code() {
	case connect.CodeResourceExhausted:
		re.Sentinel = freqd.ErrNoFrequency
	case connect.CodeNotFound:
		re.Sentinel = freqd.ErrNotHeld
	case connect.CodePermissionDenied:
		re.Sentinel = freqd.ErrNotHolder
	case connect.CodeAlreadyExists:
		re.Sentinel = freqd.ErrAlreadyHeld
	case connect.CodeInvalidArgument:
		re.Sentinel = freqd.ErrInvalidArgument
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeCanceled, connect.CodeInternal, connect.CodeUnknown, connect.CodeAborted:
		// Not a freqd handler's answer: the request may have been applied
		// by a peer that then failed.
		re.Sentinel = freqd.ErrOutcomeUnknown
	}
	return re
}

// Unknown reports whether err leaves a request's outcome unknown: not a
// freqd handler's answer (a reset, a timeout, a crash) unless it was never
// sent, or an explicit freqd.ErrOutcomeUnknown.
func Unknown(err error) bool {
	if err == nil || NotSent(err) {
		return false
	}
	if errors.Is(err, freqd.ErrOutcomeUnknown) {
		return true
	}
	var re *RemoteError
	return errors.As(err, &re) && !Answered(err)
}

// NotSent reports whether err shows that a request never reached the peer
// (the connection could not be made), so retrying it elsewhere cannot apply
// it twice. Any other failure may have been applied.
func NotSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, ErrNoRoute)
}

// Answered reports whether err was produced by a freqd handler (it carries
// a freqd reason), as opposed to a failure of the network or of the peer
// process. A handler that answers with an error has applied nothing.
func Answered(err error) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Wire.Meta().Get(ErrorReasonKey) != ""
}

// HolderHintKey is the metadata key with which a node that does not hold a
// partition names the node it believes does.
const HolderHintKey = "Freqd-Holder"

// HolderHint returns the holder named by a not-owner error, if any.
func HolderHint(err error) string {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Wire.Meta().Get(HolderHintKey)
	}
	return ""
}
