package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/freqd/freqd/client"
	"github.com/freqd/freqd/store"
)

// allocateN allocates n frequencies to distinct clients and returns them.
func allocateN(t *testing.T, cl *client.Client, prefix string, n int) map[uint32]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := make(map[uint32]string)
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		g, err := cl.Allocate(ctx, id)
		if err != nil {
			t.Fatalf("allocate for %s: %v", id, err)
		}
		out[g.Frequency] = id
	}
	return out
}

// checkHeld checks that every frequency of want is held by its client and
// every other one is free.
func checkHeld(t *testing.T, c *testCluster, cl *client.Client, want map[uint32]string) {
	t.Helper()
	for _, sp := range c.layout.Spans() {
		for f := sp.First; f <= sp.Last; f++ {
			h := holderOf(t, cl, f)
			switch id, ok := want[f]; {
			case ok && (!h.Held || h.ClientID != id):
				t.Errorf("%d: held %v by %q; want held by %s", f, h.Held, h.ClientID, id)
			case !ok && h.Held:
				t.Errorf("%d: held by %s; want free", f, h.ClientID)
			}
		}
	}
}

func TestRestartFromDisk(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{durable: true, sync: store.SyncNone, ranges: []string{"1-60"}, partitions: 6})
	cl := c.client(c.addrs()...)
	want := allocateN(t, cl, "a", 20)

	n2 := c.node("n2")
	inc := n2.Incarnation()
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	n2 = c.restart("n2")
	if n2.Incarnation() != inc {
		t.Fatalf("n2 restarted as incarnation %x; want its own %x back from disk", n2.Incarnation(), inc)
	}
	c.waitStable(30 * time.Second)
	cl = c.client(c.addrs()...)
	for f, id := range allocateN(t, cl, "b", 10) {
		want[f] = id
	}
	checkHeld(t, c, cl, want)

	// The whole cluster at once: every node closes without handing
	// anything off, then all start again from their data directories.
	for _, n := range c.live() {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		c.restart(name)
	}
	c.waitStable(30 * time.Second)
	cl = c.client(c.addrs()...)
	checkHeld(t, c, cl, want)
	for f, id := range allocateN(t, cl, "c", 5) {
		want[f] = id
	}
	checkHeld(t, c, cl, want)
}

// TestDamagedCheckpoint: a node whose checkpoint files are corrupt or
// truncated does not serve them from disk: it discards its raft state,
// rejoins as a new incarnation and gets every partition back from the
// other replicas; nothing acknowledged is lost.
func TestDamagedCheckpoint(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{durable: true, sync: store.SyncNone, ranges: []string{"1-60"}, partitions: 6})
	cl := c.client(c.addrs()...)
	want := allocateN(t, cl, "a", 20)

	n1 := c.node("n1")
	old := n1.Incarnation()
	if err := n1.Close(); err != nil { // a clean stop checkpoints every partition
		t.Fatal(err)
	}
	dir := c.dirs["n1"]
	corrupt := filepath.Join(dir, "part-000001.ckpt")
	b, err := os.ReadFile(corrupt)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(corrupt, b, 0o600); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "part-000004.ckpt")
	st, err := os.Stat(truncated)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(truncated, st.Size()/2); err != nil {
		t.Fatal(err)
	}

	n1 = c.restart("n1")
	if fmt.Sprint(n1.lostAtStart) != "[1 4]" {
		t.Fatalf("partitions lost at start: %v; want [1 4]", n1.lostAtStart)
	}
	if n1.Incarnation() == old {
		t.Fatalf("n1 kept incarnation %x after losing raft state", old)
	}
	c.waitStable(30 * time.Second)
	waitFor(t, 20*time.Second, "n1 to hold every partition again", func() bool {
		return n1.hostedGroups() == len(n1.shards)
	})
	cl = c.client(c.addrs()...)
	checkHeld(t, c, cl, want)
}

// TestInterruptedBootstrapDiscarded: partition data next to a node file
// that says the node never joined a cluster (a pool creation that crashed
// before it was recorded) is discarded at start, never taken for state.
func TestInterruptedBootstrapDiscarded(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{factor: 1, durable: true, sync: store.SyncNone})
	n := c.node("n1")
	id := n.identity(false, 0)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	c.forget(n)
	dir := c.dirs["n1"]
	st, rec, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Partitions) == 0 {
		t.Fatal("no partition data to discard: the test proves nothing")
	}
	b, err := proto.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WriteMeta(identityFile, b); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Name: "n1", APIAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Layout: c.layout, Logger: testLogger(t), DataDir: dir, Sync: store.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if k := m.hostedGroups(); k != 0 {
		t.Fatalf("%d partitions recovered from a node that never joined", k)
	}
}
