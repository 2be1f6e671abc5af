package peer

import (
	"context"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/freqd/freqd"
)

// Identity is who a node is in the handshake.
type Identity struct {
	// Cluster is the cluster id: random, nonzero, the same on every
	// member.
	Cluster uint64
	// ID is the node's incarnation, also its raft replica id; nonzero.
	ID uint64
	// Name is the node's name: 1..MaxNameLen bytes of UTF-8 with no
	// spaces or control characters.
	Name string
}

// MaxNameLen is the longest Identity.Name, in bytes.
const MaxNameLen = 128

// Validate reports what is wrong with id, wrapping
// freqd.ErrInvalidArgument.
func (id Identity) Validate() error {
	var errs []error
	if id.Cluster == 0 {
		errs = append(errs, errors.New("cluster id is 0"))
	}
	if id.ID == 0 {
		errs = append(errs, errors.New("node id is 0"))
	}
	if err := validateName(id.Name); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("peer: identity %v: %w: %w", id, errors.Join(errs...), freqd.ErrInvalidArgument)
}

func validateName(name string) error {
	switch {
	case name == "":
		return errors.New("name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("name is %d bytes, longer than %d", len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return errors.New("name is not valid UTF-8")
	}
	for i, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("name has %U at byte %d (no spaces or control characters)", r, i)
		}
	}
	return nil
}

// String formats id for logs: "name(id 7, cluster 0x2a)".
func (id Identity) String() string {
	return fmt.Sprintf("%s(id %d, cluster %#x)", id.Name, id.ID, id.Cluster)
}

// Handler receives what peers send. Its methods are called from the
// transport's goroutines, concurrently.
type Handler interface {
	// HandleMessage receives one one-way message (as given to Send) from
	// an admitted peer. msg is the handler's to keep. It must not block
	// for long: the receiver should queue it. Messages from one peer on
	// one lane are delivered by one goroutine, in order.
	HandleMessage(from Identity, msg []byte)
	// HandleCall answers one request (as given to Call). req is the
	// handler's to keep. It may block up to ctx's deadline, which is the
	// caller's; ctx is also canceled when the caller gives up, the
	// connection is lost or the transport closes. Calls from one peer are
	// served concurrently, at most Config.MaxCallsPerConn at a time per
	// connection. A non-nil error travels back through the ErrorCodec and
	// reaches the caller as a *RemoteError; the reply is then ignored.
	HandleCall(ctx context.Context, from Identity, req []byte) ([]byte, error)
}

// Transport carries messages between cluster members.
type Transport interface {
	// Send queues msg for node to without blocking and reports whether it
	// was queued; false means it was dropped (the queue is full, to has no
	// address, a recent dial to it failed, or the transport is closed).
	// Send copies msg: the caller may reuse it at once. Messages to one
	// peer arrive in order or not at all: those up to the frame limit in
	// the order sent, those above it (up to the message limit) in the
	// order sent among themselves, on a separate bulk lane that never
	// delays the small ones. A queued message may still be lost with a
	// connection; raft retransmits.
	Send(to uint64, msg []byte) bool
	// Call sends req to node to and waits for the reply, ctx bounding the
	// wait; the deadline travels to the callee as its handler's. A
	// failure in the transport is a *CallError saying whether the request
	// surely did not reach the handler (it then wraps
	// freqd.ErrUnavailable) or the outcome is unknown (it then wraps
	// freqd.ErrOutcomeUnknown). An error returned by the handler is a
	// *RemoteError.
	Call(ctx context.Context, to uint64, req []byte) ([]byte, error)
	// Close stops every goroutine and closes every connection, waiting
	// for them (and for running handlers, which see their ctx canceled).
	// Pending calls fail. Close is idempotent.
	Close() error
}

// ErrorCodec maps a handler's errors to a wire code and message and back,
// so the caller's layer can keep errors.Is working across a hop with one
// table of its sentinels. Both methods must be safe for concurrent use.
type ErrorCodec interface {
	// EncodeError returns the code and message that carry err, which is
	// non-nil, to the caller.
	EncodeError(err error) (code uint32, msg string)
	// DecodeError returns the error a *RemoteError with code and msg
	// wraps, or nil for none.
	DecodeError(code uint32, msg string) error
}

// plainCodec is the ErrorCodec used when Config.ErrorCodec is nil: code 0
// and the error's text; nothing to unwrap on the caller's side.
type plainCodec struct{}

func (plainCodec) EncodeError(err error) (uint32, string) { return 0, err.Error() }
func (plainCodec) DecodeError(uint32, string) error       { return nil }

// RemoteError is an error returned by the callee's handler.
type RemoteError struct {
	// From is the callee's node id.
	From uint64
	// Code and Message are what the callee's ErrorCodec made of the
	// handler's error.
	Code    uint32
	Message string
	// Err is what the caller's ErrorCodec decoded from Code and Message;
	// nil if it decoded nothing. Unwrap returns it.
	Err error
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("peer: node %d: remote error %d: %s", e.From, e.Code, e.Message)
}

// Unwrap returns the decoded error, so errors.Is(err, sentinel) works.
func (e *RemoteError) Unwrap() error { return e.Err }

// CallError is a Call that failed in the transport.
type CallError struct {
	// To is the node called.
	To uint64
	// NotDelivered is true when the request surely did not reach the
	// callee's handler: it was never written (dial failed, queue full,
	// deadline passed while queued, transport closed) or the callee
	// refused it unread (ErrBusy, ErrClosed). False means the outcome is
	// unknown: the request was written and then the connection was lost,
	// the deadline passed or the reply was lost.
	NotDelivered bool
	// Err is the cause: one of this package's sentinels, a dial or
	// handshake error, or the context's error.
	Err error
}

func (e *CallError) Error() string {
	state := "outcome unknown"
	if e.NotDelivered {
		state = "not delivered"
	}
	return fmt.Sprintf("peer: call to node %d: %s: %v", e.To, state, e.Err)
}

// Unwrap returns the cause and freqd.ErrUnavailable (not delivered) or
// freqd.ErrOutcomeUnknown.
func (e *CallError) Unwrap() []error {
	if e.NotDelivered {
		return []error{e.Err, freqd.ErrUnavailable}
	}
	return []error{e.Err, freqd.ErrOutcomeUnknown}
}

func notDelivered(to uint64, err error) error {
	return &CallError{To: to, NotDelivered: true, Err: err}
}

func outcomeUnknown(to uint64, err error) error {
	return &CallError{To: to, Err: err}
}

// Sentinel errors, found in a CallError's Err or a dial error.
var (
	// ErrClosed means the transport (the caller's or the callee's) is
	// closed.
	ErrClosed = errors.New("peer: transport closed")
	// ErrNoAddress means Resolve knows no address for the node.
	ErrNoAddress = errors.New("peer: no address for node")
	// ErrQueueFull means the node's queue is full.
	ErrQueueFull = errors.New("peer: queue full")
	// ErrTooLarge means a request or reply is over the frame limit, or a
	// message over the message limit.
	ErrTooLarge = errors.New("peer: too large")
	// ErrBusy means the callee already serves MaxCallsPerConn calls on
	// the connection; the handler did not run.
	ErrBusy = errors.New("peer: callee busy")
	// ErrConnLost means the connection failed after the request was
	// written.
	ErrConnLost = errors.New("peer: connection lost")
	// ErrRefused means the node refused the handshake; the error names
	// its reason.
	ErrRefused = errors.New("peer: refused by node")
	// ErrWrongPeer means the node reached is not the one dialed (another
	// cluster or id) or does not speak the same limits.
	ErrWrongPeer = errors.New("peer: wrong peer")
	// ErrProtocol means the other side broke the wire format.
	ErrProtocol = errors.New("peer: protocol error")
)
