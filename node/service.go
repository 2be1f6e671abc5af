package node

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/transport"
)

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

func (s *service) Replicas(ctx context.Context, _ *connect.Request[freqdv1.ReplicasRequest]) (*connect.Response[freqdv1.ReplicasResponse], error) {
	return connect.NewResponse(s.n.replicaStates()), nil
}

// The handlers of forwarded calls (peerrpc.go). They never forward: a
// partition not led here gets a not-owner answer naming the leader this
// node knows.

func (n *Node) peerAllocate(ctx context.Context, m *freqdv1.PeerAllocateRequest) (*freqdv1.PeerAllocateResponse, error) {
	if err := freqd.ValidateClientID(m.GetClientId()); err != nil {
		return nil, err
	}
	if err := freqd.ValidateRequestID(m.GetRequestId()); err != nil {
		return nil, err
	}
	ttl, err := ttlFromPB(m.GetTtl())
	if err != nil {
		return nil, err
	}
	if m.Frequency != nil {
		id, err := n.lookup(m.GetFrequency())
		if err != nil {
			return nil, err
		}
		s, err := n.leaderShard(id)
		if err != nil {
			return nil, err
		}
		g, err := n.grantFreq(ctx, s, m.GetClientId(), m.GetFrequency(), m.GetRequestId(), ttl)
		if err != nil {
			return nil, err
		}
		return &freqdv1.PeerAllocateResponse{Granted: true, Grant: g}, nil
	}
	if m.GetOnlyPartition() {
		s, err := n.leaderShard(int(m.GetPartition()))
		if err != nil {
			return nil, err
		}
		g, b, v, err := n.grantIn(ctx, s, m.GetClientId(), m.GetRequestId(), ttl, m.GetHome(), m.GetGen())
		switch {
		case err != nil:
			return nil, err
		case b != nil:
			t := uint32(b.part)
			return &freqdv1.PeerAllocateResponse{Noted: &t, NotedGen: b.gen}, nil
		case g != nil:
			return &freqdv1.PeerAllocateResponse{Granted: true, Grant: g}, nil
		}
		return &freqdv1.PeerAllocateResponse{Versions: map[uint32]uint64{uint32(s.id): v}}, nil
	}
	if m.GetRequestId() != "" || m.GetHome() || m.GetGen() != 0 {
		return nil, fmt.Errorf("peer allocate: a request id, home or generation needs only_partition: %w", freqd.ErrInvalidArgument)
	}
	free := make(map[uint32]uint64)
	g, versions, err := n.allocLocal(ctx, m.GetClientId(), ttl, int(m.GetPartition()), m.GetProbe(), free)
	if err != nil {
		return nil, err
	}
	if g != nil {
		return &freqdv1.PeerAllocateResponse{Granted: true, Grant: g}, nil
	}
	return &freqdv1.PeerAllocateResponse{Versions: versions, Free: free}, nil
}

func (n *Node) peerRelease(ctx context.Context, m *freqdv1.PeerReleaseRequest) (*freqdv1.ReleaseResponse, error) {
	if err := freqd.ValidateClientID(m.GetClientId()); err != nil {
		return nil, err
	}
	id, err := n.lookup(m.GetFrequency())
	if err != nil {
		return nil, err
	}
	s, err := n.leaderShard(id)
	if err != nil {
		return nil, err
	}
	return n.applyRelease(ctx, s, m.GetClientId(), m.GetFrequency(), m.GetSinceUnixNano())
}

func (n *Node) peerHolder(ctx context.Context, m *freqdv1.PeerHolderRequest) (*freqdv1.HolderResponse, error) {
	id, err := n.lookup(m.GetFrequency())
	if err != nil {
		return nil, err
	}
	s, err := n.leaderShard(id)
	if err != nil {
		return nil, err
	}
	return n.readHolder(ctx, s, m.GetFrequency())
}

func (n *Node) peerNote(ctx context.Context, m *freqdv1.PeerNoteRequest) (*freqdv1.PeerNoteResponse, error) {
	if err := freqd.ValidateClientID(m.GetClientId()); err != nil {
		return nil, err
	}
	if m.GetRequestId() == "" {
		return nil, fmt.Errorf("peer note: empty request id: %w", freqd.ErrInvalidArgument)
	}
	if err := freqd.ValidateRequestID(m.GetRequestId()); err != nil {
		return nil, fmt.Errorf("peer note: %w", err)
	}
	if int(m.GetTarget()) >= n.layout.Partitions() || m.GetGen() == 0 {
		return nil, fmt.Errorf("peer note: target partition %d (pool of %d) at generation %d: %w", m.GetTarget(), n.layout.Partitions(), m.GetGen(), freqd.ErrInvalidArgument)
	}
	s, err := n.leaderShard(int(m.GetPartition()))
	if err != nil {
		return nil, err
	}
	b, g, err := n.applyNote(ctx, s, m.GetClientId(), m.GetRequestId(), int(m.GetTarget()), m.GetGen())
	if err != nil {
		return nil, err
	}
	if g != nil {
		return &freqdv1.PeerNoteResponse{Grant: g}, nil
	}
	return &freqdv1.PeerNoteResponse{Partition: uint32(b.part), Gen: b.gen}, nil
}

func (n *Node) peerReleaseClient(ctx context.Context, m *freqdv1.PeerReleaseClientRequest) (*freqdv1.ReleaseAllResponse, error) {
	if err := freqd.ValidateClientID(m.GetClientId()); err != nil {
		return nil, err
	}
	s, err := n.leaderShard(int(m.GetPartition()))
	if err != nil {
		return nil, err
	}
	return n.applyReleaseClient(ctx, s, m.GetClientId())
}

// replicaStates reports this node's raft replicas.
func (n *Node) replicaStates() *freqdv1.ReplicasResponse {
	d := n.dir.Load()
	out := &freqdv1.ReplicasResponse{Self: d.label(n.id)}
	for _, s := range n.shards {
		info := n.drv.Info(s.id)
		if !info.Hosted {
			continue
		}
		st := &freqdv1.ReplicaState{
			Partition: uint32(s.id), Role: info.Role, Term: info.Term, Applied: info.Applied,
			Voters: labelList(d, info.Voters), Learners: labelList(d, info.Learners),
		}
		if info.Leader != 0 {
			st.Leader = d.label(info.Leader)
		}
		st.Free, st.Held = s.counts()
		if info.IsLeader {
			if _, err := n.leaderShard(s.id); err != nil {
				st.Reason = err.Error()
			} else {
				st.Writable = true
			}
		}
		out.Replicas = append(out.Replicas, st)
	}
	return out
}

func labelList(d *directory, ids []uint64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = d.label(id)
	}
	return out
}

// otherMembers lists the raft ids of the other alive members.
func (n *Node) otherMembers() []uint64 {
	var out []uint64
	for _, m := range n.ml.Alive() {
		if m.Name != n.opts.Name && m.Meta.Incarnation != 0 && m.Meta.PeerAddr != "" {
			out = append(out, m.Meta.Incarnation)
		}
	}
	return out
}

// statusTimeout bounds the status fan-out to each node.
const statusTimeout = 2 * time.Second

// partitionView is one partition as the status fan-out found it.
type partitionView struct {
	leader   string                // the leader's node name
	state    *freqdv1.ReplicaState // the leader's replica (newest term), or nil
	ownerRec *freqdv1.ReplicaState // the ring owner's replica, or nil
}

// clusterView asks every live node for its replicas and reports, per
// partition, its leader (the newest term wins) and its owner's replica.
// exact is false if some node did not answer.
func (n *Node) clusterView(ctx context.Context) ([]partitionView, bool) {
	type answer struct {
		name string
		res  *freqdv1.ReplicasResponse
	}
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	exact := true
	d := n.dir.Load()
	for _, to := range n.otherMembers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			var res freqdv1.ReplicasResponse
			err := n.call(cctx, to, methodReplicas, &freqdv1.ReplicasRequest{}, &res)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				exact = false
				return
			}
			answers = append(answers, answer{d.name(to), &res})
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
			if st.GetRole() != "leader" {
				continue
			}
			if pv.state == nil || st.GetTerm() > pv.state.GetTerm() {
				pv.leader, pv.state = a.name, st
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
	case pv.ownerRec != nil:
		return fmt.Sprintf("no leader; voters %s (as owner %s sees them, term %d)", strings.Join(pv.ownerRec.GetVoters(), ","), owner, pv.ownerRec.GetTerm())
	}
	if info := n.drv.Info(id); info.Hosted {
		return n.noLeader(id, nil).Error()
	}
	return fmt.Sprintf("no leader; owner %s reports no replica", owner)
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
		a := per[pv.leader]
		if a == nil {
			a = &agg{}
			per[pv.leader] = a
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
			mm.Problem = err.Error() + "; it left the ring: its partitions move to other nodes"
		case m.Meta.Degraded:
			mm.Problem = "cannot write its data directory (as it reports by gossip); it left the ring: its partitions move to other nodes"
		}
		out.Members = append(out.Members, mm)
	}
	return out
}

// RingInfo reports each partition's range, ring owner and replicas, and
// its raft group as its leader sees it: leader, term, voters, learners,
// whether it is writable.
func (n *Node) RingInfo(ctx context.Context) *freqdv1.RingResponse {
	pvs, _ := n.clusterView(ctx)
	r := n.ring.Load()
	out := &freqdv1.RingResponse{Node: n.opts.Name}
	for _, sp := range n.layout.Spans() {
		owner, _ := r.Owner(sp.ID)
		pv := pvs[sp.ID]
		pi := &freqdv1.PartitionInfo{
			Id: uint32(sp.ID), First: sp.First, Last: sp.Last,
			Owner: owner, Replicas: r.Replicas(sp.ID), Holder: pv.leader,
		}
		if st := pv.state; st != nil {
			pi.Free, pi.Held, pi.Index = st.GetFree(), st.GetHeld(), st.GetApplied()
			pi.Term, pi.Learners = st.GetTerm(), st.GetLearners()
			pi.Voters = leaderFirst(st.GetVoters(), st.GetLeader())
			pi.Writable = st.GetWritable()
		}
		if !pi.Writable {
			pi.Reason = n.problem(sp.ID, pv)
		}
		out.Partitions = append(out.Partitions, pi)
	}
	return out
}

// leaderFirst orders voters with the leader first.
func leaderFirst(voters []string, leader string) []string {
	out := make([]string, 0, len(voters))
	if slices.Contains(voters, leader) {
		out = append(out, leader)
	}
	for _, v := range voters {
		if v != leader {
			out = append(out, v)
		}
	}
	return out
}

// State is the node's lifecycle state as gossiped.
func (n *Node) State() membership.State { return n.ml.LocalMeta().State }

// Active reports whether the node has joined (or created) the cluster and
// owns partitions on the ring.
func (n *Node) Active() bool { return n.isActive() }
