package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/transport"
)

// maxCollects bounds the rounds an allocation of any frequency makes over
// the cluster when it finds no free frequency. Under heavy churn on a full
// pool a round often sees a release that another client's allocation took
// at once; rounds are cheap (one call per node) and back off with jitter.
const maxCollects = 64

// maxIncomplete is how many rounds in a row may miss some partitions (no
// reachable leader: a node crashed, or a group lost its majority) before the
// allocation answers Unavailable instead of waiting on.
const maxIncomplete = 3

// lookup maps a frequency to its partition.
func (n *Node) lookup(f uint32) (int, error) {
	id, ok := n.layout.Lookup(f)
	if !ok {
		return 0, fmt.Errorf("frequency %d is outside the pool %s: %w", f, n.layout, freqd.ErrOutOfRange)
	}
	return id, nil
}

// grantResponse describes a grant; lease is the granted frequency's lease
// (zero if none).
func (n *Node) grantResponse(id int, res partition.Result, lease leaseInfo) *freqdv1.AllocateResponse {
	out := &freqdv1.AllocateResponse{
		Frequency: res.Freq,
		Since:     timestamppb.New(time.Unix(0, res.Since)),
		Partition: uint32(id),
		Node:      n.opts.Name,
		Duplicate: res.Dup,
	}
	if lease.ttl > 0 {
		out.Ttl, out.Expires = durationpb.New(lease.ttl), timestamppb.New(lease.expires)
	}
	return out
}

// Allocate grants any free frequency to client, or exactly freq when it is
// not nil. A non-empty request id makes retries return the first grant; a
// non-zero ttl leases the frequency (docs/leases.md). It is the entry
// point for a client request on any node.
func (n *Node) Allocate(ctx context.Context, client string, freq *uint32, request string, ttl time.Duration) (*freqdv1.AllocateResponse, error) {
	if err := freqd.ValidateClientID(client); err != nil {
		return nil, err
	}
	if err := freqd.ValidateRequestID(request); err != nil {
		return nil, err
	}
	if err := validTTL(ttl); err != nil {
		return nil, err
	}
	if freq == nil {
		if request != "" {
			return n.allocateHome(ctx, client, request, ttl)
		}
		return n.allocateAny(ctx, client, "", ttl, -1, nil)
	}
	id, err := n.lookup(*freq)
	if err != nil {
		return nil, err
	}
	g, _, err := n.allocateIn(ctx, id, client, freq, request, ttl, false, 0)
	return g, err
}

// binding is where a request id's allocation is placed: partition part,
// at generation gen of its binding in the home partition (gen 0: the home
// itself, unbound).
type binding struct {
	part int
	gen  uint32
}

// allocateIn asks partition id's leader for a grant: of freq if set, else
// of any free frequency in id only. A full partition answers nil, nil, nil
// (for a bound attempt, gen > 0, the partition has then recorded that it
// refused that generation). With home, a binding recorded in the home
// partition is returned instead of a grant.
func (n *Node) allocateIn(ctx context.Context, id int, client string, freq *uint32, request string, ttl time.Duration, home bool, gen uint32) (*freqdv1.AllocateResponse, *binding, error) {
	var out *freqdv1.AllocateResponse
	var noted *binding
	err := n.onPartition(ctx, id,
		func(s *shard) error {
			var err error
			if freq != nil {
				out, err = n.grantFreq(ctx, s, client, *freq, request, ttl)
				return err
			}
			out, noted, _, err = n.grantIn(ctx, s, client, request, ttl, home, gen)
			return err
		},
		func(to uint64) error {
			var res freqdv1.PeerAllocateResponse
			err := n.call(ctx, to, methodAllocate, &freqdv1.PeerAllocateRequest{
				ClientId: client, Frequency: freq, Partition: uint32(id), OnlyPartition: true,
				RequestId: request, Home: home, Gen: gen, Ttl: ttlPB(ttl),
			}, &res)
			if err != nil {
				return err
			}
			switch {
			case res.GetGranted():
				out = res.GetGrant()
			case res.Noted != nil:
				noted = &binding{part: int(res.GetNoted()), gen: res.GetNotedGen()}
			case freq != nil:
				return fmt.Errorf("peer answered without a grant for frequency %d: %w", *freq, freqd.ErrUnavailable)
			}
			return nil
		})
	return out, noted, err
}

// grantFreq grants a specific frequency on the leader.
func (n *Node) grantFreq(ctx context.Context, s *shard, client string, f uint32, request string, ttl time.Duration) (*freqdv1.AllocateResponse, error) {
	now := n.opts.Now()
	r, err := n.propose(ctx, s, partition.Command{Op: partition.OpGrant, Client: client, Freq: f, Request: request, At: now.UnixNano(), TTL: ttl})
	if err != nil {
		return nil, err
	}
	if r.res.Err != nil {
		return nil, r.res.Err
	}
	return n.grantResponse(s.id, r.res, n.granted(s, client, r, now)), nil
}

// grantIn grants any free frequency from partition s on its leader, with
// the request-id rules when request is set (docs/replication.md): a home
// attempt reports the request's binding if it has one; a bound attempt
// (gen > 0) that finds the partition full records its refusal. A full
// partition returns no grant and its version (a linearizable observation:
// the failed grant was ordered in the partition's log).
func (n *Node) grantIn(ctx context.Context, s *shard, client, request string, ttl time.Duration, home bool, gen uint32) (*freqdv1.AllocateResponse, *binding, uint64, error) {
	now := n.opts.Now()
	c := partition.Command{Op: partition.OpGrant, Client: client, Any: true, Request: request, At: now.UnixNano(), TTL: ttl}
	if request != "" {
		c.Home, c.Gen = home, gen
	}
	r, err := n.propose(ctx, s, c)
	switch {
	case err != nil:
		return nil, nil, 0, err
	case r.res.Noted:
		return nil, &binding{part: int(r.res.Freq), gen: uint32(r.res.Since)}, 0, nil
	case r.res.Err == nil:
		return n.grantResponse(s.id, r.res, n.granted(s, client, r, now)), nil, 0, nil
	case errors.Is(r.res.Err, freqd.ErrNoFrequency):
		return nil, nil, r.version, nil
	}
	return nil, nil, 0, r.res.Err
}

// allocLocal grants any free frequency from the partitions this node
// leads: prefer first (if led here), then the others in partition order.
// If all are full it returns nil and each one's version.
//
// With probe it grants nothing: it reads every partition it leads, in
// parallel (linearizable reads), and reports free counts in free.
func (n *Node) allocLocal(ctx context.Context, client string, ttl time.Duration, prefer int, probe bool, free map[uint32]uint64) (*freqdv1.AllocateResponse, map[uint32]uint64, error) {
	var order []*shard
	if prefer >= 0 && prefer < len(n.shards) && n.leads(prefer) {
		order = append(order, n.shards[prefer])
	}
	for _, s := range n.shards {
		if s.id != prefer && n.leads(s.id) {
			order = append(order, s)
		}
	}
	versions := make(map[uint32]uint64, len(order))
	if probe {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, s := range order {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := n.leaderShard(s.id); err != nil {
					return
				}
				v, err := n.readLinear(ctx, s, func(p *partition.Partition) any { return [2]uint64{uint64(p.Free()), p.Version()} })
				if err != nil {
					return // not covered: the caller asks again
				}
				fv := v.([2]uint64)
				mu.Lock()
				free[uint32(s.id)], versions[uint32(s.id)] = fv[0], fv[1]
				mu.Unlock()
			}()
		}
		wg.Wait()
		return nil, versions, nil
	}
	for _, s := range order {
		if _, err := n.leaderShard(s.id); err != nil {
			continue // stepped down meanwhile, or too few voters: not covered
		}
		g, _, v, err := n.grantIn(ctx, s, client, "", ttl, false, 0)
		var no *NotOwnerError
		switch {
		case errors.As(err, &no):
			continue
		case err != nil && errors.Is(err, freqd.ErrOutcomeUnknown):
			return nil, nil, err
		case err != nil && errors.Is(err, freqd.ErrUnavailable):
			continue
		case err != nil:
			return nil, nil, err
		case g != nil:
			return g, nil, nil
		}
		versions[uint32(s.id)] = v
	}
	return nil, versions, nil
}

// homePartition is the partition an allocation with a request id tries
// first, so that every retry meets the same dedup records.
func (n *Node) homePartition(client, request string) int {
	return int(xxhash.Sum64String(client+"\x00"+request) % uint64(n.layout.Partitions()))
}

// allocateHome allocates any frequency for a request with an id
// (docs/replication.md, "Allocations with a request id"). The id's home
// partition is tried first; if it is full, the request is bound, by a
// compare-and-set note in the home, to one other partition at a time, and
// only there may it be granted. A binding moves on (next generation) only
// after the bound partition has recorded, in its own log, that it refused
// that generation; so a stalled attempt that commits late finds either
// the first grant or its refusal, and one request id grants at most one
// frequency, ever.
func (n *Node) allocateHome(ctx context.Context, client, request string, ttl time.Duration) (*freqdv1.AllocateResponse, error) {
	h := n.homePartition(client, request)
	g, b, err := n.allocateIn(ctx, h, client, nil, request, ttl, true, 0)
	switch {
	case err != nil:
		return nil, err
	case g != nil:
		return g, nil
	case b != nil:
		if err := n.checkBinding(b, client, request, h); err != nil {
			return nil, err
		}
		g, _, err := n.allocateIn(ctx, b.part, client, nil, request, ttl, false, b.gen)
		if err != nil || g != nil {
			return g, err
		}
		// Refused there (full, now recorded): bind it elsewhere.
	default:
		b = &binding{part: h}
	}
	return n.allocateAny(ctx, client, request, ttl, h, b)
}

// checkBinding refuses a binding, read from home partition h, that names
// no partition of the pool or generation 0.
func (n *Node) checkBinding(b *binding, client, request string, h int) error {
	if b.part < 0 || b.part >= n.layout.Partitions() || b.gen == 0 {
		return fmt.Errorf("request %q of %q: home partition %d holds a corrupt binding (partition %d, generation %d): %w", request, client, h, b.part, b.gen, freqd.ErrUnavailable)
	}
	return nil
}

// note binds request to partition q at generation gen in home partition
// h. It returns the binding that holds afterwards (the one asked for, or
// one that won the race), or the home's own grant of the request.
func (n *Node) note(ctx context.Context, h int, client, request string, q int, gen uint32) (*binding, *freqdv1.AllocateResponse, error) {
	var b *binding
	var g *freqdv1.AllocateResponse
	err := n.onPartition(ctx, h,
		func(s *shard) error {
			var err error
			b, g, err = n.applyNote(ctx, s, client, request, q, gen)
			return err
		},
		func(to uint64) error {
			var res freqdv1.PeerNoteResponse
			if err := n.call(ctx, to, methodNote, &freqdv1.PeerNoteRequest{
				Partition: uint32(h), ClientId: client, RequestId: request, Target: uint32(q), Gen: gen,
			}, &res); err != nil {
				return err
			}
			if res.GetGrant() != nil {
				g = res.GetGrant()
				return nil
			}
			b = &binding{part: int(res.GetPartition()), gen: res.GetGen()}
			return nil
		})
	return b, g, err
}

// applyNote runs the note's compare-and-set on the home's leader.
func (n *Node) applyNote(ctx context.Context, s *shard, client, request string, q int, gen uint32) (*binding, *freqdv1.AllocateResponse, error) {
	r, err := n.propose(ctx, s, partition.Command{Op: partition.OpNote, Client: client, Request: request, Freq: uint32(q), Gen: gen, At: n.opts.Now().UnixNano()})
	switch {
	case err != nil:
		return nil, nil, err
	case r.res.Err != nil:
		return nil, nil, r.res.Err
	case r.res.Dup:
		return nil, n.grantResponse(s.id, r.res, leaseInfo{}), nil
	}
	return &binding{part: int(r.res.Freq), gen: uint32(r.res.Since)}, nil, nil
}

// allocateAny finds a free frequency anywhere in the pool. It asks nodes in
// the strategy's order; each asked node tries all the partitions it holds.
// It answers ErrNoFrequency only after two complete rounds found every
// partition full with no change in between (a double collect), which
// proves the whole pool was held at one instant.
//
// With a request id (home >= 0), partitions are only probed, and each
// one with free space is then tried alone under a new binding of the
// request (b, updated as bindings are made; see allocateHome).
func (n *Node) allocateAny(ctx context.Context, client, request string, ttl time.Duration, home int, b *binding) (*freqdv1.AllocateResponse, error) {
	P := n.layout.Partitions()
	var prev map[uint32]uint64
	var missing []int
	incomplete := 0 // consecutive rounds that could not reach every partition
	for round := 0; round < maxCollects && incomplete < maxIncomplete; round++ {
		if round > 0 {
			n.view.Store(nil)
			pause := n.jitter(time.Duration(min(round, 10)) * time.Millisecond)
			if len(missing) > 0 {
				pause = time.Duration(min(round, 10)) * 20 * time.Millisecond
			}
			if round > 1 || len(missing) > 0 {
				if err := sleepCtx(ctx, pause); err != nil {
					return nil, fmt.Errorf("allocate: %w: %w", freqd.ErrUnavailable, err)
				}
			}
		}
		v := n.currentView()
		covered := make(map[uint32]uint64, P)
		asked := make(map[string]bool)
		probe := home >= 0
		free := make(map[uint32]uint64)
		if n.opts.Strategy == LocalFirst {
			asked[n.opts.Name] = true
			g, vers, err := n.allocLocal(ctx, client, ttl, -1, probe, free)
			if g != nil || err != nil {
				return g, err
			}
			maps.Copy(covered, vers)
		}
		order := n.candidates(v)
		for _, id := range order {
			if _, ok := covered[uint32(id)]; ok {
				continue
			}
			target := n.targetFor(v, id, nil)
			if n.leads(id) {
				target = n.opts.Name
			}
			if target == "" || asked[target] {
				continue
			}
			asked[target] = true
			if target == n.opts.Name {
				g, vers, err := n.allocLocal(ctx, client, ttl, id, probe, free)
				if g != nil || err != nil {
					return g, err
				}
				maps.Copy(covered, vers)
				continue
			}
			to, ok := n.dir.Load().byName[target]
			if !ok {
				continue
			}
			var res freqdv1.PeerAllocateResponse
			err := n.call(ctx, to, methodAllocate, &freqdv1.PeerAllocateRequest{
				ClientId: client, Partition: uint32(id), Probe: probe, Ttl: ttlPB(ttl),
			}, &res)
			if err != nil {
				if transport.NotSent(err) || errors.Is(err, freqd.ErrUnavailable) && transport.Answered(err) {
					continue // nothing applied there; its partitions stay uncovered
				}
				if transport.Answered(err) {
					return nil, err
				}
				return nil, fmt.Errorf("allocate via %s: %w", target, err)
			}
			if res.GetGranted() {
				return res.GetGrant(), nil
			}
			maps.Copy(covered, res.GetVersions())
			maps.Copy(free, res.GetFree())
		}
		if probe {
			g, tried, err := n.grantProbed(ctx, order, free, client, request, ttl, home, b)
			if g != nil || err != nil {
				return g, err
			}
			if tried {
				prev = nil // the round changed partitions; it proves nothing
				continue
			}
		}
		missing = missing[:0]
		for id := 0; id < P; id++ {
			if _, ok := covered[uint32(id)]; !ok {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			prev = nil
			incomplete++
			continue
		}
		incomplete = 0
		if prev != nil && maps.Equal(prev, covered) {
			return nil, fmt.Errorf("all %d frequencies in the pool are held: %w", n.layout.Size(), freqd.ErrNoFrequency)
		}
		prev = covered
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no free frequency found, and partitions %v are unavailable: %w", missing, freqd.ErrUnavailable)
	}
	return nil, fmt.Errorf("no free frequency found, but the pool kept changing under contention; retry: %w", freqd.ErrUnavailable)
}

// grantProbed tries, in order, the probed partitions with free space for
// a request with an id: the home itself with a home attempt, any other
// partition by binding the request to it (the next generation after b)
// and then asking it alone under that binding. Only a recorded refusal
// moves on to the next partition; any other failure ends the call, since
// the attempt may still commit where it was bound. tried reports whether
// any partition looked free.
func (n *Node) grantProbed(ctx context.Context, order []int, free map[uint32]uint64, client, request string, ttl time.Duration, home int, b *binding) (g *freqdv1.AllocateResponse, tried bool, err error) {
	for _, id := range order {
		if free[uint32(id)] == 0 || (id == b.part && b.gen > 0) {
			continue
		}
		tried = true
		if id == home {
			g, nb, err := n.allocateIn(ctx, home, client, nil, request, ttl, true, 0)
			if err != nil || g != nil {
				return g, true, err
			}
			if nb == nil {
				continue // full again
			}
			*b = *nb
		} else {
			nb, hg, err := n.note(ctx, home, client, request, id, b.gen+1)
			switch {
			case err != nil:
				return nil, true, fmt.Errorf("allocate: bind the request in its home partition %d: %w", home, err)
			case hg != nil:
				return hg, true, nil
			}
			*b = *nb
		}
		if err := n.checkBinding(b, client, request, home); err != nil {
			return nil, true, err
		}
		g, _, err := n.allocateIn(ctx, b.part, client, nil, request, ttl, false, b.gen)
		if err != nil || g != nil {
			return g, true, err
		}
	}
	return nil, tried, nil
}

// jitter returns a random duration in [0, d).
func (n *Node) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n.rndMu.Lock()
	defer n.rndMu.Unlock()
	return time.Duration(n.rnd.Int64N(int64(d)))
}

// Release frees frequency f held by client.
//
// since, when non-zero, names the grant to end by its grant time (unix
// nanoseconds): a frequency the client holds under a later grant is not
// released. It makes a delayed copy of the release harmless.
func (n *Node) Release(ctx context.Context, client string, f uint32, since int64) (*freqdv1.ReleaseResponse, error) {
	if err := freqd.ValidateClientID(client); err != nil {
		return nil, err
	}
	id, err := n.lookup(f)
	if err != nil {
		return nil, err
	}
	var out *freqdv1.ReleaseResponse
	err = n.onPartition(ctx, id,
		func(s *shard) error {
			var err error
			out, err = n.applyRelease(ctx, s, client, f, since)
			return err
		},
		func(to uint64) error {
			var res freqdv1.ReleaseResponse
			if err := n.call(ctx, to, methodRelease, &freqdv1.PeerReleaseRequest{ClientId: client, Frequency: f, SinceUnixNano: since}, &res); err != nil {
				return err
			}
			out = &res
			return nil
		})
	return out, err
}

func (n *Node) applyRelease(ctx context.Context, s *shard, client string, f uint32, since int64) (*freqdv1.ReleaseResponse, error) {
	r, err := n.propose(ctx, s, partition.Command{Op: partition.OpRelease, Client: client, Freq: f, Since: since, At: n.opts.Now().UnixNano()})
	if err != nil {
		return nil, err
	}
	if r.res.Err != nil {
		return nil, r.res.Err
	}
	return &freqdv1.ReleaseResponse{Partition: uint32(s.id), Node: n.opts.Name}, nil
}

// Holder tells who holds frequency f, from the partition's leader
// (a linearizable read).
func (n *Node) Holder(ctx context.Context, f uint32) (*freqdv1.HolderResponse, error) {
	id, err := n.lookup(f)
	if err != nil {
		return nil, err
	}
	var out *freqdv1.HolderResponse
	err = n.onPartition(ctx, id,
		func(s *shard) error {
			var err error
			out, err = n.readHolder(ctx, s, f)
			return err
		},
		func(to uint64) error {
			var res freqdv1.HolderResponse
			if err := n.call(ctx, to, methodHolder, &freqdv1.PeerHolderRequest{Frequency: f}, &res); err != nil {
				return err
			}
			out = &res
			return nil
		})
	return out, err
}

type holding struct {
	client string
	since  int64
	held   bool
	ttl    time.Duration
	err    error
}

// readHolder answers who holds f on the leader, once every write
// committed before the call is applied (ReadIndex).
func (n *Node) readHolder(ctx context.Context, s *shard, f uint32) (*freqdv1.HolderResponse, error) {
	v, err := n.readLinear(ctx, s, func(p *partition.Partition) any {
		var h holding
		h.client, h.since, h.held, h.err = p.Holder(f)
		if h.held {
			h.ttl = p.TTL(f)
		}
		return h
	})
	if err != nil {
		return nil, err
	}
	h := v.(holding)
	if h.err != nil {
		return nil, h.err
	}
	out := &freqdv1.HolderResponse{Frequency: f, Held: h.held, Partition: uint32(s.id), Node: n.opts.Name}
	if h.held {
		out.ClientId = h.client
		out.Since = timestamppb.New(time.Unix(0, h.since))
		if lease := n.leaseOf(s, h.client, h.ttl); lease.ttl > 0 {
			out.Ttl, out.Expires = durationpb.New(lease.ttl), timestamppb.New(lease.expires)
		}
	}
	return out, nil
}
