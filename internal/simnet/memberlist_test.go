package simnet

import (
	"io"
	"log"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipNode is one memberlist instance on a simulated host.
type gossipNode struct {
	name string
	addr string
	ml   *memberlist.Memberlist
}

// startGossip starts a memberlist instance on host name, at addr
// ("127.0.0.1:0" for a fresh port), with fast timers.
func startGossip(t *testing.T, n *Net, name, addr string) *gossipNode {
	t.Helper()
	tr, err := n.Host(name).NewGossipTransportAt(addr)
	if err != nil {
		t.Fatalf("transport: %v", err)
	}
	conf := memberlist.DefaultLocalConfig()
	conf.Name = name
	conf.Transport = tr
	conf.ProbeInterval = 100 * time.Millisecond
	conf.ProbeTimeout = 50 * time.Millisecond
	conf.SuspicionMult = 2
	conf.GossipInterval = 20 * time.Millisecond
	conf.TCPTimeout = 200 * time.Millisecond
	conf.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(conf)
	if err != nil {
		_ = tr.Shutdown()
		t.Fatalf("memberlist %s: %v", name, err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	return &gossipNode{name: name, addr: gossipAddrOf(tr), ml: ml}
}

// members returns the sorted names a node sees alive or suspect.
func (g *gossipNode) members() []string {
	var out []string
	for _, m := range g.ml.Members() {
		out = append(out, m.Name)
	}
	slices.Sort(out)
	return out
}

// waitViews waits until every node in want sees exactly the members given.
func waitViews(t *testing.T, what string, want map[*gossipNode][]string) {
	t.Helper()
	const within = 20 * time.Second
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := true
		for g, w := range want {
			ok = ok && slices.Equal(g.members(), w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for g, w := range want {
				t.Logf("%s sees %v, want %v", g.name, g.members(), w)
			}
			t.Fatalf("no %s within %v", what, within)
		}
		<-tick.C
	}
}

// TestMemberlistKillPartitionHeal runs three real memberlist instances over
// the simulated network: they converge, see a killed node die and a
// restarted one come back, see the other side of a partition die, and
// converge again after Heal once one node calls Join across the old cut.
// Without that Join they may stay split: memberlist neither probes nor
// push-pulls with nodes it holds dead.
func TestMemberlistKillPartitionHeal(t *testing.T) {
	tests := []struct {
		name           string
		joiner, target string // who calls Join after Heal, and with whom
	}{
		{"minority joins majority", "a", "b"},
		{"majority joins minority", "c", "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 11)
			n.SetDelay(0, 2*time.Millisecond)
			nodes := map[string]*gossipNode{}
			for _, name := range []string{"a", "b", "c"} {
				nodes[name] = startGossip(t, n, name, "127.0.0.1:0")
			}
			a, b := nodes["a"], nodes["b"]
			for _, name := range []string{"b", "c"} {
				if _, err := nodes[name].ml.Join([]string{a.addr}); err != nil {
					t.Fatalf("%s joins a: %v", name, err)
				}
			}
			all := []string{"a", "b", "c"}
			waitViews(t, "convergence", map[*gossipNode][]string{a: all, b: all, nodes["c"]: all})

			// Kill c: a and b see it dead.
			n.Kill("c")
			waitViews(t, "death of c", map[*gossipNode][]string{a: {"a", "b"}, b: {"a", "b"}})
			_ = nodes["c"].ml.Shutdown()

			// Restart c on its old address: it rejoins, refuting its death.
			n.Restart("c")
			c := startGossip(t, n, "c", nodes["c"].addr)
			nodes["c"] = c
			if _, err := c.ml.Join([]string{a.addr}); err != nil {
				t.Fatalf("restarted c joins a: %v", err)
			}
			waitViews(t, "convergence after restart", map[*gossipNode][]string{a: all, b: all, c: all})

			// Partition {a} | {b, c}: each side sees the other dead.
			n.Partition([]string{"a"}, []string{"b", "c"})
			waitViews(t, "partition", map[*gossipNode][]string{a: {"a"}, b: {"b", "c"}, c: {"b", "c"}})

			// Heal, then one Join across the old cut reunites them.
			n.Heal()
			if _, err := nodes[tt.joiner].ml.Join([]string{nodes[tt.target].addr}); err != nil {
				t.Fatalf("rejoin: %v", err)
			}
			waitViews(t, "convergence after heal", map[*gossipNode][]string{a: all, b: all, c: all})
		})
	}
}
