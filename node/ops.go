package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"connectrpc.com/connect"
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

func (n *Node) grantResponse(id int, res partition.Result) *freqdv1.AllocateResponse {
	return &freqdv1.AllocateResponse{
		Frequency: res.Freq,
		Since:     timestamppb.New(time.Unix(0, res.Since)),
		Partition: uint32(id),
		Node:      n.opts.Name,
	}
}

// Allocate grants any free frequency to client, or exactly freq when it is
// not nil. It is the entry point for a client request on any node.
func (n *Node) Allocate(ctx context.Context, client string, freq *uint32) (*freqdv1.AllocateResponse, error) {
	if err := freqd.ValidateClientID(client); err != nil {
		return nil, err
	}
	if freq == nil {
		return n.allocateAny(ctx, client)
	}
	id, err := n.lookup(*freq)
	if err != nil {
		return nil, err
	}
	var out *freqdv1.AllocateResponse
	err = n.onPartition(ctx, id,
		func(s *shard) error {
			var err error
			out, err = n.applyGrant(ctx, s, client, *freq)
			return err
		},
		func(pc peerClient) error {
			res, err := pc.peer.PeerAllocate(ctx, connect.NewRequest(&freqdv1.PeerAllocateRequest{
				ClientId: client, Frequency: freq, Partition: uint32(id), OnlyPartition: true, From: n.opts.Name,
			}))
			if err != nil {
				return transport.FromWire(err)
			}
			if !res.Msg.GetGranted() {
				return fmt.Errorf("peer answered without a grant for frequency %d: %w", *freq, freqd.ErrUnavailable)
			}
			out = res.Msg.GetGrant()
			return nil
		})
	return out, err
}

// applyGrant grants a specific frequency from a local shard.
func (n *Node) applyGrant(ctx context.Context, s *shard, client string, f uint32) (*freqdv1.AllocateResponse, error) {
	var res partition.Result
	err := s.apply(ctx, func(p *partition.Partition) {
		res = p.Apply(partition.Command{Op: partition.OpGrant, Client: client, Freq: f, At: n.opts.Now().UnixNano()})
	}, n.opts.Name)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return n.grantResponse(s.id, res), nil
}

// allocLocal grants any free frequency from the partitions this node holds:
// prefer first (if held), then the others in partition order, unless only
// is set. Shards in a handoff are skipped. If all it tried are full it returns
// nil and each tried partition's version, taken in the same critical
// section as the failed grant.
func (n *Node) allocLocal(client string, prefer int, only bool) (*freqdv1.AllocateResponse, map[uint32]uint64) {
	var order []*shard
	if s := n.localShard(prefer); s != nil {
		order = append(order, s)
	}
	if !only {
		for _, s := range n.heldShards() {
			if s.id != prefer {
				order = append(order, s)
			}
		}
	}
	versions := make(map[uint32]uint64, len(order))
	for _, s := range order {
		var res partition.Result
		var version uint64
		if !s.tryApply(func(p *partition.Partition) {
			res = p.Apply(partition.Command{Op: partition.OpGrant, Client: client, Any: true, At: n.opts.Now().UnixNano()})
			version = p.Version()
		}) {
			continue
		}
		if res.Err == nil {
			return n.grantResponse(s.id, res), nil
		}
		versions[uint32(s.id)] = version
	}
	return nil, versions
}

// allocateAny finds a free frequency anywhere in the pool. It asks nodes in
// the strategy's order; each asked node tries all the partitions it holds.
// It answers ErrNoFrequency only after two complete rounds found every
// partition full with no change in between (a double collect), which
// proves the whole pool was held at one instant.
func (n *Node) allocateAny(ctx context.Context, client string) (*freqdv1.AllocateResponse, error) {
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
		if n.opts.Strategy == LocalFirst {
			asked[n.opts.Name] = true
			if g, vers := n.allocLocal(client, -1, false); g != nil {
				return g, nil
			} else {
				maps.Copy(covered, vers)
			}
		}
		for _, id := range n.candidates(v) {
			if _, ok := covered[uint32(id)]; ok {
				continue
			}
			target := n.targetFor(v, id, nil)
			if target == "" || asked[target] {
				continue
			}
			asked[target] = true
			if target == n.opts.Name {
				g, vers := n.allocLocal(client, id, false)
				if g != nil {
					return g, nil
				}
				maps.Copy(covered, vers)
				continue
			}
			res, err := n.peer(v.addr[target]).peer.PeerAllocate(ctx, connect.NewRequest(&freqdv1.PeerAllocateRequest{
				ClientId: client, Partition: uint32(id), From: n.opts.Name,
			}))
			if err != nil {
				err = transport.FromWire(err)
				if transport.NotSent(err) || errors.Is(err, freqd.ErrUnavailable) && transport.Answered(err) {
					continue // nothing applied there; its partitions stay uncovered
				}
				if transport.Answered(err) {
					return nil, err
				}
				return nil, fmt.Errorf("allocate via %s: outcome unknown: %w: %w", target, freqd.ErrUnavailable, err)
			}
			if res.Msg.GetGranted() {
				return res.Msg.GetGrant(), nil
			}
			maps.Copy(covered, res.Msg.GetVersions())
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
func (n *Node) Release(ctx context.Context, client string, f uint32) (*freqdv1.ReleaseResponse, error) {
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
			out, err = n.applyRelease(ctx, s, client, f)
			return err
		},
		func(pc peerClient) error {
			res, err := pc.peer.PeerRelease(ctx, connect.NewRequest(&freqdv1.PeerReleaseRequest{ClientId: client, Frequency: f, From: n.opts.Name}))
			if err != nil {
				return transport.FromWire(err)
			}
			out = res.Msg
			return nil
		})
	return out, err
}

func (n *Node) applyRelease(ctx context.Context, s *shard, client string, f uint32) (*freqdv1.ReleaseResponse, error) {
	var res partition.Result
	err := s.apply(ctx, func(p *partition.Partition) {
		res = p.Apply(partition.Command{Op: partition.OpRelease, Client: client, Freq: f, At: n.opts.Now().UnixNano()})
	}, n.opts.Name)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return &freqdv1.ReleaseResponse{Partition: uint32(s.id), Node: n.opts.Name}, nil
}

// Holder tells who holds frequency f, from the partition's holder.
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

func (n *Node) readHolder(ctx context.Context, s *shard, f uint32) (*freqdv1.HolderResponse, error) {
	var (
		client string
		since  int64
		held   bool
		herr   error
	)
	err := s.apply(ctx, func(p *partition.Partition) {
		client, since, held, herr = p.Holder(f)
	}, n.opts.Name)
	if err != nil {
		return nil, err
	}
	if herr != nil {
		return nil, herr
	}
	out := &freqdv1.HolderResponse{Frequency: f, Held: held, Partition: uint32(s.id), Node: n.opts.Name}
	if held {
		out.ClientId = client
		out.Since = timestamppb.New(time.Unix(0, since))
	}
	return out, nil
}
