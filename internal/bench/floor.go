package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/freqd/freqd/client"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/gen/freqd/v1/freqdv1connect"
	"github.com/freqd/freqd/transport"
)

// Floor names (Floor.Name).
const (
	// FloorConnectEcho is the closed loop through client.Client's Holder
	// against an in-process connect handler that answers at once.
	FloorConnectEcho = "connect-echo"
	// FloorRawTCP is the closed loop of 32-byte writes and reads over one
	// TCP connection per client to an in-process echo server.
	FloorRawTCP = "raw-tcp"
)

// rawMsgSize is the raw TCP floor's request and answer size.
const rawMsgSize = 32

// Handler options of a freqd node's API (node.Start): the floor's
// service and the tests' fake are served the same way. The node does not
// gzip answers under 64 KiB.
const (
	nodeCompressMinBytes = 64 << 10
	nodeRequestTimeout   = 30 * time.Second
)

// nodeHandlerOptions are the connect handler options a node uses.
func nodeHandlerOptions() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithReadMaxBytes(transport.MaxRequestBytes),
		connect.WithCompressMinBytes(nodeCompressMinBytes),
		connect.WithInterceptors(transport.DefaultTimeout(nodeRequestTimeout)),
	}
}

// serveService serves svc on 127.0.0.1:0 as a node serves its API
// (transport.Serve: HTTP/1.1 and h2c).
func serveService(svc freqdv1connect.FreqdServiceHandler) (*transport.Server, error) {
	path, h := freqdv1connect.NewFreqdServiceHandler(svc, nodeHandlerOptions()...)
	mux := http.NewServeMux()
	mux.Handle(path, h)
	return transport.Serve(&transport.TCP{}, "127.0.0.1:0", mux)
}

// stopServer shuts srv down, waiting at most a few seconds for calls in
// flight.
func stopServer(srv *transport.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// echoService answers Holder at once with a fixed "free" answer; every
// other method is unimplemented.
type echoService struct {
	freqdv1connect.UnimplementedFreqdServiceHandler
}

func (echoService) Holder(_ context.Context, req *connect.Request[freqdv1.HolderRequest]) (*connect.Response[freqdv1.HolderResponse], error) {
	return connect.NewResponse(&freqdv1.HolderResponse{Frequency: req.Msg.GetFrequency(), Node: "echo"}), nil
}

// newClient returns a client.Client for addrs over its own HTTP client
// (the client package's default, transport.NewHTTPClient over TCP) and a
// function that closes that HTTP client's connections.
func newClient(addrs []string) (*client.Client, func(), error) {
	hc := transport.NewHTTPClient(&transport.TCP{})
	c, err := client.New(addrs, client.WithHTTPClient(hc))
	if err != nil {
		return nil, nil, err
	}
	return c, hc.CloseIdleConnections, nil
}

// floorWarmup is the floors' warm-up: enough to open the connections.
func floorWarmup(cfg *Config) time.Duration { return min(cfg.Warmup, time.Second) }

func floorOf(name string, clients int, res loopResult) Floor {
	f := Floor{Name: name, Clients: clients, MeasuredSeconds: res.measured.Seconds(), Ops: res.total.ops,
		Latency: latencyOf(res.hist), Errors: res.total.errs}
	if res.measured > 0 {
		f.OpsPerSec = float64(f.Ops) / res.measured.Seconds()
	}
	return f
}

// runConnectFloor runs the connect echo floor.
func runConnectFloor(ctx context.Context, cfg *Config) Floor {
	srv, err := serveService(echoService{})
	if err != nil {
		return Floor{Name: FloorConnectEcho, Clients: cfg.Clients, Error: err.Error()}
	}
	defer stopServer(srv)
	res := runLoop(ctx, loopSpec{clients: cfg.Clients, warmup: floorWarmup(cfg), duration: cfg.FloorDuration},
		func(ctx context.Context, i int, m *meter) func() {
			c, closeConns, err := newClient([]string{srv.Addr()})
			if err != nil {
				m.record(0, err)
				return nil
			}
			f := uint32(i)
			for !m.stopping(ctx) {
				cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
				t := time.Now()
				_, err := c.Holder(cctx, f)
				m.record(time.Since(t), err)
				cancel()
			}
			return closeConns
		})
	return floorOf(FloorConnectEcho, cfg.Clients, res)
}

// tcpEcho is an in-process server that echoes fixed-size messages.
type tcpEcho struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newTCPEcho() (*tcpEcho, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &tcpEcho{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Go(s.accept)
	return s, nil
}

func (s *tcpEcho) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.conns == nil { // closed
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				_ = c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			var buf [rawMsgSize]byte
			for {
				if _, err := io.ReadFull(c, buf[:]); err != nil {
					return
				}
				if _, err := c.Write(buf[:]); err != nil {
					return
				}
			}
		})
	}
}

// Close stops the server, closes every connection and waits.
func (s *tcpEcho) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// runRawTCPFloor runs the raw TCP floor: the connections are dialled
// before the loop starts.
func runRawTCPFloor(ctx context.Context, cfg *Config) Floor {
	fail := func(err error) Floor { return Floor{Name: FloorRawTCP, Clients: cfg.Clients, Error: err.Error()} }
	srv, err := newTCPEcho()
	if err != nil {
		return fail(err)
	}
	defer srv.Close()
	conns := make([]net.Conn, cfg.Clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	var d net.Dialer
	for i := range conns {
		dctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
		c, err := d.DialContext(dctx, "tcp", srv.ln.Addr().String())
		cancel()
		if err != nil {
			return fail(fmt.Errorf("dial connection %d: %w", i+1, err))
		}
		conns[i] = c
	}
	// Unblock the workers' reads if ctx ends (Ctrl-C).
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			_ = c.SetDeadline(time.Now())
		}
	})
	defer stop()
	res := runLoop(ctx, loopSpec{clients: cfg.Clients, warmup: floorWarmup(cfg), duration: cfg.FloorDuration},
		func(ctx context.Context, i int, m *meter) func() {
			c := conns[i]
			var req, resp [rawMsgSize]byte
			binary.LittleEndian.PutUint64(req[:], uint64(i))
			for n := uint64(0); !m.stopping(ctx); n++ {
				binary.LittleEndian.PutUint64(req[8:], n)
				t := time.Now()
				_, err := c.Write(req[:])
				if err == nil {
					_, err = io.ReadFull(c, resp[:])
				}
				if err == nil && !bytes.Equal(req[:], resp[:]) {
					err = errors.New("echo differs from request")
				}
				m.record(time.Since(t), err)
				if err != nil {
					return nil
				}
			}
			return nil
		})
	return floorOf(FloorRawTCP, cfg.Clients, res)
}
