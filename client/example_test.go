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
