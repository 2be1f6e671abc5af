package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/partition"
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
	ttl, err := ttlFromPB(req.Msg.GetTtl())
	if err != nil {
		return nil, transport.ToWire(err)
	}
	return wire(s.n.Allocate(ctx, req.Msg.GetClientId(), req.Msg.Frequency, req.Msg.GetRequestId(), ttl))
}

func (s *service) Release(ctx context.Context, req *connect.Request[freqdv1.ReleaseRequest]) (*connect.Response[freqdv1.ReleaseResponse], error) {
	var since int64
	if ts := req.Msg.GetSince(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, transport.ToWire(fmt.Errorf("release: since: %w: %w", err, freqd.ErrInvalidArgument))
		}
		since = ts.AsTime().UnixNano()
	}
	return wire(s.n.Release(ctx, req.Msg.GetClientId(), req.Msg.GetFrequency(), since))
}

func (s *service) Holder(ctx context.Context, req *connect.Request[freqdv1.HolderRequest]) (*connect.Response[freqdv1.HolderResponse], error) {
	return wire(s.n.Holder(ctx, req.Msg.GetFrequency()))
}

func (s *service) KeepAlive(ctx context.Context, req *connect.Request[freqdv1.KeepAliveRequest]) (*connect.Response[freqdv1.KeepAliveResponse], error) {
	return wire(s.n.KeepAlive(ctx, req.Msg.GetClientId()))
}

func (s *service) KeepAliveStream(ctx context.Context, stream *connect.BidiStream[freqdv1.KeepAliveRequest, freqdv1.KeepAliveResponse]) error {
	return s.n.keepAliveStream(ctx, stream)
}

func (s *service) ReleaseAll(ctx context.Context, req *connect.Request[freqdv1.ReleaseAllRequest]) (*connect.Response[freqdv1.ReleaseAllResponse], error) {
	return wire(s.n.ReleaseAll(ctx, req.Msg.GetClientId()))
}

func (s *service) Status(ctx context.Context, _ *connect.Request[freqdv1.StatusRequest]) (*connect.Response[freqdv1.StatusResponse], error) {
	return wire(s.n.Status(ctx), nil)
}

func (s *service) Ring(ctx context.Context, _ *connect.Request[freqdv1.RingRequest]) (*connect.Response[freqdv1.RingResponse], error) {
	return wire(s.n.RingInfo(ctx), nil)
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

// primaryFor returns partition id's record if this node is its primary,
// waiting for a takeover under way if this node is its ring owner;
// otherwise a NotOwnerError naming the likely primary.
func (n *Node) primaryFor(ctx context.Context, id int) (*record, error) {
	if id < 0 || id >= len(n.recs) {
		return nil, fmt.Errorf("partition %d: no such partition in a pool of %d: %w", id, len(n.recs), freqd.ErrInvalidArgument)
	}
	r := n.recs[id]
	if r.isPrimary() {
		return r, nil
	}
	owner, _ := n.ring.Load().Owner(id)
	if owner == n.opts.Name {
		if n.waitPrimary(ctx, r) {
			return r, nil
		}
		return nil, n.notLeading(id)
	}
	r.mu.Lock()
	err := n.notPrimaryLocked(r)
	r.mu.Unlock()
	var no *NotOwnerError
	if errors.As(err, &no) && no.Holder == "" {
		no.Holder = n.currentView().holder[id]
		if no.Holder == n.opts.Name || no.Holder == "" {
			no.Holder = owner
		}
	}
	return nil, err
}

func (p *peerService) PeerAllocate(ctx context.Context, req *connect.Request[freqdv1.PeerAllocateRequest]) (*connect.Response[freqdv1.PeerAllocateResponse], error) {
	n := p.n
	m := req.Msg
	if err := freqd.ValidateClientID(m.GetClientId()); err != nil {
		return nil, peerWire(err)
	}
	if err := freqd.ValidateRequestID(m.GetRequestId()); err != nil {
		return nil, peerWire(err)
	}
	ttl, err := ttlFromPB(m.GetTtl())
	if err != nil {
		return nil, peerWire(err)
	}
	if m.Frequency != nil {
		id, err := n.lookup(m.GetFrequency())
		if err != nil {
			return nil, peerWire(err)
		}
		r, err := n.primaryFor(ctx, id)
		if err != nil {
			return nil, peerWire(err)
		}
		g, err := n.applyGrant(ctx, r, m.GetClientId(), m.GetFrequency(), m.GetRequestId(), ttl)
		if err != nil {
			return nil, peerWire(err)
		}
		return connect.NewResponse(&freqdv1.PeerAllocateResponse{Granted: true, Grant: g}), nil
	}
	if m.GetOnlyPartition() {
		id := int(m.GetPartition())
		r, err := n.primaryFor(ctx, id)
		if err != nil {
			return nil, peerWire(err)
		}
		g, v, err := n.grantIn(ctx, r, m.GetClientId(), m.GetRequestId(), ttl, m.GetHome())
		switch {
		case errors.Is(err, errNoted):
			t := g.GetPartition()
			return connect.NewResponse(&freqdv1.PeerAllocateResponse{Noted: &t}), nil
		case err != nil:
			return nil, peerWire(err)
		case g != nil:
			return connect.NewResponse(&freqdv1.PeerAllocateResponse{Granted: true, Grant: g}), nil
		}
		return connect.NewResponse(&freqdv1.PeerAllocateResponse{Versions: map[uint32]uint64{uint32(id): v}}), nil
	}
	if m.GetRequestId() != "" {
		return nil, peerWire(fmt.Errorf("peer allocate: a request id needs only_partition: %w", freqd.ErrInvalidArgument))
	}
	free := make(map[uint32]uint64)
	g, versions, err := n.allocLocal(ctx, m.GetClientId(), ttl, int(m.GetPartition()), false, m.GetProbe(), free)
	if err != nil {
		return nil, peerWire(err)
	}
	if g != nil {
		return connect.NewResponse(&freqdv1.PeerAllocateResponse{Granted: true, Grant: g}), nil
	}
	return connect.NewResponse(&freqdv1.PeerAllocateResponse{Versions: versions, Free: free}), nil
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
	r, err := n.primaryFor(ctx, id)
	if err != nil {
		return nil, peerWire(err)
	}
	out, err := n.applyRelease(ctx, r, req.Msg.GetClientId(), req.Msg.GetFrequency(), req.Msg.GetSinceUnixNano())
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
	r, err := n.primaryFor(ctx, id)
	if err != nil {
		return nil, peerWire(err)
	}
	out, err := n.readHolder(ctx, r, req.Msg.GetFrequency())
	if err != nil {
		return nil, peerWire(err)
	}
	return connect.NewResponse(out), nil
}

func (p *peerService) PeerNote(ctx context.Context, req *connect.Request[freqdv1.PeerNoteRequest]) (*connect.Response[freqdv1.PeerNoteResponse], error) {
	n := p.n
	m := req.Msg
	if err := freqd.ValidateClientID(m.GetClientId()); err != nil {
		return nil, peerWire(err)
	}
	if m.GetRequestId() == "" {
		return nil, peerWire(fmt.Errorf("peer note: empty request id: %w", freqd.ErrInvalidArgument))
	}
	if err := freqd.ValidateRequestID(m.GetRequestId()); err != nil {
		return nil, peerWire(fmt.Errorf("peer note: %w", err))
	}
	if int(m.GetTarget()) >= n.layout.Partitions() {
		return nil, peerWire(fmt.Errorf("peer note: target partition %d is not in a pool of %d: %w", m.GetTarget(), n.layout.Partitions(), freqd.ErrInvalidArgument))
	}
	r, err := n.primaryFor(ctx, int(m.GetPartition()))
	if err != nil {
		return nil, peerWire(err)
	}
	if err := n.applyNote(ctx, r, m.GetClientId(), m.GetRequestId(), int(m.GetTarget())); err != nil {
		return nil, peerWire(err)
	}
	return connect.NewResponse(&freqdv1.PeerNoteResponse{}), nil
}

func (p *peerService) Prepare(ctx context.Context, req *connect.Request[freqdv1.PrepareRequest]) (*connect.Response[freqdv1.PrepareResponse], error) {
	r, err := p.n.record(req.Msg.GetPartition())
	if err != nil {
		return nil, peerWire(err)
	}
	e := epochFromPB(req.Msg.GetEpoch())
	if e.Term == 0 || e.Node == "" {
		return nil, peerWire(fmt.Errorf("prepare of partition %d: no epoch: %w", r.id, freqd.ErrInvalidArgument))
	}
	return wire(p.n.prepare(ctx, r, e))
}

func (p *peerService) Fetch(ctx context.Context, req *connect.Request[freqdv1.FetchRequest]) (*connect.Response[freqdv1.FetchResponse], error) {
	r, err := p.n.record(req.Msg.GetPartition())
	if err != nil {
		return nil, peerWire(err)
	}
	return wire(p.n.fetch(r, epochFromPB(req.Msg.GetEpoch())))
}

func (p *peerService) Install(ctx context.Context, req *connect.Request[freqdv1.InstallRequest]) (*connect.Response[freqdv1.InstallResponse], error) {
	n := p.n
	m := req.Msg
	r, err := n.record(m.GetPartition())
	if err != nil {
		return nil, peerWire(err)
	}
	cfg := configFromPB(m.GetConfig())
	if err := n.validConfig(r.id, cfg); err != nil {
		return nil, peerWire(err)
	}
	if to := replicaFromPB(m.GetTo()); to != n.self {
		return nil, peerWire(fmt.Errorf("install of partition %d is for %v, but this is %v: %w", r.id, to, n.self, freqd.ErrInvalidArgument))
	}
	var part *partition.Partition
	if len(m.GetSnapshot()) > 0 {
		if part, err = n.restoreFor(r.id, m.GetSnapshot()); err != nil {
			return nil, peerWire(err)
		}
	}
	return wire(n.install(ctx, r, cfg, part, epochFromPB(m.GetBaseEpoch()), m.GetIndex(), m.GetCommitted()))
}

func (p *peerService) Commit(ctx context.Context, req *connect.Request[freqdv1.CommitRequest]) (*connect.Response[freqdv1.CommitResponse], error) {
	r, err := p.n.record(req.Msg.GetPartition())
	if err != nil {
		return nil, peerWire(err)
	}
	cfg := configFromPB(req.Msg.GetConfig())
	if err := p.n.validConfig(r.id, cfg); err != nil {
		return nil, peerWire(err)
	}
	return wire(p.n.commit(ctx, r, cfg))
}

func (p *peerService) Append(ctx context.Context, req *connect.Request[freqdv1.AppendRequest]) (*connect.Response[freqdv1.AppendResponse], error) {
	n := p.n
	m := req.Msg
	r, err := n.record(m.GetPartition())
	if err != nil {
		return nil, peerWire(err)
	}
	if to := replicaFromPB(m.GetTo()); to != n.self {
		return nil, peerWire(fmt.Errorf("append to partition %d is for %v, but this is %v: %w", r.id, to, n.self, freqd.ErrInvalidArgument))
	}
	return wire(n.appendCmds(ctx, r, epochFromPB(m.GetEpoch()), m.GetPrevIndex(), m.GetCommands()))
}

func (p *peerService) PeerKeepAlive(ctx context.Context, req *connect.Request[freqdv1.PeerKeepAliveRequest]) (*connect.Response[freqdv1.PeerKeepAliveResponse], error) {
	if err := freqd.ValidateClientID(req.Msg.GetClientId()); err != nil {
		return nil, peerWire(err)
	}
	return connect.NewResponse(p.n.renewLocal(req.Msg.GetClientId())), nil
}

func (p *peerService) PeerReleaseClient(ctx context.Context, req *connect.Request[freqdv1.PeerReleaseClientRequest]) (*connect.Response[freqdv1.ReleaseAllResponse], error) {
	n := p.n
	if err := freqd.ValidateClientID(req.Msg.GetClientId()); err != nil {
		return nil, peerWire(err)
	}
	r, err := n.primaryFor(ctx, int(req.Msg.GetPartition()))
	if err != nil {
		return nil, peerWire(err)
	}
	out, err := n.applyReleaseClient(ctx, r, req.Msg.GetClientId())
	if err != nil {
		return nil, peerWire(err)
	}
	return connect.NewResponse(out), nil
}

func (p *peerService) Partitions(ctx context.Context, _ *connect.Request[freqdv1.PartitionsRequest]) (*connect.Response[freqdv1.PartitionsResponse], error) {
	return connect.NewResponse(p.n.replicaStates()), nil
}

// replicaStates reports this node's records that hold anything.
func (n *Node) replicaStates() *freqdv1.PartitionsResponse {
	out := &freqdv1.PartitionsResponse{Self: replicaToPB(n.self)}
	for _, r := range n.recs {
		r.mu.Lock()
		if r.promised.IsZero() && r.reason == "" {
			r.mu.Unlock()
			continue
		}
		st := &freqdv1.ReplicaState{
			Partition: uint32(r.id), Role: r.role.String(), Promised: epochToPB(r.promised),
			Committed: configToPB(r.committed), Accepted: configToPB(r.accepted), Reason: r.reason, Lost: r.lost,
		}
		if r.p != nil {
			st.HasState, st.StateEpoch, st.Index = true, epochToPB(r.stateEpoch), r.index
			st.Free, st.Held = uint64(r.p.Free()), uint64(r.p.Held())
		}
		if r.role == rolePrimary {
			st.Writable, st.Reason = n.writableLocked(r)
		}
		r.mu.Unlock()
		out.Replicas = append(out.Replicas, st)
	}
	return out
}

// statusTimeout bounds the status fan-out to each node.
const statusTimeout = 2 * time.Second

// partitionView is one partition as the status fan-out found it.
type partitionView struct {
	primary  string
	state    *freqdv1.ReplicaState // the primary's record, or nil
	ownerRec *freqdv1.ReplicaState // the ring owner's record, or nil
}

// clusterView asks every live node for its replica records and reports,
// per partition, its primary (the newest epoch wins) and its owner's
// record. exact is false if some node did not answer.
func (n *Node) clusterView(ctx context.Context) ([]partitionView, bool) {
	addrs := n.apiAddrs()
	type answer struct {
		name string
		res  *freqdv1.PartitionsResponse
	}
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	exact := true
	for name, addr := range addrs {
		if name == n.opts.Name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := peerCall(ctx, n, addr, statusTimeout, freqdv1connect.PeerServiceClient.Partitions, &freqdv1.PartitionsRequest{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				exact = false
				return
			}
			answers = append(answers, answer{name, res})
		}()
	}
	wg.Wait()
	answers = append(answers, answer{n.opts.Name, n.replicaStates()})
	r := n.ring.Load()
	out := make([]partitionView, n.layout.Partitions())
	for _, a := range answers {
		for _, st := range a.res.GetReplicas() {
			id := int(st.GetPartition())
			if id >= len(out) {
				continue
			}
			pv := &out[id]
			if owner, _ := r.Owner(id); owner == a.name {
				pv.ownerRec = st
			}
			if st.GetRole() != rolePrimary.String() {
				continue
			}
			if pv.state == nil || epochFromPB(st.GetAccepted().GetEpoch()).Compare(epochFromPB(pv.state.GetAccepted().GetEpoch())) > 0 {
				pv.primary, pv.state = a.name, st
			}
		}
	}
	return out, exact
}

// problem says why a partition is not writable.
func (n *Node) problem(id int, pv partitionView) string {
	if pv.state != nil {
		if pv.state.GetReason() != "" {
			return pv.state.GetReason()
		}
		return "not writable"
	}
	owner, ok := n.ring.Load().Owner(id)
	switch {
	case !ok:
		return "no active member owns it"
	case pv.ownerRec != nil && pv.ownerRec.GetReason() != "":
		return fmt.Sprintf("no primary; owner %s: %s", owner, pv.ownerRec.GetReason())
	}
	return fmt.Sprintf("no primary; owner %s has not taken it over (yet)", owner)
}

// Status reports members, totals and the partitions that are not writable,
// from every live node's records (exact unless a node did not answer).
func (n *Node) Status(ctx context.Context) *freqdv1.StatusResponse {
	pvs, exact := n.clusterView(ctx)
	r := n.ring.Load()
	out := &freqdv1.StatusResponse{
		Node:              n.opts.Name,
		Total:             n.layout.Size(),
		Partitions:        uint32(n.layout.Partitions()),
		ReplicationFactor: uint32(r.Config().ReplicationFactor),
		Strategy:          string(n.opts.Strategy),
		Exact:             exact,
	}
	for _, rg := range n.layout.Ranges() {
		out.Ranges = append(out.Ranges, &freqdv1.Range{First: rg.First, Last: rg.Last})
	}
	type agg struct {
		parts      uint32
		free, held uint64
	}
	per := make(map[string]*agg)
	for id, pv := range pvs {
		if pv.state == nil || !pv.state.GetWritable() {
			out.Unavailable = append(out.Unavailable, uint32(id))
			out.Problems = append(out.Problems, &freqdv1.PartitionProblem{Partition: uint32(id), Reason: n.problem(id, pv)})
		} else {
			out.Writable++
		}
		if pv.state == nil {
			continue
		}
		a := per[pv.primary]
		if a == nil {
			a = &agg{}
			per[pv.primary] = a
		}
		a.parts++
		a.free += pv.state.GetFree()
		a.held += pv.state.GetHeld()
		out.Free += pv.state.GetFree()
		out.Held += pv.state.GetHeld()
	}
	for _, m := range n.ml.Members() {
		mm := &freqdv1.Member{
			Name: m.Name, ApiAddr: m.Meta.APIAddr, GossipAddr: m.GossipAddr,
			State: m.Meta.State.String(), Health: m.Health.String(),
		}
		if a := per[m.Name]; a != nil {
			mm.Partitions, mm.Free, mm.Held = a.parts, a.free, a.held
		}
		switch err := n.storeErr(); {
		case m.Name == n.opts.Name && err != nil:
			mm.Problem = err.Error() + "; its partitions are handed to other nodes"
		case m.Meta.Degraded:
			mm.Problem = "cannot write its data directory (as it reports by gossip); its partitions are handed to other nodes"
		}
		out.Members = append(out.Members, mm)
	}
	return out
}

// RingInfo reports each partition's range, ring owner and replicas, and
// its configuration: epoch, primary, replicas, whether it is writable.
func (n *Node) RingInfo(ctx context.Context) *freqdv1.RingResponse {
	pvs, _ := n.clusterView(ctx)
	r := n.ring.Load()
	out := &freqdv1.RingResponse{Node: n.opts.Name}
	for _, sp := range n.layout.Spans() {
		owner, _ := r.Owner(sp.ID)
		pv := pvs[sp.ID]
		pi := &freqdv1.PartitionInfo{
			Id: uint32(sp.ID), First: sp.First, Last: sp.Last,
			Owner: owner, Replicas: r.Replicas(sp.ID), Holder: pv.primary,
		}
		if st := pv.state; st != nil {
			cfg := configFromPB(st.GetAccepted())
			pi.Free, pi.Held, pi.Index = st.GetFree(), st.GetHeld(), st.GetIndex()
			pi.Epoch, pi.EpochNode, pi.Config = cfg.Epoch.Term, cfg.Epoch.Node, cfg.memberNames()
			pi.Writable = st.GetWritable()
		}
		if !pi.Writable {
			pi.Reason = n.problem(sp.ID, pv)
		}
		out.Partitions = append(out.Partitions, pi)
	}
	return out
}

// State is the node's lifecycle state as gossiped.
func (n *Node) State() membership.State { return n.ml.LocalMeta().State }

// Active reports whether the node has joined (or created) the cluster and
// owns partitions on the ring.
func (n *Node) Active() bool { return n.isActive() }
