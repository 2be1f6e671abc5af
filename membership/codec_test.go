package membership

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/freqd/freqd"
	"github.com/hashicorp/memberlist"
)

func TestStateAndHealthString(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{StateJoining.String(), "joining"},
		{StateActive.String(), "active"},
		{StateLeaving.String(), "leaving"},
		{State(9).String(), "state(9)"},
		{HealthAlive.String(), "alive"},
		{HealthSuspect.String(), "suspect"},
		{HealthDead.String(), "dead"},
		{HealthLeft.String(), "left"},
		{Health(0).String(), "health(0)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		{State: StateJoining},
		{APIAddr: "127.0.0.1:7000", State: StateActive, Initialized: true, Fingerprint: 0xdeadbeefcafef00d},
		{APIAddr: "127.0.0.1:7001", State: StateActive, Initialized: true, Degraded: true, Incarnation: 9},
		{APIAddr: "[::1]:1", State: StateLeaving, Fingerprint: math.MaxUint64, ClusterID: 3, Incarnation: math.MaxUint64},
		{APIAddr: "127.0.0.1:7000", PeerAddr: "127.0.0.1:7300", State: StateActive, Initialized: true, ClusterID: 5},
		{PeerAddr: "[::1]:7300", State: StateJoining},
		{APIAddr: "h:" + strings.Repeat("9", MaxAddrLen-2), State: StateActive},
		{PeerAddr: "h:" + strings.Repeat("9", MaxAddrLen-2), State: StateActive},
		// The largest meta there is.
		{APIAddr: "a:" + strings.Repeat("9", MaxAddrLen-2), PeerAddr: "p:" + strings.Repeat("9", MaxAddrLen-2),
			State: StateLeaving, Initialized: true, Degraded: true,
			Fingerprint: math.MaxUint64, ClusterID: math.MaxUint64, Incarnation: math.MaxUint64},
	} {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal %+v: %v", m, err)
		}
		if len(b) > memberlist.MetaMaxSize {
			t.Fatalf("marshal %+v: %d bytes > %d", m, len(b), memberlist.MetaMaxSize)
		}
		var got Meta
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("unmarshal %+v: %v", m, err)
		}
		if got != m {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestMetaInvalid(t *testing.T) {
	good, err := Meta{APIAddr: "a:1", PeerAddr: "p:2", State: StateActive, Fingerprint: 7}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// fixed part, then the API address and the peer address as given.
	withAddrs := func(addrs ...[]byte) []byte {
		b := bytes.Clone(good[:metaFixedLen])
		for _, a := range addrs {
			b = append(b, a...)
		}
		return b
	}
	addr := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:5]},
		{"version 1", mut(func(b []byte) []byte { b[0] = 1; return b })},
		{"version 2", mut(func(b []byte) []byte { b[0] = 2; return b })},
		{"version 4", mut(func(b []byte) []byte { b[0] = 4; return b })},
		// A version 2 meta: the API address and nothing after it.
		{"version 2 layout", mut(func(b []byte) []byte { b[0] = 2; return b[:metaFixedLen+1+len("a:1")] })},
		{"version 3 without peer", withAddrs(addr("a:1"))},
		{"state zero", mut(func(b []byte) []byte { b[1] = 0; return b })},
		{"state high", mut(func(b []byte) []byte { b[1] = 4; return b })},
		{"unknown flag", mut(func(b []byte) []byte { b[2] |= 0x80; return b })},
		{"trailing", append(bytes.Clone(good), 0)},
		{"truncated peer addr", good[:len(good)-1]},
		{"truncated api addr", withAddrs(addr("a:1")[:3])},
		{"non-minimal length", withAddrs([]byte{0x83, 0x00}, []byte("a:1"), addr("p:2"))},
		{"non-minimal peer length", withAddrs(addr("a:1"), []byte{0x83, 0x00}, []byte("p:2"))},
		{"addr not host:port", withAddrs(addr("abc"), addr("p:2"))},
		{"addr not utf8", withAddrs(addr("\xff:12"), addr("p:2"))},
		{"peer addr not host:port", withAddrs(addr("a:1"), addr("abc"))},
		{"peer addr not utf8", withAddrs(addr("a:1"), addr("\xff:12"))},
		{"api addr too long", withAddrs([]byte{0xf1, 0x01}, []byte("h:"+strings.Repeat("1", MaxAddrLen-1)), addr("p:2"))},
		{"peer addr too long", withAddrs(addr("a:1"), []byte{0xf1, 0x01}, []byte("h:"+strings.Repeat("1", MaxAddrLen-1)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Meta{APIAddr: "keep:1", PeerAddr: "keep:2", State: StateJoining}
			err := m.UnmarshalBinary(tc.b)
			if !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("got %v, want ErrInvalidArgument", err)
			}
			if m != (Meta{APIAddr: "keep:1", PeerAddr: "keep:2", State: StateJoining}) {
				t.Fatalf("meta changed on error: %+v", m)
			}
		})
	}
	for _, m := range []Meta{
		{},
		{State: 7},
		{State: StateActive, APIAddr: "nohostport"},
		{State: StateActive, APIAddr: "h:" + strings.Repeat("1", MaxAddrLen)},
		{State: StateActive, PeerAddr: "nohostport"},
		{State: StateActive, PeerAddr: "\xff:1"},
		{State: StateActive, APIAddr: "a:1", PeerAddr: "h:" + strings.Repeat("1", MaxAddrLen-1)},
	} {
		if _, err := m.MarshalBinary(); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("marshal %+v: got %v, want ErrInvalidArgument", m, err)
		}
	}
}

func FuzzMetaUnmarshal(f *testing.F) {
	for _, m := range []Meta{
		{State: StateJoining},
		{APIAddr: "127.0.0.1:7000", State: StateActive, Initialized: true, Fingerprint: 42},
		{APIAddr: "127.0.0.1:7000", PeerAddr: "127.0.0.1:7300", State: StateActive, Initialized: true, Fingerprint: 42, ClusterID: 9, Incarnation: 3},
		{PeerAddr: "[::1]:7300", State: StateLeaving, Degraded: true},
	} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0})
	// A version 2 meta (API address only), and the same bytes as version 3.
	v2 := append([]byte{2, 2, 1}, make([]byte, 24)...)
	v2 = append(v2, 3, 'a', ':', '1')
	f.Add(v2)
	f.Add(append([]byte{3}, v2[1:]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Meta
		if err := m.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("error does not wrap ErrInvalidArgument: %v", err)
			}
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("not canonical: %x decodes to %+v which encodes to %x", b, m, out)
		}
	})
}

func TestLoadNormalize(t *testing.T) {
	l := Load{Partitions: []PartitionLoad{{ID: 5, Free: 1}, {ID: 2}, {ID: 5, Free: 2}, {ID: 0}}}
	got := l.normalize()
	want := Load{Partitions: []PartitionLoad{{ID: 0}, {ID: 2}, {ID: 5, Free: 2}}}
	if !got.Equal(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if l.Partitions[0].ID != 5 {
		t.Fatal("normalize modified its input")
	}
}

func bigLoad(n int, salt uint64) Load {
	l := Load{}
	for i := range n {
		l.Partitions = append(l.Partitions, PartitionLoad{
			ID: uint32(i * 3), Term: salt + uint64(i), Free: math.MaxUint64 - uint64(i), Held: uint64(i) << 40,
		})
	}
	return l
}

func TestLoadMessagesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		load Load
		want int // chunks; 0 = more than one
	}{
		{"empty", Load{}, 1},
		{"one", Load{Partitions: []PartitionLoad{{ID: math.MaxUint32, Term: 1, Free: 2, Held: 3}}}, 1},
		{"many", bigLoad(1000, 9), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := encodeLoadMessages("node-1", 77, tc.load)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want > 0 && len(msgs) != tc.want {
				t.Fatalf("%d messages, want %d", len(msgs), tc.want)
			}
			if tc.want == 0 && len(msgs) < 2 {
				t.Fatalf("%d messages, want several", len(msgs))
			}
			var all []PartitionLoad
			for i, msg := range msgs {
				if len(msg) > maxLoadChunkBytes {
					t.Fatalf("message %d is %d bytes > %d", i, len(msg), maxLoadChunkBytes)
				}
				c, err := decodeLoadMessage(msg)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if c.sender != "node-1" || c.seq != 77 || c.index != i || c.count != len(msgs) {
					t.Fatalf("message %d header: %+v", i, c)
				}
				all = append(all, c.partitions...)
			}
			if !(Load{Partitions: all}).Equal(tc.load) {
				t.Fatalf("reassembled load differs")
			}
		})
	}
}

func TestLoadMessageInvalid(t *testing.T) {
	good := encodeLoadChunk(loadChunk{sender: "n", seq: 1, index: 0, count: 1,
		partitions: []PartitionLoad{{ID: 1}, {ID: 2}}})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"type", append([]byte{0}, good[1:]...)},
		{"trailing", append(bytes.Clone(good), 0)},
		{"truncated", good[:len(good)-1]},
		{"empty sender", encodeLoadChunk(loadChunk{sender: "", seq: 1, count: 1})},
		{"index >= count", encodeLoadChunk(loadChunk{sender: "n", seq: 1, index: 1, count: 1})},
		{"count zero", encodeLoadChunk(loadChunk{sender: "n", seq: 1, index: 0, count: 0})},
		{"too many chunks", encodeLoadChunk(loadChunk{sender: "n", seq: 1, index: 0, count: maxLoadChunks + 1})},
		{"ids not increasing", encodeLoadChunk(loadChunk{sender: "n", seq: 1, count: 1, partitions: []PartitionLoad{{ID: 2}, {ID: 2}}})},
		{"id over uint32", []byte{loadMsgV1, 1, 'n', 1, 0, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0}},
		{"non-minimal seq", []byte{loadMsgV1, 1, 'n', 0x81, 0x00, 0, 1, 0}},
		{"huge partition count", []byte{loadMsgV1, 1, 'n', 1, 0, 1, 0xff, 0xff, 0x03}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeLoadMessage(tc.b); !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("got %v, want ErrInvalidArgument", err)
			}
		})
	}
}

func FuzzLoadMessageDecode(f *testing.F) {
	msgs, _ := encodeLoadMessages("node-a", 1<<62, bigLoad(100, 1))
	for _, m := range msgs {
		f.Add(m)
	}
	f.Add(encodeLoadChunk(loadChunk{sender: "x", seq: 0, count: 1}))
	f.Add([]byte{loadMsgV1, 1, 'n', 1, 0, 1, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeLoadMessage(b)
		if err != nil {
			if !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("error does not wrap ErrInvalidArgument: %v", err)
			}
			return
		}
		if out := encodeLoadChunk(c); !bytes.Equal(out, b) {
			t.Fatalf("not canonical: %x re-encodes to %x", b, out)
		}
	})
}

func TestLoadStateRoundTripAndInvalid(t *testing.T) {
	recs := []loadRecord{
		{name: "a", seq: 3, load: bigLoad(3, 1)},
		{name: "b", seq: math.MaxUint64},
		{name: "c", seq: 0, load: bigLoad(1, 2)},
	}
	b := encodeLoadState(recs)
	got, err := decodeLoadState(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if got[i].name != recs[i].name || got[i].seq != recs[i].seq || !got[i].load.Equal(recs[i].load) {
			t.Fatalf("record %d: got %+v, want %+v", i, got[i], recs[i])
		}
	}
	for _, bad := range [][]byte{
		nil,
		{loadMsgV1, 0},
		append(bytes.Clone(b), 0),
		b[:len(b)-1],
		encodeLoadState([]loadRecord{{name: "b"}, {name: "a"}}),
		encodeLoadState([]loadRecord{{name: "a"}, {name: "a"}}),
		{loadStateV1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := decodeLoadState(bad); !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Errorf("decode %x: got %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func FuzzLoadStateDecode(f *testing.F) {
	f.Add(encodeLoadState([]loadRecord{{name: "a", seq: 3, load: bigLoad(3, 1)}, {name: "b"}}))
	f.Add([]byte{loadStateV1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeLoadState(b)
		if err != nil {
			if !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("error does not wrap ErrInvalidArgument: %v", err)
			}
			return
		}
		if out := encodeLoadState(recs); !bytes.Equal(out, b) {
			t.Fatalf("not canonical: %x re-encodes to %x", b, out)
		}
	})
}

// newDetached builds a Membership without memberlist, to drive its
// callbacks directly.
func newDetached(name string, fp uint64, logs *recorder) *Membership {
	cfg, _ := Config{Name: name, Logger: slog.New(logs), Now: func() time.Time { return time.Unix(100, 0) }}.withDefaults()
	meta := Meta{State: StateActive, Fingerprint: fp}
	b, _ := meta.MarshalBinary()
	m := &Membership{cfg: cfg, log: cfg.Logger, changes: make(chan struct{}, 1),
		localMeta: meta, metaBytes: b, members: map[string]*memberEntry{}, loads: map[string]*loadEntry{},
		localSeq: 10, refused: map[string]uint64{}}
	m.queue = &memberlist.TransmitLimitedQueue{NumNodes: m.numKnown, RetransmitMult: 4}
	m.ctx, m.cancel = t0ctx()
	return m
}

func TestApplyChunks(t *testing.T) {
	m := newDetached("me", 1, &recorder{})
	load := bigLoad(300, 5)
	msgs, err := encodeLoadMessages("peer", 50, load)
	if err != nil || len(msgs) < 3 {
		t.Fatalf("%d msgs, %v", len(msgs), err)
	}
	h := hooks{m}
	// Deliver out of order, with a duplicate.
	order := []int{2, 0, 0}
	for i := range msgs {
		if i != 0 && i != 2 {
			order = append(order, i)
		}
	}
	for _, i := range order {
		h.NotifyMsg(msgs[i])
	}
	if got := m.queue.NumQueued(); got != len(msgs) {
		t.Fatalf("%d messages queued for gossip, want %d (each news once)", got, len(msgs))
	}
	m.mu.Lock()
	e := m.loads["peer"]
	m.mu.Unlock()
	if e == nil || !e.have || e.seq != 50 || !e.load.Equal(load) {
		t.Fatalf("load not assembled: %+v", e)
	}
	// Loads only reports members.
	if _, ok := m.Loads()["peer"]; ok {
		t.Fatal("Loads reports a non-member")
	}
	m.members["peer"] = &memberEntry{m: Member{Name: "peer", Health: HealthAlive}}
	if got := m.Loads()["peer"]; !got.Equal(load) {
		t.Fatal("Loads misses an alive member's load")
	}
	// An older seq is ignored, a newer one replaces.
	old, _ := encodeLoadMessages("peer", 49, Load{})
	h.NotifyMsg(old[0])
	if !m.Loads()["peer"].Equal(load) {
		t.Fatal("older seq replaced the load")
	}
	newer, _ := encodeLoadMessages("peer", 51, Load{})
	h.NotifyMsg(newer[0])
	if got := m.Loads()["peer"]; len(got.Partitions) != 0 {
		t.Fatalf("newer seq ignored: %+v", got)
	}
	// Dead members are left out.
	m.members["peer"].m.Health = HealthDead
	if _, ok := m.Loads()["peer"]; ok {
		t.Fatal("Loads reports a dead member")
	}
	// A message about ourselves with a higher seq pushes our seq past it.
	echo, _ := encodeLoadMessages("me", 10, Load{})
	h.NotifyMsg(echo[0])
	if m.loadDirty {
		t.Fatal("our own seq echoed back marked the load for broadcast")
	}
	self, _ := encodeLoadMessages("me", 1000, Load{})
	h.NotifyMsg(self[0])
	m.mu.Lock()
	seq, dirty := m.localSeq, m.loadDirty
	m.mu.Unlock()
	if seq != 1001 || !dirty {
		t.Fatalf("own seq %d dirty %v, want 1001 true", seq, dirty)
	}
	// Malformed messages are dropped and logged.
	h.NotifyMsg([]byte{1, 2, 3})
}

func TestPushPullState(t *testing.T) {
	a := newDetached("a", 1, &recorder{})
	b := newDetached("b", 1, &recorder{})
	a.SetLoad(bigLoad(50, 1))
	hooks{b}.MergeRemoteState(hooks{a}.LocalState(true), true)
	b.members["a"] = &memberEntry{m: Member{Name: "a", Health: HealthAlive}}
	if got := b.Loads()["a"]; !got.Equal(bigLoad(50, 1)) {
		t.Fatalf("b did not learn a's load: %+v", got)
	}
	// b passes a's load on to c, with b's own.
	c := newDetached("c", 1, &recorder{})
	b.SetLoad(bigLoad(2, 7))
	hooks{c}.MergeRemoteState(hooks{b}.LocalState(false), false)
	c.members["a"] = &memberEntry{m: Member{Name: "a", Health: HealthAlive}}
	c.members["b"] = &memberEntry{m: Member{Name: "b", Health: HealthAlive}}
	loads := c.Loads()
	if !loads["a"].Equal(bigLoad(50, 1)) || !loads["b"].Equal(bigLoad(2, 7)) {
		t.Fatalf("c loads: %+v", loads)
	}
	// Stale state does not roll back.
	a2 := newDetached("a", 1, &recorder{})
	a2.localSeq = 0
	hooks{c}.MergeRemoteState(hooks{a2}.LocalState(false), false)
	if !c.Loads()["a"].Equal(bigLoad(50, 1)) {
		t.Fatal("stale push-pull state rolled a's load back")
	}
}

func TestAdmitFingerprint(t *testing.T) {
	logs := &recorder{}
	m := newDetached("me", 0xaa, logs)
	h := hooks{m}
	meta := func(fp uint64) []byte {
		b, _ := Meta{State: StateActive, Fingerprint: fp}.MarshalBinary()
		return b
	}
	if err := h.NotifyAlive(&memberlist.Node{Name: "ok", Meta: meta(0xaa)}); err != nil {
		t.Fatalf("same fingerprint refused: %v", err)
	}
	err := h.NotifyAlive(&memberlist.Node{Name: "bad", Meta: meta(0xbb)})
	if err == nil || !strings.Contains(err.Error(), "0x00000000000000bb") || !strings.Contains(err.Error(), "0x00000000000000aa") {
		t.Fatalf("different fingerprint: got %v, want an error naming both", err)
	}
	if n := logs.count(slog.LevelError, "refusing member with a different pool fingerprint"); n != 1 {
		t.Fatalf("%d error logs, want 1", n)
	}
	_ = h.NotifyAlive(&memberlist.Node{Name: "bad", Meta: meta(0xbb)})
	if n := logs.count(slog.LevelError, "refusing member with a different pool fingerprint"); n != 1 {
		t.Fatalf("repeated refusal logged at error again (%d)", n)
	}
	if err := h.NotifyAlive(&memberlist.Node{Name: "garbage", Meta: []byte{9}}); err == nil {
		t.Fatal("malformed metadata admitted")
	}
	if err := h.NotifyAlive(&memberlist.Node{Name: "me", Meta: nil}); err != nil {
		t.Fatalf("self refused: %v", err)
	}
	err = h.NotifyMerge([]*memberlist.Node{
		{Name: "ok", Meta: meta(0xaa)},
		{Name: "gone", Meta: meta(0xcc), State: memberlist.StateDead},
	})
	if err != nil {
		t.Fatalf("merge refused over a dead member: %v", err)
	}
	if err := h.NotifyMerge([]*memberlist.Node{{Name: "ok", Meta: meta(0xaa)}, {Name: "x", Meta: meta(0xcc)}}); err == nil {
		t.Fatal("merge with a foreign member accepted")
	}
}

func TestParseMemberlistLine(t *testing.T) {
	for _, tc := range []struct {
		in    string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Marking b as failed", slog.LevelInfo, "Marking b as failed"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: Failed to send", slog.LevelError, "Failed to send"},
		{"[ERR] Failed to shutdown transport: x", slog.LevelError, "Failed to shutdown transport: x"},
		{"plain line", slog.LevelInfo, "plain line"},
		{"[ODD] thing", slog.LevelInfo, "[ODD] thing"},
	} {
		level, msg := parseMemberlistLine(tc.in)
		if level != tc.level || msg != tc.msg {
			t.Errorf("%q: got %v %q, want %v %q", tc.in, level, msg, tc.level, tc.msg)
		}
	}
	logs := &recorder{}
	w := logWriter{log: slog.New(logs)}
	if _, err := w.Write([]byte("[WARN] memberlist: one\n[DEBUG] memberlist: two\n")); err != nil {
		t.Fatal(err)
	}
	if logs.count(slog.LevelWarn, "one") != 1 || logs.count(slog.LevelDebug, "two") != 1 {
		t.Fatalf("records: %+v", logs.all())
	}
}

func TestProfileByName(t *testing.T) {
	lan, local := memberlist.DefaultLANConfig(), memberlist.DefaultLocalConfig()
	for _, tc := range []struct {
		name string
		want Profile
	}{
		{"lan", Profile{lan.ProbeInterval, lan.ProbeTimeout, lan.SuspicionMult, lan.GossipInterval, lan.PushPullInterval}},
		{"local", Profile{local.ProbeInterval, local.ProbeTimeout, local.SuspicionMult, local.GossipInterval, local.PushPullInterval}},
		{"fast", Profile{100 * time.Millisecond, 50 * time.Millisecond, 2, 50 * time.Millisecond, 5 * time.Second}},
	} {
		got, err := ProfileByName(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	_, err := ProfileByName("wan-ish")
	if !errors.Is(err, freqd.ErrInvalidArgument) || !strings.Contains(err.Error(), `"wan-ish"`) {
		t.Fatalf("unknown profile: got %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	fast, _ := ProfileByName("fast")
	ok := Config{Name: "n", BindAddr: "127.0.0.1:0", Profile: fast}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"ok", func(*Config) {}, true},
		{"zero profile is lan", func(c *Config) { c.Profile = Profile{} }, true},
		{"custom transport needs no bind", func(c *Config) { c.BindAddr = ""; c.Transport = &memberlist.MockTransport{} }, true},
		{"no name", func(c *Config) { c.Name = "" }, false},
		{"long name", func(c *Config) { c.Name = strings.Repeat("n", MaxNameLen+1) }, false},
		{"no bind", func(c *Config) { c.BindAddr = "" }, false},
		{"bind without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, false},
		{"bad advertise", func(c *Config) { c.AdvertiseAddr = "x" }, false},
		{"bad seed", func(c *Config) { c.Seeds = []string{"127.0.0.1:99999"} }, false},
		{"bad profile", func(c *Config) { c.Profile.ProbeTimeout = 2 * c.Profile.ProbeInterval }, false},
		{"no gossip", func(c *Config) { c.Profile.GossipInterval = 0 }, false},
		{"negative interval", func(c *Config) { c.LoadInterval = -1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("error does not wrap ErrInvalidArgument: %v", err)
			}
		})
	}
}
