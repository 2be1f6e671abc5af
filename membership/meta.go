package membership

import (
	"encoding/binary"
	"fmt"
	"net"
	"unicode/utf8"

	"github.com/freqd/freqd"
	"github.com/hashicorp/memberlist"
)

// State is a node's lifecycle stage as it announces it in its metadata.
// Other nodes read it to decide whether to route to the node or place
// partitions on it.
type State uint8

// Lifecycle stages. The zero value is not a valid State.
const (
	// StateJoining: the node is in the cluster but not serving yet.
	StateJoining State = 1
	// StateActive: the node serves and may own partitions.
	StateActive State = 2
	// StateLeaving: the node is draining and about to leave. A member whose
	// last metadata said leaving is reported HealthLeft (not HealthDead)
	// once memberlist drops it.
	StateLeaving State = 3
)

// String returns "joining", "active" or "leaving" ("state(N)" otherwise).
func (s State) String() string {
	switch s {
	case StateJoining:
		return "joining"
	case StateActive:
		return "active"
	case StateLeaving:
		return "leaving"
	default:
		return fmt.Sprintf("state(%d)", uint8(s))
	}
}

// Valid reports whether s is one of the defined lifecycle stages.
func (s State) Valid() bool { return s >= StateJoining && s <= StateLeaving }

// Health is what the failure detector says about a member.
type Health uint8

// Member health. The zero value is not a valid Health.
const (
	// HealthAlive: the member answers probes.
	HealthAlive Health = iota + 1
	// HealthSuspect: the member missed probes and may be dead. memberlist
	// v0.7.0 does not expose suspicion through its API, so Members never
	// reports it today; it is kept so callers can already handle it.
	HealthSuspect
	// HealthDead: the member failed without announcing a leave.
	HealthDead
	// HealthLeft: the member left on purpose (it called Leave, or its
	// last metadata said StateLeaving).
	HealthLeft
)

// String returns "alive", "suspect", "dead" or "left" ("health(N)" otherwise).
func (h Health) String() string {
	switch h {
	case HealthAlive:
		return "alive"
	case HealthSuspect:
		return "suspect"
	case HealthDead:
		return "dead"
	case HealthLeft:
		return "left"
	default:
		return fmt.Sprintf("health(%d)", uint8(h))
	}
}

// Routable reports whether memberlist still routes to a member with this
// health (alive or suspect).
func (h Health) Routable() bool { return h == HealthAlive || h == HealthSuspect }

// Meta is the metadata a node gossips about itself. It travels in
// memberlist's alive messages, so its encoding must fit
// memberlist.MetaMaxSize bytes.
type Meta struct {
	// APIAddr is the host:port of the node's client API ("" = none yet).
	APIAddr string
	// PeerAddr is the host:port of the node's peer transport, which carries
	// node-to-node traffic (raft messages, forwarded requests); "" = none
	// (yet).
	PeerAddr string
	// State is the node's lifecycle stage; it must be valid.
	State State
	// Initialized says the node belongs to a cluster whose pool has been
	// created.
	Initialized bool
	// Fingerprint identifies the pool layout. Members with a fingerprint
	// different from ours are refused (see the package doc).
	Fingerprint uint64
	// ClusterID names the cluster the node belongs to, chosen at random by
	// the node that created the pool; 0 until the node has joined one. Two
	// members with different non-zero ClusterIDs refuse each other, so two
	// clusters that formed apart (each with its own copy of the pool) never
	// merge and fork the pool.
	ClusterID uint64
	// Incarnation identifies this run of the node's state: a node that
	// restarts without its data picks a new one, so replicas never count it
	// as holding what its previous incarnation held (docs/replication.md).
	Incarnation uint64
	// Degraded says the node cannot write its data directory (disk full,
	// read-only, I/O errors): it stays a member but owns no partitions
	// until it can again, so its partitions move to nodes that can keep
	// them.
	Degraded bool
}

// Meta wire format, version 3 (all of it, nothing may follow):
//
//	byte    version (3)
//	byte    state (1..3)
//	byte    flags (bit 0 = initialized, bit 1 = degraded; other bits
//	        must be zero)
//	8 bytes fingerprint, big endian
//	8 bytes cluster id, big endian
//	8 bytes incarnation, big endian
//	uvarint len(APIAddr), then APIAddr (UTF-8, at most MaxAddrLen bytes)
//	uvarint len(PeerAddr), then PeerAddr (UTF-8, at most MaxAddrLen bytes)
//
// Only version 3 decodes; version 2 (no PeerAddr) is refused.
const (
	metaVersion      = 3
	metaFlagInit     = 1 << 0
	metaFlagDegraded = 1 << 1
	metaFixedLen     = 1 + 1 + 1 + 8 + 8 + 8
	flagsKnownMask   = metaFlagInit | metaFlagDegraded
	// metaAddrLenBytes is the most bytes the uvarint length of an address
	// takes: 2, since MaxAddrLen < 1<<14.
	metaAddrLenBytes = 2
	// MaxAddrLen is the longest Meta.APIAddr or Meta.PeerAddr accepted, in
	// bytes: the most that lets both fit memberlist.MetaMaxSize.
	MaxAddrLen = (memberlist.MetaMaxSize - metaFixedLen - 2*metaAddrLenBytes) / 2
)

// Encoded meta always fits memberlist's limit, and an address length
// always fits metaAddrLenBytes of uvarint.
var (
	_ = [memberlist.MetaMaxSize - (metaFixedLen + 2*metaAddrLenBytes + 2*MaxAddrLen)]struct{}{}
	_ = [1<<(7*metaAddrLenBytes) - 1 - MaxAddrLen]struct{}{}
)

// Validate checks the fields that MarshalBinary would refuse. Errors wrap
// freqd.ErrInvalidArgument.
func (m Meta) Validate() error {
	if !m.State.Valid() {
		return fmt.Errorf("membership: meta state %d is not joining, active or leaving: %w", uint8(m.State), freqd.ErrInvalidArgument)
	}
	if err := validateAddr("api", m.APIAddr); err != nil {
		return err
	}
	return validateAddr("peer", m.PeerAddr)
}

// validateAddr checks one address of a Meta: "" or host:port, valid UTF-8,
// at most MaxAddrLen bytes. what names it in the error.
func validateAddr(what, addr string) error {
	if len(addr) > MaxAddrLen {
		return fmt.Errorf("membership: meta %s address is %d bytes, longer than %d: %w", what, len(addr), MaxAddrLen, freqd.ErrInvalidArgument)
	}
	if !utf8.ValidString(addr) {
		return fmt.Errorf("membership: meta %s address is not valid UTF-8: %w", what, freqd.ErrInvalidArgument)
	}
	if addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("membership: meta %s address %q is not host:port: %w", what, addr, freqd.ErrInvalidArgument)
		}
	}
	return nil
}

// MarshalBinary encodes m in the compact versioned format described above.
// It fails (wrapping freqd.ErrInvalidArgument) if m is not valid.
func (m Meta) MarshalBinary() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, metaFixedLen+2*metaAddrLenBytes+len(m.APIAddr)+len(m.PeerAddr))
	var flags byte
	if m.Initialized {
		flags |= metaFlagInit
	}
	if m.Degraded {
		flags |= metaFlagDegraded
	}
	b = append(b, metaVersion, byte(m.State), flags)
	b = binary.BigEndian.AppendUint64(b, m.Fingerprint)
	b = binary.BigEndian.AppendUint64(b, m.ClusterID)
	b = binary.BigEndian.AppendUint64(b, m.Incarnation)
	b = binary.AppendUvarint(b, uint64(len(m.APIAddr)))
	b = append(b, m.APIAddr...)
	b = binary.AppendUvarint(b, uint64(len(m.PeerAddr)))
	b = append(b, m.PeerAddr...)
	return b, nil
}

// UnmarshalBinary decodes b strictly: an unknown version, unknown flag
// bits, a non-minimal varint, trailing bytes or a field that Validate
// refuses are all errors (wrapping freqd.ErrInvalidArgument). On error m is
// left unchanged.
func (m *Meta) UnmarshalBinary(b []byte) error {
	if len(b) < metaFixedLen {
		return fmt.Errorf("membership: meta is %d bytes, shorter than %d: %w", len(b), metaFixedLen, freqd.ErrInvalidArgument)
	}
	if b[0] != metaVersion {
		return fmt.Errorf("membership: meta version %d is not supported: %w", b[0], freqd.ErrInvalidArgument)
	}
	if b[2]&^flagsKnownMask != 0 {
		return fmt.Errorf("membership: meta has unknown flags %#x: %w", b[2], freqd.ErrInvalidArgument)
	}
	out := Meta{
		State:       State(b[1]),
		Initialized: b[2]&metaFlagInit != 0,
		Degraded:    b[2]&metaFlagDegraded != 0,
		Fingerprint: binary.BigEndian.Uint64(b[3:11]),
		ClusterID:   binary.BigEndian.Uint64(b[11:19]),
		Incarnation: binary.BigEndian.Uint64(b[19:27]),
	}
	r := reader{b: b[metaFixedLen:]}
	api, err := r.bytes(MaxAddrLen)
	if err != nil {
		return fmt.Errorf("membership: meta api address: %w", err)
	}
	peer, err := r.bytes(MaxAddrLen)
	if err != nil {
		return fmt.Errorf("membership: meta peer address: %w", err)
	}
	if err := r.end(); err != nil {
		return fmt.Errorf("membership: meta: %w", err)
	}
	out.APIAddr, out.PeerAddr = string(api), string(peer)
	if err := out.Validate(); err != nil {
		return err
	}
	*m = out
	return nil
}
