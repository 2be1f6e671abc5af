package partition

import (
	"errors"
	"strings"
	"testing"

	"github.com/freqd/freqd"
)

func TestCommandRoundTrip(t *testing.T) {
	cmds := []Command{
		{Op: OpGrant, Client: "a", Any: true, At: 1},
		{Op: OpGrant, Client: "client-7", Freq: 4294967295, At: -1},
		{Op: OpRelease, Client: strings.Repeat("é", freqd.MaxClientIDLen/2), Freq: 0, At: 1 << 62},
		{Op: OpRelease, Client: "", Freq: 12, At: -1 << 63},
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
	if b, _ := (Command{Op: OpGrant, Client: "a", Any: true, At: 1}).MarshalBinary(); string(b) != "\x01\x01\x01\x00\x02\x01a" {
		t.Fatalf("encoding %q changed", b)
	}
}

func TestCommandEncodeErrors(t *testing.T) {
	for _, c := range []Command{
		{Op: 0, Client: "a"},
		{Op: 3, Client: "a"},
		{Op: OpRelease, Client: "a", Any: true},
		{Op: OpGrant, Client: strings.Repeat("x", freqd.MaxClientIDLen+1)},
	} {
		if b, err := c.AppendBinary([]byte("x")); !errors.Is(err, freqd.ErrInvalidArgument) || string(b) != "x" {
			t.Errorf("AppendBinary(%+v) = %q, %v; want ErrInvalidArgument and b unchanged", c, b, err)
		}
	}
}

func TestCommandUnmarshalErrors(t *testing.T) {
	valid, _ := Command{Op: OpGrant, Client: "ab", Freq: 300, At: 5}.MarshalBinary()
	long := append([]byte{1, 1, 0, 0, 0}, appendUvarint(nil, freqd.MaxClientIDLen+1)...)
	long = append(long, make([]byte, freqd.MaxClientIDLen+1)...)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"short header", []byte{1, 1}, "too short"},
		{"version", append([]byte{2}, valid[1:]...), "unknown version 2"},
		{"op zero", []byte{1, 0, 0, 0, 0, 0}, "unknown op(0)"},
		{"op 3", []byte{1, 3, 0, 0, 0, 0}, "unknown op(3)"},
		{"flags", []byte{1, 1, 2, 0, 0, 0}, "unknown flags"},
		{"any on release", []byte{1, 2, 1, 0, 0, 0}, "any is only for grant"},
		{"freq too big", append([]byte{1, 1, 0}, append(appendUvarint(nil, 1<<32), 0, 0)...), "freq 4294967296"},
		{"non-minimal freq", []byte{1, 1, 0, 0x80, 0x00, 0, 0}, "non-minimal"},
		{"varint overflow", []byte{1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0}, "overflows"},
		{"missing at", []byte{1, 1, 0, 5}, "at: unexpected end"},
		{"missing client len", []byte{1, 1, 0, 5, 0}, "client length: unexpected end"},
		{"short client", []byte{1, 1, 0, 5, 0, 3, 'a'}, "client id: unexpected end"},
		{"oversized client", long, "longer than 256"},
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
		{Op(9).String(), "op(9)"},
		{grantAny("a", 1).String(), `grant any to "a" at 1`},
		{grant("a", 5, 1).String(), `grant 5 to "a" at 1`},
		{Command{Op: OpRelease, Client: "a", Freq: 5, At: 2}.String(), `release 5 by "a" at 2`},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
