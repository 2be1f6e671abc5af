package peer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

// echoNode answers every "ping" message with a "pong" to its sender and
// logs every delivery into the shared log (manual mode: all on the test's
// goroutine).
type echoNode struct {
	tr  Transport
	log *[]string
	id  uint64
}

func (e *echoNode) HandleMessage(from Identity, msg []byte) {
	*e.log = append(*e.log, fmt.Sprintf("%d<-%d:%s", e.id, from.ID, msg))
	if rest, ok := strings.CutPrefix(string(msg), "ping"); ok {
		e.tr.Send(from.ID, []byte("pong"+rest))
	}
}

func (e *echoNode) HandleCall(_ context.Context, _ Identity, req []byte) ([]byte, error) {
	return append([]byte("re:"), req...), nil
}

// manualRun plays one fixed scenario on a manual network with faults
// and returns the delivery log.
func manualRun(seed uint64, f Faults) []string {
	n := NewMemNetwork(seed)
	n.SetManual(true)
	n.SetFaults(f)
	var log []string
	nodes := make([]*echoNode, 3)
	for i := range nodes {
		id := uint64(i + 1)
		nodes[i] = &echoNode{log: &log, id: id}
		nodes[i].tr = n.Transport(ident(id), nodes[i])
	}
	for round := range 20 {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b {
					a.tr.Send(b.id, fmt.Appendf(nil, "ping-%d-%d", a.id, round))
				}
			}
		}
		for range 4 {
			n.Step()
		}
	}
	n.DeliverAll()
	for _, e := range nodes {
		e.tr.Close()
	}
	return log
}

// The same seed gives the same run under drops, duplicates and
// reordering; another seed gives another.
func TestMemManualDeterministic(t *testing.T) {
	f := Faults{Drop: 0.2, Duplicate: 0.2, Reorder: 0.3}
	a, b := manualRun(1, f), manualRun(1, f)
	if !slices.Equal(a, b) {
		t.Fatalf("seed 1 gave two runs:\n%v\n%v", a, b)
	}
	if c := manualRun(2, f); slices.Equal(a, c) {
		t.Fatal("seeds 1 and 2 gave the same run")
	}
	clean := manualRun(1, Faults{})
	// Without faults: 120 pings, each answered, in order per link.
	if len(clean) != 240 {
		t.Fatalf("fault-free run delivered %d, want 240", len(clean))
	}
	if !slices.Equal(clean, manualRun(99, Faults{})) {
		t.Fatal("a fault-free run depends on the seed")
	}
	// The faults happened: some lost, some twice, some out of order.
	seen := map[string]int{}
	for _, d := range a {
		seen[d]++
	}
	dups, lost := 0, 0
	for _, d := range clean {
		switch seen[d] {
		case 0:
			lost++
		case 1:
		default:
			dups++
		}
	}
	if dups == 0 || lost == 0 || slices.Equal(a, clean) {
		t.Fatalf("faults did not show: %d lost, %d duplicated", lost, dups)
	}
	reordered := false
	last := map[string]int{} // link -> last round seen
	for _, d := range a {
		var to, from, sender, round int
		if _, err := fmt.Sscanf(d, "%d<-%d:ping-%d-%d", &to, &from, &sender, &round); err != nil {
			continue
		}
		k := fmt.Sprint(from, to)
		if r, ok := last[k]; ok && round < r {
			reordered = true
		}
		last[k] = round
	}
	if !reordered {
		t.Fatal("no message overtook another")
	}
	t.Logf("seed 1: %d deliveries (fault-free %d), %d lost, %d duplicated", len(a), len(clean), lost, dups)
}

// In manual mode a request is delivered at one Step (the handler runs
// there) and its reply at a later one, which ends the Call.
func TestMemManualCall(t *testing.T) {
	n := NewMemNetwork(3)
	n.SetManual(true)
	r2 := &recorder{onCall: func(_ context.Context, _ Identity, req []byte) ([]byte, error) {
		return append([]byte("re:"), req...), nil
	}}
	n1, n2 := n.Transport(ident(1), &recorder{}), n.Transport(ident(2), r2)
	defer n1.Close()
	defer n2.Close()
	type result struct {
		reply []byte
		err   error
	}
	done := make(chan result, 1)
	go func() {
		reply, err := n1.Call(context.Background(), 2, []byte("x"))
		done <- result{reply, err}
	}()
	waitFor(t, 5*time.Second, "the request in flight", func() bool { return n.Pending() == 1 })
	if r2.callCount() != 0 {
		t.Fatal("handler ran before any Step")
	}
	if !n.Step() || r2.callCount() != 1 || n.Pending() != 1 {
		t.Fatalf("after the first Step: %d calls, %d pending", r2.callCount(), n.Pending())
	}
	select {
	case r := <-done:
		t.Fatalf("Call returned before its reply was delivered: %q, %v", r.reply, r.err)
	default:
	}
	if !n.Step() {
		t.Fatal("no reply to deliver")
	}
	r := <-done
	if r.err != nil || string(r.reply) != "re:x" {
		t.Fatalf("Call: %q, %v", r.reply, r.err)
	}
	if n.Step() {
		t.Fatal("something left in flight")
	}

	// A Call that gives up before its request is delivered was not
	// delivered, and the request is skipped.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := n1.Call(ctx, 2, []byte("late"))
	if ce := asCallError(t, err); !ce.NotDelivered || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call that gave up: %v", err)
	}
	if n.Step() || r2.callCount() != 1 {
		t.Fatalf("the abandoned request was delivered (%d calls)", r2.callCount())
	}

	// A lost request leaves the outcome unknown.
	n.SetLinkFaults(1, 2, Faults{Drop: 1})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		reply, err := n1.Call(ctx, 2, []byte("lost"))
		done <- result{reply, err}
	}()
	waitFor(t, 5*time.Second, "the request in flight", func() bool { return n.Pending() == 1 })
	n.Step()
	r = <-done
	if ce := asCallError(t, r.err); ce.NotDelivered || !errors.Is(r.err, freqd.ErrOutcomeUnknown) {
		t.Fatalf("lost request: %v", r.err)
	}
}

func TestMemPartitionHeal(t *testing.T) {
	n := NewMemNetwork(5)
	n.SetManual(true)
	rs := map[uint64]*recorder{1: {}, 2: {}, 3: {}}
	ts := map[uint64]Transport{}
	for id, r := range rs {
		ts[id] = n.Transport(ident(id), r)
		defer ts[id].Close()
	}
	send := func(from, to uint64, msg string) {
		t.Helper()
		if !ts[from].Send(to, []byte(msg)) {
			t.Fatalf("Send %s dropped", msg)
		}
	}
	n.Partition([]uint64{1}, []uint64{2, 3})
	send(1, 2, "a")
	send(2, 3, "b")
	send(3, 2, "c")
	send(2, 1, "d")
	n.DeliverAll()
	if !rs[3].has([]byte("b")) || !rs[2].has([]byte("c")) || rs[2].has([]byte("a")) || rs[1].count() != 0 {
		t.Fatalf("across the partition: 1 %v, 2 %v, 3 %v", rs[1].snapshot(), rs[2].snapshot(), rs[3].snapshot())
	}
	n.Heal()
	send(1, 2, "e")
	n.DeliverAll()
	if !rs[2].has([]byte("e")) {
		t.Fatal("not delivered after Heal")
	}
	n.Isolate(3)
	send(2, 3, "f")
	send(1, 2, "g")
	n.DeliverAll()
	if rs[3].has([]byte("f")) || !rs[2].has([]byte("g")) {
		t.Fatal("Isolate cut the wrong links")
	}
	// What is in flight when the cut comes is lost.
	n.Heal()
	send(1, 2, "h")
	n.Partition([]uint64{1}, []uint64{2})
	n.DeliverAll()
	if rs[2].has([]byte("h")) {
		t.Fatal("a message in flight crossed a new partition")
	}
	// Nodes in no group are together.
	n.Partition([]uint64{1})
	send(2, 3, "i")
	n.DeliverAll()
	if !rs[3].has([]byte("i")) {
		t.Fatal("ungrouped nodes cannot reach each other")
	}
}

// Real-time mode: a partition loses messages (observed through the
// order of a later one) and calls; Heal restores both.
func TestMemRealtimePartition(t *testing.T) {
	n := NewMemNetwork(9)
	r2 := &recorder{}
	n1, n2 := n.Transport(ident(1), &recorder{}), n.Transport(ident(2), r2)
	defer n1.Close()
	defer n2.Close()
	n.Isolate(2)
	n1.Send(2, []byte("cut"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := n1.Call(ctx, 2, []byte("x"))
	if ce := asCallError(t, err); ce.NotDelivered || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call across a partition: %v", err)
	}
	n.Heal()
	n1.Send(2, []byte("healed"))
	waitFor(t, 5*time.Second, "the message after Heal", func() bool { return r2.has([]byte("healed")) })
	if r2.has([]byte("cut")) {
		t.Fatal("the message sent across the partition arrived")
	}
	if reply, err := n1.Call(context.Background(), 2, []byte("y")); err != nil || string(reply) != "y" {
		t.Fatalf("Call after Heal: %q, %v", reply, err)
	}
}

// Real-time faults: delay, duplication, drops and reordering on a link.
func TestMemRealtimeFaults(t *testing.T) {
	n := NewMemNetwork(11)
	r2 := &recorder{}
	n1, n2 := n.Transport(ident(1), &recorder{}), n.Transport(ident(2), r2)
	defer n1.Close()
	defer n2.Close()

	n.SetLinkFaults(1, 2, Faults{Delay: 50 * time.Millisecond})
	start := time.Now()
	n1.Send(2, []byte("delayed"))
	waitFor(t, 5*time.Second, "the delayed message", func() bool { return r2.has([]byte("delayed")) })
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("delivered after %v, before the 50ms delay", took)
	}

	n.SetLinkFaults(1, 2, Faults{Duplicate: 1})
	n1.Send(2, []byte("twice"))
	waitFor(t, 5*time.Second, "both copies", func() bool {
		c := 0
		for _, d := range r2.snapshot() {
			if string(d.msg) == "twice" {
				c++
			}
		}
		return c == 2
	})

	n.SetLinkFaults(1, 2, Faults{Drop: 1})
	n1.Send(2, []byte("dropped"))
	n.SetLinkFaults(1, 2, Faults{})
	n1.Send(2, []byte("after-drop"))
	waitFor(t, 5*time.Second, "the message after the drop", func() bool { return r2.has([]byte("after-drop")) })
	if r2.has([]byte("dropped")) {
		t.Fatal("a dropped message arrived")
	}

	n.SetLinkFaults(1, 2, Faults{Reorder: 1, Jitter: 2 * time.Millisecond})
	base := r2.count()
	for i := range uint32(200) {
		n1.Send(2, seqMsg(i))
	}
	waitFor(t, 10*time.Second, "the reordered messages", func() bool { return r2.count() == base+200 })
	if slices.IsSortedFunc(r2.snapshot()[base:], func(a, b delivery) int {
		return int(a.msg[0]) + int(a.msg[1])<<8 - int(b.msg[0]) - int(b.msg[1])<<8
	}) {
		t.Fatal("200 messages with Reorder 1 arrived in order")
	}
}

// Only open transports of the same cluster are reached; a restart
// replaces the old transport.
func TestMemAdmission(t *testing.T) {
	n := NewMemNetwork(1)
	n1 := n.Transport(ident(1), &recorder{})
	defer n1.Close()
	other := n.Transport(Identity{Cluster: 0xBAD, ID: 2, Name: "n2"}, &recorder{})
	if n1.Send(2, []byte("x")) {
		t.Fatal("Send to another cluster returned true")
	}
	_, err := n1.Call(context.Background(), 2, nil)
	if ce := asCallError(t, err); !ce.NotDelivered || !errors.Is(err, ErrRefused) {
		t.Fatalf("Call to another cluster: %v", err)
	}
	// Node 2 restarts in the right cluster: the old transport is closed.
	r2 := &recorder{}
	n2 := n.Transport(ident(2), r2)
	defer n2.Close()
	if other.Send(1, []byte("x")) {
		t.Fatal("the replaced transport still sends")
	}
	if !n1.Send(2, []byte("y")) {
		t.Fatal("Send to the restarted node dropped")
	}
	waitFor(t, 5*time.Second, "the message", func() bool { return r2.count() == 1 })
	n2.Close()
	if n1.Send(2, []byte("z")) {
		t.Fatal("Send to a closed node returned true")
	}
	for _, f := range []func(){
		func() { n.Transport(Identity{}, &recorder{}) },
		func() { n.Transport(ident(5), nil) },
		func() { n.SetManual(true) },
		func() { n.Step() },
		func() { n.SetFaults(Faults{Drop: 2}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}
