package node

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/pool"
)

// fuzzNode is a node that is never started, for replaying disk records.
func fuzzNode(t testing.TB) *Node {
	rs, err := pool.ParseRanges([]string{"1-64"})
	if err != nil {
		t.Fatal(err)
	}
	layout, err := pool.NewLayout(rs, 4)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{Name: "f1", APIAddr: "127.0.0.1:0", Layout: layout, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// diskSeeds are valid records of partition 1: a checkpoint, the commands
// after it, a promise and a drop.
func diskSeeds(t testing.TB, n *Node) [][]byte {
	e := Epoch{Term: 3, Node: "f1", Incarnation: 7}
	cfg := Config{Epoch: e, Members: []ReplicaID{{Name: "f1", Incarnation: 7}, {Name: "f2", Incarnation: 9}}}
	r := &record{id: 1, promised: e, committed: cfg, accepted: cfg, stateEpoch: e, index: 2, p: n.newPartition(1)}
	ckpt, err := stateLocked(r, true)
	if err != nil {
		t.Fatal(err)
	}
	ckpt.Partition = 1
	var cmds [][]byte
	sp, _ := n.layout.Span(1)
	for i, c := range []partition.Command{
		{Op: partition.OpGrant, Client: "a", Freq: sp.First, At: 10},
		{Op: partition.OpGrant, Client: "b", Freq: sp.First + 1, At: 11, TTL: 5e9},
		{Op: partition.OpRelease, Client: "a", Freq: sp.First, At: 12},
		{Op: partition.OpReleaseClient, Client: "b", At: 13},
	} {
		b, err := c.AppendBinary(nil)
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		cmds = append(cmds, b)
	}
	recs := []*freqdv1.DiskRecord{
		ckpt,
		commandsRecord(e, 2, cmds),
		{Kind: freqdv1.DiskRecord_KIND_META, Partition: 1, Promised: epochToPB(Epoch{Term: 4, Node: "f2", Incarnation: 9}), Committed: configToPB(cfg)},
		{Kind: freqdv1.DiskRecord_KIND_STATE, Partition: 1, Mode: freqdv1.DiskRecord_MODE_DROP, Lost: true},
	}
	var out [][]byte
	for _, d := range recs {
		if d.Partition == 0 {
			d.Partition = 1
		}
		b, err := proto.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestReplaySeeds replays the seeds in order: every one applies.
func TestReplaySeeds(t *testing.T) {
	n := fuzzNode(t)
	r := n.recs[1]
	for i, b := range diskSeeds(t, n) {
		if err := n.replay(r, b); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if i == 1 && (r.index != 6 || r.p.Held() != 0) {
			t.Fatalf("after the commands: index %d, %d held; want 6, 0", r.index, r.p.Held())
		}
	}
	if !r.lost || r.p != nil {
		t.Fatalf("after the drop: lost %v, state %v; want lost, none", r.lost, r.p != nil)
	}
}

// FuzzReplay feeds arbitrary disk records, two in a row, to one
// partition's record: replay never panics, and whatever it accepts leaves a
// record the node can serve from (a state of the partition's own range).
func FuzzReplay(f *testing.F) {
	n := fuzzNode(f)
	seeds := diskSeeds(f, n)
	for i := range seeds {
		for j := range seeds {
			f.Add(seeds[i], seeds[j])
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		r := &record{id: 1}
		for _, x := range [][]byte{a, b} {
			if err := n.replay(r, x); err != nil {
				return
			}
			if r.p != nil {
				sp, _ := n.layout.Span(1)
				if r.p.ID() != 1 || r.p.First() != sp.First || r.p.Last() != sp.Last {
					t.Fatalf("replay accepted a state of partition %d (%d-%d)", r.p.ID(), r.p.First(), r.p.Last())
				}
				if _, err := r.p.Snapshot(); err != nil {
					t.Fatalf("replayed state does not snapshot: %v", err)
				}
			}
		}
	})
}

func TestParseIdentity(t *testing.T) {
	n := fuzzNode(t)
	good := func(mod func(*freqdv1.NodeIdentity)) []byte {
		id := n.identity(true, 42)
		id.Incarnation = 5
		if mod != nil {
			mod(id)
		}
		b, err := proto.Marshal(id)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		want string // substring of the error; "" = accepted
	}{
		{"good", good(nil), ""},
		{"another node", good(func(id *freqdv1.NodeIdentity) { id.Name = "f9" }), `belongs to node "f9"`},
		{"another layout", good(func(id *freqdv1.NodeIdentity) { id.Fingerprint++ }), "another layout"},
		{"no incarnation", good(func(id *freqdv1.NodeIdentity) { id.Incarnation = 0 }), "no incarnation"},
		{"garbage", []byte{0xff, 0xff, 0xff}, "node file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := n.parseIdentity(tc.raw)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && (id.GetIncarnation() != 5 || id.GetClusterId() != 42 || !id.GetInitialized()):
				t.Fatalf("parsed %v", id)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, freqd.ErrInvalidArgument)):
				t.Fatalf("error %v; want one containing %q, wrapping ErrInvalidArgument", err, tc.want)
			}
		})
	}
}

// FuzzIdentity: the node file decoder never panics and accepts only this
// node's identity for this layout.
func FuzzIdentity(f *testing.F) {
	n := fuzzNode(f)
	b, err := proto.Marshal(n.identity(true, 1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, err := n.parseIdentity(raw)
		if err == nil && (id.GetName() != "f1" || id.GetFingerprint() != n.layout.Fingerprint() || id.GetIncarnation() == 0) {
			t.Fatalf("accepted %v", id)
		}
	})
}
