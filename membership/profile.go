package membership

import (
	"fmt"
	"time"

	"github.com/freqd/freqd"
	"github.com/hashicorp/memberlist"
)

// Profile is the failure-detection and gossip timing of memberlist. Use
// ProfileByName for a named starting point, then override fields.
type Profile struct {
	// ProbeInterval is the time between probes of a random member.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for an ack; it must not
	// exceed ProbeInterval.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspect member has to refute before
	// it is declared dead (SuspicionMult * log10(N) * ProbeInterval).
	SuspicionMult int
	// GossipInterval is the time between gossip rounds; it carries
	// metadata and load broadcasts, so it must be positive.
	GossipInterval time.Duration
	// PushPullInterval is the time between full state exchanges with a
	// random member; 0 disables them (then late joiners learn loads only
	// from the join exchange and later broadcasts).
	PushPullInterval time.Duration
}

// Profile names understood by ProfileByName.
const (
	ProfileLAN   = "lan"
	ProfileLocal = "local"
	ProfileFast  = "fast"
)

// ProfileByName returns a named profile:
//
//   - "lan": memberlist.DefaultLANConfig's values;
//   - "local": memberlist.DefaultLocalConfig's values;
//   - "fast": "lan" with ProbeInterval 100ms, ProbeTimeout 50ms,
//     SuspicionMult 2, GossipInterval 50ms, PushPullInterval 5s, for
//     sub-second failure detection on a LAN (and quick tests).
//
// An unknown name is an error naming it, wrapping freqd.ErrInvalidArgument.
func ProfileByName(name string) (Profile, error) {
	switch name {
	case ProfileLAN:
		return profileOf(memberlist.DefaultLANConfig()), nil
	case ProfileLocal:
		return profileOf(memberlist.DefaultLocalConfig()), nil
	case ProfileFast:
		p := profileOf(memberlist.DefaultLANConfig())
		p.ProbeInterval = 100 * time.Millisecond
		p.ProbeTimeout = 50 * time.Millisecond
		p.SuspicionMult = 2
		p.GossipInterval = 50 * time.Millisecond
		p.PushPullInterval = 5 * time.Second
		return p, nil
	default:
		return Profile{}, fmt.Errorf("membership: unknown gossip profile %q (want %q, %q or %q): %w",
			name, ProfileLAN, ProfileLocal, ProfileFast, freqd.ErrInvalidArgument)
	}
}

func profileOf(c *memberlist.Config) Profile {
	return Profile{
		ProbeInterval:    c.ProbeInterval,
		ProbeTimeout:     c.ProbeTimeout,
		SuspicionMult:    c.SuspicionMult,
		GossipInterval:   c.GossipInterval,
		PushPullInterval: c.PushPullInterval,
	}
}

// Validate checks p. Errors wrap freqd.ErrInvalidArgument.
func (p Profile) Validate() error {
	switch {
	case p.ProbeInterval <= 0:
		return fmt.Errorf("membership: profile probe interval %v must be positive: %w", p.ProbeInterval, freqd.ErrInvalidArgument)
	case p.ProbeTimeout <= 0 || p.ProbeTimeout > p.ProbeInterval:
		return fmt.Errorf("membership: profile probe timeout %v must be positive and at most the probe interval %v: %w", p.ProbeTimeout, p.ProbeInterval, freqd.ErrInvalidArgument)
	case p.SuspicionMult < 1:
		return fmt.Errorf("membership: profile suspicion multiplier %d must be at least 1: %w", p.SuspicionMult, freqd.ErrInvalidArgument)
	case p.GossipInterval <= 0:
		return fmt.Errorf("membership: profile gossip interval %v must be positive: %w", p.GossipInterval, freqd.ErrInvalidArgument)
	case p.PushPullInterval < 0:
		return fmt.Errorf("membership: profile push-pull interval %v must not be negative: %w", p.PushPullInterval, freqd.ErrInvalidArgument)
	}
	return nil
}

func (p Profile) apply(c *memberlist.Config) {
	c.ProbeInterval = p.ProbeInterval
	c.ProbeTimeout = p.ProbeTimeout
	c.SuspicionMult = p.SuspicionMult
	c.GossipInterval = p.GossipInterval
	c.PushPullInterval = p.PushPullInterval
}
