package peer

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkFrameEncode(b *testing.B) {
	for _, size := range []int{128, 4 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			p := bytes.Repeat([]byte{7}, size)
			buf := make([]byte, 0, 64<<10)
			b.SetBytes(int64(frameHeaderSize + size))
			b.ReportAllocs()
			for b.Loop() {
				if len(buf)+frameHeaderSize+size > cap(buf) {
					buf = buf[:0]
				}
				buf = appendFrame(buf, frameMsg, 0, 0, p, crc(p))
			}
		})
	}
}

func BenchmarkFrameDecode(b *testing.B) {
	for _, size := range []int{128, 4 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			p := bytes.Repeat([]byte{7}, size)
			var stream []byte
			for range 256 {
				stream = appendFrame(stream, frameMsg, 0, 0, p, crc(p))
			}
			r := bytes.NewReader(stream)
			var hb [frameHeaderSize]byte
			b.SetBytes(int64(frameHeaderSize + size))
			b.ReportAllocs()
			for b.Loop() {
				if r.Len() == 0 {
					r.Reset(stream)
				}
				if _, _, err := readFrame(r, &hb, DefaultMaxFrame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string { return fmt.Sprintf("%dB", n) }

// counter is a Handler that only counts messages.
type counter struct{ n atomic.Int64 }

func (c *counter) HandleMessage(Identity, []byte) { c.n.Add(1) }
func (c *counter) HandleCall(_ context.Context, _ Identity, req []byte) ([]byte, error) {
	return req, nil
}

// benchPair starts two TCP nodes on loopback, node 1 sending to node 2.
func benchPair(b *testing.B, h Handler) *TCP {
	addrs := &addrBook{}
	start := func(id uint64, h Handler) *TCP {
		ln := listenRetry(b, "127.0.0.1:0")
		addrs.set(id, ln.Addr().String())
		tr, err := NewTCP(Config{Self: ident(id), Listener: ln, Resolve: addrs.resolve, Handler: h})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Close() })
		return tr
	}
	n1 := start(1, &counter{})
	start(2, h)
	return n1
}

// BenchmarkTCPSmallMessages: throughput of 128-byte messages over
// loopback, one sender. A full queue makes the sender yield and retry, so
// the figure is what the connection sustains.
func BenchmarkTCPSmallMessages(b *testing.B) {
	c := &counter{}
	n1 := benchPair(b, c)
	msg := make([]byte, 128)
	for !n1.Send(2, msg) {
		runtime.Gosched()
	}
	waitFor(b, 10*time.Second, "the first message", func() bool { return c.n.Load() == 1 })
	before, _ := n1.PeerStats(2)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for range b.N {
		for !n1.Send(2, msg) {
			runtime.Gosched()
		}
	}
	for c.n.Load() < int64(b.N)+1 {
		runtime.Gosched()
	}
	b.StopTimer()
	after, _ := n1.PeerStats(2)
	if w := after.Writes - before.Writes; w > 0 {
		b.ReportMetric(float64(after.Frames-before.Frames)/float64(w), "frames/write")
	}
	b.ReportMetric(float64(after.Dropped-before.Dropped)/float64(b.N), "retries/op")
}

// BenchmarkTCPCall: sequential round trips over loopback.
func BenchmarkTCPCall(b *testing.B) {
	n1 := benchPair(b, &counter{})
	req := make([]byte, 128)
	ctx := context.Background()
	if _, err := n1.Call(ctx, 2, req); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := n1.Call(ctx, 2, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTCPBigMessage: 16 MiB messages through the bulk lane.
func BenchmarkTCPBigMessage(b *testing.B) {
	c := &counter{}
	n1 := benchPair(b, c)
	msg := make([]byte, 16<<20)
	b.SetBytes(int64(len(msg)))
	for i := range b.N {
		for !n1.Send(2, msg) {
			runtime.Gosched()
		}
		for c.n.Load() < int64(i+1) {
			runtime.Gosched()
		}
	}
}
