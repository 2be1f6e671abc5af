package partition

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/freqd/freqd"
)

// ref is a naive reference model of a partition: a free slice used as a
// FIFO queue, a map of holdings and each client's grants in order.
type ref struct {
	id          int
	first, last uint32
	version     uint64
	free        []uint32
	held        map[uint32]refHold
	byClient    map[string][]uint32
}

type refHold struct {
	client string
	since  int64
}

func newRef(id int, first, last uint32) *ref {
	r := &ref{id: id, first: first, last: last, held: map[uint32]refHold{}, byClient: map[string][]uint32{}}
	for f := uint64(first); f <= uint64(last); f++ {
		r.free = append(r.free, uint32(f))
	}
	return r
}

// apply returns (freq, since, sentinel).
func (r *ref) apply(c Command) (uint32, int64, error) {
	if c.Client == "" || len(c.Client) > freqd.MaxClientIDLen {
		return 0, 0, freqd.ErrInvalidClientID
	}
	switch {
	case c.Op == OpGrant && c.Any:
		if len(r.free) == 0 {
			return 0, 0, freqd.ErrNoFrequency
		}
		f := r.free[0]
		r.free = r.free[1:]
		r.grant(f, c)
		return f, c.At, nil
	case c.Op == OpGrant:
		if c.Freq < r.first || c.Freq > r.last {
			return 0, 0, freqd.ErrOutOfRange
		}
		if h, ok := r.held[c.Freq]; ok {
			if h.client == c.Client {
				return c.Freq, h.since, nil
			}
			return 0, 0, freqd.ErrAlreadyHeld
		}
		i := slices.Index(r.free, c.Freq)
		r.free = slices.Delete(r.free, i, i+1)
		r.grant(c.Freq, c)
		return c.Freq, c.At, nil
	case c.Op == OpRelease && !c.Any:
		if c.Freq < r.first || c.Freq > r.last {
			return 0, 0, freqd.ErrOutOfRange
		}
		h, ok := r.held[c.Freq]
		if !ok {
			return 0, 0, freqd.ErrNotHeld
		}
		if h.client != c.Client {
			return 0, 0, freqd.ErrNotHolder
		}
		delete(r.held, c.Freq)
		l := r.byClient[c.Client]
		i := slices.Index(l, c.Freq)
		l = slices.Delete(l, i, i+1)
		if len(l) == 0 {
			delete(r.byClient, c.Client)
		} else {
			r.byClient[c.Client] = l
		}
		r.free = append(r.free, c.Freq)
		r.version++
		return c.Freq, h.since, nil
	default:
		return 0, 0, freqd.ErrInvalidArgument
	}
}

func (r *ref) grant(f uint32, c Command) {
	r.held[f] = refHold{c.Client, c.At}
	r.byClient[c.Client] = append(r.byClient[c.Client], f)
	r.version++
}

var sentinels = []error{
	freqd.ErrNoFrequency, freqd.ErrNotHeld, freqd.ErrNotHolder, freqd.ErrAlreadyHeld,
	freqd.ErrOutOfRange, freqd.ErrInvalidClientID, freqd.ErrInvalidArgument,
}

// sentinelOf returns the one sentinel err wraps, nil for nil.
func sentinelOf(err error) error {
	if err == nil {
		return nil
	}
	var found error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			if found != nil {
				return fmt.Errorf("wraps both %v and %v", found, s)
			}
			found = s
		}
	}
	if found == nil {
		return fmt.Errorf("wraps no sentinel: %v", err)
	}
	return found
}

// compare checks that p's state equals r's and that p's invariants hold.
func compare(t testing.TB, p *Partition, r *ref) {
	t.Helper()
	if err := p.check(); err != nil {
		t.Fatalf("invariant broken: %v", err)
	}
	if p.Version() != r.version {
		t.Fatalf("version %d, reference %d", p.Version(), r.version)
	}
	if got := p.FreeOrder(); !slices.Equal(got, r.free) && !(len(got) == 0 && len(r.free) == 0) {
		t.Fatalf("free order %v, reference %v", got, r.free)
	}
	if p.Free() != len(r.free) || p.Held() != len(r.held) || p.Size() != int(r.last-r.first)+1 || p.Clients() != len(r.byClient) {
		t.Fatalf("counts free %d held %d size %d clients %d; reference %d %d %d %d",
			p.Free(), p.Held(), p.Size(), p.Clients(), len(r.free), len(r.held), r.last-r.first+1, len(r.byClient))
	}
	for f := uint64(r.first); f <= uint64(r.last); f++ {
		c, since, held, err := p.Holder(uint32(f))
		h, rheld := r.held[uint32(f)]
		if err != nil || held != rheld || c != h.client || since != h.since {
			t.Fatalf("Holder(%d) = %q %d %v %v; reference %+v %v", f, c, since, held, err, h, rheld)
		}
	}
	for c, l := range r.byClient {
		if got := p.HeldBy(c); !slices.Equal(got, l) {
			t.Fatalf("HeldBy(%q) = %v, reference %v", c, got, l)
		}
	}
}

// step applies c to both and checks the results agree.
func step(t testing.TB, p *Partition, r *ref, c Command) Result {
	t.Helper()
	res := p.Apply(c)
	f, since, wantErr := r.apply(c)
	if got := sentinelOf(res.Err); got != wantErr {
		t.Fatalf("%v: error %v (%v), reference %v", c, res.Err, got, wantErr)
	}
	if res.Freq != f || res.Since != since {
		t.Fatalf("%v: got freq %d since %d, reference %d %d", c, res.Freq, res.Since, f, since)
	}
	return res
}
