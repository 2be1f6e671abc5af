// Package client is the Go client for freqd. Dial any set of nodes; every
// call goes to one of them, which serves it or forwards it to the node that
// holds the partition. Errors are typed: match them with errors.Is against
// the sentinels in package freqd (freqd.ErrNoFrequency, freqd.ErrNotHolder,
// ...), even though they crossed the network.
//
// If a node cannot be reached at all (the connection is refused), the call
// moves on to the next address in the list, since the request was never
// sent. A call that reached a node and then failed is not retried blindly:
// an allocation might have been applied.
package client
