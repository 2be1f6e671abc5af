package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/transport"
)

// viewTTL bounds how stale the routing view may be.
const viewTTL = 100 * time.Millisecond

// routeView is where each partition lives and how full it is, as gossip
// reports it (eventually consistent), overlaid with this node's exact local
// knowledge. Immutable once built.
type routeView struct {
	built  time.Time
	holder []string // partition -> holder name, "" if no live node reports it
	free   []uint64
	held   []uint64
	epoch  []uint64
	addr   map[string]string // alive member -> API address
}

// currentView returns a routing view no older than viewTTL.
func (n *Node) currentView() *routeView {
	if v := n.view.Load(); v != nil && time.Since(v.built) < viewTTL {
		return v
	}
	v := n.buildView()
	n.view.Store(v)
	return v
}

func (n *Node) buildView() *routeView {
	P := n.layout.Partitions()
	v := &routeView{
		built:  time.Now(),
		holder: make([]string, P),
		free:   make([]uint64, P),
		held:   make([]uint64, P),
		epoch:  make([]uint64, P),
		addr:   n.apiAddrs(),
	}
	for name, l := range n.ml.Loads() {
		if _, alive := v.addr[name]; !alive || name == n.opts.Name {
			continue
		}
		for _, pl := range l.Partitions {
			id := int(pl.ID)
			if id >= P || pl.Epoch < v.epoch[id] {
				continue
			}
			v.holder[id], v.epoch[id], v.free[id], v.held[id] = name, pl.Epoch, pl.Free, pl.Held
		}
	}
	for _, r := range n.recs {
		r.mu.Lock()
		if r.role == rolePrimary && r.p != nil && r.prim.cfg.Epoch.Term >= v.epoch[r.id] {
			v.holder[r.id], v.epoch[r.id], v.free[r.id], v.held[r.id] = n.opts.Name, r.prim.cfg.Epoch.Term, uint64(r.p.Free()), uint64(r.p.Held())
		}
		r.mu.Unlock()
	}
	return v
}

// NotOwnerError says a node is not a partition's primary, so it applied
// nothing. It matches freqd.ErrNotOwner; Holder names the node believed to
// be the primary, if known.
type NotOwnerError struct {
	Partition int
	Holder    string
	Node      string
}

func (e *NotOwnerError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("node %s is not the primary of partition %d", e.Node, e.Partition)
	}
	return fmt.Sprintf("node %s is not the primary of partition %d (try %s)", e.Node, e.Partition, e.Holder)
}

// Is makes errors.Is(err, freqd.ErrNotOwner) true.
func (e *NotOwnerError) Is(target error) bool { return target == freqd.ErrNotOwner }

// maxRoutes bounds how often a request is routed again after a not-owner
// answer (the partition moved between lookup and arrival) or a holder that
// could not be reached.
const maxRoutes = 8

// onPartition runs a request on partition id's primary: locally if this
// node is the primary, else by one hop (the peer never forwards further).
// A not-owner answer means nothing was applied, so the request is routed
// again, with the answer's hint, a few times.
func (n *Node) onPartition(ctx context.Context, id int, local func(*record) error, remote func(peerClient) error) error {
	hint := ""
	var last error
	unreachable := make(map[string]bool)
	for attempt := 0; attempt < maxRoutes; attempt++ {
		if attempt > 0 {
			n.view.Store(nil)
			if err := sleepCtx(ctx, time.Duration(attempt)*20*time.Millisecond); err != nil {
				return fmt.Errorf("partition %d: %w: %w", id, freqd.ErrUnavailable, err)
			}
		}
		if r := n.recs[id]; r.isPrimary() {
			err := local(r)
			var no *NotOwnerError
			if !errors.As(err, &no) {
				return err
			}
			hint, last = no.Holder, err
			continue
		}
		target := hint
		hint = ""
		v := n.currentView()
		if target == "" || v.addr[target] == "" || unreachable[target] {
			target = n.targetFor(v, id, unreachable)
		}
		if target == "" {
			if last != nil {
				return fmt.Errorf("partition %d (%s) has no reachable holder (%v): %w", id, n.spanString(id), last, freqd.ErrUnavailable)
			}
			return fmt.Errorf("partition %d (%s) has no live holder: %w", id, n.spanString(id), freqd.ErrUnavailable)
		}
		if target == n.opts.Name {
			// We own it by the ring but do not lead it yet: a takeover is
			// under way (or failing, for the reason it records).
			if n.waitPrimary(ctx, n.recs[id]) {
				continue
			}
			return n.notLeading(id)
		}
		err := remote(n.peer(v.addr[target]))
		switch {
		case err == nil:
			return nil
		case errors.Is(err, freqd.ErrNotOwner):
			hint, last = transport.HolderHint(err), err
		case transport.NotSent(err):
			// Not sent, so not applied: gossip may still name a node that
			// has just died or left. Route again around it.
			unreachable[target] = true
			last = fmt.Errorf("primary %s unreachable: %w", target, err)
		case transport.Unknown(err):
			return fmt.Errorf("partition %d (%s): primary %s failed during the call: %w: %w", id, n.spanString(id), target, freqd.ErrOutcomeUnknown, err)
		case errors.Is(err, freqd.ErrUnavailable):
			// Answered and not applied: a takeover may be under way.
			last = err
		default:
			return err
		}
	}
	return fmt.Errorf("partition %d (%s): holder kept moving, last answer: %v: %w", id, n.spanString(id), last, freqd.ErrUnavailable)
}

// targetFor picks the node to send a partition's request to: the holder
// gossip reports, else the ring owner.
func (n *Node) targetFor(v *routeView, id int, avoid map[string]bool) string {
	if h := v.holder[id]; h != "" && !avoid[h] {
		return h
	}
	if o, ok := n.ring.Load().Owner(id); ok && !avoid[o] {
		if _, alive := v.addr[o]; alive {
			return o
		}
	}
	return ""
}

func (n *Node) spanString(id int) string {
	sp, _ := n.layout.Span(id)
	if sp.First == sp.Last {
		return fmt.Sprint(sp.First)
	}
	return fmt.Sprintf("%d-%d", sp.First, sp.Last)
}

// candidates orders every partition for an allocation of any frequency:
// first those believed to have free space, in the strategy's order, then
// the rest (gossip may be stale, and "no free frequency" must be proven).
func (n *Node) candidates(v *routeView) []int {
	P := n.layout.Partitions()
	var withFree, rest []int
	for id := 0; id < P; id++ {
		if v.free[id] > 0 {
			withFree = append(withFree, id)
		} else {
			rest = append(rest, id)
		}
	}
	switch n.opts.Strategy {
	case RoundRobin:
		if len(withFree) > 0 {
			k := int(n.rr.Add(1) % uint64(len(withFree)))
			withFree = append(withFree[k:], withFree[:k]...)
		}
	default: // MostFree, and LocalFirst after its local attempt
		n.rndMu.Lock()
		n.rnd.Shuffle(len(withFree), func(i, j int) { withFree[i], withFree[j] = withFree[j], withFree[i] })
		n.rndMu.Unlock()
		slices.SortStableFunc(withFree, func(a, b int) int { return cmp.Compare(v.free[b], v.free[a]) })
		if n.opts.Strategy == LocalFirst {
			slices.SortStableFunc(withFree, func(a, b int) int {
				return cmp.Compare(boolInt(v.holder[b] == n.opts.Name), boolInt(v.holder[a] == n.opts.Name))
			})
		}
	}
	return append(withFree, rest...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
