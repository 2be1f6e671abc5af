// Package freqd holds what every part of freqd and its clients share: the
// sentinel errors that survive the wire, and the limits on client ids.
//
// freqd is a distributed frequency-allocation cluster: many nodes share one
// pool of numbered resources (radio frequencies, channels, ports), cut into
// partitions placed on a consistent-hash ring. A client may send any request
// to any node. See README.md and docs/ for the architecture.
//
// Callers branch on errors with errors.Is against the sentinels below; the
// transport maps each to one wire code and back, so errors.Is works in the Go
// client after a network hop.
package freqd
