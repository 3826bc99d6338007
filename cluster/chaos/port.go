package chaos

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// FreeAddr returns a loopback address whose port is free now and lies below the
// kernel's ephemeral port range, so no outgoing connection can take it while the
// process that will listen on it is down (a killed node restarts on the same port).
func FreeAddr() (string, error) {
	low := ephemeralLow()
	const first = 10000
	if low <= first+1000 {
		low = 65536 // no room below the range: take any free port above 10000
	}
	start := first + rand.IntN(low-first)
	for i := range low - first {
		port := first + (start-first+i)%(low-first)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr, nil
	}
	return "", fmt.Errorf("chaos: no free port in %d-%d", first, low-1)
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 if unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
