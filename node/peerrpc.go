package node

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/freqd/freqd"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/peer"
	"github.com/freqd/freqd/transport"
)

// The peer call protocol: a request is one method byte followed by the
// method's request message (protobuf); a reply is the response message.
// Errors travel through peerCodec as the connect code and freqd reason
// the API would give them, plus the holder hint of a not-owner answer,
// so the caller's routing reads them exactly as it reads the API's.
const (
	methodAllocate      byte = 1
	methodRelease       byte = 2
	methodHolder        byte = 3
	methodNote          byte = 4
	methodKeepAlive     byte = 5
	methodReleaseClient byte = 6
	methodReplicas      byte = 7
)

// peerHandler serves what peers send: raft batches to the driver, calls
// to the node. It never forwards: a partition not led here gets a
// not-owner answer naming the leader it knows.
type peerHandler struct{ n *Node }

func (h *peerHandler) HandleMessage(from peer.Identity, msg []byte) {
	if err := h.n.drv.HandleBatch(from.ID, msg); err != nil && !errors.Is(err, freqd.ErrUnavailable) {
		h.n.log.Warn("dropped a raft batch that does not decode", "from", from.String(), "bytes", len(msg), "err", err)
	}
}

func (h *peerHandler) HandleCall(ctx context.Context, from peer.Identity, req []byte) ([]byte, error) {
	if len(req) == 0 {
		return nil, fmt.Errorf("peer call from %s: empty request: %w", from.Name, freqd.ErrInvalidArgument)
	}
	n := h.n
	body := req[1:]
	switch req[0] {
	case methodAllocate:
		return serve(body, func(m *freqdv1.PeerAllocateRequest) (proto.Message, error) { return n.peerAllocate(ctx, m) })
	case methodRelease:
		return serve(body, func(m *freqdv1.PeerReleaseRequest) (proto.Message, error) { return n.peerRelease(ctx, m) })
	case methodHolder:
		return serve(body, func(m *freqdv1.PeerHolderRequest) (proto.Message, error) { return n.peerHolder(ctx, m) })
	case methodNote:
		return serve(body, func(m *freqdv1.PeerNoteRequest) (proto.Message, error) { return n.peerNote(ctx, m) })
	case methodKeepAlive:
		return serve(body, func(m *freqdv1.PeerKeepAliveRequest) (proto.Message, error) {
			if err := freqd.ValidateClientID(m.GetClientId()); err != nil {
				return nil, err
			}
			return n.renewLocal(ctx, m.GetClientId()), nil
		})
	case methodReleaseClient:
		return serve(body, func(m *freqdv1.PeerReleaseClientRequest) (proto.Message, error) { return n.peerReleaseClient(ctx, m) })
	case methodReplicas:
		return serve(body, func(*freqdv1.ReplicasRequest) (proto.Message, error) { return n.replicaStates(), nil })
	}
	return nil, fmt.Errorf("peer call from %s: unknown method %d: %w", from.Name, req[0], freqd.ErrInvalidArgument)
}

// serve decodes a request of type Req, runs fn and encodes its answer.
func serve[Req any, PReq interface {
	*Req
	proto.Message
}](body []byte, fn func(PReq) (proto.Message, error)) ([]byte, error) {
	m := PReq(new(Req))
	if err := proto.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("peer call: malformed %s: %w: %w", m.ProtoReflect().Descriptor().Name(), err, freqd.ErrInvalidArgument)
	}
	res, err := fn(m)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(res)
}

// call sends one request to node to (a raft id) and decodes its answer
// into res. Errors are what the routing code expects: a *RemoteError of
// package transport for the peer's answers, transport.ErrNoRoute for a
// call that surely was not delivered, freqd.ErrOutcomeUnknown otherwise.
func (n *Node) call(ctx context.Context, to uint64, method byte, req, res proto.Message) error {
	name := n.dir.Load().name(to)
	t := n.peers.Load()
	if t == nil {
		return fmt.Errorf("call to %s: this node has not joined a cluster yet: %w: %w", name, transport.ErrNoRoute, freqd.ErrUnavailable)
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	b, err := proto.MarshalOptions{}.MarshalAppend([]byte{method}, req)
	if err != nil {
		return fmt.Errorf("call to %s: encode: %w", name, err)
	}
	out, err := t.Call(ctx, to, b)
	if err != nil {
		var re *peer.RemoteError
		if errors.As(err, &re) && re.Err != nil {
			return re.Err
		}
		return peerCallErr(name, err)
	}
	if err := proto.Unmarshal(out, res); err != nil {
		return fmt.Errorf("call to %s: malformed answer: %w: %w", name, err, freqd.ErrOutcomeUnknown)
	}
	return nil
}

// peerCodec carries handler errors as the API's connect errors: code,
// freqd reason, holder hint and message, joined by NUL bytes.
type peerCodec struct{}

func (peerCodec) EncodeError(err error) (uint32, string) {
	w := transport.ToWire(err)
	var ce *connect.Error
	if !errors.As(w, &ce) {
		return uint32(connect.CodeInternal), "\x00\x00" + err.Error()
	}
	hint := ""
	var no *NotOwnerError
	if errors.As(err, &no) {
		hint = no.Holder
	}
	return uint32(ce.Code()), ce.Meta().Get(transport.ErrorReasonKey) + "\x00" + hint + "\x00" + ce.Message()
}

func (peerCodec) DecodeError(code uint32, msg string) error {
	parts := strings.SplitN(msg, "\x00", 3)
	if len(parts) != 3 || code == 0 || code > uint32(connect.CodeUnauthenticated) {
		return fmt.Errorf("peer error %d: %q: %w", code, msg, freqd.ErrOutcomeUnknown)
	}
	ce := connect.NewError(connect.Code(code), errors.New(parts[2]))
	if parts[0] != "" {
		ce.Meta().Set(transport.ErrorReasonKey, parts[0])
	}
	if parts[1] != "" {
		ce.Meta().Set(transport.HolderHintKey, parts[1])
	}
	return transport.FromWire(ce)
}
