package partition

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

func FuzzCommandUnmarshal(f *testing.F) {
	for _, c := range []Command{
		grantAny("a", 1),
		grant("client-1", 4294967295, -5),
		release("b", 12),
		{Op: OpRelease, Client: "", Freq: 0, At: 1 << 62},
		{Op: OpGrant, Client: "c", Request: "req-1", Any: true, At: 9},
		{Op: OpNote, Client: "c", Request: "req-1", Freq: 3, Gen: 1},
		{Op: OpNote, Client: "c", Request: "req-1", Freq: 3, Gen: 1 << 31},
		{Op: OpGrant, Client: "c", Request: "req-1", Any: true, Home: true, At: 9},
		{Op: OpGrant, Client: "c", Request: "req-1", Any: true, Gen: 2, At: 9, TTL: MinTTL},
		{Op: OpRelease, Client: "c", Freq: 3, Since: 9},
		{Op: OpGrant, Client: "c", Any: true, At: 9, TTL: MinTTL},
		{Op: OpGrant, Client: "c", Request: "r", Freq: 7, TTL: MaxTTL},
		{Op: OpReleaseClient, Client: "c", At: 4},
		{Op: OpReleaseClient, Client: "c", TTL: 90 * time.Second},
	} {
		b, _ := c.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{4, 1, 0, 0x80, 0x00, 0, 0, 0, 0})
	f.Add([]byte{4, 2, 1, 0, 0, 0, 0, 0})
	f.Add([]byte{4, 3, 0, 0, 0, 0, 1, 'a', 0})
	f.Add([]byte{4, 1, 0, 0, 0, 0, 1, 'a', 0x81, 1})
	f.Add([]byte{4, 1, 0, 0, 0, 0xe7, 0x07, 1, 'a', 0, 0})                           // ttl 999 ms
	f.Add([]byte{4, 2, 0, 0, 0, 0xe8, 0x07, 1, 'a', 0, 0})                           // ttl on a release
	f.Add([]byte{4, 4, 0, 1, 0, 0, 1, 'a', 0, 0})                                    // release-client with a frequency
	f.Add([]byte{4, 4, 0, 0, 0, 0x80, 0xb8, 0x99, 0x29, 1, 'a', 1, 'r', 0})          // with a request
	f.Add([]byte{3, 1, 0, 0, 0, 1, 'a', 0, 0})                                       // version 3
	f.Add([]byte{4, 1, 1, 0, 0, 0, 1, 'a', 1, 'r', 0})                               // version 4 grant any
	f.Add([]byte{4, 3, 0, 5, 0, 0, 1, 'a', 1, 'r', 0})                               // version 4 note: generation 1
	f.Add([]byte{4, 1, 3, 0, 0, 0, 1, 'a', 1, 'r', 0})                               // home flag in version 4
	f.Add([]byte{5, 1, 3, 0, 0, 0, 1, 'a', 1, 'r', 0, 1})                            // home with a gen
	f.Add([]byte{5, 3, 0, 0, 0, 0, 1, 'a', 1, 'r', 0, 0})                            // note of gen 0
	f.Add([]byte{5, 1, 1, 0, 0, 0, 1, 'a', 1, 'r', 0, 0x80, 0x80, 0x80, 0x80, 0x10}) // gen 2^32
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Command
		if err := c.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, freqd.ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
			}
			return
		}
		again, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", c, err)
		}
		if b[0] == commandVersionV4 {
			// Re-encoded as version 5: the same bytes, a Gen added.
			if c.Home || (c.Gen != 0) != (c.Op == OpNote) || c.Gen > 1 ||
				string(again[1:len(again)-1]) != string(b[1:]) || again[0] != commandVersion {
				t.Fatalf("version 4 %x -> %+v -> %x", b, c, again)
			}
		} else if string(again) != string(b) {
			t.Fatalf("decode/encode not identity: %x -> %+v -> %x", b, c, again)
		}
		var d Command
		if err := d.UnmarshalBinary(again); err != nil || d != c {
			t.Fatalf("second decode %+v, %v; want %+v", d, err, c)
		}
	})
}

func FuzzRestore(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, size := range []uint32{1, 3, 10} {
		p := New(int(size), 100, 100+size-1)
		for i := range 40 {
			p.Apply(randomCommand(rng, 100, 100+size-1, int64(i)))
		}
		snap, _ := p.Snapshot()
		f.Add(snap)
		f.Add(snap[:len(snap)-4]) // body only: the target appends the CRC
	}
	f.Add([]byte{})
	f.Add([]byte{2, 0, 10, 12, 0, 3, 2, 2, 2, 0, 0})
	f.Add([]byte{3, 0, 10, 12, 0, 3, 2, 2, 2, 0, 0})
	f.Add([]byte{4, 0, 10, 12, 0, 3, 2, 2, 2, 0, 0})
	// Version 4, 10-12 all free, version 3, a window of a note (partition
	// 9, generation 2), a refusal (generation 1) and a version 3 note.
	f.Add([]byte{4, 0, 10, 12, 3, 3, 2, 2, 2, 0, 3,
		1, 0, 0, 0, 0, 0, 0, 0, 2, 9, 4,
		2, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0,
		3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2})
	f.Add([]byte{3, 0, 10, 12, 2, 3, 2, 2, 2, 0, 2,
		1, 0, 0, 0, 0, 0, 0, 0, 2, 9, 0,
		2, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0})
	// Version 3, 10-12 all held: "a" 12 (1s lease) and 10 (24h), "b" 11
	// (no lease), then a window of one grant record.
	f.Add([]byte{3, 0, 10, 12, 3, 0, 2, 1, 'a', 2, 6, 2, 0xe8, 0x07, 3, 4, 0x80, 0xb8, 0x99, 0x29,
		1, 'b', 1, 4, 6, 0, 1, 7, 0, 0, 0, 0, 0, 0, 0, 1, 11, 2})
	// Version 2: the same without TTLs.
	f.Add([]byte{2, 0, 10, 12, 3, 0, 2, 1, 'a', 2, 6, 2, 3, 4, 1, 'b', 1, 4, 6, 1, 7, 0, 0, 0, 0, 0, 0, 0, 1, 11, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, withCRC(b)} {
			p, err := Restore(in)
			if err != nil {
				if !errors.Is(err, freqd.ErrInvalidArgument) {
					t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
				}
				continue
			}
			if err := p.check(); err != nil {
				t.Fatalf("restored partition breaks an invariant: %v", err)
			}
			again, err := p.Snapshot()
			if in[0] != snapshotVersion {
				// Version 2 is read as no leases, versions 2 and 3 with
				// every note at generation 1; written as version 4.
				for f := uint64(p.First()); f <= uint64(p.Last()); f++ {
					if p.TTL(uint32(f)) != 0 && in[0] == snapshotVersionV2 {
						t.Fatalf("v2 snapshot restored with a lease on %d", f)
					}
				}
				for _, x := range windowOf(p) {
					if x.kind == RecordRefused || x.kind == RecordNote && x.since != 1 {
						t.Fatalf("v%d snapshot restored with record %+v", in[0], x)
					}
				}
				q, qerr := Restore(again)
				if err != nil || again[0] != snapshotVersion || qerr != nil || !q.Equal(p) {
					t.Fatalf("v%d restore/snapshot/restore: %x -> %x (%v, %v)", in[0], in, again, err, qerr)
				}
			} else if err != nil || string(again) != string(in) {
				t.Fatalf("restore/snapshot not identity: %x -> %x (%v)", in, again, err)
			}
			// It keeps working: a few commands, against the reference
			// rebuilt from the restored state.
			r := refOf(p)
			for i := range 8 {
				step(t, p, r, randomCommand(rng, p.First(), p.Last(), int64(i)))
			}
			compare(t, p, r)
		}
	})
}

// refOf builds a reference model with p's state.
func refOf(p *Partition) *ref {
	r := &ref{id: p.id, first: p.first, last: p.last, version: p.version,
		free: p.FreeOrder(), held: map[uint32]refHold{}, byClient: map[string][]uint32{},
		window: windowOf(p)}
	for slot, cl := range p.clients {
		if slot == 0 || cl.count == 0 {
			continue
		}
		r.byClient[cl.id] = p.HeldBy(cl.id)
		for _, f := range r.byClient[cl.id] {
			r.held[f] = refHold{cl.id, p.since[f-p.first], p.TTL(f)}
		}
	}
	return r
}

// FuzzApply drives a partition and the reference with a command sequence
// decoded from the input: byte 0 is the size, then 3 bytes per command
// (kind, client, frequency). kind%10 picks the op (or a snapshot/restore),
// kind/10 the request id. The client byte picks the client (low 2 bits),
// the TTL (the next 3) and the generation of a bound attempt (the next 2,
// on kinds 0 and 3). Kind 1 is a home attempt, with a (rejected)
// generation if the client byte is 224 or more. On a note (kinds 8, 9)
// the frequency byte's low 3 bits are the target and the next 2 the
// generation (0 is rejected). Kind 6 is a client release with the request
// and frequency cleared; 206 is one with its frequency kept and 216 with
// a request (both rejected); 226 and above are unknown ops.
func FuzzApply(f *testing.F) {
	f.Add([]byte{5, 0, 0, 0, 0, 1, 0, 2, 0, 0, 2, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 1, 0})
	f.Add([]byte{16, 1, 0, 3, 1, 1, 3, 2, 1, 3, 2, 0, 3, 2, 0, 3, 7, 0, 0, 0, 0, 0})
	// Requests: grant r1, retry, release, retry (a new grant), snapshot,
	// note r1 (generation 1 over the grant: dup), retry, note r2, a
	// specific grant of r3, its retry.
	f.Add([]byte{4, 20, 0, 0, 20, 0, 0, 24, 0, 1, 20, 0, 0, 27, 0, 0, 28, 0, 11, 20, 0, 0, 39, 1, 15, 32, 1, 2, 32, 1, 2})
	// Leases: "a" takes three (1s, 2s, none), "b" one (1s); "a" releases
	// its leases up to 1s, snapshot, then up to 2s, then all; "b" all.
	f.Add([]byte{8, 0, 4, 0, 0, 8, 0, 0, 0, 0, 0, 5, 0, 6, 4, 0, 7, 0, 0, 6, 8, 0, 6, 0, 0, 6, 1, 0})
	// Bindings on one frequency, one partition playing home and target:
	// "a" takes it; a home attempt of "b" r1 finds it full; note r1 at
	// generation 1; the home attempt is noted; the bound attempt of
	// generation 1 is refused (the refusal replaces the note); "a"
	// releases; a late copy of the attempt is refused again; a note of
	// generation 2 finds no binding (unavailable); generation 1 binds
	// again; the attempt of generation 2 grants; snapshot; a note of
	// generation 3 meets the grant (dup).
	f.Add([]byte{0, 0, 0, 0, 21, 1, 0, 28, 1, 11, 21, 1, 0, 20, 33, 0, 4, 0, 1, 20, 33, 0,
		28, 1, 21, 28, 1, 11, 20, 65, 0, 7, 0, 0, 28, 1, 27})
	// A note of generation 2 with no binding, a home attempt with a gen
	// and a specific grant with one.
	f.Add([]byte{3, 28, 0, 16, 21, 224, 0, 23, 32, 1})
	// A client release with a request, with a frequency, a bad TTL, and
	// an unknown op.
	f.Add([]byte{4, 0, 0, 0, 16, 0, 0, 206, 0, 1, 216, 0, 0, 6, 24, 0, 246, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		const first = 1000
		size := uint32(b[0]%32) + 1
		last := first + size - 1
		p, r := New(0, first, last), newRef(0, first, last)
		clients := []string{"a", "b", "c", ""}
		requests := []string{"", "", "r1", "r2", "r3"}
		ttls := []time.Duration{0, MinTTL, 2 * time.Second, 0, MinTTL, MaxTTL, 999 * time.Millisecond, 3 * time.Second}
		for i := 1; i+2 < len(b); i += 3 {
			kind, cl, fb := b[i], b[i+1], b[i+2]
			c := Command{
				Client: clients[int(cl)%len(clients)], Request: requests[int(kind/10)%len(requests)],
				Freq: first - 1 + uint32(fb)%(size+2), At: int64(i),
			}
			ttl := ttls[int(cl>>2)%len(ttls)]
			gen := uint32(cl>>5) & 3
			switch kind % 10 {
			case 0:
				c.Op, c.Any, c.TTL, c.Gen = OpGrant, true, ttl, gen
			case 1:
				c.Op, c.Any, c.TTL, c.Home = OpGrant, true, ttl, true
				if cl >= 224 {
					c.Gen = 1
				}
			case 2:
				c.Op, c.TTL = OpGrant, ttl
			case 3:
				c.Op, c.TTL, c.Gen = OpGrant, ttl, gen
			case 4, 5:
				c.Op = OpRelease
				if cl >= 128 {
					c.TTL = ttl // rejected unless 0
				}
			case 6:
				switch {
				case kind < 200:
					c.Op, c.TTL, c.Request, c.Freq = OpReleaseClient, ttl, "", 0
				case kind == 206:
					c.Op, c.TTL, c.Request = OpReleaseClient, ttl, ""
				case kind == 216:
					c.Op, c.TTL, c.Request, c.Freq = OpReleaseClient, ttl, "r1", 0
				default:
					c.Op = Op(kind)
				}
			case 8, 9:
				c.Op, c.Freq, c.Gen = OpNote, uint32(fb&7), uint32(fb>>3)&3
			case 7:
				snap, err := p.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				q, err := Restore(snap)
				if err != nil {
					t.Fatalf("restore own snapshot: %v", err)
				}
				if !q.Equal(p) {
					t.Fatal("restored partition differs")
				}
				p = q
				continue
			}
			step(t, p, r, c)
		}
		compare(t, p, r)
	})
}
