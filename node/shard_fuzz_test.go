package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/transport"
)

// FuzzShardApply feeds arbitrary bytes to a shard as committed raft
// entries: whatever does not decode as a command changes nothing and
// answers InvalidArgument; nothing panics; the state stays consistent
// (its snapshot restores to the same counts).
func FuzzShardApply(f *testing.F) {
	for _, c := range []partition.Command{
		{Op: partition.OpGrant, Client: "c1", Any: true, At: 5},
		{Op: partition.OpGrant, Client: "c1", Freq: 3, Request: "r", At: 6},
		{Op: partition.OpRelease, Client: "c1", Freq: 3},
		{Op: partition.OpReleaseClient, Client: "c1"},
	} {
		b, err := c.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &shard{id: 0, first: 1, last: 16, p: partition.New(0, 1, 16)}
		r := s.Apply(1, b).(*shardResult)
		var c partition.Command
		if err := c.UnmarshalBinary(b); err != nil {
			if !errors.Is(r.res.Err, freqd.ErrInvalidArgument) {
				t.Fatalf("undecodable entry answered %v; want InvalidArgument", r.res.Err)
			}
			if f, h := s.counts(); f != 16 || h != 0 {
				t.Fatalf("undecodable entry changed the state: free %d held %d", f, h)
			}
		}
		snap := s.Snapshot()
		s2 := &shard{id: 0, first: 1, last: 16}
		if err := s2.Restore(snap); err != nil {
			t.Fatalf("restore own snapshot: %v", err)
		}
		f1, h1 := s.counts()
		f2, h2 := s2.counts()
		if f1 != f2 || h1 != h2 {
			t.Fatalf("snapshot round trip: %d/%d became %d/%d", f1, h1, f2, h2)
		}
	})
}

// FuzzPeerError decodes arbitrary error codes and messages from a peer:
// never a panic, always an error.
func FuzzPeerError(f *testing.F) {
	code, msg := peerCodec{}.EncodeError(&NotOwnerError{Partition: 3, Holder: "n2", Node: "n1"})
	f.Add(code, msg)
	f.Add(uint32(0), "")
	f.Add(uint32(99), "a\x00b")
	f.Fuzz(func(t *testing.T, code uint32, msg string) {
		if err := (peerCodec{}).DecodeError(code, msg); err == nil {
			t.Fatal("decoded to nil")
		}
	})
}

// TestPeerErrorRoundTrip: a handler's error reaches the caller through the
// peer codec with its sentinel, its holder hint and whether it was a
// handler's answer, exactly as over the API.
func TestPeerErrorRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		sentinel error
		hint     string
	}{
		{"not owner", &NotOwnerError{Partition: 3, Holder: "n2", Node: "n1"}, freqd.ErrNotOwner, "n2"},
		{"no frequency", fmt.Errorf("full: %w", freqd.ErrNoFrequency), freqd.ErrNoFrequency, ""},
		{"unavailable", fmt.Errorf("no quorum: %w", freqd.ErrUnavailable), freqd.ErrUnavailable, ""},
		{"not holder", fmt.Errorf("x: %w", freqd.ErrNotHolder), freqd.ErrNotHolder, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := peerCodec{}.EncodeError(tc.err)
			got := peerCodec{}.DecodeError(code, msg)
			if !errors.Is(got, tc.sentinel) {
				t.Fatalf("decoded %v; want it to match %v", got, tc.sentinel)
			}
			if h := transport.HolderHint(got); h != tc.hint {
				t.Fatalf("holder hint %q; want %q", h, tc.hint)
			}
			if !transport.Answered(got) {
				t.Fatalf("%v not recognised as a handler's answer", got)
			}
			if got.Error() != tc.err.Error() {
				t.Fatalf("message %q; want %q", got.Error(), tc.err.Error())
			}
		})
	}
}
