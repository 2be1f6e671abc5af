package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"github.com/freqd/freqd"
)

// Config configures NewTCP. Zero values of the tunables mean their
// defaults (DefaultConfig); MaxFrame and MaxMessage must be the same on
// every member (the handshake refuses a peer whose limits differ).
type Config struct {
	// Self is this node's identity, sent in every handshake; required.
	Self Identity
	// Listener accepts the connections of peers; required. It is already
	// bound (the seam for a TLS wrap); the transport owns it from NewTCP
	// on and closes it on Close.
	Listener net.Listener
	// Dial opens a connection to a peer's address; nil means a
	// net.Dialer (TCP, with DialTimeout bounding ctx).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Resolve returns node id's current address; required. It is called
	// when Send or Call first names a node and on every (re)dial, so it
	// follows membership; false means the node is unknown.
	Resolve func(id uint64) (addr string, ok bool)
	// Admit decides whether a peer that completed the handshake may stay
	// connected: nil admits it; an error refuses it, its text sent as the
	// refusal's reason. It is called for every accepted connection (after
	// the transport has checked the cluster id and limits), from the
	// accepting goroutine; nil Admit admits every member of the cluster.
	Admit func(remote Identity) error
	// Handler receives what peers send; required.
	Handler Handler
	// ErrorCodec turns the handler's errors into codes and back; nil
	// sends code 0 and the error's text, and decodes nothing.
	ErrorCodec ErrorCodec
	// Logger receives refused handshakes, protocol errors and connection
	// changes; nil discards them.
	Logger *slog.Logger

	// MaxFrame is the largest frame payload, in bytes: a message up to it
	// goes in one frame on the main lane, a larger one in chunks of it on
	// the bulk lane. It bounds requests and replies too. 0 means 1 MiB;
	// at least 4 KiB.
	MaxFrame int
	// MaxMessage is the largest message Send accepts, in bytes. 0 means
	// 512 MiB; at least MaxFrame, below 4 GiB.
	MaxMessage int
	// QueueBytes bounds the bytes queued for one peer's main lane
	// (messages and requests, frame headers included); Send drops and
	// Call fails fast beyond it. 0 means 8 MiB; at least MaxFrame plus a
	// frame header.
	QueueBytes int
	// BulkQueueBytes bounds the bytes of large messages queued for one
	// peer; a message is always queued if nothing is. 0 means 64 MiB.
	BulkQueueBytes int
	// MaxCallsPerConn bounds the calls served at once per connection;
	// more are refused with ErrBusy. 0 means 64.
	MaxCallsPerConn int
	// DialTimeout bounds one dial; 0 means 5s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the handshake after the connection is
	// open, on either side; 0 means 5s.
	HandshakeTimeout time.Duration
	// KeepAlive is how often the dialer pings each connection (the
	// acceptor answers); 0 means 2s.
	KeepAlive time.Duration
	// IdleTimeout closes a connection on which nothing was read for that
	// long, and bounds each write; 0 means 10s; at least 2*KeepAlive.
	IdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait after a failed dial,
	// doubling from BackoffMin; Send and Call to that node fail fast
	// until it has passed. 0 means 100ms and 5s.
	BackoffMin time.Duration
	BackoffMax time.Duration
}

// Defaults.
const (
	DefaultMaxFrame        = 1 << 20
	DefaultMaxMessage      = 512 << 20
	DefaultQueueBytes      = 8 << 20
	DefaultBulkQueueBytes  = 64 << 20
	DefaultMaxCallsPerConn = 64
	DefaultDialTimeout     = 5 * time.Second
	DefaultHandshakeTime   = 5 * time.Second
	DefaultKeepAlive       = 2 * time.Second
	DefaultIdleTimeout     = 10 * time.Second
	DefaultBackoffMin      = 100 * time.Millisecond
	DefaultBackoffMax      = 5 * time.Second
)

// DefaultConfig returns a Config with every tunable at its default and
// the required fields (Self, Listener, Resolve, Handler) empty.
func DefaultConfig() Config {
	return Config{
		MaxFrame:         DefaultMaxFrame,
		MaxMessage:       DefaultMaxMessage,
		QueueBytes:       DefaultQueueBytes,
		BulkQueueBytes:   DefaultBulkQueueBytes,
		MaxCallsPerConn:  DefaultMaxCallsPerConn,
		DialTimeout:      DefaultDialTimeout,
		HandshakeTimeout: DefaultHandshakeTime,
		KeepAlive:        DefaultKeepAlive,
		IdleTimeout:      DefaultIdleTimeout,
		BackoffMin:       DefaultBackoffMin,
		BackoffMax:       DefaultBackoffMax,
	}
}

// withDefaults returns c with zero tunables replaced by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.MaxFrame, d.MaxFrame)
	setInt(&c.MaxMessage, d.MaxMessage)
	setInt(&c.QueueBytes, d.QueueBytes)
	setInt(&c.BulkQueueBytes, d.BulkQueueBytes)
	setInt(&c.MaxCallsPerConn, d.MaxCallsPerConn)
	setDur(&c.DialTimeout, d.DialTimeout)
	setDur(&c.HandshakeTimeout, d.HandshakeTimeout)
	setDur(&c.KeepAlive, d.KeepAlive)
	setDur(&c.IdleTimeout, d.IdleTimeout)
	setDur(&c.BackoffMin, d.BackoffMin)
	setDur(&c.BackoffMax, d.BackoffMax)
	return c
}

// Validate reports every problem of c (with zero tunables taken as their
// defaults) at once, wrapping freqd.ErrInvalidArgument.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := c.Self.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Listener == nil {
		add("Listener is required")
	}
	if c.Resolve == nil {
		add("Resolve is required")
	}
	if c.Handler == nil {
		add("Handler is required")
	}
	if c.MaxFrame < minFrame {
		add("MaxFrame %d is below %d", c.MaxFrame, minFrame)
	}
	if c.MaxMessage < c.MaxFrame || c.MaxMessage > math.MaxUint32 {
		add("MaxMessage %d must be in [MaxFrame %d, %d]", c.MaxMessage, c.MaxFrame, uint32(math.MaxUint32))
	}
	if c.QueueBytes < c.MaxFrame+frameHeaderSize {
		add("QueueBytes %d is below MaxFrame %d plus a %d-byte frame header", c.QueueBytes, c.MaxFrame, frameHeaderSize)
	}
	for _, v := range []struct {
		name string
		v    int
	}{{"BulkQueueBytes", c.BulkQueueBytes}, {"MaxCallsPerConn", c.MaxCallsPerConn}} {
		if v.v < 0 {
			add("%s %d is negative", v.name, v.v)
		}
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{
		{"DialTimeout", c.DialTimeout}, {"HandshakeTimeout", c.HandshakeTimeout}, {"KeepAlive", c.KeepAlive},
		{"IdleTimeout", c.IdleTimeout}, {"BackoffMin", c.BackoffMin}, {"BackoffMax", c.BackoffMax},
	} {
		if v.d < 0 {
			add("%s %v is negative", v.name, v.d)
		}
	}
	if c.IdleTimeout < 2*c.KeepAlive {
		add("IdleTimeout %v is below twice KeepAlive %v", c.IdleTimeout, c.KeepAlive)
	}
	if c.BackoffMax < c.BackoffMin {
		add("BackoffMax %v is below BackoffMin %v", c.BackoffMax, c.BackoffMin)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("peer: invalid config: %w: %w", errors.Join(errs...), freqd.ErrInvalidArgument)
}
