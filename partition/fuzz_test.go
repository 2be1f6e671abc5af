package partition

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/freqd/freqd"
)

func FuzzCommandUnmarshal(f *testing.F) {
	for _, c := range []Command{
		grantAny("a", 1),
		grant("client-1", 4294967295, -5),
		release("b", 12),
		{Op: OpRelease, Client: "", Freq: 0, At: 1 << 62},
		{Op: OpGrant, Client: "c", Request: "req-1", Any: true, At: 9},
		{Op: OpNote, Client: "c", Request: "req-1", Freq: 3},
	} {
		b, _ := c.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1, 0, 0x80, 0x00, 0, 0, 0})
	f.Add([]byte{2, 2, 1, 0, 0, 0, 0})
	f.Add([]byte{2, 3, 0, 0, 0, 1, 'a', 0})
	f.Add([]byte{2, 1, 0, 0, 0, 1, 'a', 0x81, 1})
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
		if string(again) != string(b) {
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
			if err != nil || string(again) != string(in) {
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
			r.held[f] = refHold{cl.id, p.since[f-p.first]}
		}
	}
	return r
}

// FuzzApply drives a partition and the reference with a command sequence
// decoded from the input: byte 0 is the size, then 3 bytes per command
// (kind, client, frequency). kind%10 picks the op (or a snapshot/restore),
// kind/10 the request id. The frequency byte is the target of a note.
func FuzzApply(f *testing.F) {
	f.Add([]byte{5, 0, 0, 0, 0, 1, 0, 2, 0, 0, 2, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 1, 0})
	f.Add([]byte{16, 1, 0, 3, 1, 1, 3, 2, 1, 3, 2, 0, 3, 2, 0, 3, 7, 0, 0, 0, 0, 0})
	// Requests: grant r1, retry, release, retry (a new grant), snapshot,
	// note r1, retry (a new grant again), note r2.
	f.Add([]byte{4, 20, 0, 0, 20, 0, 0, 24, 0, 1, 20, 0, 0, 27, 0, 0, 28, 0, 3, 20, 0, 0, 39, 1, 7, 32, 1, 2, 32, 1, 2})
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
		for i := 1; i+2 < len(b); i += 3 {
			kind, cl, fb := b[i], b[i+1], b[i+2]
			c := Command{
				Client: clients[int(cl)%len(clients)], Request: requests[int(kind/10)%len(requests)],
				Freq: first - 1 + uint32(fb)%(size+2), At: int64(i),
			}
			switch kind % 10 {
			case 0, 1:
				c.Op, c.Any = OpGrant, true
			case 2, 3:
				c.Op = OpGrant
			case 4, 5:
				c.Op = OpRelease
			case 6:
				c.Op = Op(kind)
			case 8, 9:
				c.Op, c.Freq = OpNote, uint32(fb)
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
