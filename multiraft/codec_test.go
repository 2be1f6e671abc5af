package multiraft

import (
	"bytes"
	"errors"
	"testing"

	"github.com/freqd/freqd"
	pb "go.etcd.io/raft/v3/raftpb"
)

func sampleMessages() []GroupMessage {
	return []GroupMessage{
		{Group: 0, Msg: pb.Message{Type: pb.MsgHeartbeat, From: 1, To: 2, Term: 3, Commit: 7}},
		{Group: 5, Msg: pb.Message{Type: pb.MsgApp, From: 1, To: 2, Term: 3, Index: 9, LogTerm: 3, Commit: 9,
			Entries: []pb.Entry{{Term: 3, Index: 10, Data: []byte("grant")}, {Term: 3, Index: 11, Type: pb.EntryConfChangeV2}}}},
		{Group: 127, Msg: pb.Message{Type: pb.MsgSnap, From: 1, To: 2, Term: 4, Snapshot: &pb.Snapshot{Data: []byte("state"),
			Metadata: pb.SnapshotMetadata{Index: 12, Term: 4, ConfState: pb.ConfState{Voters: []uint64{1, 2, 3}}}}}},
	}
}

func TestBatchRoundTrip(t *testing.T) {
	msgs := sampleMessages()
	b := EncodeBatch(nil, msgs)
	got, err := DecodeBatch(b, 128)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%d messages, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		want, _ := msgs[i].Msg.Marshal()
		have, _ := got[i].Msg.Marshal()
		if got[i].Group != msgs[i].Group || !bytes.Equal(want, have) {
			t.Fatalf("message %d differs: %v vs %v", i, got[i].Msg.String(), msgs[i].Msg.String())
		}
	}
}

func TestBatchRejects(t *testing.T) {
	good := EncodeBatch(nil, sampleMessages())
	tests := map[string][]byte{
		"empty":          nil,
		"bad version":    append([]byte{9}, good[1:]...),
		"group too high": EncodeBatch(nil, []GroupMessage{{Group: 200, Msg: pb.Message{Type: pb.MsgHeartbeat}}}),
		"truncated":      good[:len(good)-3],
		"trailing":       append(append([]byte{}, good...), 0),
		"huge count":     {batchVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"non-minimal":    {batchVersion, 0x80, 0x00},
	}
	for name, b := range tests {
		if _, err := DecodeBatch(b, 128); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestRecordAndCheckpointRoundTrip(t *testing.T) {
	hs := pb.HardState{Term: 3, Vote: 1, Commit: 9}
	snap := pb.Snapshot{Data: []byte("x"), Metadata: pb.SnapshotMetadata{Index: 4, Term: 2, ConfState: pb.ConfState{Voters: []uint64{1}}}}
	ents := []pb.Entry{{Term: 3, Index: 5, Data: []byte("a")}, {Term: 3, Index: 6}}
	for _, rec := range []diskRecord{{}, {hardState: &hs}, {snapshot: &snap}, {entries: ents}, {hardState: &hs, snapshot: &snap, entries: ents}, {removed: true}} {
		b := encodeRecord(nil, &rec)
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(encodeRecord(nil, got), b) {
			t.Fatalf("record does not round-trip: %+v", rec)
		}
	}
	c := checkpoint{snapshot: snap, hardState: hs, entries: ents}
	b := encodeCheckpoint(nil, &c)
	got, err := decodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeCheckpoint(nil, got), b) {
		t.Fatal("checkpoint does not round-trip")
	}
	if _, err := decodeRecord([]byte{recordVersion, 0x80, 0}); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Fatalf("unknown flags: %v", err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(EncodeBatch(nil, sampleMessages()))
	f.Add(EncodeBatch(nil, nil))
	f.Add([]byte{batchVersion, 1, 0, 2, 8, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := DecodeBatch(b, 128)
		if err != nil {
			if !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
			}
			return
		}
		// What decodes re-encodes and decodes to the same messages.
		again, err := DecodeBatch(EncodeBatch(nil, msgs), 128)
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("re-encoded batch: %v", err)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	hs := pb.HardState{Term: 3, Vote: 1, Commit: 9}
	f.Add(encodeRecord(nil, &diskRecord{hardState: &hs, entries: []pb.Entry{{Term: 3, Index: 5, Data: []byte("a")}}}))
	f.Add(encodeRecord(nil, &diskRecord{removed: true}))
	f.Add(encodeCheckpoint(nil, &checkpoint{hardState: hs}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRecord(b); err == nil {
			if _, err := decodeRecord(encodeRecord(nil, r)); err != nil {
				t.Fatalf("re-encoded record: %v", err)
			}
		} else if !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Fatalf("record error %v does not wrap ErrInvalidArgument", err)
		}
		if c, err := decodeCheckpoint(b); err == nil {
			if _, err := decodeCheckpoint(encodeCheckpoint(nil, c)); err != nil {
				t.Fatalf("re-encoded checkpoint: %v", err)
			}
		} else if !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Fatalf("checkpoint error %v does not wrap ErrInvalidArgument", err)
		}
	})
}
