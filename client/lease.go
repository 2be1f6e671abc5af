package client

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/transport"
)

// Renewal is the answer to a KeepAlive.
type Renewal struct {
	// Leased is how many leased frequencies were renewed, in how many
	// Partitions; Expires is the earliest expiry after the renewal (zero
	// when none).
	Leased     uint64
	Partitions uint32
	Expires    time.Time
	// Unconfirmed lists partitions whose leader could not be asked: a
	// lease there was not renewed by this call (a new leader starts every
	// lease afresh when it takes over, so renewing again within the TTL
	// is enough).
	Unconfirmed []uint32
}

func renewal(m *freqdv1.KeepAliveResponse) Renewal {
	r := Renewal{Leased: m.GetLeased(), Partitions: m.GetPartitions(), Unconfirmed: m.GetUnconfirmed()}
	if m.GetExpires() != nil {
		r.Expires = m.GetExpires().AsTime()
	}
	return r
}

// KeepAlive renews every lease clientID holds, in every partition: each
// leased frequency runs again for its full TTL. It is idempotent and
// retried until ctx ends.
func (c *Client) KeepAlive(ctx context.Context, clientID string) (Renewal, error) {
	for k := 1; ; k++ {
		res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.KeepAliveResponse], error) {
			return s.KeepAlive(ctx, connect.NewRequest(&freqdv1.KeepAliveRequest{ClientId: clientID}))
		})
		if err == nil {
			return renewal(res.Msg), nil
		}
		if !c.retry || !retryable(err) || !backoff(ctx, k) {
			return Renewal{}, err
		}
	}
}

// ReleaseAll frees every frequency clientID holds, leased or not, and
// returns them. It is idempotent and retried until ctx ends; an error
// wrapping freqd.ErrUnavailable means some partitions were not reached
// (others may have been released).
func (c *Client) ReleaseAll(ctx context.Context, clientID string) ([]uint32, error) {
	var freed []uint32
	for k := 1; ; k++ {
		res, err := call(ctx, c, func(s freqdv1connect.FreqdServiceClient) (*connect.Response[freqdv1.ReleaseAllResponse], error) {
			return s.ReleaseAll(ctx, connect.NewRequest(&freqdv1.ReleaseAllRequest{ClientId: clientID}))
		})
		if err == nil {
			return append(freed, res.Msg.GetFrequencies()...), nil
		}
		if !c.retry || !retryable(err) || !backoff(ctx, k) {
			return freed, err
		}
	}
}

// KeepAliveLoop keeps clientID's leases alive until ctx ends: over one
// KeepAliveStream, it renews every interval (which must be well under the
// shortest TTL; a third of it is a good choice) and passes each answer,
// or error, to fn (which may be nil). A broken stream is reopened on the
// next node. It returns ctx's error.
//
// This is the Erlang link of the seed in cluster form: while the client
// process runs the loop, its frequencies stay; once it dies, they come
// back within a TTL.
func (c *Client) KeepAliveLoop(ctx context.Context, clientID string, interval time.Duration, fn func(Renewal, error)) error {
	if interval <= 0 {
		return fmt.Errorf("keepalive interval %v: %w", interval, freqd.ErrInvalidArgument)
	}
	report := func(r Renewal, err error) {
		if fn != nil {
			fn(r, err)
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for k := 0; ctx.Err() == nil; k++ {
		idx := int(c.next.Load() % uint64(len(c.clients)))
		err := c.streamRenewals(ctx, c.clients[idx], clientID, t.C, report)
		if ctx.Err() != nil {
			break
		}
		report(Renewal{}, fmt.Errorf("keepalive stream to %s: %w", c.addrs[idx], err))
		c.next.Store(uint64(idx + 1))
		if !backoff(ctx, min(k+1, 4)) {
			break
		}
	}
	return ctx.Err()
}

// streamRenewals renews over one stream, once at once and then on every
// tick, until ctx ends or the stream fails.
func (c *Client) streamRenewals(ctx context.Context, s freqdv1connect.FreqdServiceClient, clientID string, tick <-chan time.Time, report func(Renewal, error)) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := s.KeepAliveStream(sctx)
	defer func() {
		_ = stream.CloseRequest()
		_ = stream.CloseResponse()
	}()
	for {
		if err := stream.Send(&freqdv1.KeepAliveRequest{ClientId: clientID}); err != nil {
			return transport.FromWire(err)
		}
		res, err := stream.Receive()
		if err != nil {
			return transport.FromWire(err)
		}
		report(renewal(res), nil)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
		}
	}
}
