package simnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the simulated network. Dial failures wrap
// transport.ErrNoRoute instead (see Host.Network).
var (
	// ErrConnReset is what reads and writes return on a connection that was
	// reset: one of its hosts was killed, the Net was closed, or the
	// connection was never accepted before its listener closed.
	ErrConnReset = errors.New("simnet: connection reset")
	// ErrHostDown means a dead host (or a closed Net) was asked to listen or
	// to make a gossip transport.
	ErrHostDown = errors.New("simnet: host is down")
)

// Port ranges. Listeners and gossip transports get ports from the first
// range (skipping ports in use); the local end of a dialled connection gets a
// label from the second, which is never listened on.
const (
	firstPort      = 10000
	lastPort       = 39999
	firstEphemeral = 40000
	lastEphemeral  = 65535
)

// maxInbox bounds the packets queued for one gossip transport, like a UDP
// receive buffer; packets beyond it are dropped.
const maxInbox = 4096

// Net is one simulated network: a set of hosts, the ports they listen on,
// the connections between them and the faults in force. All its methods
// are safe for concurrent use.
type Net struct {
	seed uint64

	// rmu guards rng and the fault parameters below it. It is a leaf lock:
	// nothing else is locked while it is held.
	rmu      sync.Mutex
	rng      *rand.Rand
	drop     float64
	minDelay time.Duration
	maxDelay time.Duration

	// topo is the cut set now in force. It is replaced whole under mu and
	// read without locks by connections and gossip pumps.
	topo atomic.Pointer[topology]

	// done is closed by Close, waking dials waiting out a delay.
	done chan struct{}

	stats counters

	// mu guards the fields below and the mutable fields of every Host.
	// Lock order: mu, then a listener's or gossip transport's mu, then a
	// link's mu, then rmu.
	mu            sync.Mutex
	closed        bool
	hosts         map[string]*Host
	ports         map[int]endpoint // *listener or *gossipTransport
	links         map[*link]struct{}
	nextPort      int
	nextEphemeral int
}

// endpoint is something that owns a port: a listener or a gossip transport.
type endpoint interface {
	owner() *Host
}

// New returns an empty network. Every random fault decision (drops and
// delays) is drawn from one PCG generator seeded from seed.
func New(seed uint64) *Net {
	n := &Net{
		seed:          seed,
		rng:           rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		done:          make(chan struct{}),
		hosts:         make(map[string]*Host),
		ports:         make(map[int]endpoint),
		links:         make(map[*link]struct{}),
		nextPort:      firstPort,
		nextEphemeral: firstEphemeral,
	}
	n.topo.Store(newTopology(nil, nil))
	return n
}

// Seed returns the seed the network was made with, for logging a failing
// run so it can be replayed.
func (n *Net) Seed() uint64 {
	return n.seed
}

// Host returns the simulated machine called name, creating it (alive) if it
// does not exist yet.
func (n *Net) Host(name string) *Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hostLocked(name)
}

func (n *Net) hostLocked(name string) *Host {
	h, ok := n.hosts[name]
	if !ok {
		h = &Host{
			net:        n,
			name:       name,
			listeners:  make(map[*listener]struct{}),
			transports: make(map[*gossipTransport]struct{}),
		}
		n.hosts[name] = h
	}
	return h
}

// Kill makes host dead, as if its process crashed: its listeners and gossip
// transports close, every connection to or from it is reset, packets to it
// are lost, and dials to or from it fail until Restart. When Kill returns,
// all of this has happened.
func (n *Net) Kill(host string) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	h := n.hostLocked(host)
	h.dead = true
	lns, gts, links := n.detachLocked(h)
	n.mu.Unlock()
	n.shutAll(lns, gts, links)
}

// detachLocked takes h's listeners, gossip transports and connections out
// of the network, returning them to be shut outside mu.
func (n *Net) detachLocked(h *Host) ([]*listener, []*gossipTransport, []*link) {
	var lns []*listener
	for ln := range h.listeners {
		lns = append(lns, ln)
		n.releasePortLocked(ln.port, ln)
	}
	clear(h.listeners)
	var gts []*gossipTransport
	for gt := range h.transports {
		gts = append(gts, gt)
		n.releasePortLocked(gt.port, gt)
	}
	clear(h.transports)
	var links []*link
	for l := range n.links {
		if l.hosts[0] == h.name || l.hosts[1] == h.name {
			links = append(links, l)
			delete(n.links, l)
		}
	}
	return lns, gts, links
}

func (n *Net) shutAll(lns []*listener, gts []*gossipTransport, links []*link) {
	for _, l := range links {
		l.reset()
	}
	for _, ln := range lns {
		ln.shut()
	}
	for _, gt := range gts {
		gt.shut()
	}
}

// Restart lets a killed host listen and dial again, as a new process. Its
// old listeners, transports and connections stay closed: the caller makes
// new ones. Restarting a live host does nothing.
func (n *Net) Restart(host string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.hostLocked(host).dead = false
}

// Isolate cuts host off from every other host, on top of any partition in
// force, until Heal.
func (n *Net) Isolate(host string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.topo.Load()
	iso := make(map[string]bool, len(old.isolated)+1)
	for h := range old.isolated {
		iso[h] = true
	}
	iso[host] = true
	n.setTopologyLocked(newTopology(old.side, iso))
}

// Partition splits the network: hosts in different sides cannot talk;
// hosts named in no side still talk to everyone. It replaces any earlier
// partition but keeps hosts cut off by Isolate. A host named in several
// sides belongs to the last.
func (n *Net) Partition(sides ...[]string) {
	side := make(map[string]int)
	for i, s := range sides {
		for _, h := range s {
			side[h] = i + 1
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.setTopologyLocked(newTopology(side, n.topo.Load().isolated))
}

// Heal removes every partition and isolation. It does not revive killed
// hosts. Bytes held back on connections that crossed a cut are delivered.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.setTopologyLocked(newTopology(nil, nil))
}

// setTopologyLocked publishes t. Bytes that reached their reader under the
// old topology are moved into the reader's buffer first, so a new cut does
// not hold back what had already arrived.
func (n *Net) setTopologyLocked(t *topology) {
	old := n.topo.Load()
	now := time.Now()
	for l := range n.links {
		l.settle(now, old)
	}
	n.topo.Store(t)
	close(old.changed)
}

// SetDrop sets the probability, in [0, 1], that a gossip packet between two
// hosts is lost and that a new dial between two hosts fails with
// transport.ErrNoRoute. Traffic within one host is never dropped.
func (n *Net) SetDrop(p float64) {
	p = max(0, min(1, p))
	n.rmu.Lock()
	defer n.rmu.Unlock()
	n.drop = p
}

// SetDelay makes each gossip packet, each dial and each write on a
// connection between two hosts take a delay drawn uniformly from
// [lo, hi]. Bytes on one connection still arrive in the order written.
// Traffic within one host is never delayed. Negative values count as zero;
// hi below lo counts as lo.
func (n *Net) SetDelay(lo, hi time.Duration) {
	lo = max(0, lo)
	hi = max(lo, hi)
	n.rmu.Lock()
	defer n.rmu.Unlock()
	n.minDelay, n.maxDelay = lo, hi
}

// dropped rolls whether traffic from one host to another is lost.
func (n *Net) dropped(from, to string) bool {
	if from == to {
		return false
	}
	n.rmu.Lock()
	defer n.rmu.Unlock()
	return n.drop > 0 && n.rng.Float64() < n.drop
}

// delay draws the delay for traffic from one host to another.
func (n *Net) delay(from, to string) time.Duration {
	if from == to {
		return 0
	}
	n.rmu.Lock()
	defer n.rmu.Unlock()
	if n.maxDelay <= n.minDelay {
		return n.minDelay
	}
	return n.minDelay + time.Duration(n.rng.Int64N(int64(n.maxDelay-n.minDelay)+1))
}

// Close shuts the whole network: every listener and gossip transport
// closes (their goroutines have exited when Close returns), every
// connection is reset, and every host is dead for good. It is idempotent.
func (n *Net) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	close(n.done)
	var (
		lns   []*listener
		gts   []*gossipTransport
		links []*link
	)
	for _, h := range n.hosts {
		h.dead = true
		l, g, k := n.detachLocked(h)
		lns = append(lns, l...)
		gts = append(gts, g...)
		links = append(links, k...)
	}
	n.mu.Unlock()
	n.shutAll(lns, gts, links)
}

// allocPortLocked returns a free port for a listener or gossip transport.
func (n *Net) allocPortLocked() (int, bool) {
	for range lastPort - firstPort + 1 {
		p := n.nextPort
		n.nextPort++
		if n.nextPort > lastPort {
			n.nextPort = firstPort
		}
		if _, used := n.ports[p]; !used {
			return p, true
		}
	}
	return 0, false
}

// ephemeralLocked returns a label for the local end of a dialled connection.
func (n *Net) ephemeralLocked() int {
	p := n.nextEphemeral
	n.nextEphemeral++
	if n.nextEphemeral > lastEphemeral {
		n.nextEphemeral = firstEphemeral
	}
	return p
}

// releasePortLocked frees port if ep still owns it.
func (n *Net) releasePortLocked(port int, ep endpoint) {
	if n.ports[port] == ep {
		delete(n.ports, port)
	}
}

// release takes a closing listener or transport out of the network.
func (n *Net) release(port int, ep endpoint) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.releasePortLocked(port, ep)
	switch e := ep.(type) {
	case *listener:
		delete(e.host.listeners, e)
	case *gossipTransport:
		delete(e.host.transports, e)
	}
}

// forget drops a finished connection from the registry.
func (n *Net) forget(l *link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.links, l)
}

// Host is one simulated machine. It has a name, and is alive or dead.
type Host struct {
	net  *Net
	name string

	// Guarded by net.mu.
	dead       bool
	listeners  map[*listener]struct{}
	transports map[*gossipTransport]struct{}
}

// Name returns the host's name.
func (h *Host) Name() string {
	return h.name
}

// checkLocked reports why h cannot act now, or nil.
func (h *Host) checkLocked() error {
	switch {
	case h.net.closed:
		return fmt.Errorf("network closed: %w", ErrHostDown)
	case h.dead:
		return fmt.Errorf("host %s: %w", h.name, ErrHostDown)
	}
	return nil
}

// topology is an immutable cut set. changed is closed when it is replaced,
// waking everything that waits for a cut to heal.
type topology struct {
	side     map[string]int // host -> side number (from 1); absent: no side
	isolated map[string]bool
	changed  chan struct{}
}

func newTopology(side map[string]int, isolated map[string]bool) *topology {
	return &topology{side: side, isolated: isolated, changed: make(chan struct{})}
}

// cut reports whether hosts a and b cannot talk.
func (t *topology) cut(a, b string) bool {
	if a == b {
		return false
	}
	if t.isolated[a] || t.isolated[b] {
		return true
	}
	sa, sb := t.side[a], t.side[b]
	return sa != 0 && sb != 0 && sa != sb
}

// Stats counts what the network did since New.
type Stats struct {
	// PacketsSent counts gossip packets handed to WriteTo by a live
	// transport.
	PacketsSent int64
	// PacketsDropped counts sent packets that were lost: to SetDrop, a
	// cut, a dead or unknown receiver, or a full inbox.
	PacketsDropped int64
	// PacketsDelivered counts packets handed to a receiver's PacketCh.
	PacketsDelivered int64
	// DialsOK counts connections made (RPC and gossip streams).
	DialsOK int64
	// DialsRefused counts dials that failed (nothing was sent).
	DialsRefused int64
	// ConnsReset counts connections reset by Kill, Close or a listener or
	// transport closing before accepting them.
	ConnsReset int64
}

type counters struct {
	packetsSent, packetsDropped, packetsDelivered atomic.Int64
	dialsOK, dialsRefused, connsReset             atomic.Int64
}

// Stats returns a snapshot of the counters.
func (n *Net) Stats() Stats {
	return Stats{
		PacketsSent:      n.stats.packetsSent.Load(),
		PacketsDropped:   n.stats.packetsDropped.Load(),
		PacketsDelivered: n.stats.packetsDelivered.Load(),
		DialsOK:          n.stats.dialsOK.Load(),
		DialsRefused:     n.stats.dialsRefused.Load(),
		ConnsReset:       n.stats.connsReset.Load(),
	}
}

// loopback is the one IP every simulated address uses.
var loopback = net.IPv4(127, 0, 0, 1)
