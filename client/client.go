package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/transport"
)

// Grant is a frequency granted to a client.
type Grant struct {
	Frequency uint32
	Since     time.Time
	Partition uint32
	// Node is the node that made the grant.
	Node string
	// Duplicate is true when the grant answers a retry of an earlier call
	// with the same request id.
	Duplicate bool
	// TTL is the grant's lease (0: none) and Expires when it lapses unless
	// the client renews (KeepAlive), by the partition leader's clock.
	TTL     time.Duration
	Expires time.Time
}

// Holding tells who holds a frequency. Held is false when it is free.
type Holding struct {
	Frequency uint32
	Held      bool
	ClientID  string
	Since     time.Time
	Partition uint32
	Node      string
	// TTL and Expires describe the holder's lease, if it has one.
	TTL     time.Duration
	Expires time.Time
}

// Option configures a Client.
type Option func(*options)

type options struct {
	httpClient *http.Client
	network    transport.Network
	grpc       bool
	noRetry    bool
}

// WithoutRetry makes every call a single attempt (per node, moving on only
// when a connection could not be made): errors come back as they are.
func WithoutRetry() Option { return func(o *options) { o.noRetry = true } }

// WithHTTPClient sets the HTTP client (default: a pooled h2c client over TCP).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithNetwork dials through nw instead of TCP (tests use an in-memory one).
func WithNetwork(nw transport.Network) Option { return func(o *options) { o.network = nw } }

// WithGRPC speaks the gRPC protocol instead of Connect.
func WithGRPC() Option { return func(o *options) { o.grpc = true } }

// Client talks to a freqd cluster. It is safe for concurrent use.
type Client struct {
	addrs   []string
	clients []freqdv1connect.FreqdServiceClient
	next    atomic.Uint64 // index of the address to try first
	retry   bool
}

// New returns a client for the nodes at addrs (host:port, or http:// URLs).
// It does not dial until the first call.
func New(addrs []string, opts ...Option) (*Client, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("client: no node address given: %w", freqd.ErrInvalidArgument)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.httpClient == nil {
		nw := o.network
		if nw == nil {
			nw = &transport.TCP{}
		}
		o.httpClient = transport.NewHTTPClient(nw)
	}
	var copts []connect.ClientOption
	if o.grpc {
		copts = append(copts, connect.WithGRPC())
	}
	c := &Client{retry: !o.noRetry}
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("client: empty node address: %w", freqd.ErrInvalidArgument)
		}
		base := a
		if !strings.Contains(a, "://") {
			base = "http://" + a
		}
		c.addrs = append(c.addrs, a)
		c.clients = append(c.clients, freqdv1connect.NewFreqdServiceClient(o.httpClient, base, copts...))
	}
	return c, nil
}

// Addrs returns the node addresses the client uses.
func (c *Client) Addrs() []string { return append([]string(nil), c.addrs...) }

// call runs fn against the nodes in turn, starting with the last one that
// answered, moving on only when the request was never sent.
func call[T any](ctx context.Context, c *Client, fn func(freqdv1connect.FreqdServiceClient) (*T, error)) (*T, error) {
	start := int(c.next.Load() % uint64(len(c.clients)))
	var errs []error
	for i := range c.clients {
		idx := (start + i) % len(c.clients)
		res, err := fn(c.clients[idx])
		if err == nil {
			c.next.Store(uint64(idx))
			return res, nil
		}
		if !transport.NotSent(err) || ctx.Err() != nil {
			err = transport.FromWire(err)
			next := idx // it answered: keep using it
			if !transport.Answered(err) {
				next = idx + 1 // it failed mid-call: start the next call elsewhere
			}
			c.next.Store(uint64(next))
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.addrs[idx], err))
	}
	c.next.Add(1)
	return nil, fmt.Errorf("client: no node reachable: %w: %w", freqd.ErrUnavailable, errors.Join(errs...))
}

// retryable reports whether a failed call may be sent again: it was not
// applied (unavailable), or its outcome is unknown and the call is
// idempotent.
func retryable(err error) bool {
	return errors.Is(err, freqd.ErrUnavailable) || transport.Unknown(err)
}

// backoff sleeps before attempt k (k >= 1) of a retried call; false if ctx
// ended.
func backoff(ctx context.Context, k int) bool {
	d := time.Duration(min(k, 10)) * 25 * time.Millisecond
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// outcome is the error of a retried call that ends with err: if an earlier
// attempt's outcome was unknown, so is the call's, whatever the last
// attempt said (an Unavailable last attempt does not undo the first).
func outcome(err error, unknown bool) error {
	if unknown && !errors.Is(err, freqd.ErrOutcomeUnknown) {
		return fmt.Errorf("an earlier attempt's outcome is unknown: %w; last attempt: %v", freqd.ErrOutcomeUnknown, err)
	}
	return err
}

// NewRequestID returns a random request id for AllocateWithID.
func NewRequestID() string { return fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64()) }

// Allocate grants any free frequency to clientID. When the whole pool is
// held the error matches freqd.ErrNoFrequency. The call carries a random
// request id and is retried with it (against other nodes, after a
// failover) until ctx ends, so it never grants twice.
func (c *Client) Allocate(ctx context.Context, clientID string) (Grant, error) {
	return c.AllocateWithID(ctx, clientID, NewRequestID(), nil)
}

// AllocateFrequency grants frequency f to clientID if it is free (or already
// held by clientID). If another client holds it the error matches
// freqd.ErrAlreadyHeld. Retried like Allocate.
func (c *Client) AllocateFrequency(ctx context.Context, clientID string, f uint32) (Grant, error) {
	return c.AllocateWithID(ctx, clientID, NewRequestID(), &f)
}

// AllocateWithID is Allocate (freq nil) or AllocateFrequency with the
// caller's request id: a call repeated with the same clientID and
// requestID, even from another process, returns the first grant (with
// Duplicate set) as long as the frequency is still held.
func (c *Client) AllocateWithID(ctx context.Context, clientID, requestID string, freq *uint32) (Grant, error) {
	return c.AllocateWith(ctx, AllocateRequest{ClientID: clientID, RequestID: requestID, Frequency: freq})
}

// AllocateRequest is everything an allocation can ask for.
type AllocateRequest struct {
	ClientID string
	// RequestID makes retries return the first grant; empty: a random one.
	RequestID string
	// Frequency, when set, asks for exactly this frequency.
	Frequency *uint32
	// TTL, when non-zero (1s to 24h, whole milliseconds), leases the
	// frequency: it is released unless the client calls KeepAlive (or
	// keeps a KeepAliveLoop running) at least once per TTL.
	TTL time.Duration
}

// AllocateLease is Allocate with a lease of ttl.
func (c *Client) AllocateLease(ctx context.Context, clientID string, ttl time.Duration) (Grant, error) {
	return c.AllocateWith(ctx, AllocateRequest{ClientID: clientID, TTL: ttl})
}

// AllocateWith allocates as req says, retried like Allocate.
func (c *Client) AllocateWith(ctx context.Context, r AllocateRequest) (Grant, error) {
	requestID := r.RequestID
	if requestID == "" {
		requestID = NewRequestID()
	}
	req := &freqdv1.AllocateRequest{ClientId: r.ClientID, RequestId: requestID, Frequency: r.Frequency}
	if r.TTL != 0 {
		req.Ttl = durationpb.New(r.TTL)
	}
	unknown := false
	for k := 1; ; k++ {
		res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.AllocateResponse], error) {
			return s.Allocate(ctx, connect.NewRequest(req))
		})
		if err == nil {
			m := res.Msg
			g := Grant{Frequency: m.GetFrequency(), Since: m.GetSince().AsTime(), Partition: m.GetPartition(), Node: m.GetNode(), Duplicate: m.GetDuplicate()}
			if m.GetTtl() != nil {
				g.TTL, g.Expires = m.GetTtl().AsDuration(), m.GetExpires().AsTime()
			}
			return g, nil
		}
		unknown = unknown || transport.Unknown(err)
		if !c.retry || requestID == "" || !retryable(err) || !backoff(ctx, k) {
			return Grant{}, outcome(err, unknown)
		}
	}
}

// Release frees frequency f held by clientID. A free frequency gives
// freqd.ErrNotHeld; one held by another client gives freqd.ErrNotHolder.
// Either way nothing changes, so releasing twice is safe. Beware: if an
// attempt's outcome was unknown (its node failed), a copy of it may still
// arrive later and free a new grant of f to clientID; ReleaseGrant, which
// names the grant, cannot.
func (c *Client) Release(ctx context.Context, clientID string, f uint32) error {
	_, err := c.ReleaseDetail(ctx, clientID, f)
	return err
}

// ReleaseDetail is Release that also reports where the release was applied
// (partition and node).
//
// A release whose outcome is unknown (its leader failed) is retried until
// ctx ends. If a retry then finds the frequency free, the release is
// reported done: the caller held it, so an earlier attempt freed it. If a
// retry finds it held by another client, the error matches
// freqd.ErrOutcomeUnknown.
func (c *Client) ReleaseDetail(ctx context.Context, clientID string, f uint32) (*freqdv1.ReleaseResponse, error) {
	return c.release(ctx, &freqdv1.ReleaseRequest{ClientId: clientID, Frequency: f})
}

// ReleaseGrant ends grant g of clientID: the release names the grant (by
// its Since), so neither it nor a delayed copy of it can free a later grant
// of the same frequency to the same client. Prefer it to Release whenever
// the Grant is at hand; it is retried like Release.
func (c *Client) ReleaseGrant(ctx context.Context, clientID string, g Grant) error {
	_, err := c.release(ctx, &freqdv1.ReleaseRequest{ClientId: clientID, Frequency: g.Frequency, Since: timestamppb.New(g.Since)})
	return err
}

func (c *Client) release(ctx context.Context, req *freqdv1.ReleaseRequest) (*freqdv1.ReleaseResponse, error) {
	f := req.GetFrequency()
	unknown := false
	for k := 1; ; k++ {
		res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.ReleaseResponse], error) {
			return s.Release(ctx, connect.NewRequest(req))
		})
		switch {
		case err == nil:
			return res.Msg, nil
		case unknown && errors.Is(err, freqd.ErrNotHeld):
			return &freqdv1.ReleaseResponse{}, nil
		case unknown && errors.Is(err, freqd.ErrNotHolder):
			return nil, fmt.Errorf("release of %d: an attempt's outcome was unknown and the frequency is now held by another client: %w: %w", f, freqd.ErrOutcomeUnknown, err)
		}
		if transport.Unknown(err) {
			unknown = true
		}
		if !c.retry || !retryable(err) || !backoff(ctx, k) {
			return nil, outcome(err, unknown)
		}
	}
}

// Holder tells who holds frequency f.
func (c *Client) Holder(ctx context.Context, f uint32) (Holding, error) {
	var res *connect.Response[freqdv1.HolderResponse]
	var err error
	for k := 1; ; k++ {
		res, err = call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.HolderResponse], error) {
			return s.Holder(ctx, connect.NewRequest(&freqdv1.HolderRequest{Frequency: f}))
		})
		if err == nil || !c.retry || !retryable(err) || !backoff(ctx, k) {
			break
		}
	}
	if err != nil {
		return Holding{}, err
	}
	m := res.Msg
	h := Holding{Frequency: m.GetFrequency(), Held: m.GetHeld(), ClientID: m.GetClientId(), Partition: m.GetPartition(), Node: m.GetNode()}
	if m.GetHeld() {
		h.Since = m.GetSince().AsTime()
		if m.GetTtl() != nil {
			h.TTL, h.Expires = m.GetTtl().AsDuration(), m.GetExpires().AsTime()
		}
	}
	return h, nil
}

// Status reports the cluster's members and totals as the answering node
// sees them.
func (c *Client) Status(ctx context.Context) (*freqdv1.StatusResponse, error) {
	res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.StatusResponse], error) {
		return s.Status(ctx, connect.NewRequest(&freqdv1.StatusRequest{}))
	})
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// Ring reports each partition's owner, replicas and holder.
func (c *Client) Ring(ctx context.Context) (*freqdv1.RingResponse, error) {
	res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.RingResponse], error) {
		return s.Ring(ctx, connect.NewRequest(&freqdv1.RingRequest{}))
	})
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// Join asks the first reachable node to join the given seed peers
// (host:port gossip addresses) and returns how many it reached.
func (c *Client) Join(ctx context.Context, seeds []string) (int, error) {
	res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.JoinResponse], error) {
		return s.Join(ctx, connect.NewRequest(&freqdv1.JoinRequest{Seeds: seeds}))
	})
	if err != nil {
		return 0, err
	}
	return int(res.Msg.GetJoined()), nil
}

// Leave asks the node at the client's first address (only that one: it is
// the node that leaves) to hand off its partitions and leave the cluster.
// It returns how many partitions were handed off.
func (c *Client) Leave(ctx context.Context) (int, error) {
	res, err := c.clients[0].Leave(ctx, connect.NewRequest(&freqdv1.LeaveRequest{}))
	if err != nil {
		return 0, transport.FromWire(err)
	}
	return int(res.Msg.GetHandedOff()), nil
}
