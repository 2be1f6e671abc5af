package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"connectrpc.com/connect"
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
// reachable holder: a node crashed, or a handoff is stuck) before the
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

// notLeading is the answer of a ring owner that has not (yet) become a
// partition's primary: Unavailable with its takeover's last failure.
func (n *Node) notLeading(id int) error {
	r := n.recs[id]
	r.mu.Lock()
	reason := r.reason
	r.mu.Unlock()
	if reason == "" {
		reason = "takeover in progress"
	}
	return fmt.Errorf("partition %d (%s) has no primary yet on its owner %s: %s: %w", id, n.spanString(id), n.opts.Name, reason, freqd.ErrUnavailable)
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
		return n.allocateAny(ctx, client, "", ttl, -1)
	}
	id, err := n.lookup(*freq)
	if err != nil {
		return nil, err
	}
	return n.allocateIn(ctx, id, client, freq, request, ttl, false)
}

// allocateIn asks partition id's primary for a grant: of freq if set, else
// of any free frequency in id only. A full partition answers nil, nil.
func (n *Node) allocateIn(ctx context.Context, id int, client string, freq *uint32, request string, ttl time.Duration, home bool) (*freqdv1.AllocateResponse, error) {
	var out *freqdv1.AllocateResponse
	err := n.onPartition(ctx, id,
		func(r *record) error {
			var err error
			if freq != nil {
				out, err = n.applyGrant(ctx, r, client, *freq, request, ttl)
				return err
			}
			out, _, err = n.grantIn(ctx, r, client, request, ttl, home)
			return err
		},
		func(pc peerClient) error {
			res, err := pc.peer.PeerAllocate(ctx, connect.NewRequest(&freqdv1.PeerAllocateRequest{
				ClientId: client, Frequency: freq, Partition: uint32(id), OnlyPartition: true, From: n.opts.Name,
				RequestId: request, Home: home, Ttl: ttlPB(ttl),
			}))
			if err != nil {
				return transport.FromWire(err)
			}
			switch {
			case res.Msg.GetGranted():
				out = res.Msg.GetGrant()
			case res.Msg.Noted != nil:
				out = &freqdv1.AllocateResponse{Partition: res.Msg.GetNoted()}
				return errNoted
			case freq != nil:
				return fmt.Errorf("peer answered without a grant for frequency %d: %w", *freq, freqd.ErrUnavailable)
			}
			return nil
		})
	return out, err
}

// errNoted is allocateIn's internal answer when the home partition holds a
// note for the request; the response's Partition names the target.
var errNoted = errors.New("request noted in another partition")

// applyGrant grants a specific frequency on a primary.
func (n *Node) applyGrant(ctx context.Context, r *record, client string, f uint32, request string, ttl time.Duration) (*freqdv1.AllocateResponse, error) {
	var res partition.Result
	var lease leaseInfo
	err := n.exec(ctx, r, func(p *partition.Partition) *partition.Command {
		now := n.opts.Now()
		cmd := applyLogged(p, &res, partition.Command{Op: partition.OpGrant, Client: client, Freq: f, Request: request, At: now.UnixNano(), TTL: ttl})
		lease = n.grantedLocked(r, p, client, res, now)
		return cmd
	})
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return n.grantResponse(r.id, res, lease), nil
}

// applyLogged applies c to p, storing the result, and returns the command
// to replicate if it changed the state: a grant of any frequency is
// resolved to the frequency it granted, so replicas need not repeat the
// choice.
func applyLogged(p *partition.Partition, res *partition.Result, c partition.Command) *partition.Command {
	v := p.Version()
	*res = p.Apply(c)
	if p.Version() == v {
		return nil
	}
	if c.Op == partition.OpGrant && c.Any {
		c.Any, c.Freq = false, res.Freq
	}
	return &c
}

// grantIn grants any free frequency from partition r on this primary, with
// the request-id rules when request is set: in the home partition a note
// is reported as noted. A full partition returns nil and its version,
// confirmed (rule R5).
func (n *Node) grantIn(ctx context.Context, r *record, client, request string, ttl time.Duration, home bool) (g *freqdv1.AllocateResponse, version uint64, err error) {
	var res partition.Result
	var lease leaseInfo
	var noted *uint32
	err = n.exec(ctx, r, func(p *partition.Partition) *partition.Command {
		if home && request != "" {
			if rec, ok := p.Request(client, request); ok && rec.Kind == partition.RecordNote {
				t := rec.Value
				noted = &t
				return nil
			}
		}
		now := n.opts.Now()
		cmd := applyLogged(p, &res, partition.Command{Op: partition.OpGrant, Client: client, Any: true, Request: request, At: now.UnixNano(), TTL: ttl})
		lease = n.grantedLocked(r, p, client, res, now)
		version = p.Version()
		return cmd
	})
	switch {
	case err != nil:
		return nil, 0, err
	case noted != nil:
		return &freqdv1.AllocateResponse{Partition: *noted}, 0, errNoted
	case res.Err == nil:
		return n.grantResponse(r.id, res, lease), 0, nil
	case errors.Is(res.Err, freqd.ErrNoFrequency):
		return nil, version, nil
	}
	return nil, 0, res.Err
}

// allocLocal grants any free frequency from the partitions this node leads:
// prefer first (if led here), then the others in partition order, unless
// only is set. If all are full it returns nil and each one's confirmed
// version.
//
// With probe it grants nothing: it reads every partition it leads, in
// parallel, and reports free counts in free.
func (n *Node) allocLocal(ctx context.Context, client string, ttl time.Duration, prefer int, only, probe bool, free map[uint32]uint64) (*freqdv1.AllocateResponse, map[uint32]uint64, error) {
	var order []*record
	if prefer >= 0 && prefer < len(n.recs) && n.recs[prefer].isPrimary() {
		order = append(order, n.recs[prefer])
	}
	if !only {
		for _, r := range n.recs {
			if r.id != prefer && r.isPrimary() {
				order = append(order, r)
			}
		}
	}
	versions := make(map[uint32]uint64, len(order))
	if probe {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, r := range order {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var f, v uint64
				err := n.exec(ctx, r, func(p *partition.Partition) *partition.Command {
					f, v = uint64(p.Free()), p.Version()
					return nil
				})
				if err != nil {
					return // not covered: the caller asks again
				}
				mu.Lock()
				versions[uint32(r.id)], free[uint32(r.id)] = v, f
				mu.Unlock()
			}()
		}
		wg.Wait()
		return nil, versions, nil
	}
	for _, r := range order {
		g, v, err := n.grantIn(ctx, r, client, "", ttl, false)
		var no *NotOwnerError
		switch {
		case errors.As(err, &no):
			continue // stepped down meanwhile: not covered, the caller asks again
		case err != nil && errors.Is(err, freqd.ErrUnavailable):
			continue
		case err != nil:
			return nil, nil, err
		case g != nil:
			return g, nil, nil
		}
		versions[uint32(r.id)] = v
	}
	return nil, versions, nil
}

// homePartition is the partition an allocation with a request id tries
// first, so that every retry meets the same dedup records.
func (n *Node) homePartition(client, request string) int {
	return int(xxhash.Sum64String(client+"\x00"+request) % uint64(n.layout.Partitions()))
}

// allocateHome allocates any frequency for a request with an id
// (docs/replication.md, "Allocations with a request id"): the home
// partition first, following its note if it has one, else any partition
// after a note in the home.
func (n *Node) allocateHome(ctx context.Context, client, request string, ttl time.Duration) (*freqdv1.AllocateResponse, error) {
	h := n.homePartition(client, request)
	g, err := n.allocateIn(ctx, h, client, nil, request, ttl, true)
	switch {
	case err == nil && g != nil:
		return g, nil
	case errors.Is(err, errNoted):
		q := int(g.GetPartition())
		if q >= 0 && q < n.layout.Partitions() {
			g, err := n.allocateIn(ctx, q, client, nil, request, ttl, false)
			if err != nil || g != nil {
				return g, err
			}
		}
	case err != nil:
		return nil, err
	}
	return n.allocateAny(ctx, client, request, ttl, h)
}

// note records in home partition h that request was placed in partition q.
func (n *Node) note(ctx context.Context, h int, client, request string, q int) error {
	return n.onPartition(ctx, h,
		func(r *record) error { return n.applyNote(ctx, r, client, request, q) },
		func(pc peerClient) error {
			_, err := pc.peer.PeerNote(ctx, connect.NewRequest(&freqdv1.PeerNoteRequest{
				Partition: uint32(h), ClientId: client, RequestId: request, Target: uint32(q), From: n.opts.Name,
			}))
			return transport.FromWire(err)
		})
}

func (n *Node) applyNote(ctx context.Context, r *record, client, request string, q int) error {
	var res partition.Result
	err := n.exec(ctx, r, func(p *partition.Partition) *partition.Command {
		return applyLogged(p, &res, partition.Command{Op: partition.OpNote, Client: client, Request: request, Freq: uint32(q), At: n.opts.Now().UnixNano()})
	})
	if err != nil {
		return err
	}
	return res.Err
}

// allocateAny finds a free frequency anywhere in the pool. It asks nodes in
// the strategy's order; each asked node tries all the partitions it holds.
// It answers ErrNoFrequency only after two complete rounds found every
// partition full with no change in between (a double collect), which
// proves the whole pool was held at one instant.
//
// With a request id (home >= 0), each partition is asked alone, after a
// note in the home partition, so that a retry finds where it went.
func (n *Node) allocateAny(ctx context.Context, client, request string, ttl time.Duration, home int) (*freqdv1.AllocateResponse, error) {
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
			g, vers, err := n.allocLocal(ctx, client, ttl, -1, false, probe, free)
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
			if target == "" || asked[target] {
				continue
			}
			asked[target] = true
			if target == n.opts.Name {
				g, vers, err := n.allocLocal(ctx, client, ttl, id, false, probe, free)
				if g != nil || err != nil {
					return g, err
				}
				maps.Copy(covered, vers)
				continue
			}
			res, err := n.peer(v.addr[target]).peer.PeerAllocate(ctx, connect.NewRequest(&freqdv1.PeerAllocateRequest{
				ClientId: client, Partition: uint32(id), From: n.opts.Name, Probe: probe, Ttl: ttlPB(ttl),
			}))
			if err != nil {
				err = transport.FromWire(err)
				if transport.NotSent(err) || errors.Is(err, freqd.ErrUnavailable) && transport.Answered(err) {
					continue // nothing applied there; its partitions stay uncovered
				}
				if transport.Answered(err) {
					return nil, err
				}
				return nil, fmt.Errorf("allocate via %s: %w: %w", target, freqd.ErrOutcomeUnknown, err)
			}
			if res.Msg.GetGranted() {
				return res.Msg.GetGrant(), nil
			}
			maps.Copy(covered, res.Msg.GetVersions())
			maps.Copy(free, res.Msg.GetFree())
		}
		if probe {
			g, tried, err := n.grantProbed(ctx, order, free, client, request, ttl, home)
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

// grantProbed tries, in order, the probed partitions with free space for a
// request with an id: a note in the home partition first (unless it is the
// home), then a grant in that partition alone. tried reports whether any
// partition looked free.
func (n *Node) grantProbed(ctx context.Context, order []int, free map[uint32]uint64, client, request string, ttl time.Duration, home int) (g *freqdv1.AllocateResponse, tried bool, err error) {
	for _, id := range order {
		if free[uint32(id)] == 0 {
			continue
		}
		tried = true
		if id != home {
			if err := n.note(ctx, home, client, request, id); err != nil {
				return nil, true, fmt.Errorf("allocate: record the request in its home partition %d: %w", home, err)
			}
		}
		g, err := n.allocateIn(ctx, id, client, nil, request, ttl, false)
		switch {
		case err != nil && errors.Is(err, freqd.ErrUnavailable):
			continue
		case err != nil:
			return nil, true, err
		case g != nil:
			return g, true, nil
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
		func(r *record) error {
			var err error
			out, err = n.applyRelease(ctx, r, client, f, since)
			return err
		},
		func(pc peerClient) error {
			res, err := pc.peer.PeerRelease(ctx, connect.NewRequest(&freqdv1.PeerReleaseRequest{ClientId: client, Frequency: f, From: n.opts.Name, SinceUnixNano: since}))
			if err != nil {
				return transport.FromWire(err)
			}
			out = res.Msg
			return nil
		})
	return out, err
}

func (n *Node) applyRelease(ctx context.Context, r *record, client string, f uint32, since int64) (*freqdv1.ReleaseResponse, error) {
	var res partition.Result
	err := n.exec(ctx, r, func(p *partition.Partition) *partition.Command {
		return applyLogged(p, &res, partition.Command{Op: partition.OpRelease, Client: client, Freq: f, Since: since, At: n.opts.Now().UnixNano()})
	})
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return &freqdv1.ReleaseResponse{Partition: uint32(r.id), Node: n.opts.Name}, nil
}

// Holder tells who holds frequency f, from the partition's holder.
func (n *Node) Holder(ctx context.Context, f uint32) (*freqdv1.HolderResponse, error) {
	id, err := n.lookup(f)
	if err != nil {
		return nil, err
	}
	var out *freqdv1.HolderResponse
	err = n.onPartition(ctx, id,
		func(r *record) error {
			var err error
			out, err = n.readHolder(ctx, r, f)
			return err
		},
		func(pc peerClient) error {
			res, err := pc.peer.PeerHolder(ctx, connect.NewRequest(&freqdv1.PeerHolderRequest{Frequency: f, From: n.opts.Name}))
			if err != nil {
				return transport.FromWire(err)
			}
			out = res.Msg
			return nil
		})
	return out, err
}

// readHolder answers who holds f from the primary, once confirmed (R5).
func (n *Node) readHolder(ctx context.Context, r *record, f uint32) (*freqdv1.HolderResponse, error) {
	var (
		client string
		since  int64
		held   bool
		herr   error
		lease  leaseInfo
	)
	err := n.exec(ctx, r, func(p *partition.Partition) *partition.Command {
		client, since, held, herr = p.Holder(f)
		if held {
			lease = n.leaseOfLocked(r, p, client, f, n.opts.Now())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if herr != nil {
		return nil, herr
	}
	out := &freqdv1.HolderResponse{Frequency: f, Held: held, Partition: uint32(r.id), Node: n.opts.Name}
	if held {
		out.ClientId = client
		out.Since = timestamppb.New(time.Unix(0, since))
		if lease.ttl > 0 {
			out.Ttl, out.Expires = durationpb.New(lease.ttl), timestamppb.New(lease.expires)
		}
	}
	return out, nil
}
