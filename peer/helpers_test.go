package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

const testCluster = 0xC1A5

func ident(id uint64) Identity {
	return Identity{Cluster: testCluster, ID: id, Name: fmt.Sprintf("n%d", id)}
}

// waitFor polls cond every millisecond until it holds, failing the test
// after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// delivery is one message a recorder received.
type delivery struct {
	from Identity
	msg  []byte
}

// recorder is a Handler that records messages and answers calls with
// hooks the test sets before traffic starts.
type recorder struct {
	// onMsg, if set, runs before a message is recorded (it may block).
	onMsg func(from Identity, msg []byte)
	// onCall answers calls; nil echoes the request.
	onCall func(ctx context.Context, from Identity, req []byte) ([]byte, error)

	mu    sync.Mutex
	msgs  []delivery
	calls int
}

func (r *recorder) HandleMessage(from Identity, msg []byte) {
	if r.onMsg != nil {
		r.onMsg(from, msg)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, delivery{from, msg})
	r.mu.Unlock()
}

func (r *recorder) HandleCall(ctx context.Context, from Identity, req []byte) ([]byte, error) {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	if r.onCall != nil {
		return r.onCall(ctx, from, req)
	}
	return req, nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *recorder) snapshot() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.msgs...)
}

// has reports whether msg was received.
func (r *recorder) has(msg []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.msgs {
		if bytes.Equal(d.msg, msg) {
			return true
		}
	}
	return false
}

// testCodec maps freqd's node-to-node sentinels to codes and back, as the
// caller's layer would.
type testCodec struct{}

var testCodes = []error{nil, freqd.ErrNotOwner, freqd.ErrUnavailable, freqd.ErrInvalidArgument, freqd.ErrOutcomeUnknown}

func (testCodec) EncodeError(err error) (uint32, string) {
	for code, s := range testCodes {
		if s != nil && errors.Is(err, s) {
			return uint32(code), err.Error()
		}
	}
	return 0, err.Error()
}

func (testCodec) DecodeError(code uint32, msg string) error {
	if int(code) < len(testCodes) && testCodes[code] != nil {
		return fmt.Errorf("%s: %w", msg, testCodes[code])
	}
	return nil
}

// logBuf collects log records for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// asCallError returns err as a *CallError or fails the test.
func asCallError(t testing.TB, err error) *CallError {
	t.Helper()
	var ce *CallError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CallError", err, err)
	}
	return ce
}
