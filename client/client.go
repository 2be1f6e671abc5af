package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

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
}

// Holding tells who holds a frequency. Held is false when it is free.
type Holding struct {
	Frequency uint32
	Held      bool
	ClientID  string
	Since     time.Time
	Partition uint32
	Node      string
}

// Option configures a Client.
type Option func(*options)

type options struct {
	httpClient *http.Client
	network    transport.Network
	grpc       bool
}

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
	c := &Client{}
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
			return nil, transport.FromWire(err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.addrs[idx], err))
	}
	return nil, fmt.Errorf("client: no node reachable: %w: %w", freqd.ErrUnavailable, errors.Join(errs...))
}

// Allocate grants any free frequency to clientID. When the whole pool is
// held the error matches freqd.ErrNoFrequency.
func (c *Client) Allocate(ctx context.Context, clientID string) (Grant, error) {
	return c.allocate(ctx, &freqdv1.AllocateRequest{ClientId: clientID})
}

// AllocateFrequency grants frequency f to clientID if it is free (or already
// held by clientID). If another client holds it the error matches
// freqd.ErrAlreadyHeld.
func (c *Client) AllocateFrequency(ctx context.Context, clientID string, f uint32) (Grant, error) {
	return c.allocate(ctx, &freqdv1.AllocateRequest{ClientId: clientID, Frequency: &f})
}

func (c *Client) allocate(ctx context.Context, req *freqdv1.AllocateRequest) (Grant, error) {
	res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.AllocateResponse], error) {
		return s.Allocate(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return Grant{}, err
	}
	m := res.Msg
	return Grant{Frequency: m.GetFrequency(), Since: m.GetSince().AsTime(), Partition: m.GetPartition(), Node: m.GetNode()}, nil
}

// Release frees frequency f held by clientID. A free frequency gives
// freqd.ErrNotHeld; one held by another client gives freqd.ErrNotHolder.
// Either way nothing changes, so releasing twice is safe.
func (c *Client) Release(ctx context.Context, clientID string, f uint32) error {
	_, err := c.ReleaseDetail(ctx, clientID, f)
	return err
}

// ReleaseDetail is Release that also reports where the release was applied
// (partition and node).
func (c *Client) ReleaseDetail(ctx context.Context, clientID string, f uint32) (*freqdv1.ReleaseResponse, error) {
	res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.ReleaseResponse], error) {
		return s.Release(ctx, connect.NewRequest(&freqdv1.ReleaseRequest{ClientId: clientID, Frequency: f}))
	})
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// Holder tells who holds frequency f.
func (c *Client) Holder(ctx context.Context, f uint32) (Holding, error) {
	res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.HolderResponse], error) {
		return s.Holder(ctx, connect.NewRequest(&freqdv1.HolderRequest{Frequency: f}))
	})
	if err != nil {
		return Holding{}, err
	}
	m := res.Msg
	h := Holding{Frequency: m.GetFrequency(), Held: m.GetHeld(), ClientID: m.GetClientId(), Partition: m.GetPartition(), Node: m.GetNode()}
	if m.GetHeld() {
		h.Since = m.GetSince().AsTime()
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
