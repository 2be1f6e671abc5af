package transport

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
)

// DeadlineKey is the header that carries a node-to-node call's absolute
// deadline, in Unix nanoseconds. connect-go sends only the time left, which
// a request held back by the network (a partition that heals, a TCP
// retransmission) would restart from its late arrival; the absolute
// deadline lets the receiver refuse such a request instead of applying it
// after its sender gave up. It assumes the nodes' clocks agree to within a
// small skew (docs/replication.md, "Clocks").
const DeadlineKey = "Freqd-Deadline"

// ClientDeadline returns a client interceptor that sends the context's
// deadline, if any, in DeadlineKey.
func ClientDeadline() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if d, ok := ctx.Deadline(); ok && req.Spec().IsClient {
				req.Header().Set(DeadlineKey, strconv.FormatInt(d.UnixNano(), 10))
			}
			return next(ctx, req)
		}
	})
}

// HandlerDeadline returns a handler interceptor that refuses, with
// freqd.ErrUnavailable (nothing applied), a request whose DeadlineKey has
// passed on arrival, and otherwise bounds the handler's context by it. now
// is the clock (time.Now if nil).
func HandlerDeadline(now func() time.Time) connect.Interceptor {
	if now == nil {
		now = time.Now
	}
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			v := req.Header().Get(DeadlineKey)
			if v == "" || req.Spec().IsClient {
				return next(ctx, req)
			}
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, ToWire(fmt.Errorf("%s header %q is not Unix nanoseconds: %w", DeadlineKey, v, freqd.ErrInvalidArgument))
			}
			d := time.Unix(0, ns)
			if late := now().Sub(d); late > 0 {
				return nil, ToWire(fmt.Errorf("%s arrived %v after its deadline; not applied: %w", req.Spec().Procedure, late.Round(time.Microsecond), freqd.ErrUnavailable))
			}
			ctx, cancel := context.WithDeadline(ctx, d)
			defer cancel()
			return next(ctx, req)
		}
	})
}

// DefaultTimeout returns a handler interceptor that gives a request without
// a deadline the deadline d from its arrival, so that nothing it causes
// (forwarding, replication) waits forever.
func DefaultTimeout(d time.Duration) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if _, ok := ctx.Deadline(); ok || req.Spec().IsClient {
				return next(ctx, req)
			}
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, req)
		}
	})
}
