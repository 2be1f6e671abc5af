package node

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/multiraft"
	"github.com/freqd/freqd/peer"
)

type nopHandler struct{}

func (nopHandler) HandleMessage(peer.Identity, []byte) {}
func (nopHandler) HandleCall(context.Context, peer.Identity, []byte) ([]byte, error) {
	return nil, errors.New("no")
}

// TestPeerRefusesNonMembers: a process that speaks the peer protocol
// correctly but is not a member of the cluster (an unknown identity, a
// member's name with another incarnation, another cluster's id) is
// refused at the handshake, before any of its requests or raft messages
// is handled, and changes nothing.
func TestPeerRefusesNonMembers(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{partitions: 4})
	cl := c.client(c.addrs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g, err := cl.Allocate(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	target := c.leaderOf(t, int(g.Partition))
	other := c.live()[0]
	if other == target {
		other = c.live()[1]
	}
	cid := target.ml.LocalMeta().ClusterID
	before := target.drv.Info(int(g.Partition))

	for _, tc := range []struct {
		name   string
		self   peer.Identity
		reason string
	}{
		{"unknown node", peer.Identity{Cluster: cid, ID: 0x5eed, Name: "intruder"}, "not a member"},
		{"member name, other incarnation", peer.Identity{Cluster: cid, ID: other.id ^ 1, Name: other.Name()}, "not a member"},
		{"member incarnation, other name", peer.Identity{Cluster: cid, ID: other.id, Name: "mallory"}, "belongs to member"},
		{"other cluster", peer.Identity{Cluster: cid ^ 0xff, ID: other.id, Name: other.Name()}, "cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := peer.DefaultConfig()
			cfg.Self, cfg.Listener, cfg.Handler = tc.self, ln, nopHandler{}
			cfg.Resolve = func(uint64) (string, bool) { return target.PeerAddr(), true }
			tr, err := peer.NewTCP(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			// A forged release of the victim's frequency, as a forwarded call.
			req, _ := proto.MarshalOptions{}.MarshalAppend([]byte{methodRelease},
				&freqdv1.PeerReleaseRequest{ClientId: "victim", Frequency: g.Frequency})
			_, err = tr.Call(ctx, target.id, req)
			var ce *peer.CallError
			if !errors.As(err, &ce) || !ce.NotDelivered || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("forged call answered %v; want it refused at the handshake (%q)", err, tc.reason)
			}
			// A forged raft message claiming to come from a member.
			batch := multiraft.EncodeBatch(nil, []multiraft.GroupMessage{{Group: int(g.Partition), Msg: pb.Message{
				Type: pb.MsgApp, From: other.id, To: target.id, Term: before.Term + 100, Commit: 1 << 40,
			}}})
			tr.Send(target.id, batch)
		})
	}
	// Nothing changed: the victim still holds its frequency, the group is
	// at the same term under the same leader.
	h, err := cl.Holder(ctx, g.Frequency)
	if err != nil || !h.Held || h.ClientID != "victim" {
		t.Fatalf("victim's frequency after the forgeries: %+v %v", h, err)
	}
	if after := target.drv.Info(int(g.Partition)); after.Term != before.Term || !after.IsLeader {
		t.Fatalf("partition %d went from term %d (leader) to term %d (leader %v)", g.Partition, before.Term, after.Term, after.IsLeader)
	}
}
