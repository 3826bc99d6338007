package chaos

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ioDeadline only keeps a broken test from hanging; no assertion depends on it.
const ioDeadline = 10 * time.Second

// echoServer accepts connections on a loopback port and echoes every byte back.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioDeadline))
	t.Cleanup(func() { c.Close() })
	return c
}

// echo writes msg on c and reads it back.
func echo(c net.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echoed " + string(buf))
	}
	return nil
}

// roundTrip dials addr and reports whether a message made it to the echo server and back.
func roundTrip(t *testing.T, addr string) error {
	t.Helper()
	return echo(dial(t, addr), "ping")
}

// closedByPeer reports whether the peer has closed c: a read ends with EOF or an error
// other than our own safety deadline.
func closedByPeer(c net.Conn) bool {
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func newTestLink(t *testing.T) *Link {
	t.Helper()
	l, err := NewLink("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLink_ForwardsBothWays(t *testing.T) {
	l := newTestLink(t)
	c := dial(t, l.Addr())
	for _, msg := range []string{"hello", strings.Repeat("x", 100_000), "again"} {
		if err := echo(c, msg); err != nil {
			t.Fatalf("echo %d bytes: %v", len(msg), err)
		}
	}
}

func TestLink_CutClosesOpenAndRefusesNew(t *testing.T) {
	l := newTestLink(t)
	open := dial(t, l.Addr())
	if err := echo(open, "before"); err != nil {
		t.Fatal(err)
	}
	l.Cut()
	if !l.IsCut() {
		t.Fatal("IsCut false after Cut")
	}
	if !closedByPeer(open) {
		t.Fatal("open connection survived Cut")
	}
	if err := roundTrip(t, l.Addr()); err == nil {
		t.Fatal("new connection forwarded through a cut link")
	}
	l.Heal()
	if l.IsCut() {
		t.Fatal("IsCut true after Heal")
	}
	if err := roundTrip(t, l.Addr()); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
}

func TestLink_DelayStillForwards(t *testing.T) {
	l := newTestLink(t)
	l.SetDelay(time.Millisecond)
	if l.Delay() != time.Millisecond {
		t.Fatalf("Delay = %v", l.Delay())
	}
	c := dial(t, l.Addr())
	if err := echo(c, "slow"); err != nil {
		t.Fatal(err)
	}
	l.SetDelay(0)
	if err := echo(c, "fast"); err != nil {
		t.Fatal(err)
	}
}

func TestLink_CutDuringDelayClosesConnection(t *testing.T) {
	l := newTestLink(t)
	l.SetDelay(time.Hour)
	c := dial(t, l.Addr())
	if _, err := c.Write([]byte("stuck")); err != nil {
		t.Fatal(err)
	}
	l.Cut()
	if !closedByPeer(c) {
		t.Fatal("delayed connection survived Cut")
	}
}

func TestLink_DropClosesAfterFewBytes(t *testing.T) {
	l := newTestLink(t)
	l.SetDropRate(1, 42)
	c := dial(t, l.Addr())
	msg := strings.Repeat("y", 4*maxDropBytes)
	c.Write([]byte(msg)) // may fail once the proxy has closed the connection
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("dropped connection was never closed")
	}
	if len(got) >= maxDropBytes {
		t.Fatalf("dropped connection echoed %d bytes", len(got))
	}
	l.SetDropRate(0, 0)
	if err := roundTrip(t, l.Addr()); err != nil {
		t.Fatalf("with drops off: %v", err)
	}
}

func TestLink_CloseIsIdempotent(t *testing.T) {
	l := newTestLink(t)
	c := dial(t, l.Addr())
	if err := echo(c, "x"); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !closedByPeer(c) {
		t.Fatal("connection survived Close")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Cut()
	l.Heal()
}

func newTestNet(t *testing.T, ids ...string) *Net {
	t.Helper()
	targets := make(map[string]string)
	for _, id := range ids {
		targets[id] = echoServer(t)
	}
	n, err := NewNet(targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for _, from := range ids {
		peers := n.PeerAddrs(from)
		if len(peers) != len(ids)-1 {
			t.Fatalf("PeerAddrs(%s) = %v", from, peers)
		}
		for to, addr := range peers {
			if n.Link(from, to).Target() != targets[to] || addr != n.Addr(from, to) {
				t.Fatalf("link %s→%s goes to %s via %s", from, to, n.Link(from, to).Target(), addr)
			}
		}
	}
	return n
}

// expectReach checks every directed link of n: reachable(from, to) says whether it must
// carry traffic.
func expectReach(t *testing.T, n *Net, reachable func(from, to string) bool) {
	t.Helper()
	for _, from := range n.IDs() {
		for _, to := range n.IDs() {
			if from == to {
				continue
			}
			err := roundTrip(t, n.Addr(from, to))
			if want := reachable(from, to); want != (err == nil) {
				t.Errorf("%s→%s: want reachable=%t, got err=%v", from, to, want, err)
			}
		}
	}
}

func TestNet_Partition(t *testing.T) {
	n := newTestNet(t, "a", "b", "c")
	all := func(from, to string) bool { return true }
	expectReach(t, n, all)

	n.Partition([]string{"a", "b"}, []string{"c"})
	expectReach(t, n, func(from, to string) bool { return from != "c" && to != "c" })

	n.Isolate("a")
	expectReach(t, n, func(from, to string) bool { return from != "a" && to != "a" })

	n.Partition([]string{"b"}) // a and c are each a group of their own
	expectReach(t, n, func(from, to string) bool { return false })

	n.HealAll()
	expectReach(t, n, all)
}

func TestNet_PartitionCutsOpenConnections(t *testing.T) {
	n := newTestNet(t, "a", "b", "c")
	ab, ca := dial(t, n.Addr("a", "b")), dial(t, n.Addr("c", "a"))
	for _, c := range []net.Conn{ab, ca} {
		if err := echo(c, "up"); err != nil {
			t.Fatal(err)
		}
	}
	n.Partition([]string{"a", "b"}, []string{"c"})
	if !closedByPeer(ca) {
		t.Fatal("c→a connection survived the partition")
	}
	if err := echo(ab, "still up"); err != nil {
		t.Fatalf("a→b inside a group: %v", err)
	}
}

func TestNet_PartitionRejectsUnknownNode(t *testing.T) {
	n := newTestNet(t, "a", "b")
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for an unknown node")
		}
	}()
	n.Partition([]string{"a"}, []string{"z"})
}

func TestFreeAddr_BelowEphemeralRange(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	if n < 10000 || (ephemeralLow() > 11000 && n >= ephemeralLow()) {
		t.Fatalf("port %d outside 10000..%d", n, ephemeralLow())
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr gave %s, which cannot be bound: %v", addr, err)
	}
	l.Close()
}
