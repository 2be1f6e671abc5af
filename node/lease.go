package node

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/transport"
)

// Leases (docs/leases.md). A leased frequency carries its TTL in the
// replicated partition state. Only the partition's raft leader keeps time:
// it remembers, per client, when the client last renewed (its own clock),
// and when a client's lease has run for a TTL of one of its frequencies
// without renewal, it proposes a command releasing those frequencies, so
// every replica agrees on the expiry. Renewals are not replicated: a new
// leader starts every lease afresh, for its full TTL, when it adopts the
// partition's leases (after a linearizable read of its state), so a
// failover never shortens a lease (it lengthens it by at most the
// failover gap plus the time since the last renewal).

// leaseTick is how often the leader looks for lapsed leases.
const leaseTick = 50 * time.Millisecond

// maxExpiries bounds the expiry commands one node runs at once.
const maxExpiries = 16

// leaseInfo describes one frequency's lease, for answers.
type leaseInfo struct {
	ttl     time.Duration
	expires time.Time
}

// validTTL checks a lease TTL from a client.
func validTTL(ttl time.Duration) error {
	switch {
	case ttl == 0:
		return nil
	case ttl < partition.MinTTL || ttl > partition.MaxTTL:
		return fmt.Errorf("lease ttl %v is outside %v..%v: %w", ttl, partition.MinTTL, partition.MaxTTL, freqd.ErrInvalidArgument)
	case ttl%time.Millisecond != 0:
		return fmt.Errorf("lease ttl %v is not a whole number of milliseconds: %w", ttl, freqd.ErrInvalidArgument)
	}
	return nil
}

func ttlPB(ttl time.Duration) *durationpb.Duration {
	if ttl == 0 {
		return nil
	}
	return durationpb.New(ttl)
}

// ttlFromPB decodes and checks a TTL from the wire.
func ttlFromPB(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("lease ttl: %w: %w", err, freqd.ErrInvalidArgument)
	}
	ttl := d.AsDuration()
	return ttl, validTTL(ttl)
}

// leaseTable is a leader's clock for its partition's leases: when each
// client holding leased frequencies last renewed, and a queue of when to
// look at each client next. Guarded by the shard's lmu; it is built afresh
// by every new leader (every term).
type leaseTable struct {
	clients map[string]*clientLease
	due     dueQueue
}

// clientLease is one client's lease in one partition.
type clientLease struct {
	renewed time.Time
	// minTTL is at most the smallest TTL among the client's leased
	// frequencies here (exact when last looked at; a grant may lower it,
	// a release leaves it until the next look). It dates answers only.
	minTTL time.Duration
	queued time.Time // the earliest look queued, zero if none
}

// newLeaseTable starts every lease of p at now (a new leader does not
// know when its clients last renewed: it gives them a full TTL). O(held).
func newLeaseTable(p *partition.Partition, now time.Time) *leaseTable {
	t := &leaseTable{clients: make(map[string]*clientLease)}
	if p == nil {
		return t
	}
	p.Leases(func(client string, minTTL time.Duration, _ int) {
		t.clients[client] = &clientLease{renewed: now, minTTL: minTTL}
		t.schedule(client, now.Add(minTTL))
	})
	return t
}

// lease returns client's entry, creating it renewed at now.
func (t *leaseTable) lease(client string, now time.Time) *clientLease {
	c, ok := t.clients[client]
	if !ok {
		c = &clientLease{renewed: now}
		t.clients[client] = c
	}
	return c
}

// schedule queues a look at client's leases at at, unless an earlier one
// is queued.
func (t *leaseTable) schedule(client string, at time.Time) {
	c, ok := t.clients[client]
	if !ok || !c.queued.IsZero() && !c.queued.After(at) {
		return
	}
	c.queued = at
	heap.Push(&t.due, dueEntry{client: client, at: at})
}

// popDue removes and returns the clients whose queued look is due.
func (t *leaseTable) popDue(now time.Time) []string {
	var out []string
	for t.due.Len() > 0 && !t.due[0].at.After(now) {
		e := heap.Pop(&t.due).(dueEntry)
		c, ok := t.clients[e.client]
		if !ok || !c.queued.Equal(e.at) {
			continue // superseded by an earlier look, or forgotten
		}
		c.queued = time.Time{}
		out = append(out, e.client)
	}
	return out
}

// forget drops a client that holds no leased frequency any more.
func (t *leaseTable) forget(client string) { delete(t.clients, client) }

type dueEntry struct {
	client string
	at     time.Time
}

// dueQueue is a min-heap of looks by time.
type dueQueue []dueEntry

func (q dueQueue) Len() int           { return len(q) }
func (q dueQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q dueQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *dueQueue) Push(x any)        { *q = append(*q, x.(dueEntry)) }
func (q *dueQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// granted notes a grant on the leader: a grant renews the client's
// leases here (it is alive), and a leased one is queued for its expiry.
// It returns the granted frequency's lease.
func (n *Node) granted(s *shard, client string, r *shardResult, now time.Time) leaseInfo {
	if r.res.Err != nil {
		return leaseInfo{}
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	t, ttl := s.leases, r.ttl
	if t == nil || ttl == 0 {
		if t != nil {
			t.renew(client, now)
		}
		if ttl > 0 {
			return leaseInfo{ttl: ttl, expires: now.Add(ttl)}
		}
		return leaseInfo{}
	}
	c := t.lease(client, now)
	c.renewed = now
	if c.minTTL == 0 || ttl < c.minTTL {
		c.minTTL = ttl
	}
	t.schedule(client, now.Add(ttl))
	return leaseInfo{ttl: ttl, expires: now.Add(ttl)}
}

// renew restarts client's leases in t, if it has any, and returns its
// entry. O(1).
func (t *leaseTable) renew(client string, now time.Time) *clientLease {
	c, ok := t.clients[client]
	if !ok {
		return nil
	}
	c.renewed = now
	return c
}

// leaseOf describes the lease of a frequency with lease TTL ttl held by
// client, as the leader's clock has it.
func (n *Node) leaseOf(s *shard, client string, ttl time.Duration) leaseInfo {
	if ttl == 0 {
		return leaseInfo{}
	}
	renewed := n.opts.Now()
	s.lmu.Lock()
	if t := s.leases; t != nil {
		if c, ok := t.clients[client]; ok {
			renewed = c.renewed
		}
	}
	s.lmu.Unlock()
	return leaseInfo{ttl: ttl, expires: renewed.Add(ttl)}
}

// leaseLoop keeps the lease clocks of the partitions this node leads:
// every leaseTick it adopts the leases of partitions it has just come to
// lead, drops the tables of those it no longer leads, and expires lapsed
// leases.
func (n *Node) leaseLoop(ctx context.Context) {
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	sem := make(chan struct{}, maxExpiries)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := n.opts.Now()
		for _, s := range n.shards {
			info := n.drv.Info(s.id)
			var due []string
			adopt := false
			s.lmu.Lock()
			switch {
			case !info.IsLeader:
				s.leases = nil
			case s.leases == nil || s.leaseTerm != info.Term:
				s.leases, adopt = nil, true
			default:
				due = s.leases.popDue(now)
			}
			s.lmu.Unlock()
			var jobs []func()
			if adopt {
				jobs = append(jobs, func() { n.adoptLeases(ctx, s, info.Term) })
			}
			for _, client := range due {
				jobs = append(jobs, func() { n.expire(ctx, s, client) })
			}
			for _, job := range jobs {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					job()
				}()
			}
		}
		wg.Wait()
	}
}

// adoptLeases builds a new leader's lease table for s at term: every
// lease in the partition's state, read linearizably (so it includes every
// grant committed by earlier leaders), starts afresh now.
func (n *Node) adoptLeases(ctx context.Context, s *shard, term uint64) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := n.readLinear(cctx, s, func(p *partition.Partition) any { return newLeaseTable(p, n.opts.Now()) })
	if err != nil {
		return // looked at again next tick
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if info := n.drv.Info(s.id); info.IsLeader && info.Term == term && (s.leases == nil || s.leaseTerm != term) {
		s.leases, s.leaseTerm = v.(*leaseTable), term
	}
}

// expire releases client's lapsed leases in s, as a replicated command
// releasing its leases with a TTL up to the time elapsed since its last
// renewal (so the command's effect does not depend on when it applies).
// A failure (no quorum) queues another look.
func (n *Node) expire(ctx context.Context, s *shard, client string) {
	now := n.opts.Now()
	s.lmu.Lock()
	t := s.leases
	if t == nil {
		s.lmu.Unlock()
		return
	}
	s.mu.RLock()
	minTTL, leased := s.p.ClientLease(client)
	s.mu.RUnlock()
	if leased == 0 {
		t.forget(client)
		s.lmu.Unlock()
		return
	}
	c := t.lease(client, now)
	c.minTTL = minTTL
	renewed := c.renewed
	elapsed := now.Sub(renewed).Truncate(time.Millisecond)
	if elapsed < minTTL {
		t.schedule(client, renewed.Add(minTTL))
		s.lmu.Unlock()
		return
	}
	s.lmu.Unlock()
	if _, err := n.leaderShard(s.id); err != nil {
		return // no longer leader, or too few voters: the next leader starts the lease afresh
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := partition.Command{Op: partition.OpReleaseClient, Client: client, TTL: min(elapsed, partition.MaxTTL), At: now.UnixNano()}
	r, err := n.propose(cctx, s, cmd)
	reschedule := func(at time.Time) {
		s.lmu.Lock()
		defer s.lmu.Unlock()
		if t := s.leases; t != nil {
			s.mu.RLock()
			minTTL, leased := s.p.ClientLease(client)
			s.mu.RUnlock()
			if leased == 0 {
				t.forget(client)
				return
			}
			c := t.lease(client, now)
			c.minTTL = minTTL
			t.schedule(client, at)
		}
	}
	switch {
	case err == nil && r.res.Err == nil:
		if r.res.Freq > 0 {
			n.log.Info("leases expired", "partition", s.id, "client", client, "released", r.res.Freq, "after", cmd.TTL)
		}
		reschedule(renewed.Add(minTTL))
	case err == nil:
		n.log.Error("lease expiry did not apply", "partition", s.id, "client", client, "err", r.res.Err)
	case ctx.Err() == nil:
		// Not decided (no quorum, stepped down): look again shortly, if
		// still leader; a new leader starts the lease afresh anyway.
		reschedule(n.opts.Now().Add(leaseTick))
	}
}

// renewLocal renews client's leases in every partition this node leads
// and reports which those are.
func (n *Node) renewLocal(ctx context.Context, client string) *freqdv1.PeerKeepAliveResponse {
	out := &freqdv1.PeerKeepAliveResponse{}
	now := n.opts.Now()
	var earliest time.Time
	for _, s := range n.shards {
		info := n.drv.Info(s.id)
		if !info.IsLeader {
			continue
		}
		s.lmu.Lock()
		adopted := s.leases != nil && s.leaseTerm == info.Term
		s.lmu.Unlock()
		if !adopted {
			// Just became leader: adopt now rather than leave the
			// partition unconfirmed until the lease loop's next tick.
			n.adoptLeases(ctx, s, info.Term)
		}
		s.lmu.Lock()
		t := s.leases
		if t == nil || s.leaseTerm != info.Term {
			// Leader, but its leases are not adopted yet: not covered; the
			// adoption gives every lease a full TTL anyway.
			s.lmu.Unlock()
			continue
		}
		c := t.renew(client, now)
		var minTTL time.Duration
		if c != nil {
			minTTL = c.minTTL
		}
		s.lmu.Unlock()
		if c != nil {
			// The renewal counts only if this node was still the leader
			// after it: a deposed leader that has not noticed yet would
			// confirm a renewal its successor never saw.
			if _, err := n.readLinear(ctx, s, func(*partition.Partition) any { return nil }); err != nil {
				continue
			}
			s.mu.RLock()
			out.Leased += uint64(s.p.LeasedBy(client))
			s.mu.RUnlock()
			out.Partitions++
			if at := now.Add(minTTL); earliest.IsZero() || at.Before(earliest) {
				earliest = at
			}
		}
		out.Led = append(out.Led, uint32(s.id))
	}
	if !earliest.IsZero() {
		out.Expires = timestamppb.New(earliest)
	}
	return out
}

// KeepAlive renews every lease client holds, in every partition: it asks
// every live node, in parallel, to renew in the partitions it leads (one
// call per node, O(1) per partition there). Partitions no answering node
// leads are listed as unconfirmed.
func (n *Node) KeepAlive(ctx context.Context, client string) (*freqdv1.KeepAliveResponse, error) {
	if err := freqd.ValidateClientID(client); err != nil {
		return nil, err
	}
	type answer struct {
		res *freqdv1.PeerKeepAliveResponse
		err error
	}
	others := n.otherMembers()
	answers := make(chan answer, len(others)+1)
	var wg sync.WaitGroup
	for _, to := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, n.opts.RPCTimeout)
			defer cancel()
			var res freqdv1.PeerKeepAliveResponse
			err := n.call(cctx, to, methodKeepAlive, &freqdv1.PeerKeepAliveRequest{ClientId: client}, &res)
			answers <- answer{&res, err}
		}()
	}
	answers <- answer{res: n.renewLocal(ctx, client)}
	wg.Wait()
	close(answers)
	out := &freqdv1.KeepAliveResponse{ClientId: client}
	led := make([]bool, len(n.shards))
	var earliest time.Time
	for a := range answers {
		if a.err != nil {
			continue
		}
		for _, id := range a.res.GetLed() {
			if int(id) < len(led) {
				led[id] = true
			}
		}
		out.Leased += a.res.GetLeased()
		out.Partitions += a.res.GetPartitions()
		if e := a.res.GetExpires(); e != nil && (earliest.IsZero() || e.AsTime().Before(earliest)) {
			earliest = e.AsTime()
		}
	}
	for id, ok := range led {
		if !ok {
			out.Unconfirmed = append(out.Unconfirmed, uint32(id))
		}
	}
	if !earliest.IsZero() {
		out.Expires = timestamppb.New(earliest)
	}
	return out, nil
}

// ReleaseAll frees every frequency client holds, in every partition (on
// each partition's leader, in parallel). It fails, naming them, if some
// partitions could not be reached; it is idempotent, so retrying is safe.
func (n *Node) ReleaseAll(ctx context.Context, client string) (*freqdv1.ReleaseAllResponse, error) {
	if err := freqd.ValidateClientID(client); err != nil {
		return nil, err
	}
	P := n.layout.Partitions()
	results := make([]*freqdv1.ReleaseAllResponse, P)
	errs := make([]error, P)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for id := 0; id < P; id++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[id] = n.onPartition(ctx, id,
				func(s *shard) error {
					var err error
					results[id], err = n.applyReleaseClient(ctx, s, client)
					return err
				},
				func(to uint64) error {
					var res freqdv1.ReleaseAllResponse
					if err := n.call(ctx, to, methodReleaseClient, &freqdv1.PeerReleaseClientRequest{ClientId: client, Partition: uint32(id)}, &res); err != nil {
						return err
					}
					results[id] = &res
					return nil
				})
		}()
	}
	wg.Wait()
	out := &freqdv1.ReleaseAllResponse{}
	var failed []string
	var first error
	for id := 0; id < P; id++ {
		if errs[id] != nil {
			failed = append(failed, fmt.Sprint(id))
			if first == nil {
				first = errs[id]
			}
			continue
		}
		out.Released += results[id].GetReleased()
		out.Frequencies = append(out.Frequencies, results[id].GetFrequencies()...)
	}
	slices.Sort(out.Frequencies)
	if first != nil {
		return out, fmt.Errorf("release all of %q: partitions %v not done (%d frequencies released elsewhere; retry): %w", client, failed, out.Released, first)
	}
	return out, nil
}

// applyReleaseClient frees client's frequencies in s on its leader.
func (n *Node) applyReleaseClient(ctx context.Context, s *shard, client string) (*freqdv1.ReleaseAllResponse, error) {
	r, err := n.propose(ctx, s, partition.Command{Op: partition.OpReleaseClient, Client: client, At: n.opts.Now().UnixNano()})
	if err != nil {
		return nil, err
	}
	if r.res.Err != nil {
		return nil, r.res.Err
	}
	s.lmu.Lock()
	if t := s.leases; t != nil {
		t.forget(client)
	}
	s.lmu.Unlock()
	return &freqdv1.ReleaseAllResponse{Released: uint64(len(r.freqs)), Frequencies: r.freqs}, nil
}

// keepAliveStream serves KeepAliveStream: every message renews.
func (n *Node) keepAliveStream(ctx context.Context, stream *connect.BidiStream[freqdv1.KeepAliveRequest, freqdv1.KeepAliveResponse]) error {
	for {
		req, err := stream.Receive()
		if err != nil {
			if errors.Is(err, context.Canceled) || connect.CodeOf(err) == connect.CodeCanceled || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		res, err := n.KeepAlive(ctx, req.GetClientId())
		if err != nil {
			return transport.ToWire(err)
		}
		if err := stream.Send(res); err != nil {
			return err
		}
	}
}
