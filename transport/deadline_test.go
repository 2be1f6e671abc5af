package transport

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
)

// holderOnly answers Holder, reporting its context's deadline in Node.
type holderOnly struct {
	freqdv1connect.UnimplementedFreqdServiceHandler
	applied int
}

func (h *holderOnly) Holder(ctx context.Context, _ *connect.Request[freqdv1.HolderRequest]) (*connect.Response[freqdv1.HolderResponse], error) {
	h.applied++
	d, _ := ctx.Deadline()
	return connect.NewResponse(&freqdv1.HolderResponse{Node: d.UTC().Format(time.RFC3339Nano)}), nil
}

func TestDeadlineHeader(t *testing.T) {
	skew := time.Duration(0) // how far the receiver's clock is ahead
	h := &holderOnly{}
	mux := http.NewServeMux()
	mux.Handle(freqdv1connect.NewFreqdServiceHandler(h, connect.WithInterceptors(HandlerDeadline(func() time.Time { return time.Now().Add(skew) }))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cl := freqdv1connect.NewFreqdServiceClient(srv.Client(), srv.URL, connect.WithInterceptors(ClientDeadline()))

	tests := []struct {
		name    string
		skew    time.Duration
		timeout time.Duration // 0: no deadline
		wantErr error
	}{
		{"no deadline", 0, 0, nil},
		{"in time", 0, 5 * time.Second, nil},
		{"arrives late", 10 * time.Second, 5 * time.Second, freqd.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skew = tt.skew
			before := h.applied
			ctx := context.Background()
			var want time.Time
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
				want, _ = ctx.Deadline()
			}
			res, err := cl.Holder(ctx, connect.NewRequest(&freqdv1.HolderRequest{}))
			err = FromWire(err)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if h.applied != before || !Answered(err) {
					t.Fatalf("a late request was applied (or not answered by the handler): %v", err)
				}
				return
			}
			if tt.timeout > 0 {
				got, perr := time.Parse(time.RFC3339Nano, res.Msg.GetNode())
				if perr != nil || got.After(want) {
					t.Fatalf("handler deadline %v, want at most the caller's %v", got, want)
				}
			}
		})
	}

	// A malformed header is refused.
	req := connect.NewRequest(&freqdv1.HolderRequest{})
	req.Header().Set(DeadlineKey, "soon")
	_, err := freqdv1connect.NewFreqdServiceClient(srv.Client(), srv.URL).Holder(context.Background(), req)
	if !errors.Is(FromWire(err), freqd.ErrInvalidArgument) {
		t.Fatalf("malformed deadline: %v, want ErrInvalidArgument", err)
	}
}
