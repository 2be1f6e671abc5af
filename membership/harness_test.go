package membership

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind. One
// memberlist goroutine is let off: Shutdown does not wait for a probe in
// flight, which ends by itself within one probe interval.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}

func t0ctx() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }

// recorder is a slog.Handler that keeps every record, for assertions and
// for dumping when a test fails.
type recorder struct {
	mu    sync.Mutex
	recs  []string
	attrs []slog.Attr
}

type record struct {
	level slog.Level
	msg   string
	line  string
}

var _ slog.Handler = (*recorder)(nil)

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", rec.Time.Format("15:04:05.000"), rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s", a)
	}
	rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s", a); return true })
	r.mu.Lock()
	r.recs = append(r.recs, fmt.Sprintf("%d\x00%s\x00%s", rec.Level, rec.Message, b.String()))
	r.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	// Share the record list; keep the attributes for the printed line.
	return &recorderView{r: r, attrs: as}
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

type recorderView struct {
	r     *recorder
	attrs []slog.Attr
}

func (v *recorderView) Enabled(context.Context, slog.Level) bool { return true }
func (v *recorderView) Handle(ctx context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(v.attrs...)
	return v.r.Handle(ctx, rec)
}
func (v *recorderView) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorderView{r: v.r, attrs: append(append([]slog.Attr(nil), v.attrs...), as...)}
}
func (v *recorderView) WithGroup(string) slog.Handler { return v }

func (r *recorder) all() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]record, 0, len(r.recs))
	for _, s := range r.recs {
		var lvl int
		parts := strings.SplitN(s, "\x00", 3)
		fmt.Sscan(parts[0], &lvl)
		out = append(out, record{level: slog.Level(lvl), msg: parts[1], line: parts[2]})
	}
	return out
}

func (r *recorder) count(level slog.Level, msg string) int {
	n := 0
	for _, rec := range r.all() {
		if rec.level == level && rec.msg == msg {
			n++
		}
	}
	return n
}

func (r *recorder) find(level slog.Level, msg string) []string {
	var out []string
	for _, rec := range r.all() {
		if rec.level == level && rec.msg == msg {
			out = append(out, rec.line)
		}
	}
	return out
}

// cluster starts nodes on 127.0.0.1 with the fast profile and closes them
// at the end of the test; on failure it dumps the logs.
type cluster struct {
	t     *testing.T
	logs  *recorder
	nodes map[string]*Membership
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, logs: &recorder{}, nodes: map[string]*Membership{}}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			_ = n.Close()
		}
		if t.Failed() || os.Getenv("MEMBERSHIP_TEST_LOGS") != "" {
			for _, r := range c.logs.all() {
				t.Log(r.line)
			}
		}
	})
	return c
}

type nodeOpt func(*Config, *Meta)

func withSeeds(seeds ...string) nodeOpt  { return func(c *Config, _ *Meta) { c.Seeds = seeds } }
func withFingerprint(fp uint64) nodeOpt  { return func(_ *Config, m *Meta) { m.Fingerprint = fp } }
func withBind(addr string) nodeOpt       { return func(c *Config, _ *Meta) { c.BindAddr = addr } }
func withRejoin(d time.Duration) nodeOpt { return func(c *Config, _ *Meta) { c.RejoinInterval = d } }
func withForget(d time.Duration) nodeOpt { return func(c *Config, _ *Meta) { c.ForgetAfter = d } }

func (c *cluster) start(name string, opts ...nodeOpt) *Membership {
	c.t.Helper()
	prof, err := ProfileByName(ProfileFast)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{
		Name:           name,
		BindAddr:       "127.0.0.1:0",
		Profile:        prof,
		RejoinInterval: time.Minute,
		LoadInterval:   20 * time.Millisecond,
		Logger:         slog.New(c.logs),
	}
	meta := Meta{APIAddr: "127.0.0.1:1" + fmt.Sprint(len(c.nodes)), PeerAddr: "127.0.0.1:2" + fmt.Sprint(len(c.nodes)), State: StateJoining, Fingerprint: 1}
	for _, o := range opts {
		o(&cfg, &meta)
	}
	m, err := New(cfg, meta)
	if err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	c.nodes[name] = m
	return m
}

// join starts n nodes node-0..node-{n-1}; all but the first join through
// the first.
func (c *cluster) join(n int) []*Membership {
	c.t.Helper()
	first := c.start("node-0")
	out := []*Membership{first}
	for i := 1; i < n; i++ {
		m := c.start(fmt.Sprintf("node-%d", i), withSeeds(first.GossipAddr()))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := m.JoinSeeds(ctx); err != nil {
			cancel()
			c.t.Fatalf("node-%d join: %v", i, err)
		}
		cancel()
		out = append(out, m)
	}
	c.waitAllAlive(out...)
	return out
}

func (c *cluster) waitAllAlive(ms ...*Membership) {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, func() (bool, string) {
		for _, m := range ms {
			if got := m.NumMembers(); got != len(ms) {
				return false, fmt.Sprintf("%s sees %d alive: %v", m.LocalName(), got, names(m.Alive()))
			}
		}
		return true, ""
	})
}

func names(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name + "/" + m.Health.String()
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", d, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func member(ms []Member, name string) (Member, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// drain empties a Changes channel.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
