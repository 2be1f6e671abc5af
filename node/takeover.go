package node

import (
	"context"
	"fmt"
	"slices"
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

// maxTakeovers bounds how many takeovers one node runs at once.
const maxTakeovers = 32

// reconcileLoop starts a takeover (docs/replication.md, T1) for every
// partition this node owns on the ring but does not lead in the ring's
// configuration, on every ring change and every RebalanceInterval.
func (n *Node) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(n.opts.RebalanceInterval)
	defer t.Stop()
	sem := make(chan struct{}, maxTakeovers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		case <-t.C:
		}
		if !n.isActive() {
			continue
		}
		for _, id := range n.toTakeOver() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				n.runTakeover(ctx, id)
			}()
		}
	}
}

// desired is the ring's replica list for id as replica ids, or nil if some
// replica's incarnation is not known yet.
func (n *Node) desired(id int, members map[string]membership.Member) []ReplicaID {
	names := n.ring.Load().Replicas(id)
	out := make([]ReplicaID, 0, len(names))
	for _, name := range names {
		if name == n.opts.Name {
			out = append(out, n.self)
			continue
		}
		m, ok := members[name]
		if !ok || m.Meta.Incarnation == 0 {
			return nil
		}
		out = append(out, ReplicaID{Name: name, Incarnation: m.Meta.Incarnation})
	}
	return out
}

// aliveMembers maps alive members (ourselves included) by name.
func (n *Node) aliveMembers() map[string]membership.Member {
	out := make(map[string]membership.Member)
	for _, m := range n.ml.Alive() {
		out[m.Name] = m
	}
	return out
}

// toTakeOver lists the partitions that need a takeover by this node now,
// marking them as running.
func (n *Node) toTakeOver() []int {
	if n.leaving.Load() {
		return nil
	}
	r := n.ring.Load()
	members := n.aliveMembers()
	v := n.currentView()
	now := time.Now()
	var out []int
	for id, rec := range n.recs {
		if owner, ok := r.Owner(id); !ok || owner != n.opts.Name {
			continue
		}
		want := n.desired(id, members)
		if want == nil {
			continue
		}
		rec.mu.Lock()
		done := rec.role == rolePrimary && rec.prim != nil && rec.prim.cfg.sameMembers(want) &&
			// Gossip naming another primary with a newer epoch means we
			// were deposed (while cut off, say) without hearing of it.
			!(v.holder[id] != n.opts.Name && v.epoch[id] > rec.prim.cfg.Epoch.Term)
		rec.mu.Unlock()
		if done {
			continue
		}
		n.mu.Lock()
		busy := n.running[id] || now.Before(n.nextTry[id])
		if !busy {
			n.running[id] = true
		}
		n.mu.Unlock()
		if !busy {
			out = append(out, id)
		}
	}
	return out
}

// runTakeover runs one takeover attempt and schedules a retry on failure.
func (n *Node) runTakeover(ctx context.Context, id int) {
	r := n.recs[id]
	start := time.Now()
	err := n.takeover(ctx, r)
	n.mu.Lock()
	delete(n.running, id)
	failures := 0
	if err != nil {
		n.failures[id]++
		failures = n.failures[id]
		k := min(n.failures[id], 5)
		n.nextTry[id] = time.Now().Add(n.jitter(time.Duration(25<<k) * time.Millisecond))
	} else {
		n.failures[id] = 0
		delete(n.nextTry, id)
	}
	n.mu.Unlock()
	r.mu.Lock()
	changed := false
	if err != nil {
		msg := err.Error()
		changed = msg != r.reason
		r.reason = msg
	} else {
		r.reason = ""
	}
	r.mu.Unlock()
	switch {
	case err == nil:
		n.log.Info("took over partition", "partition", id, "took", time.Since(start).Round(time.Microsecond))
		n.view.Store(nil)
		n.signalChange()
	case ctx.Err() != nil:
	case changed && failures < 3:
		// Competing takeovers while gossip converges are normal.
		n.log.Info("takeover failed; will retry", "partition", id, "err", err)
	case changed:
		n.log.Warn("takeover failed; will retry", "partition", id, "failures", failures, "err", err)
	}
}

// prepared is one replica's answer to Prepare.
type prepared struct {
	id   ReplicaID
	addr string // "" for ourselves
	res  *freqdv1.PrepareResponse
}

// takeover moves partition r to the ring's configuration with this node as
// primary (docs/replication.md, T2-T6).
func (n *Node) takeover(ctx context.Context, r *record) error {
	id := r.id
	members := n.aliveMembers()
	want := n.desired(id, members)
	if len(want) == 0 || want[0] != n.self {
		return fmt.Errorf("partition %d: this node is no longer its ring owner", id)
	}
	r.mu.Lock()
	term := max(r.promised.Term, n.maxTerm.Load()) + 1
	r.mu.Unlock()
	e := Epoch{Term: term, Node: n.opts.Name, Incarnation: n.self.Incarnation}
	n.seeTerm(term) // a retry after a failure uses a new epoch

	answers := n.prepareOthers(ctx, id, e, members)
	// Promise locally only if the others' answers leave a quorum possible:
	// a node cut off in a minority then fails here without raising its own
	// promise, so it does not come back from the cut with an inflated epoch
	// that forces healthy primaries to step down (a pre-vote, in effect).
	if _, err := n.judge(id, e, append(slices.Clone(answers), prepared{id: n.self, res: n.peek(r, e)})); err != nil {
		return err
	}
	mine, err := n.prepare(ctx, r, e)
	if err != nil {
		return fmt.Errorf("partition %d: promise %v here: %w", id, e, err)
	}
	answers = append(answers, prepared{id: n.self, res: mine})
	cstar, err := n.judge(id, e, answers)
	if err != nil {
		return err
	}

	// T4: the most recent state among all that promised.
	var best *prepared
	var bestPos position
	for i := range answers {
		a := &answers[i]
		if !a.res.GetPromised() || !a.res.GetHasState() {
			continue
		}
		pos := position{epochFromPB(a.res.GetStateEpoch()), a.res.GetIndex()}
		if best == nil || pos.compare(bestPos) > 0 || pos.compare(bestPos) == 0 && a.addr == "" {
			best, bestPos = a, pos
		}
	}
	if best == nil {
		return fmt.Errorf("partition %d (%s): the replicas of %v that answered hold no state: %w", id, n.spanString(id), cstar, freqd.ErrUnavailable)
	}
	var snap []byte
	var p *partition.Partition
	if best.addr != "" {
		res, err := peerCall(ctx, n, best.addr, n.opts.RPCTimeout, freqdv1connect.PeerServiceClient.Fetch,
			&freqdv1.FetchRequest{Partition: uint32(id), Epoch: epochToPB(e), From: n.opts.Name})
		if err != nil {
			return fmt.Errorf("partition %d: fetch the newest state from %v: %w", id, best.id, err)
		}
		if (position{epochFromPB(res.GetStateEpoch()), res.GetIndex()}) != bestPos {
			return fmt.Errorf("partition %d: %v's state moved from %v/%d to %v/%d during the takeover", id, best.id, bestPos.epoch, bestPos.index, epochFromPB(res.GetStateEpoch()), res.GetIndex())
		}
		snap = res.GetSnapshot()
		if p, err = n.restoreFor(id, snap); err != nil {
			return fmt.Errorf("partition %d: state from %v: %w", id, best.id, err)
		}
	}

	// T5: install on the new configuration, ourselves first.
	cfg := Config{Epoch: e, Members: want}
	res, err := n.install(ctx, r, cfg, p, bestPos.epoch, bestPos.index, false)
	if err != nil {
		return fmt.Errorf("partition %d: install here: %w", id, err)
	}
	if res.GetStale() {
		return fmt.Errorf("partition %d: epoch %v overtaken by %v", id, e, epochFromPB(res.GetHighest()))
	}
	if snap == nil {
		r.mu.Lock()
		if r.p != nil {
			snap, err = r.p.Snapshot()
		}
		r.mu.Unlock()
		if err != nil {
			return fmt.Errorf("partition %d: snapshot: %w", id, err)
		}
	}
	installed := n.installOthers(ctx, id, cfg, members, answers, bestPos, snap)
	if len(installed) < cfg.Majority() {
		return fmt.Errorf("partition %d (%s): state installed on %d of the %d replicas needed of %v: %w", id, n.spanString(id), len(installed), cfg.Majority(), cfg, freqd.ErrUnavailable)
	}

	// T6: commit, acknowledged by a majority of the last configuration.
	if err := n.commitAll(ctx, r, cfg, cstar, members); err != nil {
		return err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.promised != e || r.stateEpoch != e {
		return fmt.Errorf("partition %d: epoch %v overtaken by %v before serving", id, e, r.promised)
	}
	n.becomePrimaryLocked(r, cfg)
	for _, f := range r.prim.followers {
		if slices.Contains(installed, f.id) {
			f.needInstall, f.match = false, r.index
		}
	}
	return nil
}

// prepareOthers sends Prepare(e) for partition id to every other live node
// of our pool (T2): first to the primary gossip names, which steps down
// gracefully, then to the rest at once. It returns the answers it got.
func (n *Node) prepareOthers(ctx context.Context, id int, e Epoch, members map[string]membership.Member) []prepared {
	var answers []prepared
	peers := make(map[string]string) // name -> API address
	for name, m := range members {
		if name != n.opts.Name && m.Meta.APIAddr != "" && m.Meta.Fingerprint == n.layout.Fingerprint() {
			peers[name] = m.Meta.APIAddr
		}
	}
	current := n.currentView().holder[id]
	if addr, ok := peers[current]; ok {
		if a, err := n.callPrepare(ctx, id, e, addr); err == nil {
			answers = append(answers, a)
		}
		delete(peers, current)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a, err := n.callPrepare(ctx, id, e, addr); err == nil {
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return answers
}

// installOthers installs the state at pos on cfg's members other than us
// (T5), sending snap only to those that do not hold exactly pos already.
// It returns the members that hold it now, ourselves first.
func (n *Node) installOthers(ctx context.Context, id int, cfg Config, members map[string]membership.Member, answers []prepared, pos position, snap []byte) []ReplicaID {
	var mu sync.Mutex
	var wg sync.WaitGroup
	installed := []ReplicaID{n.self}
	for _, m := range cfg.Members[1:] {
		req := &freqdv1.InstallRequest{
			Partition: uint32(id), Config: configToPB(cfg), To: replicaToPB(m),
			Snapshot: snap, Index: pos.index, BaseEpoch: epochToPB(pos.epoch), From: n.opts.Name,
		}
		for _, a := range answers {
			if a.id == m && a.res.GetPromised() && a.res.GetHasState() && (position{epochFromPB(a.res.GetStateEpoch()), a.res.GetIndex()}) == pos {
				req.Snapshot = nil
			}
		}
		addr := members[m.Name].Meta.APIAddr
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := peerCall(ctx, n, addr, n.opts.RPCTimeout, freqdv1connect.PeerServiceClient.Install, req)
			if err != nil || res.GetStale() {
				return
			}
			mu.Lock()
			installed = append(installed, m)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return installed
}

// commitAll tells every live node that cfg is committed (T6) and checks
// that a majority of cstar, the configuration it replaces, recorded it.
func (n *Node) commitAll(ctx context.Context, r *record, cfg, cstar Config, members map[string]membership.Member) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	acks := 0
	var overtaken Epoch
	req := &freqdv1.CommitRequest{Partition: uint32(r.id), Config: configToPB(cfg), From: n.opts.Name}
	note := func(res *freqdv1.CommitResponse) {
		mu.Lock()
		defer mu.Unlock()
		if !res.GetOk() {
			if h := epochFromPB(res.GetHighest()); h.Compare(overtaken) > 0 {
				overtaken = h
			}
			return
		}
		if cstar.Has(replicaFromPB(res.GetSelf())) {
			acks++
		}
	}
	for name, m := range members {
		if name == n.opts.Name || m.Meta.APIAddr == "" {
			continue
		}
		addr := m.Meta.APIAddr
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, err := peerCall(ctx, n, addr, n.opts.RPCTimeout, freqdv1connect.PeerServiceClient.Commit, req); err == nil {
				note(res)
			}
		}()
	}
	mine, err := n.commit(ctx, r, cfg)
	if err == nil {
		note(mine)
	}
	wg.Wait()
	if err != nil {
		return fmt.Errorf("partition %d: commit %v here: %w", r.id, cfg.Epoch, err)
	}
	if !overtaken.IsZero() {
		return fmt.Errorf("partition %d: epoch %v overtaken by %v during commit", r.id, cfg.Epoch, overtaken)
	}
	if acks < cstar.Majority() {
		return fmt.Errorf("partition %d (%s): commit of %v acknowledged by %d of the %d replicas needed of %v: %w", r.id, n.spanString(r.id), cfg, acks, cstar.Majority(), cstar, freqd.ErrUnavailable)
	}
	return nil
}

// judge applies rule T3 to the answers of a Prepare(e): it returns the
// newest committed configuration, or why the takeover cannot go on.
func (n *Node) judge(id int, e Epoch, answers []prepared) (Config, error) {
	var cstar Config
	var refusal Epoch
	for _, a := range answers {
		h := epochFromPB(a.res.GetHighest())
		n.seeTerm(h.Term)
		if !a.res.GetPromised() {
			if h.Compare(refusal) > 0 {
				refusal = h
			}
			continue
		}
		if c := configFromPB(a.res.GetCommitted()); c.Epoch.Compare(cstar.Epoch) > 0 {
			cstar = c
		}
	}
	if !refusal.IsZero() {
		return Config{}, fmt.Errorf("partition %d: epoch %v refused: a replica promised %v", id, e, refusal)
	}
	if cstar.IsZero() {
		return Config{}, fmt.Errorf("partition %d (%s): no live replica knows a committed configuration, so its state cannot be found: %w", id, n.spanString(id), freqd.ErrUnavailable)
	}
	var quorum []ReplicaID
	for _, a := range answers {
		// A lost replica's promises are unknown, so its answer does not
		// count (docs/storage.md).
		if a.res.GetPromised() && !a.res.GetLost() && cstar.Has(a.id) {
			quorum = append(quorum, a.id)
		}
	}
	if len(quorum) < cstar.Majority() {
		var missing []string
		for _, m := range cstar.Members {
			if !slices.Contains(quorum, m) {
				missing = append(missing, m.String())
			}
		}
		return Config{}, fmt.Errorf("partition %d (%s): only %d of the %d replicas needed of its last configuration (%v) answered; missing %v: %w",
			id, n.spanString(id), len(quorum), cstar.Majority(), cstar, missing, freqd.ErrUnavailable)
	}
	return cstar, nil
}

// callPrepare sends Prepare(e) for partition id to the node at addr. A
// stepping-down primary answers only after its in-flight commands commit,
// so the call may take stepDownWait longer than others.
func (n *Node) callPrepare(ctx context.Context, id int, e Epoch, addr string) (prepared, error) {
	res, err := peerCall(ctx, n, addr, n.opts.RPCTimeout+stepDownWait, freqdv1connect.PeerServiceClient.Prepare,
		&freqdv1.PrepareRequest{Partition: uint32(id), Epoch: epochToPB(e), From: n.opts.Name})
	if err != nil {
		return prepared{}, err
	}
	return prepared{id: replicaFromPB(res.GetSelf()), addr: addr, res: res}, nil
}

// peerCall calls one PeerService method on the node at addr within d and
// returns its answer, with errors decoded (transport.FromWire).
func peerCall[Req, Res any](ctx context.Context, n *Node, addr string, d time.Duration,
	method func(freqdv1connect.PeerServiceClient, context.Context, *connect.Request[Req]) (*connect.Response[Res], error), req *Req) (*Res, error) {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	out, err := method(n.peer(addr).peer, cctx, connect.NewRequest(req))
	if err != nil {
		return nil, transport.FromWire(err)
	}
	return out.Msg, nil
}

// seeTerm remembers the highest epoch term seen, so the next takeover
// starts above it.
func (n *Node) seeTerm(t uint64) {
	for {
		cur := n.maxTerm.Load()
		if t <= cur || n.maxTerm.CompareAndSwap(cur, t) {
			return
		}
	}
}
