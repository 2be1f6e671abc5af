package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxPartitions is the most partitions a pool may have; it matches
// pool.MaxPartitions, and bounds the per-partition state of a node.
const maxPartitions = 1 << 20

// Validate checks every field and the rules between fields. It returns nil
// or the errors.Join of one *Error per problem, each naming the key and
// the value. It does not touch the network or the file system.
func (c Config) Validate() error { return join(c.problems()) }

// problems does the work of Validate.
func (c Config) problems() []*Error {
	var ps []*Error
	add := func(p *Error) {
		if p != nil {
			ps = append(ps, p)
		}
	}

	// node
	switch name := c.Node.Name; {
	case name == "":
		add(problem("node.name", name, "must not be empty"))
	case !utf8.ValidString(name):
		add(problem("node.name", name, "is not valid UTF-8"))
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		add(problem("node.name", name, "must not contain spaces or control characters"))
	}
	if c.Node.DataDir == "" {
		add(problem("node.data_dir", c.Node.DataDir, "must not be empty"))
	}
	switch c.Node.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNone:
	default:
		add(problem("node.fsync", c.Node.Fsync, "must be %s, %s or %s", FsyncAlways, FsyncInterval, FsyncNone))
	}
	if c.Node.FsyncInterval <= 0 {
		add(problem("node.fsync_interval", c.Node.FsyncInterval, "must be positive"))
	}

	// addresses
	add(checkAddr("api.addr", c.API.Addr, false))
	add(checkAddr("peer.addr", c.Peer.Addr, false))
	add(checkAddr("gossip.addr", c.Gossip.Addr, false))
	if c.Gossip.Advertise != "" {
		add(checkAddr("gossip.advertise", c.Gossip.Advertise, true))
	}
	seen := make(map[string]int, len(c.Gossip.Seeds))
	for i, s := range c.Gossip.Seeds {
		key := fmt.Sprintf("gossip.seeds[%d]", i)
		if p := checkAddr(key, s, true); p != nil {
			add(p)
			continue
		}
		if j, dup := seen[s]; dup {
			add(problem(key, s, "duplicate of gossip.seeds[%d]", j))
			continue
		}
		seen[s] = i
	}
	if sharePort(c.API.Addr, c.Gossip.Addr) {
		add(problem("api.addr", c.API.Addr,
			"same port as gossip.addr = %q (gossip listens on TCP and UDP there)", c.Gossip.Addr))
	}
	if sharePort(c.Peer.Addr, c.API.Addr) {
		add(problem("peer.addr", c.Peer.Addr, "same port as api.addr = %q", c.API.Addr))
	}
	if sharePort(c.Peer.Addr, c.Gossip.Addr) {
		add(problem("peer.addr", c.Peer.Addr,
			"same port as gossip.addr = %q (gossip listens on TCP and UDP there)", c.Gossip.Addr))
	}

	// gossip timing
	if !oneOf(c.Gossip.Profile, ProfileLAN, ProfileLocal, ProfileFast) {
		add(problem("gossip.profile", c.Gossip.Profile, "unknown profile; want %s, %s or %s",
			ProfileLAN, ProfileLocal, ProfileFast))
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{
		{"gossip.probe_interval", c.Gossip.ProbeInterval},
		{"gossip.probe_timeout", c.Gossip.ProbeTimeout},
		{"gossip.gossip_interval", c.Gossip.GossipInterval},
		{"gossip.push_pull_interval", c.Gossip.PushPullInterval},
		{"gossip.rejoin_interval", c.Gossip.RejoinInterval},
	} {
		if d.d < 0 {
			add(problem(d.key, d.d, "must not be negative (0 keeps the default)"))
		}
	}
	if pi, pt := c.Gossip.ProbeInterval, c.Gossip.ProbeTimeout; pi > 0 && pt > 0 && pt >= pi {
		add(problem("gossip.probe_timeout", pt, "must be less than gossip.probe_interval = %s", pi))
	}
	if c.Gossip.SuspicionMult < 0 {
		add(problem("gossip.suspicion_mult", c.Gossip.SuspicionMult, "must not be negative (0 keeps the default)"))
	}

	// pool
	total, rps := checkRanges(c.Pool.Ranges)
	ps = append(ps, rps...)
	switch p := c.Pool.Partitions; {
	case p < 0:
		add(problem("pool.partitions", p, "must not be negative (0 lets the pool decide)"))
	case p > maxPartitions:
		add(problem("pool.partitions", p, "more than the maximum %d", maxPartitions))
	case p == 0 || len(rps) > 0:
		// Nothing to check against, or the ranges are already wrong.
	case uint64(p) > total:
		add(problem("pool.partitions", p, "more than the %d frequencies in pool.ranges", total))
	case p < len(c.Pool.Ranges):
		add(problem("pool.partitions", p,
			"fewer than the %d entries of pool.ranges (a partition never spans two ranges)", len(c.Pool.Ranges)))
	}

	// the rest
	if c.Replication.Factor < 1 {
		add(problem("replication.factor", c.Replication.Factor, "must be at least 1"))
	}
	if !oneOf(c.Routing.Strategy, StrategyLocalFirst, StrategyRoundRobin, StrategyMostFree) {
		add(problem("routing.strategy", c.Routing.Strategy, "unknown strategy; want %s, %s or %s",
			StrategyLocalFirst, StrategyRoundRobin, StrategyMostFree))
	}
	if c.Cluster.BootstrapExpect < 1 {
		add(problem("cluster.bootstrap_expect", c.Cluster.BootstrapExpect, "must be at least 1"))
	}
	if !oneOf(c.Log.Level, LevelDebug, LevelInfo, LevelWarn, LevelError) {
		add(problem("log.level", c.Log.Level, "unknown level; want %s, %s, %s or %s",
			LevelDebug, LevelInfo, LevelWarn, LevelError))
	}
	if !oneOf(c.Log.Format, FormatText, FormatJSON) {
		add(problem("log.format", c.Log.Format, "unknown format; want %s or %s", FormatText, FormatJSON))
	}
	return ps
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

// checkAddr checks that s is host:port with a numeric port 1-65535. A
// listen address may leave the host empty (every interface); an address
// others dial (dial) needs a host, and not 0.0.0.0 or [::].
func checkAddr(key, s string, dial bool) *Error {
	host, _, err := splitAddr(s)
	if err != nil {
		return problem(key, s, "%w", err)
	}
	if host == "" {
		if dial {
			return problem(key, s, "missing host")
		}
		return nil
	}
	if ip := net.ParseIP(host); ip != nil {
		if dial && ip.IsUnspecified() {
			return problem(key, s, "%s cannot be dialed; give an address other nodes can reach", host)
		}
		return nil
	}
	if strings.Contains(s, "[") {
		return problem(key, s, "%q in brackets is not an IPv6 address", host)
	}
	if !validHostname(host) {
		return problem(key, s, "host %q is not an IP address or host name", host)
	}
	return nil
}

// splitAddr splits host:port and checks the port.
func splitAddr(s string) (host string, port int, err error) {
	if s == "" {
		return "", 0, fmt.Errorf("empty; want host:port")
	}
	if !strings.Contains(s, ":") {
		return "", 0, fmt.Errorf("missing port")
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		switch {
		case errors.As(err, &ae) && strings.Contains(ae.Err, "too many colons"):
			return "", 0, errors.New("an IPv6 address needs brackets, as in [::1]:7946")
		case errors.As(err, &ae):
			return "", 0, fmt.Errorf("want host:port: %s", ae.Err)
		}
		return "", 0, fmt.Errorf("want host:port: %w", err)
	}
	if p == "" {
		return "", 0, fmt.Errorf("missing port")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return "", 0, fmt.Errorf("port %q is not a number", p)
		}
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("port %s is out of range 1-65535", p)
	}
	return host, n, nil
}

// validHostname reports whether h looks like a DNS name: dot-separated
// labels of letters, digits, '-' and '_', 1-63 bytes each, 253 in all; a
// trailing dot is allowed.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// sharePort reports whether two valid listen addresses would collide: the
// same port, and the same host or either one on every interface.
func sharePort(a, b string) bool {
	ha, pa, errA := splitAddr(a)
	hb, pb, errB := splitAddr(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	wild := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "" || ip != nil && ip.IsUnspecified()
	}
	return ha == hb || wild(ha) || wild(hb)
}
