package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freqd/freqd/internal/testutil"
	"github.com/freqd/freqd/membership"
	"github.com/freqd/freqd/pool"
	"github.com/freqd/freqd/store"
)

// TestRecoveryTime measures how long a node holding FREQD_RECOVERY_HELD
// (default 1,000,000) allocations takes to recover from its data
// directory: from the log alone (a copy of the directory taken while the
// node ran: what kill -9 leaves), and from the checkpoints a clean Close
// writes. It is a measurement, not a check, so it runs only with
// FREQD_RECOVERY_BENCH=1:
//
//	FREQD_RECOVERY_BENCH=1 go test -run TestRecoveryTime -v -timeout 30m ./node/
func TestRecoveryTime(t *testing.T) {
	if os.Getenv("FREQD_RECOVERY_BENCH") == "" {
		t.Skip("a measurement: set FREQD_RECOVERY_BENCH=1 to run it")
	}
	held := 1_000_000
	if s := os.Getenv("FREQD_RECOVERY_HELD"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		held = v
	}
	rs, err := pool.ParseRanges([]string{fmt.Sprintf("1-%d", held+held/10)})
	if err != nil {
		t.Fatal(err)
	}
	layout, err := pool.NewLayout(rs, 16)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := func(data string) Options {
		prof, _ := membership.ProfileByName(membership.ProfileLocal)
		return Options{
			Name: "r1", APIAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Layout: layout, ReplicationFactor: 1,
			Gossip:  membership.Config{BindAddr: testutil.FreeAddr(t), Profile: prof},
			Logger:  testLogger(t),
			DataDir: data, Sync: store.SyncNone,
		}
	}
	n := startOne(t, opts(filepath.Join(dir, "live")))
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			client := fmt.Sprintf("c%d", w)
			for next.Add(1) <= int64(held) {
				if _, err := n.Allocate(ctx, client, nil, "", 0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("allocated %d in %v", held, time.Since(start).Round(time.Millisecond))
	if err := n.st.Wait(context.Background(), n.st.Stats().LastLSN); err != nil {
		t.Fatal(err)
	}
	crash := filepath.Join(dir, "crash")
	if out, err := exec.Command("cp", "-a", filepath.Join(dir, "live"), crash).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v: %s", err, out)
	}
	closeStart := time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("clean close (checkpoints of every partition) took %v", time.Since(closeStart).Round(time.Millisecond))

	for _, c := range []struct{ name, dir string }{{"log only (kill -9)", crash}, {"checkpoints (clean stop)", filepath.Join(dir, "live")}} {
		size := dirSize(t, c.dir)
		t0 := time.Now()
		m, err := New(opts(c.dir))
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		k := 0
		for _, s := range m.shards {
			_, h := s.counts()
			k += int(h)
		}
		if k != held {
			t.Errorf("%s: recovered %d held frequencies; want %d", c.name, k, held)
		}
		t.Logf("recovery from %s: %d held, %.1f MiB on disk, %v", c.name, k, float64(size)/(1<<20), took.Round(time.Millisecond))
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func startOne(t *testing.T, o Options) *Node {
	t.Helper()
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	waitFor(t, 10*time.Second, "the node to lead every partition", func() bool { return len(n.led()) == len(n.shards) })
	return n
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var size int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			size += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return size
}
