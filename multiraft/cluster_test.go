package multiraft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func asNotLeader(err error, nl **NotLeaderError) bool { return errors.As(err, nl) }

// formed bootstraps every group on node 1, sets the placement to all
// nodes and waits until every group has all of them as voters and is led
// by its preferred replica.
func formed(t testing.TB, seed uint64, n, groups int) *cluster {
	c := newCluster(t, seed, n, groups, nil)
	for g := range groups {
		if err := c.nodes[1].d.bootstrap(g); err != nil {
			t.Fatal(err)
		}
		c.target[g] = slices.Clone(c.ids)
	}
	c.until(400, "every group has all voters and its preferred leader", func() bool {
		for g := range groups {
			l := c.leader(g)
			if l == nil || l.id != c.ids[g%len(c.ids)] {
				return false
			}
			if gi := l.d.Info(g); len(gi.Voters) != n || len(gi.Learners) != 0 {
				return false
			}
		}
		return true
	})
	return c
}

// load proposes cmds at each group's current leader every tick for ticks
// ticks and returns the acknowledged commands per group.
type load struct {
	c       *cluster
	next    int
	pending map[int][]*pending
	acked   map[int][]string
	failed  int
	unknown int
}

func newLoad(c *cluster) *load {
	return &load{c: c, pending: map[int][]*pending{}, acked: map[int][]string{}}
}

func (l *load) step(perTick int) {
	for g := range l.c.groups {
		for range perTick {
			nd := l.c.leader(g)
			if nd == nil {
				// No leader known: send it anywhere running; it fails as not leader.
				for _, id := range l.c.ids {
					if !l.c.nodes[id].down && !l.c.nodes[id].paused {
						nd = l.c.nodes[id]
						break
					}
				}
			}
			if nd == nil {
				continue
			}
			l.next++
			l.pending[g] = append(l.pending[g], l.c.propose(nd, g, fmt.Sprintf("g%d-c%d", g, l.next)))
		}
	}
	l.c.tick()
	l.collect()
}

func (l *load) collect() {
	for g, ps := range l.pending {
		n := 0
		for _, p := range ps {
			o, err := p.outcome()
			switch {
			case o == 1:
				l.acked[g] = append(l.acked[g], p.cmd)
			case o == -1:
				l.failed++
			case err != nil:
				l.unknown++
			default:
				ps[n] = p
				n++
				continue
			}
		}
		l.pending[g] = ps[:n]
	}
}

func (l *load) total() int {
	n := 0
	for _, a := range l.acked {
		n += len(a)
	}
	return n
}

func TestFormAndWrite(t *testing.T) {
	c := formed(t, 1, 3, 8)
	l := newLoad(c)
	for range 50 {
		l.step(2)
	}
	c.ticks(20)
	l.collect()
	if l.total() < 700 {
		t.Fatalf("only %d of %d writes acknowledged in a healthy cluster (%d failed, %d unknown)", l.total(), l.next, l.failed, l.unknown)
	}
	c.checkSafety(l.acked)
	// Every replica applied everything.
	for g := range c.groups {
		for _, id := range c.ids {
			if got, want := len(c.nodes[id].sms[g].cmds), len(l.acked[g]); got != want {
				t.Fatalf("node %d group %d applied %d commands, want %d", id, g, got, want)
			}
		}
	}
}

func TestLeaderKilled(t *testing.T) {
	c := formed(t, 2, 3, 6)
	l := newLoad(c)
	for range 20 {
		l.step(1)
	}
	victim := c.nodes[1] // leads groups 0 and 3
	victim.down = true
	elapsed := c.until(200, "groups led by the dead node elect a new leader", func() bool {
		for _, g := range []int{0, 3} {
			if nd := c.leader(g); nd == nil || nd == victim {
				return false
			}
		}
		return true
	})
	t.Logf("new leaders after %d ticks (election timeout %d ticks)", elapsed, 10)
	if elapsed > 40 {
		t.Errorf("failover took %d ticks, more than 4 election timeouts", elapsed)
	}
	before := l.total()
	for range 30 {
		l.step(1)
	}
	if l.total() <= before {
		t.Fatal("no write acknowledged after the failover")
	}
	c.checkSafety(l.acked)
	// The dead node comes back from its disk and catches up.
	c.start(victim)
	c.ticks(100)
	l.collect()
	c.checkSafety(l.acked)
	for g := range c.groups {
		if got, want := len(victim.sms[g].cmds), len(l.acked[g]); got < want {
			t.Fatalf("restarted node group %d has %d commands, want at least %d", g, got, want)
		}
	}
}

func TestLeaderPausedThenResumed(t *testing.T) {
	c := formed(t, 3, 3, 6)
	l := newLoad(c)
	for range 10 {
		l.step(2)
	}
	paused := c.nodes[2] // leads groups 1 and 4
	paused.paused = true
	// Proposals sent to the paused leader wait in its queue.
	stale := c.propose(paused, 1, "while-paused")
	c.until(200, "the others elect leaders for the paused node's groups", func() bool {
		for _, g := range []int{1, 4} {
			if nd := c.leader(g); nd == nil || nd == paused {
				return false
			}
		}
		return true
	})
	for range 30 {
		l.step(2)
	}
	paused.paused = false
	for range 60 {
		l.step(2)
	}
	c.ticks(30)
	l.collect()
	if o, err := stale.outcome(); o == 1 {
		t.Logf("the paused leader's proposal committed after it resumed")
		l.acked[1] = append(l.acked[1], stale.cmd)
	} else {
		t.Logf("the paused leader's proposal: outcome %d, %v", o, err)
	}
	c.checkSafety(l.acked)
	if l.unknown+l.failed == 0 {
		t.Log("no proposal failed around the pause")
	}
}

func TestIsolatedLeaderGrantsNothing(t *testing.T) {
	c := formed(t, 4, 3, 3)
	l := newLoad(c)
	for range 10 {
		l.step(1)
	}
	iso := c.nodes[1] // leads group 0
	for _, id := range c.ids {
		if id != iso.id {
			c.net.cut[[2]uint64{iso.id, id}] = true
			c.net.cut[[2]uint64{id, iso.id}] = true
		}
	}
	var minority []*pending
	for i := range 40 {
		minority = append(minority, c.propose(iso, 0, fmt.Sprintf("minority-%d", i)))
		l.step(1)
	}
	for _, p := range minority {
		if o, _ := p.outcome(); o == 1 {
			t.Fatalf("the isolated leader acknowledged %q", p.cmd)
		}
	}
	if gi := iso.d.Info(0); gi.IsLeader {
		t.Fatal("the isolated leader still thinks it leads after 40 ticks (CheckQuorum)")
	}
	if nd := c.leader(0); nd == nil || nd == iso {
		t.Fatal("the majority side has no leader for group 0")
	}
	clear(c.net.cut)
	for range 50 {
		l.step(1)
	}
	c.checkSafety(l.acked)
	for _, p := range minority {
		for _, id := range c.ids {
			for _, cmd := range c.nodes[id].sms[0].cmds {
				if string(cmd) == p.cmd {
					t.Fatalf("node %d applied %q, proposed on the minority side", id, p.cmd)
				}
			}
		}
	}
}

func TestReconfigureUnderLoad(t *testing.T) {
	c := formed(t, 5, 3, 4)
	l := newLoad(c)
	for range 10 {
		l.step(2)
	}
	n4 := c.addNode(4)
	// Replace node 3 by node 4 in every group.
	for g := range c.groups {
		c.target[g] = []uint64{1, 2, 4}
	}
	c.until(600, "every group has voters 1,2,4", func() bool {
		l.step(1)
		for g := range c.groups {
			nd := c.leader(g)
			if nd == nil {
				return false
			}
			gi := nd.d.Info(g)
			if !slices.Equal(gi.Voters, []uint64{1, 2, 4}) || len(gi.Learners) != 0 {
				return false
			}
		}
		return true
	})
	for range 20 {
		l.step(1)
	}
	c.ticks(20)
	l.collect()
	c.checkSafety(l.acked)
	for g := range c.groups {
		if n4.sms[g] == nil || len(n4.sms[g].cmds) < len(l.acked[g]) {
			t.Fatalf("new node lacks group %d's commands", g)
		}
		if c.nodes[3].d.Info(g).Hosted {
			t.Fatalf("node 3 still hosts group %d after its removal", g)
		}
	}
	// Node 3's disk says it was removed: a restart hosts nothing.
	c.start(c.nodes[3])
	for g := range c.groups {
		if c.nodes[3].d.Info(g).Hosted {
			t.Fatalf("node 3 hosts group %d again after a restart", g)
		}
	}
}

func TestMajorityLostAndRegained(t *testing.T) {
	c := formed(t, 6, 3, 3)
	l := newLoad(c)
	for range 10 {
		l.step(1)
	}
	before := l.total()
	c.nodes[2].down = true
	c.nodes[3].down = true
	for range 60 {
		l.step(1)
	}
	if got := l.total(); got != before {
		t.Fatalf("%d writes acknowledged with a majority of every group down", got-before)
	}
	c.start(c.nodes[2])
	c.start(c.nodes[3])
	c.until(300, "every group has a leader again", func() bool {
		for g := range c.groups {
			if c.leader(g) == nil {
				return false
			}
		}
		return true
	})
	for range 40 {
		l.step(1)
	}
	if l.total() == before {
		t.Fatal("no write acknowledged after the majority came back")
	}
	c.checkSafety(l.acked)
}

func TestSameSeedSameRun(t *testing.T) {
	run := func() string {
		c := formed(t, 42, 3, 4)
		c.net.drop = 0.05
		c.net.delay = 2
		l := newLoad(c)
		for range 60 {
			l.step(1)
		}
		return fmt.Sprintf("%d acked %d failed %d unknown %d sent %d dropped\n%s", l.total(), l.failed, l.unknown, c.net.sent, c.net.dropped, c.dump())
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("two runs with one seed differ:\n%s\n---\n%s", a, b)
	}
}

func TestLossyNetworkSafety(t *testing.T) {
	for _, seed := range []uint64{7, 8, 9} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			c := formed(t, seed, 5, 4)
			c.net.drop = 0.1
			c.net.delay = 3
			l := newLoad(c)
			for i := range 300 {
				l.step(1)
				if i%50 == 25 {
					victim := c.nodes[c.ids[c.net.rnd.IntN(len(c.ids))]]
					victim.down = true
					c.ticks(20)
					c.start(victim)
				}
			}
			c.net.drop, c.net.delay = 0, 0
			c.ticks(100)
			l.collect()
			c.checkSafety(l.acked)
			if l.total() == 0 {
				t.Fatal("nothing acknowledged")
			}
			t.Logf("seed %d: %d acked, %d not-leader, %d unknown", seed, l.total(), l.failed, l.unknown)
		})
	}
}

func TestReadIndex(t *testing.T) {
	c := formed(t, 10, 3, 2)
	l := newLoad(c)
	for range 10 {
		l.step(2)
	}
	// A read at a follower goes through the leader and sees every
	// acknowledged write.
	follower := c.nodes[2] // group 0 is led by node 1
	rq := &readReq{group: 0, fn: func(sm StateMachine) any { return len(sm.(*logSM).cmds) }, done: make(chan result, 1), ctx: context.Background()}
	follower.d.mu.Lock()
	follower.d.reads = append(follower.d.reads, rq)
	follower.d.mu.Unlock()
	want := len(l.acked[0])
	c.until(50, "the read is answered", func() bool { return len(rq.done) == 1 })
	res := <-rq.done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if got := res.v.(int); got < want {
		t.Fatalf("read saw %d commands, %d were acknowledged before it", got, want)
	}
}
