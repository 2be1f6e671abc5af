package freqd_test

import (
	"errors"
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
