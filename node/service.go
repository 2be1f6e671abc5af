package node

import (
	"context"
	"errors"
	"fmt"
	"net"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/transport"
)

func readLimit(n int) connect.HandlerOption { return connect.WithReadMaxBytes(n) }

func readLimitClient(n int) connect.ClientOption { return connect.WithReadMaxBytes(n) }

// service is the client-facing API; every method may forward one hop.
type service struct{ n *Node }

var _ freqdv1connect.FreqdServiceHandler = (*service)(nil)

func wire[T any](msg *T, err error) (*connect.Response[T], error) {
	if err != nil {
		return nil, transport.ToWire(err)
	}
	return connect.NewResponse(msg), nil
}

func (s *service) Allocate(ctx context.Context, req *connect.Request[freqdv1.AllocateRequest]) (*connect.Response[freqdv1.AllocateResponse], error) {
	return wire(s.n.Allocate(ctx, req.Msg.GetClientId(), req.Msg.Frequency))
}

func (s *service) Release(ctx context.Context, req *connect.Request[freqdv1.ReleaseRequest]) (*connect.Response[freqdv1.ReleaseResponse], error) {
	return wire(s.n.Release(ctx, req.Msg.GetClientId(), req.Msg.GetFrequency()))
}

func (s *service) Holder(ctx context.Context, req *connect.Request[freqdv1.HolderRequest]) (*connect.Response[freqdv1.HolderResponse], error) {
	return wire(s.n.Holder(ctx, req.Msg.GetFrequency()))
}

func (s *service) Status(ctx context.Context, _ *connect.Request[freqdv1.StatusRequest]) (*connect.Response[freqdv1.StatusResponse], error) {
	return wire(s.n.Status(), nil)
}

func (s *service) Ring(ctx context.Context, _ *connect.Request[freqdv1.RingRequest]) (*connect.Response[freqdv1.RingResponse], error) {
	return wire(s.n.RingInfo(), nil)
}

func (s *service) Join(ctx context.Context, req *connect.Request[freqdv1.JoinRequest]) (*connect.Response[freqdv1.JoinResponse], error) {
	seeds := req.Msg.GetSeeds()
	if len(seeds) == 0 {
		return nil, transport.ToWire(fmt.Errorf("join: no seed given: %w", freqd.ErrInvalidArgument))
	}
	for _, sd := range seeds {
		if _, _, err := net.SplitHostPort(sd); err != nil {
			return nil, transport.ToWire(fmt.Errorf("join: seed %q is not host:port: %w", sd, freqd.ErrInvalidArgument))
		}
	}
	k, err := s.n.ml.Join(ctx, seeds)
	if err != nil {
		return nil, transport.ToWire(fmt.Errorf("join %v: %w: %w", seeds, freqd.ErrUnavailable, err))
	}
	return connect.NewResponse(&freqdv1.JoinResponse{Joined: uint32(k)}), nil
}

func (s *service) Leave(ctx context.Context, _ *connect.Request[freqdv1.LeaveRequest]) (*connect.Response[freqdv1.LeaveResponse], error) {
	k, err := s.n.Leave(ctx)
	if err != nil {
		return nil, transport.ToWire(err)
	}
	return connect.NewResponse(&freqdv1.LeaveResponse{HandedOff: uint32(k)}), nil
}

// peerService serves node-to-node calls. It never forwards: a partition
// not held here gets a not-owner answer naming the likely holder.
type peerService struct{ n *Node }

var _ freqdv1connect.PeerServiceHandler = (*peerService)(nil)

// peerWire encodes an error for a peer, adding the holder hint.
func peerWire(err error) error {
	out := transport.ToWire(err)
	var no *NotOwnerError
	var ce *connect.Error
	if errors.As(err, &no) && no.Holder != "" && errors.As(out, &ce) {
		ce.Meta().Set(transport.HolderHintKey, no.Holder)
	}
	return out
}

// held returns the local shard for id, waiting for it if this node is its
// ring owner and it is on its way; otherwise a NotOwnerError.
func (n *Node) held(ctx context.Context, id int) (*shard, error) {
	if s := n.localShard(id); s != nil {
		return s, nil
	}
	owner, _ := n.ring.Load().Owner(id)
	if owner == n.opts.Name {
		if n.waitArrival(ctx, id) {
			if s := n.localShard(id); s != nil {
				return s, nil
			}
		}
		return nil, fmt.Errorf("partition %d (%s) has not reached its owner %s yet: %w", id, n.spanString(id), n.opts.Name, freqd.ErrUnavailable)
	}
	hint := n.currentView().holder[id]
	if hint == n.opts.Name {
		hint = ""
	}
	if hint == "" {
		hint = owner
	}
	return nil, &NotOwnerError{Partition: id, Holder: hint, Node: n.opts.Name}
}

func (p *peerService) PeerAllocate(ctx context.Context, req *connect.Request[freqdv1.PeerAllocateRequest]) (*connect.Response[freqdv1.PeerAllocateResponse], error) {
	n := p.n
	m := req.Msg
	if err := freqd.ValidateClientID(m.GetClientId()); err != nil {
		return nil, peerWire(err)
	}
	if m.Frequency != nil {
		id, err := n.lookup(m.GetFrequency())
		if err != nil {
			return nil, peerWire(err)
		}
		s, err := n.held(ctx, id)
		if err != nil {
			return nil, peerWire(err)
		}
		g, err := n.applyGrant(ctx, s, m.GetClientId(), m.GetFrequency())
		if err != nil {
			return nil, peerWire(err)
		}
		return connect.NewResponse(&freqdv1.PeerAllocateResponse{Granted: true, Grant: g}), nil
	}
	g, versions := n.allocLocal(m.GetClientId(), int(m.GetPartition()), m.GetOnlyPartition())
	if g != nil {
		return connect.NewResponse(&freqdv1.PeerAllocateResponse{Granted: true, Grant: g}), nil
	}
	return connect.NewResponse(&freqdv1.PeerAllocateResponse{Versions: versions}), nil
}

func (p *peerService) PeerRelease(ctx context.Context, req *connect.Request[freqdv1.PeerReleaseRequest]) (*connect.Response[freqdv1.ReleaseResponse], error) {
	n := p.n
	if err := freqd.ValidateClientID(req.Msg.GetClientId()); err != nil {
		return nil, peerWire(err)
	}
	id, err := n.lookup(req.Msg.GetFrequency())
	if err != nil {
		return nil, peerWire(err)
	}
	s, err := n.held(ctx, id)
	if err != nil {
		return nil, peerWire(err)
	}
	out, err := n.applyRelease(ctx, s, req.Msg.GetClientId(), req.Msg.GetFrequency())
	if err != nil {
		return nil, peerWire(err)
	}
	return connect.NewResponse(out), nil
}

func (p *peerService) PeerHolder(ctx context.Context, req *connect.Request[freqdv1.PeerHolderRequest]) (*connect.Response[freqdv1.HolderResponse], error) {
	n := p.n
	id, err := n.lookup(req.Msg.GetFrequency())
	if err != nil {
		return nil, peerWire(err)
	}
	s, err := n.held(ctx, id)
	if err != nil {
		return nil, peerWire(err)
	}
	out, err := n.readHolder(ctx, s, req.Msg.GetFrequency())
	if err != nil {
		return nil, peerWire(err)
	}
	return connect.NewResponse(out), nil
}

func (p *peerService) Transfer(ctx context.Context, req *connect.Request[freqdv1.TransferRequest]) (*connect.Response[freqdv1.TransferResponse], error) {
	if err := p.n.receive(req.Msg); err != nil {
		return nil, peerWire(err)
	}
	return connect.NewResponse(&freqdv1.TransferResponse{}), nil
}

// Status reports members and totals as this node sees them.
func (n *Node) Status() *freqdv1.StatusResponse {
	v := n.currentView()
	r := n.ring.Load()
	out := &freqdv1.StatusResponse{
		Node:              n.opts.Name,
		Total:             n.layout.Size(),
		Partitions:        uint32(n.layout.Partitions()),
		ReplicationFactor: uint32(r.Config().ReplicationFactor),
		Strategy:          string(n.opts.Strategy),
	}
	for _, rg := range n.layout.Ranges() {
		out.Ranges = append(out.Ranges, &freqdv1.Range{First: rg.First, Last: rg.Last})
	}
	type agg struct {
		parts      uint32
		free, held uint64
	}
	per := make(map[string]*agg)
	for id := range v.holder {
		h := v.holder[id]
		if h == "" {
			out.Unavailable = append(out.Unavailable, uint32(id))
			continue
		}
		a := per[h]
		if a == nil {
			a = &agg{}
			per[h] = a
		}
		a.parts++
		a.free += v.free[id]
		a.held += v.held[id]
		out.Free += v.free[id]
		out.Held += v.held[id]
	}
	for _, m := range n.ml.Members() {
		mm := &freqdv1.Member{
			Name: m.Name, ApiAddr: m.Meta.APIAddr, GossipAddr: m.GossipAddr,
			State: m.Meta.State.String(), Health: m.Health.String(),
		}
		if a := per[m.Name]; a != nil {
			mm.Partitions, mm.Free, mm.Held = a.parts, a.free, a.held
		}
		out.Members = append(out.Members, mm)
	}
	return out
}

// RingInfo reports each partition's range, owner, replicas and holder.
func (n *Node) RingInfo() *freqdv1.RingResponse {
	v := n.currentView()
	r := n.ring.Load()
	out := &freqdv1.RingResponse{Node: n.opts.Name}
	for _, sp := range n.layout.Spans() {
		owner, _ := r.Owner(sp.ID)
		out.Partitions = append(out.Partitions, &freqdv1.PartitionInfo{
			Id: uint32(sp.ID), First: sp.First, Last: sp.Last,
			Owner: owner, Replicas: r.Replicas(sp.ID),
			Holder: v.holder[sp.ID], Free: v.free[sp.ID], Held: v.held[sp.ID], Epoch: v.epoch[sp.ID],
		})
	}
	return out
}

// State is the node's lifecycle state as gossiped.
func (n *Node) State() membership.State { return n.ml.LocalMeta().State }

// Active reports whether the node has joined (or created) the cluster and
// owns partitions on the ring.
func (n *Node) Active() bool { return n.isActive() }
