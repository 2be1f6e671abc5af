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
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/partition"
	"github.com/freqd/freqd/transport"
)

// Leases (docs/leases.md). A leased frequency carries its TTL in the
// replicated partition state. Only the partition's primary keeps time: it
// remembers, per client, when the client last renewed (its own clock), and
// when a client's lease has run for a TTL of one of its frequencies
// without renewal, it replicates a command releasing those frequencies, so
// every replica agrees on the expiry. Renewals are not replicated: a new
// primary starts every lease afresh, for its full TTL, when it takes over,
// so a failover never shortens a lease (it lengthens it by at most the
// failover gap plus the time since the last renewal).

// leaseTick is how often the primary looks for lapsed leases.
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

// leaseTable is a primary's clock for its partition's leases: when each
// client holding leased frequencies last renewed, and a queue of when to
// look at each client next. Guarded by the record's mu; it lives in the
// primary state, so it is built afresh by every new primary.
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

// newLeaseTable starts every lease of p at now (a new primary does not
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

// leasesLocked returns r's lease table if this node is r's primary.
// Caller holds r.mu.
func leasesLocked(r *record) *leaseTable {
	if r.prim == nil || r.prim.stopped {
		return nil
	}
	return r.prim.leases
}

// grantedLocked notes a grant on the primary: a grant renews the client's
// leases here (it is alive), and a leased one is queued for its expiry.
// It returns the granted frequency's lease. Caller holds r.mu (inside
// exec).
func (n *Node) grantedLocked(r *record, p *partition.Partition, client string, res partition.Result, now time.Time) leaseInfo {
	if res.Err != nil {
		return leaseInfo{}
	}
	t := leasesLocked(r)
	ttl := p.TTL(res.Freq)
	if t == nil || ttl == 0 {
		if t != nil {
			t.renew(client, now)
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

// leaseOfLocked describes the lease of f, held by client, on the primary.
func (n *Node) leaseOfLocked(r *record, p *partition.Partition, client string, f uint32, now time.Time) leaseInfo {
	ttl := p.TTL(f)
	if ttl == 0 {
		return leaseInfo{}
	}
	renewed := now
	if t := leasesLocked(r); t != nil {
		if c, ok := t.clients[client]; ok {
			renewed = c.renewed
		}
	}
	return leaseInfo{ttl: ttl, expires: renewed.Add(ttl)}
}

// leaseLoop looks for lapsed leases in the partitions this node leads,
// every leaseTick, and expires them.
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
		for _, r := range n.recs {
			r.mu.Lock()
			var due []string
			if lt := leasesLocked(r); lt != nil && r.role == rolePrimary {
				due = lt.popDue(now)
			}
			r.mu.Unlock()
			for _, client := range due {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					n.expire(ctx, r, client)
				}()
			}
		}
		wg.Wait()
	}
}

// expire releases client's lapsed leases in r, as a replicated command,
// if they are still lapsed once the command is ordered. A failure (no
// quorum) queues another look.
func (n *Node) expire(ctx context.Context, r *record, client string) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var res partition.Result
	var cmd partition.Command
	err := n.exec(cctx, r, func(p *partition.Partition) *partition.Command {
		t := leasesLocked(r)
		if t == nil {
			return nil
		}
		now := n.opts.Now()
		minTTL, leased := p.ClientLease(client)
		if leased == 0 {
			t.forget(client)
			return nil
		}
		c := t.lease(client, now)
		c.minTTL = minTTL
		renewed := c.renewed
		elapsed := now.Sub(renewed).Truncate(time.Millisecond)
		if elapsed < minTTL {
			t.schedule(client, renewed.Add(minTTL))
			return nil
		}
		cmd = partition.Command{Op: partition.OpReleaseClient, Client: client, TTL: min(elapsed, partition.MaxTTL), At: now.UnixNano()}
		out := applyLogged(p, &res, cmd)
		if minTTL, leased = p.ClientLease(client); leased > 0 {
			c.minTTL = minTTL
			t.schedule(client, renewed.Add(minTTL))
		} else {
			t.forget(client)
		}
		return out
	})
	switch {
	case err == nil && res.Err == nil && res.Freq > 0:
		n.log.Info("leases expired", "partition", r.id, "client", client, "released", res.Freq, "after", cmd.TTL)
	case err == nil && res.Err != nil:
		n.log.Error("lease expiry did not apply", "partition", r.id, "client", client, "err", res.Err)
	case err != nil && ctx.Err() == nil:
		// Not decided (no quorum, stepped down): look again shortly, if
		// still primary; a new primary starts the lease afresh anyway.
		r.mu.Lock()
		if t := leasesLocked(r); t != nil {
			t.schedule(client, n.opts.Now().Add(leaseTick))
		}
		r.mu.Unlock()
	}
}

// renewLocal renews client's leases in every partition this node leads
// and reports which those are.
func (n *Node) renewLocal(client string) *freqdv1.PeerKeepAliveResponse {
	out := &freqdv1.PeerKeepAliveResponse{}
	now := n.opts.Now()
	var earliest time.Time
	for _, r := range n.recs {
		r.mu.Lock()
		t := leasesLocked(r)
		if t == nil || r.role != rolePrimary || r.p == nil {
			r.mu.Unlock()
			continue
		}
		out.Led = append(out.Led, uint32(r.id))
		if c := t.renew(client, now); c != nil {
			out.Leased += uint64(r.p.LeasedBy(client))
			out.Partitions++
			if at := now.Add(c.minTTL); earliest.IsZero() || at.Before(earliest) {
				earliest = at
			}
		}
		r.mu.Unlock()
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
	addrs := n.apiAddrs()
	answers := make(chan answer, len(addrs)+1)
	var wg sync.WaitGroup
	for name, addr := range addrs {
		if name == n.opts.Name || addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := peerCall(ctx, n, addr, n.opts.RPCTimeout, freqdv1connect.PeerServiceClient.PeerKeepAlive,
				&freqdv1.PeerKeepAliveRequest{ClientId: client, From: n.opts.Name})
			answers <- answer{res, err}
		}()
	}
	answers <- answer{res: n.renewLocal(client)}
	wg.Wait()
	close(answers)
	out := &freqdv1.KeepAliveResponse{ClientId: client}
	led := make([]bool, len(n.recs))
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
// each partition's primary, in parallel). It fails, naming them, if some
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
				func(r *record) error {
					var err error
					results[id], err = n.applyReleaseClient(ctx, r, client)
					return err
				},
				func(pc peerClient) error {
					res, err := pc.peer.PeerReleaseClient(ctx, connect.NewRequest(&freqdv1.PeerReleaseClientRequest{ClientId: client, Partition: uint32(id), From: n.opts.Name}))
					if err != nil {
						return transport.FromWire(err)
					}
					results[id] = res.Msg
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

// applyReleaseClient frees client's frequencies in r on this primary.
func (n *Node) applyReleaseClient(ctx context.Context, r *record, client string) (*freqdv1.ReleaseAllResponse, error) {
	var res partition.Result
	var freqs []uint32
	err := n.exec(ctx, r, func(p *partition.Partition) *partition.Command {
		freqs = p.HeldBy(client)
		if len(freqs) == 0 {
			return nil
		}
		cmd := applyLogged(p, &res, partition.Command{Op: partition.OpReleaseClient, Client: client, At: n.opts.Now().UnixNano()})
		if t := leasesLocked(r); t != nil {
			t.forget(client)
		}
		return cmd
	})
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return &freqdv1.ReleaseAllResponse{Released: uint64(len(freqs)), Frequencies: freqs}, nil
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
