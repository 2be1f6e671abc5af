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
	for _, s := range n.heldShards() {
		free, held, _, epoch, ok := s.load()
		if !ok || epoch < v.epoch[s.id] {
			continue
		}
		v.holder[s.id], v.epoch[s.id], v.free[s.id], v.held[s.id] = n.opts.Name, epoch, uint64(free), uint64(held)
	}
	return v
}

// NotOwnerError says a node does not hold a partition. It matches
// freqd.ErrNotOwner; Holder names the node believed to hold it, if known.
type NotOwnerError struct {
	Partition int
	Holder    string
	Node      string
}

func (e *NotOwnerError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("node %s does not hold partition %d", e.Node, e.Partition)
	}
	return fmt.Sprintf("node %s does not hold partition %d (it moved to %s)", e.Node, e.Partition, e.Holder)
}

// Is makes errors.Is(err, freqd.ErrNotOwner) true.
func (e *NotOwnerError) Is(target error) bool { return target == freqd.ErrNotOwner }

// maxRoutes bounds how often a request is routed again after a not-owner
// answer (the partition moved between lookup and arrival) or a holder that
// could not be reached.
const maxRoutes = 6

// onPartition runs a request on the node that holds partition id: locally
// if this node holds it, else by one hop to the holder (the peer never
// forwards further). A not-owner answer means nothing was applied, so the
// request is routed again, with the holder's hint, a few times.
func (n *Node) onPartition(ctx context.Context, id int, local func(*shard) error, remote func(peerClient) error) error {
	hint := ""
	var last error
	unreachable := make(map[string]bool)
	for attempt := 0; attempt < maxRoutes; attempt++ {
		if attempt > 0 {
			n.view.Store(nil)
			if err := sleepCtx(ctx, time.Duration(attempt)*10*time.Millisecond); err != nil {
				return fmt.Errorf("partition %d: %w: %w", id, freqd.ErrUnavailable, err)
			}
		}
		if s := n.localShard(id); s != nil {
			err := local(s)
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
			// We own it by the ring but do not hold it yet: it is on its way.
			if n.waitArrival(ctx, id) {
				continue
			}
			return fmt.Errorf("partition %d (%s) has not reached its owner %s: %w", id, n.spanString(id), target, freqd.ErrUnavailable)
		}
		err := remote(n.peer(v.addr[target]))
		if err == nil {
			return nil
		}
		if errors.Is(err, freqd.ErrNotOwner) {
			hint, last = transport.HolderHint(err), err
			continue
		}
		if transport.NotSent(err) {
			// Not sent, so not applied: gossip may still name a node that
			// has just left. Route again around it.
			unreachable[target] = true
			last = fmt.Errorf("holder %s unreachable: %w", target, err)
			continue
		}
		return err
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
