package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/freqd/freqd"
	"go.uber.org/goleak"

	"github.com/freqd/freqd/internal/testutil"
)

func TestJoinThreeMembers(t *testing.T) {
	c := newCluster(t)
	nodes := c.join(3)
	for _, m := range nodes {
		got := m.Members()
		if !slices.IsSortedFunc(got, func(a, b Member) int { return strings.Compare(a.Name, b.Name) }) {
			t.Fatalf("%s: members not sorted: %v", m.LocalName(), names(got))
		}
		if len(got) != 3 {
			t.Fatalf("%s: %d members, want 3: %v", m.LocalName(), len(got), names(got))
		}
		for _, peer := range nodes {
			mem, ok := member(got, peer.LocalName())
			if !ok {
				t.Fatalf("%s does not see %s", m.LocalName(), peer.LocalName())
			}
			if mem.Health != HealthAlive || mem.Meta != peer.LocalMeta() || mem.GossipAddr != peer.GossipAddr() {
				t.Fatalf("%s sees %s as %+v; want alive, meta %+v, addr %s",
					m.LocalName(), peer.LocalName(), mem, peer.LocalMeta(), peer.GossipAddr())
			}
		}
		if len(m.Alive()) != 3 {
			t.Fatalf("%s: Alive %v", m.LocalName(), names(m.Alive()))
		}
	}
	if !strings.HasPrefix(nodes[0].GossipAddr(), "127.0.0.1:") || strings.HasSuffix(nodes[0].GossipAddr(), ":0") {
		t.Fatalf("gossip address %q: want 127.0.0.1 with the bound port", nodes[0].GossipAddr())
	}
	if got := nodes[2].Seeds(); len(got) != 1 || got[0] != nodes[0].GossipAddr() {
		t.Fatalf("seeds %v", got)
	}
}

func TestSetMetaPropagates(t *testing.T) {
	c := newCluster(t)
	nodes := c.join(3)
	drain(nodes[0].Changes())
	want := Meta{APIAddr: "127.0.0.1:9999", PeerAddr: "127.0.0.1:9998", State: StateActive, Initialized: true, Fingerprint: 1}
	if err := nodes[1].SetMeta(want); err != nil {
		t.Fatal(err)
	}
	if nodes[1].LocalMeta() != want {
		t.Fatalf("LocalMeta %+v", nodes[1].LocalMeta())
	}
	for _, m := range nodes {
		waitFor(t, 20*time.Second, func() (bool, string) {
			mem, _ := member(m.Members(), nodes[1].LocalName())
			return mem.Meta == want, fmt.Sprintf("%s sees %+v", m.LocalName(), mem.Meta)
		})
	}
	select {
	case <-nodes[0].Changes():
	default:
		t.Fatal("no change token after a metadata update")
	}
	if err := nodes[1].SetMeta(Meta{}); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Fatalf("invalid meta: got %v", err)
	}
}

func TestLoadsPropagate(t *testing.T) {
	c := newCluster(t)
	nodes := c.join(3)
	want := map[string]Load{}
	for i, m := range nodes {
		l := bigLoad(5+i, uint64(i)) // small
		if i == 2 {
			l = bigLoad(400, 3) // several gossip messages
		}
		m.SetLoad(l)
		want[m.LocalName()] = l
	}
	waitLoads := func(want map[string]Load) {
		t.Helper()
		for _, m := range nodes {
			waitFor(t, 20*time.Second, func() (bool, string) {
				got := m.Loads()
				if len(got) != len(want) {
					return false, fmt.Sprintf("%s has %d loads", m.LocalName(), len(got))
				}
				for name, l := range want {
					if !got[name].Equal(l) {
						return false, fmt.Sprintf("%s has %s's load with %d partitions, want %d",
							m.LocalName(), name, len(got[name].Partitions), len(l.Partitions))
					}
				}
				return true, ""
			})
		}
	}
	waitLoads(want)
	// A newer load replaces the old one everywhere.
	want["node-2"] = bigLoad(2, 99)
	nodes[2].SetLoad(want["node-2"])
	waitLoads(want)
	// The caller owns what Loads returns.
	got := nodes[0].Loads()
	got["node-2"].Partitions[0].Free = 12345
	if nodes[0].Loads()["node-2"].Equal(got["node-2"]) {
		t.Fatal("Loads returned shared slices")
	}
}

func TestLateJoinerLearnsLoadsByPushPull(t *testing.T) {
	c := newCluster(t)
	nodes := c.join(2)
	nodes[0].SetLoad(bigLoad(300, 1))
	nodes[1].SetLoad(bigLoad(7, 2))
	for _, m := range nodes {
		waitFor(t, 20*time.Second, func() (bool, string) {
			l := m.Loads()
			return l["node-0"].Equal(bigLoad(300, 1)) && l["node-1"].Equal(bigLoad(7, 2)), m.LocalName() + " lacks loads"
		})
	}
	// Wait for the broadcasts to be spent, so only push-pull can teach the
	// late joiner.
	for _, m := range nodes {
		waitFor(t, 20*time.Second, func() (bool, string) {
			n := m.queue.NumQueued()
			return n == 0, fmt.Sprintf("%s has %d broadcasts queued", m.LocalName(), n)
		})
	}
	late := c.start("late", withSeeds(nodes[1].GossipAddr()))
	if _, err := late.JoinSeeds(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() (bool, string) {
		l := late.Loads()
		return l["node-0"].Equal(bigLoad(300, 1)) && l["node-1"].Equal(bigLoad(7, 2)),
			fmt.Sprintf("late has %d loads", len(l))
	})
}

func TestLeave(t *testing.T) {
	c := newCluster(t)
	nodes := c.join(3)
	nodes[2].SetLoad(bigLoad(3, 3))
	waitFor(t, 20*time.Second, func() (bool, string) {
		_, ok := nodes[0].Loads()["node-2"]
		return ok, "node-0 lacks node-2's load"
	})
	drain(nodes[0].Changes())
	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if nodes[2].LocalMeta().State != StateLeaving {
		t.Fatalf("leaving node's meta state %v", nodes[2].LocalMeta().State)
	}
	for _, m := range nodes[:2] {
		waitFor(t, 20*time.Second, func() (bool, string) {
			mem, ok := member(m.Members(), "node-2")
			return !ok || mem.Health == HealthLeft, fmt.Sprintf("%s sees %v", m.LocalName(), names(m.Members()))
		})
		if _, ok := member(m.Alive(), "node-2"); ok || m.NumMembers() != 2 {
			t.Fatalf("%s still counts node-2 alive: %v", m.LocalName(), names(m.Alive()))
		}
		if _, ok := m.Loads()["node-2"]; ok {
			t.Fatalf("%s still reports node-2's load", m.LocalName())
		}
	}
	select {
	case <-nodes[0].Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change token after a leave")
	}
	if mem, _ := member(nodes[2].Members(), "node-2"); mem.Health != HealthLeft {
		t.Fatalf("leaver sees itself as %v", mem.Health)
	}
}

func TestShutdownWithoutLeaveIsDead(t *testing.T) {
	c := newCluster(t)
	nodes := c.join(3)
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range nodes[:2] {
		waitFor(t, 10*time.Second, func() (bool, string) {
			mem, ok := member(m.Members(), "node-2")
			return ok && mem.Health == HealthDead, fmt.Sprintf("%s sees %v", m.LocalName(), names(m.Members()))
		})
		if m.NumMembers() != 2 {
			t.Fatalf("%s: %d alive", m.LocalName(), m.NumMembers())
		}
	}
}

func TestDeadMembersAreForgotten(t *testing.T) {
	c := newCluster(t)
	a := c.start("a", withForget(100*time.Millisecond))
	b := c.start("b", withSeeds(a.GossipAddr()))
	if _, err := b.JoinSeeds(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.waitAllAlive(a, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		ms := a.Members()
		return len(ms) == 1 && ms[0].Name == "a", fmt.Sprintf("a sees %v", names(ms))
	})
}

func TestFingerprintMismatchRefused(t *testing.T) {
	c := newCluster(t)
	nodes := c.join(2)
	x := c.start("foreign", withFingerprint(0xf00d))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := x.Join(ctx, []string{nodes[0].GossipAddr()})
	if err == nil || !strings.Contains(err.Error(), nodes[0].GossipAddr()) {
		t.Fatalf("join of a foreign cluster: got %v, want an error naming the seed", err)
	}
	lines := c.logs.find(slog.LevelError, "refusing member with a different pool fingerprint")
	if len(lines) == 0 {
		t.Fatal("no error logged for the refusal")
	}
	if !strings.Contains(lines[0], "0x000000000000f00d") || !strings.Contains(lines[0], "0x0000000000000001") {
		t.Fatalf("refusal log does not name both fingerprints: %s", lines[0])
	}
	for _, m := range nodes {
		if _, ok := member(m.Members(), "foreign"); ok {
			t.Fatalf("%s admitted the foreign node", m.LocalName())
		}
	}
	if len(x.Members()) != 1 {
		t.Fatalf("foreign node merged: %v", names(x.Members()))
	}
}

func TestRejoinSeedThatStartsLater(t *testing.T) {
	c := newCluster(t)
	seedAddr := testutil.FreeAddr(t)
	early := c.start("early", withSeeds(seedAddr), withRejoin(100*time.Millisecond))
	if _, err := early.JoinSeeds(context.Background()); err == nil || !strings.Contains(err.Error(), seedAddr) {
		t.Fatalf("join of an absent seed: got %v, want an error naming it", err)
	}
	seed := c.start("seed", withBind(seedAddr))
	c.waitAllAlive(early, seed)
	if got := seed.GossipAddr(); got != seedAddr {
		t.Fatalf("seed bound %s, want %s", got, seedAddr)
	}
}

func TestJoinRemembersSeedsAndHonoursContext(t *testing.T) {
	c := newCluster(t)
	a := c.start("a")
	b := c.start("b")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Join(ctx, []string{a.GossipAddr()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled join: got %v", err)
	}
	if _, err := b.Join(context.Background(), []string{"nonsense"}); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Fatalf("bad seed: got %v", err)
	}
	if got := b.Seeds(); len(got) != 1 || got[0] != a.GossipAddr() {
		t.Fatalf("seeds %v, want [%s]", got, a.GossipAddr())
	}
	n, err := b.JoinSeeds(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("JoinSeeds: %d, %v", n, err)
	}
	c.waitAllAlive(a, b)
}

func TestCloseStopsEverything(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	c := newCluster(t)
	nodes := c.join(3)
	for i, m := range nodes {
		m.SetLoad(bigLoad(10, uint64(i)))
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		return len(nodes[0].Loads()) == 3, "loads"
	})
	for _, m := range nodes {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	goleak.VerifyNone(t, ignore, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
	m := nodes[0]
	if err := m.SetMeta(m.LocalMeta()); !errors.Is(err, freqd.ErrUnavailable) {
		t.Fatalf("SetMeta after Close: %v", err)
	}
	if err := m.Leave(time.Second); !errors.Is(err, freqd.ErrUnavailable) {
		t.Fatalf("Leave after Close: %v", err)
	}
	if _, err := m.JoinSeeds(context.Background()); err != nil {
		t.Fatalf("JoinSeeds without seeds after Close: %v", err)
	}
	if _, err := m.Join(context.Background(), []string{"127.0.0.1:1"}); !errors.Is(err, freqd.ErrUnavailable) {
		t.Fatalf("Join after Close: %v", err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	if _, err := New(Config{Name: "x", BindAddr: "127.0.0.1:0"}, Meta{}); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Fatalf("bad meta: %v", err)
	}
	if _, err := New(Config{BindAddr: "127.0.0.1:0"}, Meta{State: StateJoining}); !errors.Is(err, freqd.ErrInvalidArgument) {
		t.Fatalf("no name: %v", err)
	}
}
