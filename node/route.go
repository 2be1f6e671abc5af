package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/transport"
)

// viewTTL bounds how stale the routing view may be.
const viewTTL = 100 * time.Millisecond

// routeView is where each partition's leader is and how full it is, as
// gossip reports it (eventually consistent), overlaid with what this
// node's own replicas know. Immutable once built.
type routeView struct {
	built  time.Time
	holder []string // partition -> leader name, "" if unknown
	free   []uint64
	held   []uint64
	term   []uint64
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
		term:   make([]uint64, P),
		addr:   n.apiAddrs(),
	}
	for name, l := range n.ml.Loads() {
		if _, alive := v.addr[name]; !alive || name == n.opts.Name {
			continue
		}
		for _, pl := range l.Partitions {
			id := int(pl.ID)
			if id >= P || pl.Term < v.term[id] {
				continue
			}
			v.holder[id], v.term[id], v.free[id], v.held[id] = name, pl.Term, pl.Free, pl.Held
		}
	}
	d := n.dir.Load()
	for id, s := range n.shards {
		info := n.drv.Info(id)
		if !info.Hosted || info.Leader == 0 || info.Term < v.term[id] {
			continue
		}
		if info.IsLeader {
			v.holder[id], v.term[id] = n.opts.Name, info.Term
			v.free[id], v.held[id] = s.counts()
			continue
		}
		if e, ok := d.byID[info.Leader]; ok {
			if _, alive := v.addr[e.name]; alive {
				v.holder[id], v.term[id] = e.name, info.Term
			}
		}
	}
	return v
}

// NotOwnerError says a node does not lead a partition, so it applied
// nothing. It matches freqd.ErrNotOwner; Holder names the node believed to
// lead it, if known.
type NotOwnerError struct {
	Partition int
	Holder    string
	Node      string
}

func (e *NotOwnerError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("node %s does not lead partition %d", e.Node, e.Partition)
	}
	return fmt.Sprintf("node %s does not lead partition %d (try %s)", e.Node, e.Partition, e.Holder)
}

// Is makes errors.Is(err, freqd.ErrNotOwner) true.
func (e *NotOwnerError) Is(target error) bool { return target == freqd.ErrNotOwner }

// maxRoutes bounds how often a request is routed again after a not-owner
// answer (leadership moved between lookup and arrival), a leader that
// could not be reached, or a group not ready to commit.
const maxRoutes = 10

// onPartition runs a request on partition id's leader: locally if this
// node leads it, else by one hop (the peer never forwards further). A
// not-owner answer means nothing was applied, so the request is routed
// again, with the answer's hint, a few times; a partition with no leader
// yet is waited for up to ArrivalWait.
func (n *Node) onPartition(ctx context.Context, id int, local func(*shard) error, remote func(to uint64) error) error {
	hint := ""
	var last error
	unreachable := make(map[string]bool)
	waited := false
	for attempt := 0; attempt < maxRoutes; attempt++ {
		if attempt > 0 {
			n.view.Store(nil)
			if err := sleepCtx(ctx, time.Duration(min(attempt, 5))*20*time.Millisecond); err != nil {
				return fmt.Errorf("partition %d: %w: %w (last: %v)", id, freqd.ErrUnavailable, err, last)
			}
		}
		if n.leads(id) {
			s, err := n.leaderShard(id)
			if err == nil {
				err = local(s)
			}
			var no *NotOwnerError
			switch {
			case errors.As(err, &no):
				hint, last = no.Holder, err
				continue
			case err != nil && errors.Is(err, freqd.ErrUnavailable) && !errors.Is(err, freqd.ErrOutcomeUnknown):
				last = err // too few voters yet: wait for them
				continue
			}
			return err
		}
		target := hint
		hint = ""
		v := n.currentView()
		if target == "" || target == n.opts.Name || v.addr[target] == "" || unreachable[target] {
			target = n.targetFor(v, id, unreachable)
		}
		if target == "" || target == n.opts.Name {
			// No leader known (an election, or the group lost its
			// majority): wait for one once.
			if !waited {
				waited = true
				if n.waitLeader(ctx, id) {
					continue
				}
			}
			return n.noLeader(id, last)
		}
		to, ok := n.dir.Load().byName[target]
		if !ok {
			unreachable[target] = true
			continue
		}
		err := remote(to)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, freqd.ErrNotOwner):
			hint, last = transport.HolderHint(err), err
		case transport.NotSent(err):
			// Not sent, so not applied: the leader may have just died.
			unreachable[target] = true
			last = fmt.Errorf("leader %s unreachable: %w", target, err)
		case transport.Unknown(err):
			return fmt.Errorf("partition %d (%s): leader %s failed during the call: %w: %w", id, n.spanString(id), target, freqd.ErrOutcomeUnknown, err)
		case errors.Is(err, freqd.ErrUnavailable):
			last = err // answered and not applied
		default:
			return err
		}
	}
	return fmt.Errorf("partition %d (%s): leader kept moving, last answer: %v: %w", id, n.spanString(id), last, freqd.ErrUnavailable)
}

// noLeader is the answer for a partition with no leader in reach: which
// voters are missing, as this node sees it.
func (n *Node) noLeader(id int, last error) error {
	info := n.drv.Info(id)
	why := "no leader elected"
	if info.Hosted {
		if miss := n.missingVoters(info); len(miss) > 0 {
			why = fmt.Sprintf("no leader elected; voters %s of %s are not alive members", strings.Join(miss, ","), n.labels(info.Voters))
		}
	}
	if last != nil {
		return fmt.Errorf("partition %d (%s): %s (last: %v): %w", id, n.spanString(id), why, last, freqd.ErrUnavailable)
	}
	return fmt.Errorf("partition %d (%s): %s: %w", id, n.spanString(id), why, freqd.ErrUnavailable)
}

// targetFor picks the node to send a partition's request to: the leader
// this node's replica or gossip knows, else the ring owner.
func (n *Node) targetFor(v *routeView, id int, avoid map[string]bool) string {
	if h := v.holder[id]; h != "" && !avoid[h] && h != n.opts.Name {
		return h
	}
	if o, ok := n.ring.Load().Owner(id); ok && !avoid[o] && o != n.opts.Name {
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
