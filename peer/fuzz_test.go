package peer

import (
	"bytes"
	"testing"
)

// FuzzFrame feeds arbitrary bytes to the frame decoders: they never
// panic, never return a payload over the frame limit, agree with each
// other (the buffer decoder and the stream reader), and whatever decodes
// encodes back to the same bytes. Chunks go through reassembly, whose
// bounds must hold.
func FuzzFrame(f *testing.F) {
	// A small frame limit keeps chunked seeds (whose messages must exceed
	// it) small, so the fuzzer's minimization stays quick.
	const max = 64
	p := []byte("raft batch")
	var seq []byte
	seq = appendFrame(seq, frameMsg, 0, 0, p, crc(p))
	seq = appendFrame(seq, frameCall, 7, 1e9, p, crc(p))
	seq = appendFrame(seq, frameReply, 7, 0, nil, 0)
	seq = appendFrame(seq, frameError, 7, 3, []byte("not owner"), crc([]byte("not owner")))
	seq = appendFrame(seq, frameFail, 8, failBusy, nil, 0)
	seq = appendFrame(seq, frameCancel, 8, 0, nil, 0)
	seq = appendFrame(seq, framePing, 1, 0, nil, 0)
	seq = appendFrame(seq, framePong, 1, 0, nil, 0)
	f.Add(seq)
	chunk := bytes.Repeat([]byte{0xAB}, max)
	var chunks []byte
	chunks = appendFrame(chunks, frameChunk, 1, 0|(max+3)<<32, chunk, crc(chunk))
	chunks = appendFrame(chunks, frameChunk, 1, max|(max+3)<<32, chunk[:3], crc(chunk[:3]))
	f.Add(chunks)
	f.Add(seq[:len(seq)-5])
	f.Add(appendHeader(nil, frameHeader{typ: frameMsg, size: 1<<32 - 1, sum: 1}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		re := reassembly{maxFrame: max, maxMessage: 4 * max}
		r := bytes.NewReader(data)
		var hb [frameHeaderSize]byte
		rest := data
		for {
			h, p, next, err := decodeFrame(rest, max)
			h2, p2, err2 := readFrame(r, &hb, max)
			if err != nil {
				if err2 == nil {
					t.Fatalf("readFrame accepted %v that decodeFrame refused: %v", h2, err)
				}
				return
			}
			if err2 != nil || h2 != h || !bytes.Equal(p, p2) {
				t.Fatalf("decoders disagree: %v %v / %v %v", h, err, h2, err2)
			}
			if len(p) > max || len(p) != int(h.size) {
				t.Fatalf("%v with a %d-byte payload", h, len(p))
			}
			if enc := appendFrame(nil, h.typ, h.id, h.arg, p, h.sum); !bytes.Equal(enc, rest[:len(rest)-len(next)]) {
				t.Fatalf("encode(decode) differs for %v", h)
			}
			if h.typ == frameChunk {
				msg, err := re.add(h, p)
				_, total := h.chunk()
				if err == nil && msg != nil && len(msg) != int(total) {
					t.Fatalf("reassembled %d bytes of %d", len(msg), total)
				}
				if len(re.parts) > maxPartials || re.bytes > uint64(re.maxMessage) {
					t.Fatalf("reassembly over its bounds: %d parts, %d bytes", len(re.parts), re.bytes)
				}
			}
			rest = next
		}
	})
}

// FuzzHandshake feeds arbitrary bytes to the handshake decoders: they
// never panic, what decodes encodes back to the same bytes, and the
// stream reader reads exactly one handshake and agrees with the buffer
// decoder.
func FuzzHandshake(f *testing.F) {
	f.Add(encodeHello(rawHello(ident(1), laneMain)))
	f.Add(encodeHello(hello{kind: kindWelcome, lane: laneBulk, id: ident(2), maxFrame: minFrame, maxMessage: 1 << 30}))
	f.Add(encodeHello(hello{kind: kindRefusal, id: ident(3), maxFrame: DefaultMaxFrame, maxMessage: DefaultMaxMessage, reason: "wrong cluster"}))
	f.Add(append(encodeHello(rawHello(ident(1), laneBulk)), "frames"...))
	f.Add([]byte("FQPR"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := decodeHello(data)
		r := bytes.NewReader(data)
		h2, err2 := readHello(r)
		if err == nil {
			if enc := encodeHello(h); !bytes.Equal(enc, data) {
				t.Fatalf("encode(decode) differs: %+v", h)
			}
			if err2 != nil || h2 != h || r.Len() != 0 {
				t.Fatalf("readHello: %+v, %v, %d left", h2, err2, r.Len())
			}
			return
		}
		if err2 == nil {
			n := len(data) - r.Len()
			if n == len(data) {
				t.Fatalf("readHello accepted what decodeHello refused (%v)", err)
			}
			if h3, err3 := decodeHello(data[:n]); err3 != nil || h3 != h2 {
				t.Fatalf("readHello's %d bytes do not decode alone: %v", n, err3)
			}
		}
	})
}
