// Package transport carries freqd's API over the network: the one table that
// maps freqd's sentinel errors to wire codes and back, the HTTP server that
// serves the connect-go handlers (gRPC, gRPC-Web and Connect/JSON from one
// handler set, HTTP/1.1 and cleartext HTTP/2 on one port), and pooled HTTP
// clients for node-to-node calls.
//
// The network itself sits behind the Network interface (listen and dial),
// so a whole cluster can run in one test process over an in-memory network
// with faults injected by the test harness, and in production over TCP.
package transport
