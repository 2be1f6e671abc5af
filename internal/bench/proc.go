package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// procRoot is where /proc is mounted (tests may point it elsewhere).
var procRoot = "/proc"

// tcpListen is the state of a listening socket in /proc/net/tcp.
const tcpListen = 0x0A

// tcpSocket is one line of /proc/net/tcp or /proc/net/tcp6.
type tcpSocket struct {
	Local netip.AddrPort
	State int
	Inode uint64
}

// parseProcNetTCP reads the text of /proc/net/tcp or /proc/net/tcp6: a
// header line, then per socket "sl local rem st tx:rx tr:when retrnsmt uid
// timeout inode ...", addresses as hex words in host byte order.
func parseProcNetTCP(r io.Reader) ([]tcpSocket, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var out []tcpSocket
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if line == 1 && len(f) > 0 && f[0] == "sl" {
			continue
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 10", line, len(f))
		}
		local, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: local address %q: %w", line, f[1], err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state %q: %w", line, f[3], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: inode %q: %w", line, f[9], err)
		}
		out = append(out, tcpSocket{Local: local, State: int(st), Inode: inode})
	}
	return out, sc.Err()
}

// parseHexAddrPort decodes "0100007F:1BBD" (IPv4) or 32 hex digits and a
// port (IPv6). The kernel prints each 32-bit word of the address in host
// byte order.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, errors.New("no port")
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port: %w", err)
	}
	if len(h) != 8 && len(h) != 32 {
		return netip.AddrPort{}, fmt.Errorf("address has %d hex digits, want 8 or 32", len(h))
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, err
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// reachableFromLoopback reports whether a socket listening on a is
// reachable at 127.0.0.1: bound to loopback or to the wildcard.
func reachableFromLoopback(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsUnspecified()
}

// listenInodes returns, per port in ports, the inodes of the sockets that
// listen on it where 127.0.0.1 reaches them.
func listenInodes(socks []tcpSocket, ports map[uint16]bool) map[uint16][]uint64 {
	out := make(map[uint16][]uint64)
	for _, s := range socks {
		if s.State != tcpListen || !ports[s.Local.Port()] || !reachableFromLoopback(s.Local.Addr()) {
			continue
		}
		out[s.Local.Port()] = append(out[s.Local.Port()], s.Inode)
	}
	return out
}

// localPorts returns the TCP ports of the addresses (host:port or URL) that
// name this machine's loopback (127.0.0.0/8, ::1, localhost); the others
// are returned in remote.
func localPorts(addrs []string) (ports map[uint16]string, remote []string) {
	ports = make(map[uint16]string)
	for _, a := range addrs {
		hostport := strings.TrimSpace(a)
		if strings.Contains(hostport, "://") {
			u, err := url.Parse(hostport)
			if err != nil {
				remote = append(remote, a)
				continue
			}
			hostport = u.Host
			if u.Port() == "" {
				port := "80"
				if u.Scheme == "https" {
					port = "443"
				}
				hostport = net.JoinHostPort(u.Hostname(), port)
			}
		}
		host, p, err := net.SplitHostPort(hostport)
		if err != nil {
			remote = append(remote, a)
			continue
		}
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			remote = append(remote, a)
			continue
		}
		ip, err := netip.ParseAddr(host)
		if host != "localhost" && (err != nil || !ip.Unmap().IsLoopback()) {
			remote = append(remote, a)
			continue
		}
		ports[uint16(port)] = hostport
	}
	return ports, remote
}

// inodePids maps socket inodes to the pids that hold them open, by reading
// the /proc/PID/fd links ("socket:[INODE]"). denied counts the processes
// whose fds could not be read.
func inodePids(want map[uint64]bool) (pids map[uint64][]int, denied int, err error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, 0, err
	}
	pids = make(map[uint64][]int)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := filepath.Join(procRoot, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				denied++
			}
			continue
		}
		seen := make(map[uint64]bool)
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := socketInode(link)
			if ok && want[ino] && !seen[ino] {
				seen[ino] = true
				pids[ino] = append(pids[ino], pid)
			}
		}
	}
	return pids, denied, nil
}

// socketInode parses "socket:[12345]".
func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// serverProc is a process found to serve some of the --addr ports.
type serverProc struct {
	PID   int
	Comm  string
	Addrs []string
}

// findServers finds the processes listening, where 127.0.0.1 reaches them,
// on the ports of the loopback addresses in addrs. notes explain what could
// not be found.
func findServers(addrs []string) (procs []serverProc, notes []string) {
	ports, remote := localPorts(addrs)
	if len(remote) > 0 {
		notes = append(notes, fmt.Sprintf("not on this machine's loopback, so not measured: %s", strings.Join(remote, ",")))
	}
	if len(ports) == 0 {
		return nil, notes
	}
	want := make(map[uint16]bool, len(ports))
	for p := range ports {
		want[p] = true
	}
	var socks []tcpSocket
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		b, err := os.ReadFile(filepath.Join(procRoot, name))
		if err != nil {
			if name == "net/tcp" {
				return nil, append(notes, fmt.Sprintf("cannot read %s/%s (%v): server CPU not measured; pass --pid", procRoot, name, err))
			}
			continue
		}
		s, err := parseProcNetTCP(bytes.NewReader(b))
		if err != nil {
			return nil, append(notes, fmt.Sprintf("%s/%s: %v", procRoot, name, err))
		}
		socks = append(socks, s...)
	}
	byPort := listenInodes(socks, want)
	inodes := make(map[uint64]bool)
	for _, ins := range byPort {
		for _, in := range ins {
			inodes[in] = true
		}
	}
	owners, denied, err := inodePids(inodes)
	if err != nil {
		return nil, append(notes, fmt.Sprintf("cannot scan %s: %v", procRoot, err))
	}
	byPID := make(map[int]*serverProc)
	sortedPorts := make([]int, 0, len(ports))
	for p := range ports {
		sortedPorts = append(sortedPorts, int(p))
	}
	sort.Ints(sortedPorts)
	var missing []string
	for _, p := range sortedPorts {
		found := false
		for _, in := range byPort[uint16(p)] {
			for _, pid := range owners[in] {
				found = true
				sp := byPID[pid]
				if sp == nil {
					sp = &serverProc{PID: pid, Comm: procComm(pid)}
					byPID[pid] = sp
				}
				if a := ports[uint16(p)]; len(sp.Addrs) == 0 || sp.Addrs[len(sp.Addrs)-1] != a {
					sp.Addrs = append(sp.Addrs, a)
				}
			}
		}
		if !found {
			missing = append(missing, ports[uint16(p)])
		}
	}
	if len(missing) > 0 {
		why := "nothing listens there"
		if denied > 0 {
			why = fmt.Sprintf("nothing listens there, or its process is not readable (%d processes were not; run as the servers' user or pass --pid)", denied)
		}
		notes = append(notes, fmt.Sprintf("no server process found for %s: %s", strings.Join(missing, ","), why))
	}
	for _, sp := range byPID {
		procs = append(procs, *sp)
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].PID < procs[j].PID })
	return procs, notes
}

// procComm is the command name of pid, or "".
func procComm(pid int) string {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// parseStatTicks returns utime+stime (clock ticks) from the text of
// /proc/PID/stat. The command name (field 2) is in parentheses and may hold
// spaces or ')', so fields are counted from the last ')'.
func parseStatTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	u, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime %q: %w", f[11], err)
	}
	s, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime %q: %w", f[12], err)
	}
	return u + s, nil
}

// cpuTicks reads utime+stime of pid ("self" for this process).
func cpuTicks(pid string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, pid, "stat"))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(string(b))
}

// atClkTck is the auxiliary vector entry holding sysconf(_SC_CLK_TCK).
const atClkTck = 17

// parseAuxvClkTck finds AT_CLKTCK in the bytes of /proc/self/auxv (pairs of
// native words: type, value; ended by type 0).
func parseAuxvClkTck(auxv []byte, wordSize int) (uint64, bool) {
	word := func(b []byte) uint64 {
		if wordSize == 4 {
			return uint64(binary.NativeEndian.Uint32(b))
		}
		return binary.NativeEndian.Uint64(b)
	}
	for i := 0; i+2*wordSize <= len(auxv); i += 2 * wordSize {
		typ, val := word(auxv[i:]), word(auxv[i+wordSize:])
		if typ == 0 {
			break
		}
		if typ == atClkTck && val > 0 {
			return val, true
		}
	}
	return 0, false
}

// clockTicks is the kernel's USER_HZ (what sysconf(_SC_CLK_TCK) returns),
// read from the auxiliary vector; 100, Linux's value, if that fails.
func clockTicks() uint64 {
	b, err := os.ReadFile(filepath.Join(procRoot, "self", "auxv"))
	if err == nil {
		if v, ok := parseAuxvClkTck(b, strconv.IntSize/8); ok {
			return v
		}
	}
	return 100
}
