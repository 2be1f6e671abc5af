package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
)

// Example allocates a frequency from the cluster that `freqd dev` starts,
// asks who holds it, and releases it. It needs running nodes, so it is
// compiled but not run by go test.
func Example() {
	// Any node answers any request. Allocate carries a random request id
	// and is retried with it (on another node, after a failover) until ctx
	// ends, so it never grants twice.
	c, err := client.New([]string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	g, err := c.Allocate(ctx, "radio-7")
	switch {
	case errors.Is(err, freqd.ErrNoFrequency):
		fmt.Println("every frequency in the pool is held")
		return
	case errors.Is(err, freqd.ErrUnavailable):
		fmt.Println("part of the pool is unreachable; try again later:", err)
		return
	case errors.Is(err, freqd.ErrOutcomeUnknown):
		fmt.Println("no answer before the deadline; a grant may exist:", err)
		return
	case err != nil:
		log.Fatal(err)
	}
	fmt.Printf("radio-7 got %d (partition %d on %s)\n", g.Frequency, g.Partition, g.Node)

	h, err := c.Holder(ctx, g.Frequency)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d is held by %s\n", h.Frequency, h.ClientID)

	// Only the holder may release.
	err = c.Release(ctx, "radio-8", g.Frequency)
	fmt.Println("radio-8 releases it:", errors.Is(err, freqd.ErrNotHolder))

	// ReleaseGrant names the grant, so not even a delayed copy of this
	// call can free a later grant of the same frequency.
	if err := c.ReleaseGrant(ctx, "radio-7", g); err != nil {
		log.Fatal(err)
	}
	// A second release changes nothing and says why.
	err = c.Release(ctx, "radio-7", g.Frequency)
	fmt.Println("released twice:", errors.Is(err, freqd.ErrNotHeld))
}

// ExampleClient_KeepAliveLoop leases a frequency and keeps the lease alive
// while the process runs: if the process dies, the cluster releases the
// frequency within a TTL (plus a failover gap if a primary dies too).
// Compiled, not run by go test.
func ExampleClient_KeepAliveLoop() {
	c, err := client.New([]string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	g, err := c.AllocateLease(ctx, "radio-9", 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("radio-9 got %d until %s unless renewed\n", g.Frequency, g.Expires.Format(time.RFC3339))

	// Renew every TTL/3 over one stream until stop is called.
	go func() {
		_ = c.KeepAliveLoop(ctx, "radio-9", 10*time.Second, func(r client.Renewal, err error) {
			if err != nil {
				log.Printf("keepalive: %v", err)
			}
		})
	}()

	// ... use the frequency ...

	// Done with everything radio-9 holds, leased or not.
	freed, err := c.ReleaseAll(ctx, "radio-9")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("released", freed)
}
