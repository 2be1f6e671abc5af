package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
)

func TestWireErrorsRoundTrip(t *testing.T) {
	for _, w := range wireErrors {
		t.Run(w.reason, func(t *testing.T) {
			err := fmt.Errorf("partition 3 (10-15): frequency 12: %w", w.sentinel)
			out := ToWire(err)
			var ce *connect.Error
			if !errors.As(out, &ce) {
				t.Fatalf("ToWire gave %T, want *connect.Error", out)
			}
			if ce.Code() != w.code {
				t.Fatalf("code = %v, want %v", ce.Code(), w.code)
			}
			back := FromWire(out)
			if !errors.Is(back, w.sentinel) {
				t.Fatalf("FromWire(%v) does not match %v", back, w.sentinel)
			}
			for _, other := range wireErrors {
				if other.sentinel != w.sentinel && errors.Is(back, other.sentinel) {
					t.Fatalf("FromWire(%v) also matches %v", back, other.sentinel)
				}
			}
			if back.Error() != err.Error() {
				t.Fatalf("message = %q, want %q", back.Error(), err.Error())
			}
			if !Answered(back) {
				t.Fatal("a handler's error must count as answered")
			}
			// Re-encoding a decoded error (a forwarding node passing a
			// peer's answer on) keeps code and reason.
			again := FromWire(ToWire(back))
			if !errors.Is(again, w.sentinel) {
				t.Fatalf("re-encoded error lost its sentinel: %v", again)
			}
		})
	}
}

func TestToWireOtherErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code connect.Code
	}{
		{context.Canceled, connect.CodeCanceled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded},
		{errors.New("boom"), connect.CodeInternal},
	} {
		var ce *connect.Error
		if !errors.As(ToWire(tc.err), &ce) || ce.Code() != tc.code {
			t.Errorf("ToWire(%v) code = %v, want %v", tc.err, ce.Code(), tc.code)
		}
	}
	if ToWire(nil) != nil || FromWire(nil) != nil {
		t.Fatal("nil must stay nil")
	}
}

func TestFromWireByCodeOnly(t *testing.T) {
	// Errors from servers that set no reason still map by code; network
	// failures and timeouts leave the outcome unknown.
	for code, want := range map[connect.Code]error{
		connect.CodeResourceExhausted: freqd.ErrNoFrequency,
		connect.CodeUnavailable:       freqd.ErrOutcomeUnknown,
		connect.CodeDeadlineExceeded:  freqd.ErrOutcomeUnknown,
		connect.CodeInvalidArgument:   freqd.ErrInvalidArgument,
	} {
		got := FromWire(connect.NewError(code, errors.New("x")))
		if !errors.Is(got, want) {
			t.Errorf("code %v -> %v, want %v", code, got, want)
		}
		if Answered(got) {
			t.Errorf("code %v without a reason must not count as a freqd answer", code)
		}
		if !Unknown(got) {
			t.Errorf("code %v without a reason must leave the outcome unknown", code)
		}
	}
}

func TestNotSent(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	read := &net.OpError{Op: "read", Err: errors.New("reset")}
	if !NotSent(connect.NewError(connect.CodeUnavailable, dial)) {
		t.Error("a dial error means not sent")
	}
	if NotSent(connect.NewError(connect.CodeUnavailable, read)) {
		t.Error("a read error may have been applied")
	}
	if !NotSent(fmt.Errorf("x: %w", ErrNoRoute)) {
		t.Error("ErrNoRoute means not sent")
	}
}

func FuzzFromWire(f *testing.F) {
	f.Add(uint8(connect.CodeNotFound), "not-held", "msg")
	f.Add(uint8(0), "", "")
	f.Add(uint8(200), "\xff", "x")
	f.Fuzz(func(t *testing.T, code uint8, reason, msg string) {
		ce := connect.NewError(connect.Code(code), errors.New(msg))
		ce.Meta().Set(ErrorReasonKey, reason)
		got := FromWire(ce)
		var re *RemoteError
		if !errors.As(got, &re) {
			t.Fatalf("FromWire gave %T", got)
		}
		_ = got.Error()
		for _, w := range wireErrors {
			if w.reason == reason && !errors.Is(got, w.sentinel) {
				t.Fatalf("reason %q must map to %v", reason, w.sentinel)
			}
		}
	})
}
