package bench

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// littleEndian: the sample /proc text below is what a little-endian
// kernel prints.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

const sampleTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1BBD 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0
   1: 00000000:1BBE 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1BBD 0100007F:D2F0 01 00000000:00000000 02:000A7D8C 00000000  1000        0 333 2 0000000000000000 20 4 30 10 -1
   3: 0100000A:1BBF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0000000000000000 100 0 0 10 0
   4: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0
`

const sampleTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1BBF 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 666 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1BC0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1BBE 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 888 1 0000000000000000 100 0 0 10 0
   3: 000080FE000000000000000001000000:1BBD 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 999 1 0000000000000000 100 0 0 10 0
`

func TestParseProcNetTCP(t *testing.T) {
	if !littleEndian {
		t.Skip("sample text is a little-endian kernel's")
	}
	cases := []struct {
		name string
		text string
		want []tcpSocket
	}{
		{"tcp", sampleTCP, []tcpSocket{
			{netip.MustParseAddrPort("127.0.0.1:7101"), tcpListen, 111},
			{netip.MustParseAddrPort("0.0.0.0:7102"), tcpListen, 222},
			{netip.MustParseAddrPort("127.0.0.1:7101"), 0x01, 333},
			{netip.MustParseAddrPort("10.0.0.1:7103"), tcpListen, 444},
			{netip.MustParseAddrPort("127.0.0.1:8080"), tcpListen, 555},
		}},
		{"tcp6", sampleTCP6, []tcpSocket{
			{netip.MustParseAddrPort("[::1]:7103"), tcpListen, 666},
			{netip.MustParseAddrPort("[::]:7104"), tcpListen, 777},
			{netip.MustParseAddrPort("[::ffff:127.0.0.1]:7102"), tcpListen, 888},
			{netip.MustParseAddrPort("[fe80::1]:7101"), tcpListen, 999},
		}},
		{"header only", "  sl  local_address rem_address   st\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseProcNetTCP(strings.NewReader(c.text))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}

func TestParseProcNetTCPErrors(t *testing.T) {
	for _, text := range []string{
		"sl\n 0: 0100007F:1BBD 00000000:0000 0A\n",                                                 // too few fields
		"sl\n 0: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",       // no port
		"sl\n 0: 0100007:1BBD 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",   // 7 hex digits
		"sl\n 0: 0100007F:1BBD 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000 0 0 1 1\n",  // bad state
		"sl\n 0: 0100007F:1BBD 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 x 1\n",  // bad inode
		"sl\n 0: 0100007F:FFFFF 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n", // port too big
		"sl\n 0: G100007F:1BBD 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",  // not hex
	} {
		if got, err := parseProcNetTCP(strings.NewReader(text)); err == nil {
			t.Errorf("%q: parsed as %v, want an error", text, got)
		}
	}
}

func TestListenInodes(t *testing.T) {
	if !littleEndian {
		t.Skip("sample text is a little-endian kernel's")
	}
	var socks []tcpSocket
	for _, text := range []string{sampleTCP, sampleTCP6} {
		s, err := parseProcNetTCP(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, s...)
	}
	got := listenInodes(socks, map[uint16]bool{7101: true, 7102: true, 7103: true, 7104: true})
	want := map[uint16][]uint64{
		7101: {111},      // not 333 (established) nor 999 (fe80::1)
		7102: {222, 888}, // 0.0.0.0 and ::ffff:127.0.0.1
		7103: {666},      // ::1, not 10.0.0.1
		7104: {777},      // ::
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for p, w := range want {
		if !slices.Equal(got[p], w) {
			t.Errorf("port %d: got %v, want %v", p, got[p], w)
		}
	}
}

func TestLocalPorts(t *testing.T) {
	ports, remote := localPorts([]string{
		"127.0.0.1:7101", " localhost:7102", "[::1]:7103", "127.0.0.2:7104", "http://127.0.0.1:8080",
		"10.0.0.5:7100", "example.com:80", "no-port", "127.0.0.1:99999",
	})
	want := map[uint16]string{7101: "127.0.0.1:7101", 7102: "localhost:7102", 7103: "[::1]:7103", 7104: "127.0.0.2:7104", 8080: "127.0.0.1:8080"}
	if len(ports) != len(want) {
		t.Fatalf("ports %v, want %v", ports, want)
	}
	for p, a := range want {
		if ports[p] != a {
			t.Errorf("port %d: %q, want %q", p, ports[p], a)
		}
	}
	if w := []string{"10.0.0.5:7100", "example.com:80", "no-port", "127.0.0.1:99999"}; !slices.Equal(remote, w) {
		t.Errorf("remote %v, want %v", remote, w)
	}
}

func TestFindServersFindsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	procs, notes := findServers([]string{addr, "192.0.2.1:7100"})
	if len(procs) != 1 || procs[0].PID != os.Getpid() || !slices.Equal(procs[0].Addrs, []string{addr}) {
		t.Fatalf("found %+v (notes %q), want pid %d serving %s", procs, notes, os.Getpid(), addr)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "192.0.2.1:7100") {
		t.Fatalf("notes %q, want one naming the remote address", notes)
	}
}

func TestParseStatTicks(t *testing.T) {
	cases := []struct {
		stat    string
		want    uint64
		wantErr bool
	}{
		{"1234 (freqd) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 12 0 100 2000000 3000 18446744073709551615", 300, false},
		{"99 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 7 8 0 0 20 0 1 0", 15, false}, // ')' and spaces in the name
		{"99 (x) R 1 2 3", 0, true},
		{"99 x R 1 2 3 4 5 6 7 8 9 10 7 8", 0, true},
		{"99 (x) R 1 2 3 4 5 6 7 8 9 10 seven 8", 0, true},
	}
	for _, c := range cases {
		got, err := parseStatTicks(c.stat)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("%q: %d, %v; want %d, error %v", c.stat, got, err, c.want, c.wantErr)
		}
	}
}

func TestParseAuxvClkTck(t *testing.T) {
	words := func(size int, ws ...uint64) []byte {
		b := make([]byte, size*len(ws))
		for i, w := range ws {
			if size == 4 {
				binary.NativeEndian.PutUint32(b[i*4:], uint32(w))
			} else {
				binary.NativeEndian.PutUint64(b[i*8:], w)
			}
		}
		return b
	}
	cases := []struct {
		name   string
		size   int
		auxv   []byte
		want   uint64
		wantOK bool
	}{
		{"64-bit", 8, words(8, 6, 4096, 17, 250, 0, 0), 250, true},
		{"32-bit", 4, words(4, 6, 4096, 17, 100, 0, 0), 100, true},
		{"missing", 8, words(8, 6, 4096, 0, 0), 0, false},
		{"after AT_NULL", 8, words(8, 0, 0, 17, 100), 0, false},
		{"truncated", 8, words(8, 6, 4096, 17)[:20], 0, false},
	}
	for _, c := range cases {
		got, ok := parseAuxvClkTck(c.auxv, c.size)
		if got != c.want || ok != c.wantOK {
			t.Errorf("%s: %d %v, want %d %v", c.name, got, ok, c.want, c.wantOK)
		}
	}
}

func TestSocketInode(t *testing.T) {
	for link, want := range map[string]uint64{"socket:[12345]": 12345, "pipe:[1]": 0, "socket:[x]": 0, "socket:[12": 0, "/dev/null": 0} {
		got, ok := socketInode(link)
		if got != want || ok != (want != 0) {
			t.Errorf("%q: %d %v, want %d", link, got, ok, want)
		}
	}
}
