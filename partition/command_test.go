package partition

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/freqd/freqd"
)

func TestCommandRoundTrip(t *testing.T) {
	cmds := []Command{
		{Op: OpGrant, Client: "a", Any: true, At: 1},
		{Op: OpGrant, Client: "client-7", Freq: 4294967295, At: -1},
		{Op: OpRelease, Client: strings.Repeat("é", freqd.MaxClientIDLen/2), Freq: 0, At: 1 << 62},
		{Op: OpRelease, Client: "", Freq: 12, At: -1 << 63},
		{Op: OpGrant, Client: "a", Request: "req-1", Any: true, At: 3},
		{Op: OpGrant, Client: "a", Request: strings.Repeat("r", freqd.MaxRequestIDLen), Freq: 7},
		{Op: OpRelease, Client: "a", Request: "ignored", Freq: 7},
		{Op: OpRelease, Client: "a", Freq: 7, Since: -5},
		{Op: OpNote, Client: "a", Request: "req-2", Freq: 41, Gen: 1},
		{Op: OpNote, Client: "a", Request: "req-2", Freq: math.MaxUint32, Gen: math.MaxUint32, At: 7},
		{Op: OpGrant, Client: "a", Request: "r", Any: true, Home: true, At: 3, TTL: MinTTL},
		{Op: OpGrant, Client: "a", Request: "r", Any: true, Gen: 2, At: 3},
		{Op: OpGrant, Client: "a", Request: "r", Freq: 9, Gen: math.MaxUint32},
		{Op: OpGrant, Client: "a", Any: true, At: 3, TTL: MinTTL},
		{Op: OpGrant, Client: "a", Request: "r", Freq: 9, At: 3, TTL: MaxTTL},
		{Op: OpGrant, Client: "a", Freq: 9, TTL: 1234 * time.Millisecond},
		{Op: OpReleaseClient, Client: "a", At: 5},
		{Op: OpReleaseClient, Client: "a", At: -5, TTL: 90 * time.Second},
		{Op: OpReleaseClient, Client: "", TTL: MaxTTL},
	}
	for _, c := range cmds {
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		b2, _ := c.AppendBinary([]byte("prefix"))
		if string(b2) != "prefix"+string(b) {
			t.Fatalf("AppendBinary does not append MarshalBinary's bytes")
		}
		var d Command
		if err := d.UnmarshalBinary(b); err != nil {
			t.Fatalf("%v: unmarshal: %v", c, err)
		}
		if d != c {
			t.Fatalf("round trip %+v -> %+v", c, d)
		}
	}
	for _, tt := range []struct {
		c    Command
		want string
	}{
		{Command{Op: OpGrant, Client: "a", Any: true, At: 1}, "\x05\x01\x01\x00\x02\x00\x01a\x00\x00\x00"},
		{Command{Op: OpGrant, Client: "a", Request: "rq", Freq: 300, At: -1}, "\x05\x01\x00\xac\x02\x01\x00\x01a\x02rq\x00\x00"},
		{Command{Op: OpNote, Client: "a", Request: "r", Freq: 5, Gen: 1}, "\x05\x03\x00\x05\x00\x00\x01a\x01r\x00\x01"},
		{Command{Op: OpRelease, Client: "a", Freq: 5, Since: 1}, "\x05\x02\x00\x05\x00\x00\x01a\x00\x02\x00"},
		{Command{Op: OpGrant, Client: "a", Any: true, At: 1, TTL: time.Second}, "\x05\x01\x01\x00\x02\xe8\x07\x01a\x00\x00\x00"},
		{Command{Op: OpReleaseClient, Client: "a", At: 1}, "\x05\x04\x00\x00\x02\x00\x01a\x00\x00\x00"},
		{Command{Op: OpReleaseClient, Client: "a", TTL: MaxTTL}, "\x05\x04\x00\x00\x00\x80\xb8\x99\x29\x01a\x00\x00\x00"},
		{Command{Op: OpGrant, Client: "a", Request: "r", Any: true, Home: true, At: 1}, "\x05\x01\x03\x00\x02\x00\x01a\x01r\x00\x00"},
		{Command{Op: OpGrant, Client: "a", Request: "r", Any: true, Gen: 300, At: 1}, "\x05\x01\x01\x00\x02\x00\x01a\x01r\x00\xac\x02"},
	} {
		if b, _ := tt.c.MarshalBinary(); string(b) != tt.want {
			t.Errorf("encoding of %v is %q, want %q", tt.c, b, tt.want)
		}
	}
}

// TestCommandDecodeV4 checks that version 4 encodings, written before
// bindings had generations, still decode: Gen 0 and Home false, except a
// note, which is generation 1 (its only binding then). They re-encode as
// version 5.
func TestCommandDecodeV4(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Command
	}{
		{"\x04\x01\x01\x00\x02\x00\x01a\x00\x00", Command{Op: OpGrant, Client: "a", Any: true, At: 1}},
		{"\x04\x01\x01\x00\x02\x00\x01a\x01r\x00", Command{Op: OpGrant, Client: "a", Request: "r", Any: true, At: 1}},
		{"\x04\x01\x00\xac\x02\x01\x00\x01a\x02rq\x00", Command{Op: OpGrant, Client: "a", Request: "rq", Freq: 300, At: -1}},
		{"\x04\x03\x00\x05\x00\x00\x01a\x01r\x00", Command{Op: OpNote, Client: "a", Request: "r", Freq: 5, Gen: 1}},
		{"\x04\x02\x00\x05\x00\x00\x01a\x00\x02", Command{Op: OpRelease, Client: "a", Freq: 5, Since: 1}},
		{"\x04\x01\x01\x00\x02\xe8\x07\x01a\x00\x00", Command{Op: OpGrant, Client: "a", Any: true, At: 1, TTL: time.Second}},
		{"\x04\x04\x00\x00\x00\x80\xb8\x99\x29\x01a\x00\x00", Command{Op: OpReleaseClient, Client: "a", TTL: MaxTTL}},
	} {
		var c Command
		if err := c.UnmarshalBinary([]byte(tt.in)); err != nil || c != tt.want {
			t.Errorf("UnmarshalBinary(%q) = %+v, %v; want %+v", tt.in, c, err, tt.want)
			continue
		}
		b, err := c.MarshalBinary()
		var d Command
		if err != nil || b[0] != commandVersion || d.UnmarshalBinary(b) != nil || d != c {
			t.Errorf("%+v re-encodes as %q (%v), decoding to %+v", c, b, err, d)
		}
	}
}

func TestCommandEncodeErrors(t *testing.T) {
	for _, c := range []Command{
		{Op: 0, Client: "a"},
		{Op: 5, Client: "a"},
		{Op: OpRelease, Client: "a", Any: true},
		{Op: OpGrant, Client: "a", TTL: MinTTL - time.Millisecond},
		{Op: OpGrant, Client: "a", TTL: MaxTTL + time.Millisecond},
		{Op: OpGrant, Client: "a", TTL: time.Second + time.Microsecond},
		{Op: OpGrant, Client: "a", TTL: -time.Second},
		{Op: OpReleaseClient, Client: "a", TTL: 1},
		{Op: OpRelease, Client: "a", Freq: 1, TTL: time.Second},
		{Op: OpNote, Client: "a", Request: "r", Gen: 1, TTL: time.Second},
		{Op: OpNote, Client: "a", Request: "r"},
		{Op: OpGrant, Client: "a", Any: true, Gen: 1},
		{Op: OpGrant, Client: "a", Freq: 3, Gen: 1},
		{Op: OpRelease, Client: "a", Request: "r", Freq: 3, Gen: 1},
		{Op: OpReleaseClient, Client: "a", Gen: 1},
		{Op: OpGrant, Client: "a", Any: true, Home: true},
		{Op: OpGrant, Client: "a", Request: "r", Freq: 3, Home: true},
		{Op: OpGrant, Client: "a", Request: "r", Any: true, Home: true, Gen: 1},
		{Op: OpNote, Client: "a", Request: "r", Gen: 1, Home: true},
		{Op: OpRelease, Client: "a", Freq: 3, Home: true},
		{Op: OpReleaseClient, Client: "a", Home: true},
		{Op: OpReleaseClient, Client: "a", Request: "r"},
		{Op: OpReleaseClient, Client: "a", Freq: 1},
		{Op: OpReleaseClient, Client: "a", Any: true},
		{Op: OpReleaseClient, Client: "a", Since: 1},
		{Op: OpNote, Client: "a", Request: "r", Any: true},
		{Op: OpNote, Client: "a", Freq: 3},
		{Op: OpGrant, Client: strings.Repeat("x", freqd.MaxClientIDLen+1)},
		{Op: OpGrant, Client: "a", Request: strings.Repeat("x", freqd.MaxRequestIDLen+1)},
	} {
		if b, err := c.AppendBinary([]byte("x")); !errors.Is(err, freqd.ErrInvalidArgument) || string(b) != "x" {
			t.Errorf("AppendBinary(%+v) = %q, %v; want ErrInvalidArgument and b unchanged", c, b, err)
		}
	}
}

func TestCommandUnmarshalErrors(t *testing.T) {
	valid, _ := Command{Op: OpGrant, Client: "ab", Freq: 300, At: 5}.MarshalBinary()
	long := append([]byte{4, 1, 0, 0, 0, 0}, appendUvarint(nil, freqd.MaxClientIDLen+1)...)
	long = append(long, make([]byte, freqd.MaxClientIDLen+1)...)
	long = append(long, 0, 0)
	longReq := append([]byte{4, 1, 0, 0, 0, 0, 1, 'a'}, appendUvarint(nil, freqd.MaxRequestIDLen+1)...)
	longReq = append(longReq, make([]byte, freqd.MaxRequestIDLen+1)...)
	// withTTL is a grant of 5 by "a" at 0 with ttl ms (encoded as given).
	withTTL := func(op byte, ttl []byte, rest ...byte) []byte {
		return slices.Concat([]byte{4, op, 0, 5, 0}, ttl, []byte{1, 'a'}, rest)
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"short header", []byte{4, 1}, "too short"},
		{"version 1", append([]byte{1}, valid[1:]...), "unknown version 1"},
		{"version 2", append([]byte{2}, valid[1:]...), "unknown version 2"},
		{"version 3", append([]byte{3}, valid[1:]...), "unknown version 3"},
		{"version 6", append([]byte{6}, valid[1:]...), "unknown version 6"},
		{"version 0", append([]byte{0}, valid[1:]...), "unknown version 0"},
		{"v4 home flag", []byte{4, 1, 3, 0, 0, 0, 1, 'a', 1, 'r', 0}, "unknown flags 0x3"},
		{"v4 with a gen", []byte{4, 1, 1, 0, 0, 0, 1, 'a', 1, 'r', 0, 1}, "1 trailing bytes"},
		{"v5 flags", []byte{5, 1, 4, 0, 0, 0, 1, 'a', 1, 'r', 0, 0}, "unknown flags 0x4"},
		{"v5 missing gen", []byte{5, 1, 1, 0, 0, 0, 1, 'a', 1, 'r', 0}, "gen: unexpected end"},
		{"v5 non-minimal gen", []byte{5, 1, 1, 0, 0, 0, 1, 'a', 1, 'r', 0, 0x81, 0x00}, "gen: non-minimal"},
		{"v5 gen too big", append([]byte{5, 1, 1, 0, 0, 0, 1, 'a', 1, 'r', 0}, appendUvarint(nil, 1<<32)...), "gen 4294967296 is more than 4294967295"},
		{"v5 trailing", []byte{5, 1, 1, 0, 0, 0, 1, 'a', 1, 'r', 0, 1, 0}, "1 trailing bytes"},
		{"v5 note without gen", []byte{5, 3, 0, 0, 0, 0, 1, 'a', 1, 'r', 0, 0}, "note without a generation"},
		{"v5 gen on release", []byte{5, 2, 0, 0, 0, 0, 1, 'a', 1, 'r', 0, 1}, "gen is only for note and grant, not release"},
		{"v5 gen on release-client", []byte{5, 4, 0, 0, 0, 0, 1, 'a', 0, 0, 1}, "gen is only for note and grant, not release-client"},
		{"v5 gen without request", []byte{5, 1, 1, 0, 0, 0, 1, 'a', 0, 0, 1}, "gen on a grant without a request id"},
		{"v5 home without any", []byte{5, 1, 2, 0, 0, 0, 1, 'a', 1, 'r', 0, 0}, "home is only for a grant of any frequency"},
		{"v5 home without request", []byte{5, 1, 3, 0, 0, 0, 1, 'a', 0, 0, 0}, "home is only for a grant of any frequency"},
		{"v5 home with gen", []byte{5, 1, 3, 0, 0, 0, 1, 'a', 1, 'r', 0, 1}, "home is only for a grant of any frequency"},
		{"v5 home on note", []byte{5, 3, 2, 0, 0, 0, 1, 'a', 1, 'r', 0, 1}, "home is only for a grant of any frequency"},
		{"op zero", []byte{4, 0, 0, 0, 0, 0, 0, 0, 0}, "unknown op(0)"},
		{"op 5", []byte{4, 5, 0, 0, 0, 0, 0, 0, 0}, "unknown op(5)"},
		{"flags", []byte{4, 1, 2, 0, 0, 0, 0, 0, 0}, "unknown flags"},
		{"any on release", []byte{4, 2, 1, 0, 0, 0, 1, 'a', 0, 0}, "any is only for grant"},
		{"any on note", []byte{4, 3, 1, 0, 0, 0, 1, 'a', 1, 'r', 0}, "any is only for grant"},
		{"any on release-client", []byte{4, 4, 1, 0, 0, 0, 1, 'a', 0, 0}, "any is only for grant"},
		{"note without request", []byte{4, 3, 0, 0, 0, 0, 1, 'a', 0, 0}, "note without a request"},
		{"since on grant", []byte{4, 1, 0, 0, 0, 0, 1, 'a', 0, 2}, "since is only for release"},
		{"since on release-client", []byte{4, 4, 0, 0, 0, 0, 1, 'a', 0, 2}, "since is only for release"},
		{"missing since", []byte{4, 2, 0, 0, 0, 0, 1, 'a', 0}, "since: unexpected end"},
		{"freq too big", append([]byte{4, 1, 0}, append(appendUvarint(nil, 1<<32), 0, 0, 0, 0, 0)...), "freq 4294967296"},
		{"non-minimal freq", []byte{4, 1, 0, 0x80, 0x00, 0, 0, 0, 0, 0}, "non-minimal"},
		{"varint overflow", []byte{4, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0}, "overflows"},
		{"missing at", []byte{4, 1, 0, 5}, "at: unexpected end"},
		{"missing ttl", []byte{4, 1, 0, 5, 0}, "ttl: unexpected end"},
		{"ttl below min", withTTL(1, appendUvarint(nil, 999), 0, 0), "ttl 999 ms is neither 0 nor in 1s..24h0m0s"},
		{"ttl above max", withTTL(1, appendUvarint(nil, 86_400_001), 0, 0), "ttl 86400001 ms"},
		{"ttl overflows a duration", withTTL(1, appendUvarint(nil, 1<<62), 0, 0), "ttl 4611686018427387904 ms"},
		{"non-minimal ttl", withTTL(1, []byte{0x80, 0x00}, 0, 0), "ttl: non-minimal"},
		{"ttl on release", withTTL(2, appendUvarint(nil, 1000), 0, 0), "ttl is only for grant and release-client, not release"},
		{"ttl on note", withTTL(3, appendUvarint(nil, 1000), 1, 'r', 0), "ttl is only for grant and release-client, not note"},
		{"release-client with request", []byte{4, 4, 0, 0, 0, 0, 1, 'a', 1, 'r', 0}, "release-client with a request id"},
		{"release-client with freq", withTTL(4, []byte{0}, 0, 0), "release-client with frequency 5"},
		{"missing client len", []byte{4, 1, 0, 5, 0, 0}, "client length: unexpected end"},
		{"short client", []byte{4, 1, 0, 5, 0, 0, 3, 'a'}, "client id: unexpected end"},
		{"oversized client", long, "client id is 257 bytes, longer than 256"},
		{"missing request len", []byte{4, 1, 0, 5, 0, 0, 1, 'a'}, "request length: unexpected end"},
		{"non-minimal request len", []byte{4, 1, 0, 5, 0, 0, 1, 'a', 0x81, 0x00, 'r'}, "request length: non-minimal"},
		{"short request", []byte{4, 1, 0, 5, 0, 0, 1, 'a', 2, 'r'}, "request id: unexpected end"},
		{"oversized request", longReq, "request id is 129 bytes, longer than 128"},
		{"trailing", append(valid, 0), "1 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Command{Client: "keep"}
			err := c.UnmarshalBinary(tt.in)
			if !errors.Is(err, freqd.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("UnmarshalBinary(%x) = %v, want ErrInvalidArgument containing %q", tt.in, err, tt.want)
			}
			if c != (Command{Client: "keep"}) {
				t.Fatalf("failed UnmarshalBinary changed the command to %+v", c)
			}
		})
	}
}

func TestOpAndCommandString(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{OpGrant.String(), "grant"},
		{OpRelease.String(), "release"},
		{OpNote.String(), "note"},
		{OpReleaseClient.String(), "release-client"},
		{Op(9).String(), "op(9)"},
		{RecordGrant.String(), "grant"},
		{RecordNote.String(), "note"},
		{RecordKind(7).String(), "kind(7)"},
		{grantAny("a", 1).String(), `grant any to "a" at 1`},
		{grant("a", 5, 1).String(), `grant 5 to "a" at 1`},
		{Command{Op: OpRelease, Client: "a", Freq: 5, At: 2}.String(), `release 5 by "a" at 2`},
		{Command{Op: OpGrant, Client: "a", Request: "r1", Any: true, At: 2}.String(), `grant any to "a" at 2 request "r1"`},
		{Command{Op: OpNote, Client: "a", Request: "r1", Freq: 4, Gen: 2}.String(), `note request "r1" of "a" in partition 4 gen 2`},
		{RecordRefused.String(), "refused"},
		{Command{Op: OpGrant, Client: "a", Request: "r1", Any: true, At: 2, Home: true, TTL: time.Minute}.String(), `grant any to "a" at 2 ttl 1m0s request "r1" home`},
		{Command{Op: OpGrant, Client: "a", Request: "r1", Any: true, At: 2, Gen: 3}.String(), `grant any to "a" at 2 request "r1" gen 3`},
		{Command{Op: OpGrant, Client: "a", Request: "r1", Any: true, At: 2, TTL: 30 * time.Second}.String(), `grant any to "a" at 2 ttl 30s request "r1"`},
		{Command{Op: OpGrant, Client: "a", Freq: 5, At: 2, TTL: 1500 * time.Millisecond}.String(), `grant 5 to "a" at 2 ttl 1.5s`},
		{Command{Op: OpReleaseClient, Client: "a", At: 2}.String(), `release all of "a" at 2`},
		{Command{Op: OpReleaseClient, Client: "a", At: 2, TTL: time.Minute}.String(), `release leases of "a" with ttl up to 1m0s at 2`},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
