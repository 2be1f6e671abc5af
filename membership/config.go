package membership

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/freqd/freqd"
	"github.com/hashicorp/memberlist"
)

// Config configures a Membership. Zero values of the optional fields mean
// the default named in each field's comment.
type Config struct {
	// Name is this node's unique name in the cluster (1..MaxNameLen bytes
	// of UTF-8). Required.
	Name string
	// BindAddr is the host:port to bind gossip on, TCP and UDP. Port 0
	// picks a free port (see GossipAddr for the one chosen). A hostname is
	// resolved once, in New. Required unless Transport is set; ignored if
	// it is.
	BindAddr string
	// AdvertiseAddr is the host:port other members reach us at; "" means
	// the bound address and port (for a 0.0.0.0 bind memberlist picks a
	// private IP of this host).
	AdvertiseAddr string
	// Seeds are host:port addresses of members to join through. JoinSeeds
	// joins them, and the rejoin loop keeps rejoining the ones that are
	// not alive members. Empty = a node that waits to be joined.
	Seeds []string
	// Profile is the gossip and failure-detection timing, already resolved
	// by the caller (see ProfileByName). Zero = the "lan" profile.
	Profile Profile
	// RejoinInterval is how often the rejoin loop looks for seeds that
	// are not alive members and joins them again (memberlist itself never
	// re-joins after a healed partition). 0 = 5s.
	RejoinInterval time.Duration
	// LoadInterval is how often the local Load is broadcast if it changed
	// (SetLoad only records it). 0 = 200ms.
	LoadInterval time.Duration
	// ForgetAfter is how long a dead or left member stays in Members
	// (and its load in memory) before it is forgotten. 0 = 30s.
	ForgetAfter time.Duration
	// MetaTimeout bounds how long SetMeta and Leave wait for a metadata
	// broadcast to go out. 0 = 5s.
	MetaTimeout time.Duration
	// Logger receives this package's logs and memberlist's own. nil
	// discards them.
	Logger *slog.Logger
	// Transport carries gossip. nil = memberlist's NetTransport on
	// BindAddr; tests may pass memberlist's MockNetwork transports or
	// their own.
	Transport memberlist.Transport
	// Now is the clock, used to stamp membership changes and to seed the
	// load sequence numbers. nil = time.Now.
	Now func() time.Time
}

// Defaults of the optional Config fields.
const (
	DefaultRejoinInterval = 5 * time.Second
	DefaultLoadInterval   = 200 * time.Millisecond
	DefaultForgetAfter    = 30 * time.Second
	DefaultMetaTimeout    = 5 * time.Second
)

// withDefaults returns c with every zero optional field set to its default.
func (c Config) withDefaults() (Config, error) {
	if c.Profile == (Profile{}) {
		p, err := ProfileByName(ProfileLAN)
		if err != nil {
			return c, err
		}
		c.Profile = p
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = DefaultRejoinInterval
	}
	if c.LoadInterval == 0 {
		c.LoadInterval = DefaultLoadInterval
	}
	if c.ForgetAfter == 0 {
		c.ForgetAfter = DefaultForgetAfter
	}
	if c.MetaTimeout == 0 {
		c.MetaTimeout = DefaultMetaTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Seeds = append([]string(nil), c.Seeds...)
	return c, nil
}

// Validate checks c as New would use it (after defaults). Errors wrap
// freqd.ErrInvalidArgument.
func (c Config) Validate() error {
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	if err := validName(c.Name); err != nil {
		return fmt.Errorf("membership: config name: %w", err)
	}
	if c.Transport == nil {
		if _, err := splitHostPort("bind address", c.BindAddr); err != nil {
			return err
		}
	}
	if c.AdvertiseAddr != "" {
		if _, err := splitHostPort("advertise address", c.AdvertiseAddr); err != nil {
			return err
		}
	}
	for _, s := range c.Seeds {
		if _, err := splitHostPort("seed", s); err != nil {
			return err
		}
	}
	if err := c.Profile.Validate(); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"rejoin interval", c.RejoinInterval},
		{"load interval", c.LoadInterval},
		{"forget-after", c.ForgetAfter},
		{"meta timeout", c.MetaTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("membership: config %s %v must not be negative: %w", d.name, d.v, freqd.ErrInvalidArgument)
		}
	}
	return nil
}

type hostPort struct {
	host string
	port int
}

func splitHostPort(what, addr string) (hostPort, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return hostPort{}, fmt.Errorf("membership: %s %q: %w: %w", what, addr, err, freqd.ErrInvalidArgument)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return hostPort{}, fmt.Errorf("membership: %s %q: bad port: %w", what, addr, freqd.ErrInvalidArgument)
	}
	return hostPort{host: host, port: int(port)}, nil
}

// resolveIPs returns the IPs of host: itself if it is an IP literal, else
// what the resolver says. "" resolves to nothing.
func resolveIPs(ctx context.Context, host string) ([]net.IP, error) {
	if host == "" {
		return nil, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]net.IP, len(addrs))
	for i, a := range addrs {
		out[i] = a.IP
	}
	return out, nil
}

// resolveOne resolves host to one IP for binding or advertising,
// preferring IPv4; "" stays "" (memberlist's default).
func resolveOne(what, host string) (string, error) {
	if host == "" {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := resolveIPs(ctx, host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("membership: resolve %s host %q: %v: %w", what, host, err, freqd.ErrInvalidArgument)
	}
	for _, ip := range ips {
		if ip4 := ip.To4(); ip4 != nil {
			return ip4.String(), nil
		}
	}
	return ips[0].String(), nil
}
