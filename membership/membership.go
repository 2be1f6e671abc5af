package membership

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/freqd/freqd"
	"github.com/hashicorp/memberlist"
)

// Member is one node as this node knows it.
type Member struct {
	// Name is the node's unique name.
	Name string
	// GossipAddr is the host:port the node gossips on.
	GossipAddr string
	// Meta is the node's latest metadata.
	Meta Meta
	// Health is what the failure detector says about the node.
	Health Health
}

// Membership is this node's view of the cluster: who is in it, their
// metadata and health, and the load each one reports. Create it with New,
// join with JoinSeeds or Join, and Close it when done. All methods are safe
// for concurrent use.
type Membership struct {
	cfg   Config // immutable after New
	log   *slog.Logger
	ml    *memberlist.Memberlist           // set in New before any goroutine of ours starts; callbacks never touch it
	queue *memberlist.TransmitLimitedQueue // load broadcasts; has its own lock, never called with mu held

	// changes gets a token (non-blocking send) after any membership change.
	changes chan struct{}

	ctx    context.Context // cancelled by Close: stops the goroutines below
	cancel context.CancelFunc
	wg     sync.WaitGroup // rejoin loop, load loop, Join workers

	// life guards closed. Holders of the read lock may call memberlist
	// methods that must not run after Shutdown (Leave, UpdateNode) and may
	// add to wg; Close takes the write lock to set closed.
	life      sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error

	// mu guards the fields below. It is taken inside memberlist callbacks
	// (which run with memberlist's own lock held), so it is never held
	// while calling memberlist or the broadcast queue.
	mu        sync.Mutex
	localMeta Meta
	metaBytes []byte                  // localMeta encoded
	members   map[string]*memberEntry // every known member, self included
	loads     map[string]*loadEntry   // latest load per remote node
	localLoad Load                    // normalized; what SetLoad last recorded
	localSeq  uint64                  // seq of localLoad; only grows
	loadDirty bool                    // localLoad (or localSeq) changed since the last broadcast
	seeds     []string                // cfg.Seeds plus every address given to Join, deduplicated
	refused   map[string]uint64       // member name -> fingerprint we already logged refusing
}

type memberEntry struct {
	m     Member
	since time.Time // when Health last changed
}

type loadEntry struct {
	have    bool // seq and load hold a complete Load
	seq     uint64
	load    Load
	updated time.Time
	pend    *pendingLoad // chunks of a newer seq being assembled
}

type pendingLoad struct {
	seq    uint64
	chunks [][]PartitionLoad
	got    []bool
	n      int
}

// New creates the memberlist instance (bound and answering, but not joined
// to anyone) and starts the rejoin and load goroutines. meta is the local
// metadata to announce. Errors wrap freqd.ErrInvalidArgument for a bad
// config or meta.
func New(cfg Config, meta Meta) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	metaBytes, err := meta.MarshalBinary()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Membership{
		cfg:       cfg,
		log:       cfg.Logger.With(slog.String("node", cfg.Name)),
		changes:   make(chan struct{}, 1),
		ctx:       ctx,
		cancel:    cancel,
		localMeta: meta,
		metaBytes: metaBytes,
		members:   make(map[string]*memberEntry),
		loads:     make(map[string]*loadEntry),
		localSeq:  uint64(cfg.Now().UnixNano()), // a restarted node's loads supersede its old ones
		refused:   make(map[string]uint64),
	}
	m.addSeeds(cfg.Seeds)

	mlc := memberlist.DefaultLANConfig()
	mlc.Name = cfg.Name
	cfg.Profile.apply(mlc)
	mlc.Transport = cfg.Transport
	if cfg.Transport == nil {
		hp, _ := splitHostPort("bind address", cfg.BindAddr) // validated
		if mlc.BindAddr, err = resolveOne("bind", hp.host); err != nil {
			cancel()
			return nil, err
		}
		if mlc.BindAddr == "" {
			mlc.BindAddr = "0.0.0.0"
		}
		mlc.BindPort = hp.port
	}
	mlc.AdvertiseAddr, mlc.AdvertisePort = "", mlc.BindPort
	if cfg.AdvertiseAddr != "" {
		hp, _ := splitHostPort("advertise address", cfg.AdvertiseAddr) // validated
		if mlc.AdvertiseAddr, err = resolveOne("advertise", hp.host); err != nil {
			cancel()
			return nil, err
		}
		mlc.AdvertisePort = hp.port
	}
	mlc.Logger = log.New(logWriter{log: m.log}, "", 0)
	h := hooks{m}
	mlc.Delegate, mlc.Events, mlc.Alive, mlc.Merge = h, h, h, h
	mlc.DelegateProtocolVersion, mlc.DelegateProtocolMin, mlc.DelegateProtocolMax = 1, 1, 1
	m.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       m.numKnown,
		RetransmitMult: mlc.RetransmitMult,
	}

	ml, err := memberlist.Create(mlc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("membership: start memberlist %q on %q: %w", cfg.Name, cfg.BindAddr, err)
	}
	m.ml = ml
	m.wg.Add(2)
	go m.rejoinLoop()
	go m.loadLoop()
	return m, nil
}

// LocalName returns this node's name.
func (m *Membership) LocalName() string { return m.cfg.Name }

// GossipAddr returns the host:port this node advertises for gossip (with
// BindAddr port 0, the port actually bound).
func (m *Membership) GossipAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.members[m.cfg.Name]; e != nil {
		return e.m.GossipAddr
	}
	return ""
}

// Join contacts seeds (host:port each) and merges state with them. It
// returns how many were reached; it fails only if none was. The seeds are
// remembered for JoinSeeds and the rejoin loop. ctx bounds the wait; a
// push-pull already dialling finishes in the background within the
// memberlist TCP timeout (Close waits for it).
func (m *Membership) Join(ctx context.Context, seeds []string) (int, error) {
	for _, s := range seeds {
		if _, err := splitHostPort("seed", s); err != nil {
			return 0, err
		}
	}
	m.addSeeds(seeds)
	return m.join(ctx, seeds)
}

// JoinSeeds joins Config.Seeds and every seed given to Join so far. With no
// seeds it does nothing and returns 0, nil.
func (m *Membership) JoinSeeds(ctx context.Context) (int, error) {
	seeds := m.seedList()
	if len(seeds) == 0 {
		return 0, nil
	}
	return m.join(ctx, seeds)
}

// Seeds returns the seeds JoinSeeds and the rejoin loop use.
func (m *Membership) Seeds() []string { return m.seedList() }

func (m *Membership) addSeeds(seeds []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range seeds {
		if !slices.Contains(m.seeds, s) {
			m.seeds = append(m.seeds, s)
		}
	}
}

func (m *Membership) seedList() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.seeds)
}

var errClosed = fmt.Errorf("membership: closed: %w", freqd.ErrUnavailable)

func (m *Membership) join(ctx context.Context, seeds []string) (int, error) {
	named := strings.Join(seeds, ", ")
	m.life.RLock()
	if m.closed {
		m.life.RUnlock()
		return 0, fmt.Errorf("membership: join [%s]: %w", named, errClosed)
	}
	m.wg.Add(1)
	m.life.RUnlock()

	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	jctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	go func() {
		defer m.wg.Done()
		defer cancel()
		defer stop()
		n, err := m.joinEach(jctx, seeds)
		res <- result{n, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		select {
		case r = <-res:
		default:
			return 0, fmt.Errorf("membership: join [%s]: %w", named, ctx.Err())
		}
	case <-m.ctx.Done():
		return 0, fmt.Errorf("membership: join [%s]: %w", named, errClosed)
	}
	if r.err != nil {
		return r.n, fmt.Errorf("membership: join [%s]: %w", named, r.err)
	}
	return r.n, nil
}

// joinEach joins seeds one at a time, so ctx is checked between them.
// It returns an error only if no seed was reached.
func (m *Membership) joinEach(ctx context.Context, seeds []string) (int, error) {
	total := 0
	var errs []error
	for _, s := range seeds {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		n, err := m.ml.Join([]string{s})
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if total > 0 {
		return total, nil
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no seed reached: %w", freqd.ErrUnavailable))
	}
	return 0, errors.Join(errs...)
}

// Members returns every known member, this node included, sorted by name.
// Dead and left members stay listed for Config.ForgetAfter.
func (m *Membership) Members() []Member {
	return m.membersWhere(func(Health) bool { return true })
}

// Alive returns the alive and suspect members (memberlist still routes to
// suspects), this node included unless it left, sorted by name.
func (m *Membership) Alive() []Member {
	return m.membersWhere(Health.Routable)
}

func (m *Membership) membersWhere(keep func(Health) bool) []Member {
	m.mu.Lock()
	out := make([]Member, 0, len(m.members))
	for _, e := range m.members {
		if keep(e.m.Health) {
			out = append(out, e.m)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// NumMembers returns how many members are alive or suspect, this node
// included (len(Alive())).
func (m *Membership) NumMembers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.members {
		if e.m.Health.Routable() {
			n++
		}
	}
	return n
}

// numKnown is the cluster size the broadcast queue scales retransmits by.
func (m *Membership) numKnown() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.members)
}

// Changes returns a channel with capacity 1 that gets a token after any
// join, leave, metadata update, health change or forgotten member. Many
// changes coalesce into one token, so a consumer that rebuilds its whole
// view per token never falls behind. The channel is never closed.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

func (m *Membership) signal() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// SetMeta records meta as the local metadata and gossips it, waiting up to
// Config.MetaTimeout for the broadcast to go out. If the wait times out the
// new metadata is still in effect and keeps spreading; the error says so.
func (m *Membership) SetMeta(meta Meta) error {
	b, err := meta.MarshalBinary()
	if err != nil {
		return err
	}
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return fmt.Errorf("membership: set meta: %w", errClosed)
	}
	m.mu.Lock()
	m.localMeta, m.metaBytes = meta, b
	m.mu.Unlock()
	if err := m.ml.UpdateNode(m.cfg.MetaTimeout); err != nil {
		return fmt.Errorf("membership: gossip meta update (applied locally): %w", err)
	}
	return nil
}

// LocalMeta returns the local metadata.
func (m *Membership) LocalMeta() Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.localMeta
}

// SetLoad records the local load (sorted by ID; of duplicate IDs the last
// wins). The load goroutine broadcasts it within Config.LoadInterval if
// it differs from the previous one.
func (m *Membership) SetLoad(l Load) {
	l = l.normalize()
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.Equal(m.localLoad) {
		return
	}
	m.localLoad = l
	m.localSeq++
	m.loadDirty = true
}

// Loads returns the latest load of every alive or suspect member as
// received by gossip, plus this node's own (as last given to SetLoad).
// Members that are dead, left or unknown are left out. The map and its
// slices are the caller's.
func (m *Membership) Loads() map[string]Load {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Load{m.cfg.Name: m.localLoad.Clone()}
	for name, e := range m.loads {
		if me := m.members[name]; e.have && me != nil && me.m.Health.Routable() {
			out[name] = e.load.Clone()
		}
	}
	return out
}

// Leave announces that this node is leaving: it first gossips its metadata
// with State StateLeaving (unless already so), so peers report it as
// HealthLeft rather than HealthDead, then calls memberlist's Leave, which
// broadcasts the intent and waits up to timeout for it to go out (0 =
// wait as long as it takes). The node keeps gossiping until Close.
func (m *Membership) Leave(timeout time.Duration) error {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return fmt.Errorf("membership: leave: %w", errClosed)
	}
	start := m.cfg.Now()
	m.mu.Lock()
	announce := m.localMeta.State != StateLeaving
	if announce {
		m.localMeta.State = StateLeaving
		m.metaBytes, _ = m.localMeta.MarshalBinary() // valid: only State changed, to a valid one
	}
	m.mu.Unlock()
	if announce {
		if err := m.ml.UpdateNode(timeout); err != nil {
			m.log.Debug("leaving: metadata broadcast not confirmed", slog.Any("err", err))
		}
	}
	rest := timeout
	if timeout > 0 {
		if rest = timeout - m.cfg.Now().Sub(start); rest <= 0 {
			rest = time.Millisecond
		}
	}
	if err := m.ml.Leave(rest); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// Close stops the goroutines and shuts memberlist down without a leave
// broadcast (call Leave first to leave gracefully). It waits for the
// goroutines, is idempotent and returns the first call's result.
func (m *Membership) Close() error {
	m.closeOnce.Do(func() {
		m.life.Lock()
		m.closed = true
		m.life.Unlock()
		m.cancel()
		if err := m.ml.Shutdown(); err != nil {
			m.closeErr = fmt.Errorf("membership: shutdown memberlist: %w", err)
		}
		m.wg.Wait()
	})
	return m.closeErr
}

// rejoinLoop joins, every RejoinInterval, the seeds that are not alive
// members. It owns nothing; it reads the member table and calls Join.
func (m *Membership) rejoinLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			missing := m.missingSeeds(m.ctx, m.seedList())
			if len(missing) == 0 {
				continue
			}
			n, err := m.joinEach(m.ctx, missing)
			m.log.Debug("rejoin seeds that are not alive members",
				slog.Any("seeds", missing), slog.Int("reached", n), slog.Any("err", err))
		}
	}
}

// missingSeeds returns the seeds whose address is not the gossip address
// of an alive or suspect member. A seed that does not resolve is missing.
func (m *Membership) missingSeeds(ctx context.Context, seeds []string) []string {
	if len(seeds) == 0 {
		return nil
	}
	alive := make(map[string]bool)
	for _, mem := range m.Alive() {
		alive[mem.GossipAddr] = true
	}
	var missing []string
	for _, s := range seeds {
		if !seedPresent(ctx, s, alive) {
			missing = append(missing, s)
		}
	}
	return missing
}

func seedPresent(ctx context.Context, seed string, alive map[string]bool) bool {
	if alive[seed] {
		return true
	}
	hp, err := splitHostPort("seed", seed)
	if err != nil {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ips, err := resolveIPs(rctx, hp.host)
	if err != nil {
		return false
	}
	port := strconv.Itoa(hp.port)
	for _, ip := range ips {
		if alive[net.JoinHostPort(ip.String(), port)] {
			return true
		}
	}
	return false
}

// loadLoop broadcasts the local load when it changed, every LoadInterval,
// and forgets long-dead members. It owns the broadcast of our own load;
// the state it reads and writes is under mu.
func (m *Membership) loadLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.broadcastLoad()
			m.forget(m.cfg.Now())
		}
	}
}

func (m *Membership) broadcastLoad() {
	m.mu.Lock()
	if !m.loadDirty {
		m.mu.Unlock()
		return
	}
	m.loadDirty = false
	seq, load := m.localSeq, m.localLoad
	m.mu.Unlock()
	msgs, err := encodeLoadMessages(m.cfg.Name, seq, load)
	if err != nil {
		m.log.Error("cannot broadcast local load", slog.Any("err", err))
		return
	}
	for _, msg := range msgs {
		m.queue.QueueBroadcast(&loadBroadcast{sender: m.cfg.Name, seq: seq, msg: msg})
	}
}

// forget drops members dead or left for longer than ForgetAfter, and
// loads of nodes that are not members and have not updated for as long.
func (m *Membership) forget(now time.Time) {
	changed := false
	m.mu.Lock()
	for name, e := range m.members {
		if name != m.cfg.Name && !e.m.Health.Routable() && now.Sub(e.since) > m.cfg.ForgetAfter {
			delete(m.members, name)
			delete(m.loads, name)
			changed = true
		}
	}
	for name, e := range m.loads {
		if m.members[name] == nil && now.Sub(e.updated) > m.cfg.ForgetAfter {
			delete(m.loads, name)
		}
	}
	m.mu.Unlock()
	if changed {
		m.signal()
	}
}

// loadBroadcast is one load message in the broadcast queue. A newer seq
// from the same sender invalidates older ones still queued.
type loadBroadcast struct {
	sender string
	seq    uint64
	msg    []byte
}

var _ memberlist.Broadcast = (*loadBroadcast)(nil)

// Invalidates reports whether o is an older load message of the same sender.
func (b *loadBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*loadBroadcast)
	return ok && ob.sender == b.sender && ob.seq < b.seq
}

// Message returns the encoded load message.
func (b *loadBroadcast) Message() []byte { return b.msg }

// Finished does nothing: nobody waits for load broadcasts.
func (b *loadBroadcast) Finished() {}
