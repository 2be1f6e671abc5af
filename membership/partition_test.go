package membership

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// gate wraps a NetTransport and drops outgoing packets and dials to
// blocked addresses (or to everyone), to cut a node off.
type gate struct {
	*memberlist.NetTransport
	mu      sync.Mutex
	all     bool
	blocked map[string]bool
}

var _ memberlist.NodeAwareTransport = (*gate)(nil)

var errGated = errors.New("gate: blocked")

func newGate(t *testing.T) *gate {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &gate{NetTransport: nt, blocked: map[string]bool{}}
}

func (g *gate) cut(addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.all || g.blocked[addr]
}

func (g *gate) set(all bool, addrs ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.all = all
	g.blocked = map[string]bool{}
	for _, a := range addrs {
		g.blocked[a] = true
	}
}

func (g *gate) WriteTo(b []byte, addr string) (time.Time, error) {
	return g.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (g *gate) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if g.cut(a.Addr) {
		return time.Now(), nil // lost in the network
	}
	return g.NetTransport.WriteToAddress(b, a)
}

func (g *gate) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return g.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (g *gate) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if g.cut(a.Addr) {
		return nil, fmt.Errorf("dial %s: %w", a.Addr, errGated)
	}
	return g.NetTransport.DialAddressTimeout(a, timeout)
}

func withTransport(tr memberlist.Transport) nodeOpt {
	return func(c *Config, _ *Meta) { c.Transport = tr; c.BindAddr = "" }
}

func TestRejoinAfterHealedPartition(t *testing.T) {
	c := newCluster(t)
	ga, gb, gc := newGate(t), newGate(t), newGate(t)
	a := c.start("a", withTransport(ga))
	b := c.start("b", withTransport(gb), withSeeds(a.GossipAddr()))
	cc := c.start("c", withTransport(gc), withSeeds(a.GossipAddr()), withRejoin(100*time.Millisecond))
	for _, m := range []*Membership{b, cc} {
		if _, err := m.JoinSeeds(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	c.waitAllAlive(a, b, cc)

	// Cut c off from a and b, both ways.
	gc.set(true)
	ga.set(false, cc.GossipAddr())
	gb.set(false, cc.GossipAddr())
	waitFor(t, 10*time.Second, func() (bool, string) {
		return a.NumMembers() == 2 && b.NumMembers() == 2 && cc.NumMembers() == 1,
			fmt.Sprintf("a %v, b %v, c %v", names(a.Members()), names(b.Members()), names(cc.Members()))
	})
	if mem, _ := member(a.Members(), "c"); mem.Health != HealthDead {
		t.Fatalf("a sees the cut-off node as %v, want dead", mem.Health)
	}

	// c's rejoin loop notices its seed is not an alive member and keeps
	// trying to join it.
	waitFor(t, 5*time.Second, func() (bool, string) {
		for _, l := range c.logs.find(slog.LevelDebug, "rejoin seeds that are not alive members") {
			if strings.Contains(l, "node=c") && strings.Contains(l, a.GossipAddr()) {
				return true, ""
			}
		}
		return false, "c never tried to rejoin its seed"
	})

	// Heal: the cluster converges again (through c's rejoins, or
	// memberlist's gossip to recently dead nodes, whichever comes first).
	gc.set(false)
	ga.set(false)
	gb.set(false)
	c.waitAllAlive(a, b, cc)
}
