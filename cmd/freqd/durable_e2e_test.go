package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/freqd/freqd"
	"github.com/freqd/freqd/client"
	freqdv1 "github.com/freqd/freqd/gen/freqd/v1"
	"github.com/freqd/freqd/internal/freqmodel"
	"github.com/freqd/freqd/ring"
)

// The load of the durability tests.
const (
	// dcWorkers clients run during the whole test, each holding at most
	// dcMaxHeld frequencies.
	dcWorkers = 4
	dcMaxHeld = 6
	// dcCallTimeout bounds one call of a worker. The client retries it
	// (with the same request id) through kills and restarts until then.
	dcCallTimeout = 20 * time.Second
	// dcFinalReader is the history's client number of the final reads.
	dcFinalReader = 1 << 20
)

// TestRestartFromDiskUnderLoad runs three `freqd serve` processes under
// continuous load from the Go client and restarts them from their data
// directories: first one node (kill -9, the survivors take over, restart),
// then all three at once. A restarted node must come back as the same
// incarnation (the raft voters name it as before: it is the same replica
// and catches up from its own log) and the cluster must settle each time. At the end the history must be linearizable, every
// acknowledged allocation must still be held by its client, read through
// every node, and nothing may be held that no client was told of (unless a
// call's outcome was unknown).
func TestRestartFromDiskUnderLoad(t *testing.T) {
	start := time.Now()
	dir, bin, seed := dcSetup(t)
	c := dcNew(t, bin, dir, seed)
	c.startAll()
	t.Logf("3 nodes formed %v after the start; ids %v", time.Since(start).Round(time.Millisecond), c.ids())

	l := c.startLoad(seed)
	l.waitProgress(400)

	// A: one node, killed and restarted after the survivors took over.
	v := c.nodes[c.fo.rng.IntN(len(c.nodes))]
	phase := time.Now()
	c.kill(v)
	c.waitSettled("the survivors to take over from " + v.name)
	l.waitProgress(200)
	c.restart(v)
	c.waitSettled(v.name + " to come back as " + v.id)
	c.checkRecovered(v)
	t.Logf("A: kill -9 %s, taken over, restarted, settled with %s again after %v", v.name, v.id, time.Since(phase).Round(time.Millisecond))
	l.waitProgress(400)

	// B: every node at once.
	phase = time.Now()
	c.kill(c.nodes...)
	for _, n := range c.nodes {
		c.restart(n)
	}
	c.waitSettled("the whole cluster to come back")
	for _, n := range c.nodes {
		c.checkRecovered(n)
	}
	t.Logf("B: kill -9 of all three, restarted, settled with %v after %v", c.ids(), time.Since(phase).Round(time.Millisecond))
	l.waitProgress(400)

	c.finish(l)
	t.Logf("total %v, seed %d", time.Since(start).Round(time.Millisecond), seed)
}

// ids lists the nodes' replica ids.
func (c *dcCluster) ids() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.id)
	}
	return out
}

// TestDataDirDamage damages the log of a node killed with kill -9 and
// restarts it: a payload byte of a frame in the middle, a byte of a frame
// header, and a cut in the middle of the last frame (a torn write:
// truncated with a note, not damage). Damage of any kind makes the node's
// raft state unusable (a replica that lost part of its log or its votes
// must never vote again under its id): the node must name the file and
// the problem in its log, discard all its raft state and come back as a
// new incarnation, which every group adds back (from the other replicas)
// in place of the old one; the cluster must settle with every replica
// holding its leader's state and every acknowledged allocation held once,
// read through every node. A torn tail is no damage: the node comes back
// as the same incarnation. A second kill -9 and restart then finds the
// directory clean, and keeps the incarnation.
//
// The small workload leaves only the log (no checkpoint is due yet);
// damaged checkpoint files are covered in-process (node/durable_test.go).
func TestDataDirDamage(t *testing.T) {
	dir, bin, seed := dcSetup(t)
	tests := []struct {
		name string
		// damage changes the segment seg (its bytes b, its frames fs) and
		// returns the new bytes and what the restarted node must log.
		damage func(seg string, b []byte, fs []walFrame) ([]byte, dcDamage)
	}{
		{"PayloadByte", func(seg string, b []byte, fs []walFrame) ([]byte, dcDamage) {
			k := len(fs) / 2
			for fs[k].size == 0 {
				k++
			}
			f := fs[k]
			b[f.off+walFrameHeader+int64(f.size)/2] ^= 0xff
			return b, dcDamage{
				problem: []string{fmt.Sprintf("partition %d: ", f.part), seg, fmt.Sprintf("offset %d", f.off), "payload checksum mismatch"},
			}
		}},
		{"HeaderByte", func(seg string, b []byte, fs []walFrame) ([]byte, dcDamage) {
			f := fs[len(fs)/2]
			b[f.off+8] ^= 0x01 // the LSN's low byte
			return b, dcDamage{
				problem: []string{seg, fmt.Sprintf("offset %d", f.off), "frame header checksum mismatch"},
			}
		}},
		{"TornTail", func(seg string, b []byte, fs []walFrame) ([]byte, dcDamage) {
			f := fs[len(fs)-1]
			cut := f.off + (walFrameHeader+int64(f.size))/2
			return b[:cut], dcDamage{
				note: []string{seg, fmt.Sprintf("torn tail truncated at offset %d", f.off), fmt.Sprintf("%d bytes dropped", cut-f.off)},
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := filepath.Join(dir, tt.name)
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			c := dcNew(t, bin, sub, seed+uint64(i))
			c.startAll()
			acked := c.smallWorkload()
			v := c.nodes[c.fo.rng.IntN(len(c.nodes))]
			c.kill(v)

			seg, b, fs := c.onlySegment(v)
			b, want := tt.damage(filepath.Base(seg), b, fs)
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s (%s): %d frames in %s; damaged: %+v", v.name, v.id, len(fs), filepath.Base(seg), want)
			old := v.id
			c.restart(v)
			if want.problem != nil {
				// The new incarnation, from the damage line: settledErr
				// then requires every group to name it, not the old one.
				v.id = c.waitDamageLog(v, want)
				c.waitSettled(v.name + " to come back as the new incarnation " + v.id + " and be added back to every group")
				t.Logf("%s came back as %s in place of %s", v.name, v.id, old)
			} else {
				c.waitSettled(v.name + " to come back as " + v.id)
				c.checkDamageLog(v, want)
				c.checkRecovered(v)
			}
			c.waitUntil("every replica to hold its leader's state", c.replicasErr)
			c.checkHeld(dcExpect{acked: acked}, nil, 0)

			// The discarded state is gone for good (or the torn tail was
			// truncated): the next start finds nothing damaged and keeps
			// the incarnation.
			c.kill(v)
			c.restart(v)
			c.waitSettled(v.name + " to come back a second time, as " + v.id)
			c.checkDamageLog(v, dcDamage{})
			c.checkRecovered(v)
			c.waitUntil("every replica to hold its leader's state after the second restart", c.replicasErr)
			c.checkHeld(dcExpect{acked: acked}, nil, 0)
		})
	}
}

// smallWorkload allocates two frequencies in every partition and releases
// a few of them again (sequentially, every call definite), and returns
// what is held: frequency -> client.
func (c *dcCluster) smallWorkload() map[uint32]string {
	t := c.t
	t.Helper()
	acked := map[uint32]string{}
	var grants []client.Grant
	per := (dcPoolLast - dcPoolFirst + 1) / dcPartitions
	for i := range 2 * dcPartitions {
		f := uint32(dcPoolFirst + (i%dcPartitions)*per + i/dcPartitions)
		id := fmt.Sprintf("d%d", i%3+1)
		ctx, cancel := context.WithTimeout(context.Background(), dcReadTimeout)
		g, err := c.all.AllocateWithID(ctx, id, client.NewRequestID(), &f)
		cancel()
		if err != nil {
			t.Fatalf("allocate %d to %s: %v", f, id, err)
		}
		acked[f] = id
		grants = append(grants, g)
	}
	for i := 0; i < len(grants); i += 4 {
		g := grants[i]
		ctx, cancel := context.WithTimeout(context.Background(), dcReadTimeout)
		err := c.all.ReleaseGrant(ctx, acked[g.Frequency], g)
		cancel()
		if err != nil {
			t.Fatalf("release %d of %s: %v", g.Frequency, acked[g.Frequency], err)
		}
		delete(acked, g.Frequency)
	}
	return acked
}

// dcDamage is what a restarted node must log about its damaged log.
type dcDamage struct {
	// problem, if set, are the strings the one damage line's problem must
	// mention: the node discards its raft state and takes a new
	// incarnation. Nil: no damage line.
	problem []string
	// note, if set, are the strings a "data directory" note must mention.
	note []string
}

// waitDamageLog waits until n has logged that its raft state is damaged
// (it does so as it starts), checks the line against want, and returns
// n's new replica id (name#new_incarnation). The node must not also log a
// recovery from the data directory.
func (c *dcCluster) waitDamageLog(n *dcNode, want dcDamage) string {
	t := c.t
	t.Helper()
	var line string
	c.waitUntil(n.name+" to report its damaged raft state", func() error {
		lines := c.logLines(n, logDamaged)
		if len(lines) == 0 {
			return fmt.Errorf("%s has not logged %s", n.name, logDamaged)
		}
		line = lines[0]
		return nil
	})
	_, oldInc, _ := strings.Cut(n.id, "#")
	prob, newInc := slogAttr(line, "problem"), slogAttr(line, "new_incarnation")
	for _, w := range want.problem {
		if !strings.Contains(prob, w) {
			t.Errorf("%s: problem %q does not mention %q", n.name, prob, w)
		}
	}
	if got := slogAttr(line, "old_incarnation"); got != oldInc {
		t.Errorf("%s: damage line names old incarnation %q; it was %q: %s", n.name, got, oldInc, line)
	}
	if newInc == "" || newInc == oldInc {
		t.Fatalf("%s: damage line names new incarnation %q (old %q): %s", n.name, newInc, oldInc, line)
	}
	if k := len(c.logLines(n, logDamaged)); k != 1 {
		t.Errorf("%s logged %d damage lines; want 1", n.name, k)
	}
	if r := c.logLines(n, logRecovered); len(r) > 0 {
		t.Errorf("%s logged a recovery although it discarded its state:\n%s", n.name, strings.Join(r, "\n"))
	}
	c.checkNote(n, want.note)
	return n.name + "#" + newInc
}

// checkDamageLog checks n's log for no damage and, if want.note is set,
// the note.
func (c *dcCluster) checkDamageLog(n *dcNode, want dcDamage) {
	t := c.t
	t.Helper()
	if lines := c.logLines(n, logDamaged); len(lines) > 0 {
		t.Errorf("%s reported damage; want none:\n%s", n.name, strings.Join(lines, "\n"))
	}
	c.checkNote(n, want.note)
}

// checkNote checks that n logged a "data directory" note mentioning every
// string of want (nothing if want is nil).
func (c *dcCluster) checkNote(n *dcNode, want []string) {
	t := c.t
	t.Helper()
	if want == nil {
		return
	}
	notes := c.logLines(n, `msg="data directory" `)
	if !slices.ContainsFunc(notes, func(line string) bool {
		note := slogAttr(line, "note")
		return !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(note, w) })
	}) {
		t.Errorf("%s logged no data directory note mentioning all of %q; notes:\n%s", n.name, want, strings.Join(notes, "\n"))
	}
}

// onlySegment returns n's log segment, its bytes and its frames, failing
// unless the data directory holds exactly one segment and no checkpoint.
func (c *dcCluster) onlySegment(n *dcNode) (string, []byte, []walFrame) {
	t := c.t
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(n.data, "wal-*.log"))
	ckpts, _ := filepath.Glob(filepath.Join(n.data, "part-*.ckpt"))
	if len(segs) != 1 || len(ckpts) != 0 {
		t.Fatalf("%s's data directory holds segments %v and checkpoints %v; want one segment and no checkpoint", n.name, segs, ckpts)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	fs, err := walFrames(b)
	if err != nil {
		t.Fatalf("%s: %v", segs[0], err)
	}
	if len(fs) < 10 {
		t.Fatalf("%s holds only %d frames", segs[0], len(fs))
	}
	return segs[0], b, fs
}

// The log segment format (store/doc.go, "Files"): a 20-byte header
// starting with "FQWL", then frames of a 24-byte header (payload length
// u32, partition u32, LSN u64, payload CRC u32, header CRC u32) and the
// payload. A seal frame has partition 0xFFFFFFFF.
const (
	walMagic       = "FQWL"
	walHeader      = 20
	walFrameHeader = 24
	walSealPart    = 0xFFFFFFFF
)

// walFrame is one record frame of a segment.
type walFrame struct {
	off  int64 // of the frame header
	size uint32
	part uint32
	lsn  uint64
}

// walFrames lists the record frames of a segment (not the seal). It checks
// the framing only (no checksums): an error if the data does not end
// exactly after a frame.
func walFrames(b []byte) ([]walFrame, error) {
	if len(b) < walHeader || string(b[:4]) != walMagic {
		return nil, fmt.Errorf("not a log segment (%d bytes)", len(b))
	}
	var out []walFrame
	off := int64(walHeader)
	for off < int64(len(b)) {
		if int64(len(b))-off < walFrameHeader {
			return out, fmt.Errorf("%d bytes after the last frame at offset %d", int64(len(b))-off, off)
		}
		h := b[off:]
		f := walFrame{off: off, size: binary.LittleEndian.Uint32(h), part: binary.LittleEndian.Uint32(h[4:]), lsn: binary.LittleEndian.Uint64(h[8:])}
		end := off + walFrameHeader + int64(f.size)
		if end > int64(len(b)) {
			return out, fmt.Errorf("frame at offset %d runs %d bytes past the end", off, end-int64(len(b)))
		}
		if f.part != walSealPart {
			out = append(out, f)
		}
		off = end
	}
	return out, nil
}

// FuzzWalFrames checks that walFrames never panics and that the frames it
// returns lie inside the data, in order.
func FuzzWalFrames(f *testing.F) {
	seg := append([]byte(walMagic), make([]byte, walHeader-4)...)
	frame := func(part uint32, payload string) []byte {
		h := make([]byte, walFrameHeader)
		binary.LittleEndian.PutUint32(h, uint32(len(payload)))
		binary.LittleEndian.PutUint32(h[4:], part)
		return append(h, payload...)
	}
	f.Add(seg)
	f.Add(slices.Concat(seg, frame(3, "abc"), frame(walSealPart, "")))
	f.Add(slices.Concat(seg, frame(1, "abcdef")[:12]))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, _ := walFrames(b)
		next := int64(walHeader)
		for _, fr := range fs {
			if fr.off < next || fr.off+walFrameHeader+int64(fr.size) > int64(len(b)) || fr.part == walSealPart {
				t.Fatalf("frame %+v out of place (next offset %d, %d bytes)", fr, next, len(b))
			}
			next = fr.off + walFrameHeader + int64(fr.size)
		}
	})
}

// dcWorker is one client of the load: it allocates (any frequency, or a
// given one, each with a request id), releases its own grants by naming
// them, and reads holders, recording every call in the history. Its
// fields belong to the goroutine running it; the test reads them after
// the load has stopped.
type dcWorker struct {
	num int // porcupine client number
	id  string
	rng *rand.Rand
	// held: acknowledged grants, not released since.
	held map[uint32]client.Grant
	// maybe: frequencies whose last call had an unknown outcome.
	maybe map[uint32]bool
	// anyUnknown counts allocations of any frequency with an unknown
	// outcome.
	anyUnknown int
	// counts of calls by kind and outcome ("alloc ok", "release unknown").
	counts map[string]int
	// odd: examples of answers a correct cluster does not give.
	odd []string
	// unknowns: examples of errors with an unknown outcome.
	unknowns []string
	// writes: every acknowledged write (an allocation or a release).
	writes []dcWrite
}

// dcWrite is one acknowledged write of a worker: when the call was made
// and answered, and the frequency it was about.
type dcWrite struct {
	kind       freqmodel.Kind
	freq       uint32
	start, end time.Time
}

func newDcWorker(num int, id string, rng *rand.Rand) *dcWorker {
	return &dcWorker{num: num, id: id, rng: rng, held: map[uint32]client.Grant{}, maybe: map[uint32]bool{}, counts: map[string]int{}}
}

// dcLoad is the running load. It stops like foLoad (whose stop, hard and
// halt it uses): after the workers' current calls once stop is closed, at
// once when hard is cancelled (cleanup after a failure).
type dcLoad struct {
	foLoad
	c       *dcCluster
	rec     *freqmodel.Recorder
	clients []*dcWorker
	calls   atomic.Int64 // completed calls
	pause   time.Duration
}

// startLoad starts dcWorkers workers, each over every node (starting with
// a different one).
func (c *dcCluster) startLoad(seed uint64) *dcLoad {
	return c.startLoadN(seed, dcWorkers, 0)
}

// startLoadN starts workers workers like startLoad, each pausing for pause
// after every call (0: closed loop without pause).
func (c *dcCluster) startLoadN(seed uint64, workers int, pause time.Duration) *dcLoad {
	hard, cancel := context.WithCancel(context.Background())
	l := &dcLoad{foLoad: foLoad{stop: make(chan struct{}), hard: hard, cancel: cancel}, c: c, rec: freqmodel.NewRecorder(), pause: pause}
	c.t.Cleanup(func() {
		cancel()
		l.halt()
	})
	for i := range workers {
		var addrs []string
		for j := range c.nodes {
			addrs = append(addrs, c.nodes[(i+j)%len(c.nodes)].api)
		}
		w := newDcWorker(i+1, fmt.Sprintf("w%d", i+1), rand.New(rand.NewPCG(seed, uint64(i+1))))
		cl := c.fo.newClient(addrs)
		l.clients = append(l.clients, w)
		l.wg.Go(func() { l.run(w, cl) })
	}
	return l
}

// stopping reports whether the workers should stop.
func (l *dcLoad) stopping() bool {
	select {
	case <-l.stop:
		return true
	case <-l.hard.Done():
		return true
	default:
		return false
	}
}

// run is one worker's loop.
func (l *dcLoad) run(w *dcWorker, cl *client.Client) {
	for !l.stopping() {
		w.do(l.hard, l.rec, cl, w.next(l.c.freqs))
		l.calls.Add(1)
		if l.pause > 0 {
			select {
			case <-time.After(l.pause):
			case <-l.stop:
			case <-l.hard.Done():
			}
		}
	}
}

// next picks w's next call at random: allocate any frequency (while it
// holds fewer than dcMaxHeld), allocate a given one, release one of its
// own, or read a holder.
func (w *dcWorker) next(freqs []uint32) freqmodel.Input {
	switch r := w.rng.IntN(100); {
	case r < 35 && len(w.held) < dcMaxHeld:
		return freqmodel.Input{Kind: freqmodel.Alloc, Client: w.id}
	case r < 50:
		return freqmodel.Input{Kind: freqmodel.AllocFreq, Client: w.id, Freq: freqs[w.rng.IntN(len(freqs))]}
	case r < 80 && len(w.held) > 0:
		mine := slices.Sorted(maps.Keys(w.held))
		return freqmodel.Input{Kind: freqmodel.Release, Client: w.id, Freq: mine[w.rng.IntN(len(mine))]}
	}
	return freqmodel.Input{Kind: freqmodel.Holder, Freq: freqs[w.rng.IntN(len(freqs))]}
}

// do makes one call through cl, records it in rec and updates w's ledger.
// A release names w's grant; allocations carry a fresh request id.
func (w *dcWorker) do(ctx context.Context, rec *freqmodel.Recorder, cl *client.Client, in freqmodel.Input) error {
	ctx, cancel := context.WithTimeout(ctx, dcCallTimeout)
	defer cancel()
	var out freqmodel.Output
	var g client.Grant
	var err error
	start := time.Now()
	switch in.Kind {
	case freqmodel.Alloc, freqmodel.AllocFreq:
		var f *uint32
		if in.Kind == freqmodel.AllocFreq {
			f = &in.Freq
		}
		g, err = cl.AllocateWithID(ctx, in.Client, client.NewRequestID(), f)
		out.Freq = g.Frequency
	case freqmodel.Release:
		g = w.held[in.Freq]
		delete(w.held, in.Freq)
		err = cl.ReleaseGrant(ctx, in.Client, g)
	case freqmodel.Holder:
		var h client.Holding
		h, err = cl.Holder(ctx, in.Freq)
		out.Held, out.Holder = h.Held, h.ClientID
	}
	end := time.Now()
	res, definite := freqmodel.Classify(err)
	switch {
	case definite:
		out.Result = res
		rec.Record(w.num, in, start, end, out)
		w.counts[in.Kind.String()+" "+res.String()]++
	case errors.Is(err, freqd.ErrUnavailable) && !errors.Is(err, freqd.ErrOutcomeUnknown):
		// Not applied (every attempt said so): nothing to record.
		w.counts[in.Kind.String()+" unavailable"]++
		if in.Kind == freqmodel.Release {
			w.held[in.Freq] = g
		}
		return err
	default:
		w.counts[in.Kind.String()+" unknown"]++
		if len(w.unknowns) < 3 {
			w.unknowns = append(w.unknowns, fmt.Sprintf("%s(%s, %d): %v", in.Kind, in.Client, in.Freq, err))
		}
		switch in.Kind {
		case freqmodel.Holder:
			return err // a read changes nothing
		case freqmodel.Alloc:
			w.anyUnknown++
		default:
			w.maybe[in.Freq] = true
		}
		rec.RecordUnknown(w.num, in, start)
		return err
	}
	if res != freqmodel.OK {
		if in.Kind == freqmodel.Release || in.Kind == freqmodel.AllocFreq && res != freqmodel.AlreadyHeld {
			w.oddAnswer(in, err)
		}
		if in.Kind == freqmodel.AllocFreq && res == freqmodel.AlreadyHeld {
			delete(w.maybe, in.Freq) // another client's
		}
		return err
	}
	switch in.Kind {
	case freqmodel.Alloc, freqmodel.AllocFreq:
		w.held[g.Frequency] = g
		delete(w.maybe, g.Frequency)
		w.writes = append(w.writes, dcWrite{kind: in.Kind, freq: g.Frequency, start: start, end: end})
	case freqmodel.Release:
		delete(w.maybe, in.Freq)
		w.writes = append(w.writes, dcWrite{kind: in.Kind, freq: in.Freq, start: start, end: end})
	}
	return nil
}

// oddAnswer notes an answer a correct cluster does not give (the
// linearizability check fails on it too, with less to say).
func (w *dcWorker) oddAnswer(in freqmodel.Input, err error) {
	if len(w.odd) < 5 {
		w.odd = append(w.odd, fmt.Sprintf("%s(%s, %d): %v", in.Kind, in.Client, in.Freq, err))
	}
}

// waitProgress waits until the workers have completed k more calls.
func (l *dcLoad) waitProgress(k int64) {
	t := l.c.t
	t.Helper()
	from := l.calls.Load()
	deadline := time.Now().Add(dcDeadline)
	for l.calls.Load() < from+k {
		if time.Now().After(deadline) {
			t.Fatalf("the load made %d calls in %v; want %d", l.calls.Load()-from, dcDeadline, k)
		}
		time.Sleep(foPoll)
	}
}

// report logs the calls by outcome and fails on odd answers. Only after
// halt.
func (l *dcLoad) report() {
	t := l.c.t
	t.Helper()
	totals := map[string]int{}
	var unknowns []string
	for _, w := range l.clients {
		unknowns = append(unknowns, w.unknowns...)
		for k, v := range w.counts {
			totals[k] += v
		}
		for _, o := range w.odd {
			t.Errorf("%s: unexpected answer %s", w.id, o)
		}
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(totals)) {
		fmt.Fprintf(&b, " %s=%d", k, totals[k])
	}
	t.Logf("load:%s", b.String())
	if len(unknowns) > 0 {
		t.Logf("calls with an unknown outcome (examples):\n  %s", strings.Join(unknowns, "\n  "))
	}
}

// expect is what the workers were told. Only after halt.
func (l *dcLoad) expect(extra ...*dcWorker) dcExpect {
	e := dcExpect{acked: map[uint32]string{}, maybe: map[string]map[uint32]bool{}, anyUnknown: map[string]int{}}
	for _, w := range append(slices.Clone(l.clients), extra...) {
		for f := range w.held {
			if prev, dup := e.acked[f]; dup {
				l.c.t.Errorf("%d acknowledged to both %s and %s", f, prev, w.id)
			}
			e.acked[f] = w.id
		}
		e.maybe[w.id] = w.maybe
		e.anyUnknown[w.id] = w.anyUnknown
	}
	return e
}

// TestDataDirFull gives one node a 4 MiB tmpfs as its data directory, runs
// the load, and fills the tmpfs. The node must stop acknowledging what it
// cannot keep and say why (no space left on device) in its log and status;
// it becomes degraded and leaves the ring, so the others take its
// partitions over and every partition keeps granting. A degraded node
// does not recover by itself: once the filler is removed the test
// restarts it (kill -9 and start on the same directory), and it must come
// back as the same incarnation and lead its partitions again. At the end
// nothing acknowledged may be lost (the final check of
// TestRestartFromDiskUnderLoad).
//
// It needs root (mount) and skips without it.
func TestDataDirFull(t *testing.T) {
	mnt := dcRequireMount(t)
	dir, bin, seed := dcSetup(t)
	c := dcNew(t, bin, dir, seed)
	v := c.pickOwner()
	dcMount(t, mnt, v.data, "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", v.data)
	c.startAll()
	l := c.startLoad(seed)
	l.waitProgress(300)

	filler := filepath.Join(v.data, "filler")
	fillUp(t, filler)
	t.Logf("%s's data directory (a 4 MiB tmpfs) filled up", v.name)
	const problem = "no space left on device"
	probe := c.checkHandedOff(l, v, problem)
	c.checkLogged(v, problem, logDirFailed)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.checkRecovering(l, v, probe, "the filler was removed")
	c.checkRecovered(v)
	c.finish(l, probe)
}

// TestDataDirReadOnly restarts a node killed with kill -9 on its data
// directory made a read-only bind mount of itself. The node must come up
// refusing writes: its log and the status name the problem (read-only file
// system), it owns no partitions (degraded, it left the ring), and every
// partition keeps granting through every node. A degraded node does not
// recover by itself: once the directory is made writable again the test
// restarts it (kill -9 and start), and it must come back as the same
// incarnation and lead its partitions again; nothing acknowledged may be
// lost.
//
// (Remounting a running node's directory read-only is refused by Linux
// while the node has its log open for writing, hence the restart.) It
// needs root (mount) and skips without it.
func TestDataDirReadOnly(t *testing.T) {
	mnt := dcRequireMount(t)
	dir, bin, seed := dcSetup(t)
	c := dcNew(t, bin, dir, seed)
	v := c.pickOwner()
	c.startAll()
	l := c.startLoad(seed)
	l.waitProgress(300)

	c.kill(v)
	dcMount(t, mnt, v.data, "--bind", v.data, v.data)
	if out, err := exec.Command(mnt, "-o", "remount,ro,bind", v.data).CombinedOutput(); err != nil {
		t.Fatalf("mount -o remount,ro,bind %s: %v: %s", v.data, err, out)
	}
	c.restart(v)
	const problem = "read-only file system"
	probe := c.checkHandedOff(l, v, problem)
	// A node that starts on a directory it cannot write is degraded from
	// its start, and its store logs the failure as it opens it (the node's
	// own logDirFailed line is for a disk that fails while it runs).
	c.checkLogged(v, problem, logDirFailed, logStoreFailed)

	if out, err := exec.Command(mnt, "-o", "remount,rw,bind", v.data).CombinedOutput(); err != nil {
		t.Fatalf("mount -o remount,rw,bind %s: %v: %s", v.data, err, out)
	}
	c.checkRecovering(l, v, probe, "the directory was made writable")
	c.checkRecovered(v)
	c.finish(l, probe)
}

// pickOwner picks a node (seeded) that the ring of the full cluster makes
// the owner of at least one partition.
func (c *dcCluster) pickOwner() *dcNode {
	c.t.Helper()
	names := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		names[i] = n.name
	}
	r, err := ring.New(ring.Config{Partitions: dcPartitions, ReplicationFactor: dcFactor}, names)
	if err != nil {
		c.t.Fatal(err)
	}
	var owners []*dcNode
	for _, n := range c.nodes {
		for p := range dcPartitions {
			if o, _ := r.Owner(p); o == n.name {
				owners = append(owners, n)
				break
			}
		}
	}
	return owners[c.fo.rng.IntN(len(owners))]
}

// fillUp writes to path until the file system is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for range 1 << 12 {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v; want ENOSPC", path, err)
	}
}

// checkHandedOff waits until v, which cannot write its data directory
// (problem), has said so and handed its partitions to the others: v's
// status names the problem in full, every other node's status marks v, no
// partition is owned or led by v and every partition is writable. Then an
// allocation in every partition, through the nodes in turn (v included: it
// forwards), succeeds. The calls are single attempts made by a client of
// its own ("probe", recorded in l's history), which it returns.
func (c *dcCluster) checkHandedOff(l *dcLoad, v *dcNode, problem string) *dcWorker {
	t := c.t
	t.Helper()
	probe := newDcWorker(dcWorkers+1, "probe", nil)
	next := map[uint32]uint32{} // partition -> next frequency to ask for
	ask := func(n *dcNode, p *freqdv1.PartitionInfo) error {
		for range p.GetLast() - p.GetFirst() + 1 {
			f := max(next[p.GetId()], p.GetFirst())
			next[p.GetId()] = f + 1
			if next[p.GetId()] > p.GetLast() {
				next[p.GetId()] = p.GetFirst()
			}
			if _, mine := probe.held[f]; mine {
				continue
			}
			err := probe.do(l.hard, l.rec, n.cl, freqmodel.Input{Kind: freqmodel.AllocFreq, Client: probe.id, Freq: f})
			if !errors.Is(err, freqd.ErrAlreadyHeld) {
				return err
			}
		}
		return fmt.Errorf("partition %d: every frequency held", p.GetId())
	}
	c.waitUntil(v.name+" to hand its partitions off ("+problem+")", func() error {
		for _, n := range c.nodes {
			st, r, err := n.view()
			if err != nil {
				return err
			}
			i := slices.IndexFunc(st.GetMembers(), func(m *freqdv1.Member) bool { return m.GetName() == v.name })
			if i < 0 {
				return fmt.Errorf("status via %s does not list %s", n.name, v.name)
			}
			pr := st.GetMembers()[i].GetProblem()
			if !strings.Contains(pr, "cannot write its data directory") || n == v && !strings.Contains(pr, problem) {
				return fmt.Errorf("status via %s: %s's problem is %q; want it to name %q", n.name, v.name, pr, problem)
			}
			if st.GetWritable() != uint32(dcPartitions) {
				return fmt.Errorf("status via %s: %d of %d partitions writable: %v", n.name, st.GetWritable(), dcPartitions, st.GetProblems())
			}
			for _, p := range r.GetPartitions() {
				if p.GetOwner() == v.name || p.GetHolder() == v.name {
					return fmt.Errorf("ring via %s: partition %d owned by %s, led by %s", n.name, p.GetId(), p.GetOwner(), p.GetHolder())
				}
			}
		}
		return nil
	})
	st, _, _ := v.view()
	for _, m := range st.GetMembers() {
		if m.GetName() == v.name {
			t.Logf("%s handed its partitions off: %s", v.name, m.GetProblem())
		}
	}
	for p := range uint32(dcPartitions) {
		n := c.nodes[int(p)%len(c.nodes)] // v included: it forwards
		if err := ask(n, c.partition(p)); err != nil {
			t.Errorf("while %s cannot write: allocation in partition %d via %s: %v", v.name, p, n.name, err)
		}
	}
	return probe
}

// checkLogged waits until n has logged one of msgs with an err attribute
// mentioning problem (the node logs a failed disk on its next store tick).
func (c *dcCluster) checkLogged(n *dcNode, problem string, msgs ...string) {
	c.t.Helper()
	c.waitUntil(n.name+" to log one of "+strings.Join(msgs, ", "), func() error {
		var seen []string
		for _, msg := range msgs {
			lines := c.logLines(n, msg)
			if i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(slogAttr(l, "err"), problem) }); i >= 0 {
				c.t.Logf("%s logged: %s", n.name, lines[i])
				return nil
			}
			seen = append(seen, lines...)
		}
		return fmt.Errorf("%s logged none of %s naming %q:\n%s", n.name, strings.Join(msgs, ", "), problem, strings.Join(seen, "\n"))
	})
}

// checkRecovering restarts v (kill -9, then a start on the same data
// directory) after its disk was fixed (what): a degraded node recovers
// only by a restart. It waits until the cluster has settled with v as the
// same incarnation, then checks that the probe can allocate in each
// partition v leads, through v, and lets the load run on.
func (c *dcCluster) checkRecovering(l *dcLoad, v *dcNode, probe *dcWorker, what string) {
	c.t.Helper()
	fixed := time.Now()
	c.kill(v)
	c.restart(v)
	c.waitSettled(v.name + " to come back as " + v.id + " and lead its partitions again")
	c.t.Logf("%s restarted after %s and the cluster settled %v later", v.name, what, time.Since(fixed).Round(time.Millisecond))
	parts := c.led(v)
	if len(parts) == 0 {
		c.t.Errorf("%s leads no partition", v.name)
	}
	for _, p := range parts {
		ok := false
		for f := p.GetFirst(); f <= p.GetLast() && !ok; f++ {
			if _, mine := probe.held[f]; mine {
				continue
			}
			err := probe.do(l.hard, l.rec, v.rcl, freqmodel.Input{Kind: freqmodel.AllocFreq, Client: probe.id, Freq: f})
			switch {
			case err == nil:
				ok = true
			case !errors.Is(err, freqd.ErrAlreadyHeld):
				c.t.Errorf("allocation of %d in partition %d via %s after the recovery: %v", f, p.GetId(), v.name, err)
				return
			}
		}
		for f := p.GetFirst(); f <= p.GetLast() && !ok; f++ {
			// The load may hold every other frequency: a release of the
			// probe's own is a write through v as good as an allocation.
			if _, mine := probe.held[f]; mine {
				if err := probe.do(l.hard, l.rec, v.rcl, freqmodel.Input{Kind: freqmodel.Release, Client: probe.id, Freq: f}); err != nil {
					c.t.Errorf("release of %d in partition %d via %s after the recovery: %v", f, p.GetId(), v.name, err)
					return
				}
				ok = true
			}
		}
		if !ok {
			c.t.Errorf("partition %d: no free frequency to allocate and none of the probe's to release", p.GetId())
		}
	}
	l.waitProgress(300)
}

// finish stops the load and runs the final checks: holders against what
// the clients were told, and linearizability.
func (c *dcCluster) finish(l *dcLoad, extra ...*dcWorker) {
	t := c.t
	t.Helper()
	l.halt()
	l.report()
	for _, w := range extra {
		for _, o := range w.odd {
			t.Errorf("%s: unexpected answer %s", w.id, o)
		}
	}
	c.checkHeld(l.expect(extra...), l.rec, dcFinalReader)
	start := time.Now()
	if err := l.rec.Check(c.freqs, 30*time.Second); err != nil {
		t.Errorf("porcupine: %v", err)
	}
	t.Logf("%d calls in the history, linearizability checked in %v", len(l.rec.Operations()), time.Since(start).Round(time.Millisecond))
}
