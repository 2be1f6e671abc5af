package multiraft

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"testing/cryptotest"

	"github.com/freqd/freqd/store"
)

// The deterministic cluster: drivers stepped round by round on logical
// ticks by the test goroutine (no driver goroutines), over an in-memory
// network whose drops, delays and cuts come from one seeded source, with
// in-memory disks. raft's election timeouts draw from crypto/rand, which
// cryptotest.SetGlobalRandom makes deterministic, so one seed gives one run.

// logSM is a state machine that records every command it applies.
type logSM struct {
	cmds [][]byte
}

func (s *logSM) Apply(_ uint64, cmd []byte) any {
	s.cmds = append(s.cmds, bytes.Clone(cmd))
	return len(s.cmds)
}

func (s *logSM) Snapshot() []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(s.cmds)))
	for _, c := range s.cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

func (s *logSM) Restore(data []byte) error {
	s.cmds = nil
	if data == nil {
		return nil
	}
	d := decoder{b: data}
	n := d.uvarint()
	for range n {
		s.cmds = append(s.cmds, bytes.Clone(d.bytes()))
	}
	return d.err
}

// memDisk is a Disk in memory: records and checkpoints per group, all
// durable at once (a crash loses nothing that Append returned for, which
// the driver waits for anyway).
type memDisk struct {
	lsn     uint64
	records map[int][]memRec
	ckpt    map[int]memCkpt
	failErr error
}

type memRec struct {
	lsn  uint64
	data []byte
}

type memCkpt struct {
	lsn  uint64
	data []byte
}

func newMemDisk() *memDisk {
	return &memDisk{records: map[int][]memRec{}, ckpt: map[int]memCkpt{}}
}

func (m *memDisk) Append(g int, payload []byte) (uint64, error) {
	if m.failErr != nil {
		return 0, m.failErr
	}
	m.lsn++
	m.records[g] = append(m.records[g], memRec{lsn: m.lsn, data: bytes.Clone(payload)})
	return m.lsn, nil
}

func (m *memDisk) Wait(context.Context, uint64) error { return m.failErr }

func (m *memDisk) Checkpoint(g int, lsn uint64, payload []byte) error {
	m.ckpt[g] = memCkpt{lsn: lsn, data: bytes.Clone(payload)}
	rs := m.records[g]
	n := 0
	for _, r := range rs {
		if r.lsn > lsn {
			rs[n] = r
			n++
		}
	}
	m.records[g] = rs[:n]
	return nil
}

// recovered is what store.Open would return for this disk.
func (m *memDisk) recovered() map[int]*store.Recovered {
	out := map[int]*store.Recovered{}
	for g, c := range m.ckpt {
		out[g] = &store.Recovered{Checkpoint: c.data, CheckpointLSN: c.lsn, LastLSN: c.lsn}
	}
	for g, rs := range m.records {
		if len(rs) == 0 {
			continue
		}
		r := out[g]
		if r == nil {
			r = &store.Recovered{}
			out[g] = r
		}
		for _, x := range rs {
			r.Records = append(r.Records, x.data)
			r.LastLSN = x.lsn
		}
	}
	return out
}

type envelope struct {
	from, to uint64
	data     []byte
	due      uint64 // tick at which it may be delivered
}

// testNet is the seeded in-memory network of the deterministic cluster.
type testNet struct {
	rnd     *rand.Rand
	now     uint64
	queue   []envelope
	drop    float64            // probability a batch is lost
	delay   int                // batches wait up to this many ticks
	cut     map[[2]uint64]bool // directed links that lose everything
	sent    int
	dropped int
}

func (n *testNet) send(from, to uint64, b []byte) bool {
	n.sent++
	if n.cut[[2]uint64{from, to}] || (n.drop > 0 && n.rnd.Float64() < n.drop) {
		n.dropped++
		return true // lost on the wire: the sender cannot tell
	}
	due := n.now
	if n.delay > 0 {
		due += uint64(n.rnd.IntN(n.delay + 1))
	}
	n.queue = append(n.queue, envelope{from: from, to: to, data: bytes.Clone(b), due: due})
	return true
}

type testNode struct {
	id     uint64
	d      *Driver
	disk   *memDisk
	sms    map[int]*logSM
	down   bool // crashed: no rounds, nothing delivered
	paused bool // SIGSTOPped: no rounds, deliveries wait
}

type cluster struct {
	t      testing.TB
	seed   uint64
	net    *testNet
	nodes  map[uint64]*testNode
	ids    []uint64
	groups int
	// target is the placement: voters per group (nil: no opinion).
	target map[int][]uint64
	cfg    func(*Config)
}

func newCluster(t testing.TB, seed uint64, n, groups int, cfg func(*Config)) *cluster {
	t.Helper()
	if tt, ok := t.(*testing.T); ok {
		// Benchmarks need no repeatable elections.
		cryptotest.SetGlobalRandom(tt, seed)
	}
	c := &cluster{
		t:      t,
		seed:   seed,
		net:    &testNet{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), cut: map[[2]uint64]bool{}},
		nodes:  map[uint64]*testNode{},
		groups: groups,
		target: map[int][]uint64{},
		cfg:    cfg,
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d (replay with this seed)", seed)
		}
	})
	for i := range n {
		c.addNode(uint64(i + 1))
	}
	return c
}

func (c *cluster) addNode(id uint64) *testNode {
	nd := &testNode{id: id, disk: newMemDisk(), sms: map[int]*logSM{}}
	c.nodes[id] = nd
	c.ids = append(c.ids, id)
	slices.Sort(c.ids)
	c.start(nd)
	return nd
}

// start (re)creates nd's driver from its disk, as a process restart does.
func (c *cluster) start(nd *testNode) {
	nd.sms = map[int]*logSM{}
	cfg := Config{
		ID:        nd.id,
		Groups:    c.groups,
		Disk:      nd.disk,
		Recovered: nd.disk.recovered(),
		Send:      func(to uint64, b []byte) bool { return c.net.send(nd.id, to, b) },
		NewStateMachine: func(g int) StateMachine {
			sm := &logSM{}
			nd.sms[g] = sm
			return sm
		},
		Placement: func(g int) ([]uint64, uint64, bool) {
			tg := c.target[g]
			if len(tg) == 0 {
				return nil, 0, false
			}
			return tg, tg[g%len(tg)], true
		},
		ElectionTicks:   10,
		HeartbeatTicks:  1,
		SnapshotEntries: 64,
		Logger:          testLogger(),
	}
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		c.t.Fatalf("node %d: %v", nd.id, err)
	}
	nd.d = d
	nd.down = false
}

// deliver hands every due message to its (running) destination.
func (c *cluster) deliver() {
	q := c.net.queue
	c.net.queue = nil
	// Reorder within what is due, seeded.
	c.net.rnd.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
	for _, e := range q {
		nd := c.nodes[e.to]
		switch {
		case nd == nil || nd.down:
			c.net.dropped++
		case nd.paused || e.due > c.net.now:
			c.net.queue = append(c.net.queue, e)
		case c.net.cut[[2]uint64{e.from, e.to}]:
			c.net.dropped++
		default:
			if err := nd.d.HandleBatch(e.from, e.data); err != nil {
				c.t.Fatalf("node %d: batch from %d: %v", e.to, e.from, err)
			}
		}
	}
}

// tick advances logical time by one tick: deliver and run rounds until
// nothing is left to do at this instant (bounded), then tick every node.
func (c *cluster) tick() {
	for range 20 {
		c.deliver()
		for _, id := range c.ids {
			if nd := c.nodes[id]; !nd.down && !nd.paused {
				nd.d.round(false)
			}
		}
		if !c.pendingNow() {
			break
		}
	}
	c.net.now++
	for _, id := range c.ids {
		if nd := c.nodes[id]; !nd.down && !nd.paused {
			nd.d.round(true)
		}
	}
}

func (c *cluster) pendingNow() bool {
	for _, e := range c.net.queue {
		if nd := c.nodes[e.to]; nd != nil && !nd.down && !nd.paused && e.due <= c.net.now {
			return true
		}
	}
	return false
}

func (c *cluster) ticks(n int) {
	for range n {
		c.tick()
	}
}

// until ticks until cond holds, failing after max ticks.
func (c *cluster) until(max int, what string, cond func() bool) int {
	c.t.Helper()
	for i := range max {
		if cond() {
			return i
		}
		c.tick()
	}
	if !cond() {
		c.t.Fatalf("after %d ticks: %s (seed %d)\n%s", max, what, c.seed, c.dump())
	}
	return max
}

func (c *cluster) dump() string {
	var b bytes.Buffer
	for _, id := range c.ids {
		nd := c.nodes[id]
		fmt.Fprintf(&b, "node %d down=%v paused=%v:", id, nd.down, nd.paused)
		for g := range c.groups {
			gi := nd.d.Info(g)
			if gi.Hosted {
				fmt.Fprintf(&b, " g%d{lead %d term %d voters %v learners %v applied %d}", g, gi.Leader, gi.Term, gi.Voters, gi.Learners, gi.Applied)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// leader returns the running node that leads g, if exactly one does at
// the highest term.
func (c *cluster) leader(g int) *testNode {
	var best *testNode
	var bestTerm uint64
	for _, id := range c.ids {
		nd := c.nodes[id]
		if nd.down || nd.paused {
			continue
		}
		gi := nd.d.Info(g)
		if gi.IsLeader && gi.Term >= bestTerm {
			best, bestTerm = nd, gi.Term
		}
	}
	return best
}

// pending is a proposal made without blocking, checked after rounds.
type pending struct {
	p   *proposal
	cmd string
}

func (c *cluster) propose(nd *testNode, g int, cmd string) *pending {
	p := &proposal{group: g, cmd: []byte(cmd), done: make(chan result, 1), ctx: context.Background()}
	nd.d.mu.Lock()
	nd.d.props = append(nd.d.props, p)
	nd.d.mu.Unlock()
	return &pending{p: p, cmd: cmd}
}

// outcome: 1 acknowledged, -1 failed for sure (not leader), 0 unknown or
// still waiting.
func (p *pending) outcome() (int, error) {
	select {
	case r := <-p.p.done:
		p.p.done <- r
		if r.err == nil {
			return 1, nil
		}
		var nl *NotLeaderError
		if asNotLeader(r.err, &nl) {
			return -1, r.err
		}
		return 0, r.err
	default:
		return 0, nil
	}
}

// checkSafety: every running replica's applied commands of a group are a
// prefix of the longest one (no two replicas applied different commands
// at one position), and every acknowledged command is in the longest.
func (c *cluster) checkSafety(acked map[int][]string) {
	c.t.Helper()
	for g := range c.groups {
		var longest [][]byte
		for _, id := range c.ids {
			sm := c.nodes[id].sms[g]
			if sm == nil || !c.nodes[id].d.Info(g).Hosted {
				continue
			}
			a, b := longest, sm.cmds
			if len(b) > len(a) {
				a, b = b, a
			}
			for i := range b {
				if !bytes.Equal(a[i], b[i]) {
					c.t.Fatalf("group %d: replicas differ at command %d: %q vs %q (seed %d)", g, i, a[i], b[i], c.seed)
				}
			}
			longest = a
		}
		have := map[string]int{}
		for _, cmd := range longest {
			have[string(cmd)]++
		}
		for _, cmd := range acked[g] {
			if have[cmd] != 1 {
				c.t.Fatalf("group %d: acknowledged command %q applied %d times (seed %d)", g, cmd, have[cmd], c.seed)
			}
		}
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("MULTIRAFT_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
