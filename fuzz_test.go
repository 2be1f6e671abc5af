package freqd_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/freqd/freqd"
)

func FuzzValidateClientID(f *testing.F) {
	for _, s := range []string{"", "alice", "a\x00b", "\xff", string(make([]byte, 300)), "ünï", "tab\there"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := freqd.ValidateClientID(id)
		if err != nil && !errors.Is(err, freqd.ErrInvalidClientID) {
			t.Fatalf("error %v does not wrap ErrInvalidClientID", err)
		}
		valid := id != "" && len(id) <= freqd.MaxClientIDLen && utf8.ValidString(id)
		for _, r := range id {
			if r < 0x20 || (r >= 0x7f && r < 0xa0) {
				valid = false
			}
		}
		if (err == nil) != valid {
			t.Fatalf("ValidateClientID(%q) = %v, want valid=%v", id, err, valid)
		}
	})
}

func FuzzValidateRequestID(f *testing.F) {
	for _, s := range []string{"", "req-1", "a\x00b", "\xff", string(make([]byte, 200)), "ünï", "tab\there", "\u0085"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := freqd.ValidateRequestID(id)
		if err != nil && !errors.Is(err, freqd.ErrInvalidArgument) {
			t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
		}
		valid := len(id) <= freqd.MaxRequestIDLen && utf8.ValidString(id)
		for _, r := range id {
			if r < 0x20 || (r >= 0x7f && r < 0xa0) {
				valid = false
			}
		}
		if (err == nil) != valid {
			t.Fatalf("ValidateRequestID(%q) = %v, want valid=%v", id, err, valid)
		}
	})
}

func TestValidateRequestID(t *testing.T) {
	long := strings.Repeat("r", freqd.MaxRequestIDLen+1)
	for _, tc := range []struct {
		id   string
		want string // "" = valid, else a substring of the error
	}{
		{"", ""}, {"req-1", ""}, {"ünï", ""}, {long[1:], ""},
		{long, "longer than 128"}, {"a\nb", "control character U+000A"}, {"\xff\xfe", "not valid UTF-8"},
	} {
		err := freqd.ValidateRequestID(tc.id)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ValidateRequestID(%q) = %v, want nil", tc.id, err)
			}
			continue
		}
		if !errors.Is(err, freqd.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateRequestID(%q) = %v, want ErrInvalidArgument containing %q", tc.id, err, tc.want)
		}
	}
}

func TestValidateClientID(t *testing.T) {
	long := string(make([]byte, freqd.MaxClientIDLen+1))
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"alice", true}, {"c-1/radio:7", true}, {"ünï", true},
		{"", false}, {long, false}, {"a\nb", false}, {"\xff\xfe", false},
	} {
		if err := freqd.ValidateClientID(tc.id); (err == nil) != tc.ok {
			t.Errorf("ValidateClientID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}
