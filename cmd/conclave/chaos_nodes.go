package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/conclave-dev/conclave/cluster/chaos"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// chaosNode is one `conclave serve` process the harness owns.
type chaosNode struct {
	id, grpcAddr, raftAddr, dir, logPath string
	args                                 []string

	mu       sync.Mutex
	cmd      *exec.Cmd
	paused   bool
	expected bool // the harness killed it; its exit is not a failure
	exits    []string
	conn     *grpc.ClientConn
}

// chaosCluster is three processes whose raft traffic runs through a proxy mesh.
type chaosCluster struct {
	bin   string
	nodes []*chaosNode
	net   *chaos.Net
}

func newChaosCluster(bin, dir string) (*chaosCluster, error) {
	c := &chaosCluster{bin: bin}
	var peers []string
	targets := map[string]string{}
	for i := 1; i <= 3; i++ {
		n := &chaosNode{id: fmt.Sprintf("n%d", i), grpcAddr: freeLoopbackAddr(), raftAddr: freeLoopbackAddr()}
		n.dir = filepath.Join(dir, n.id)
		n.logPath = filepath.Join(dir, n.id+".log")
		c.nodes = append(c.nodes, n)
		peers = append(peers, n.id+"="+n.raftAddr)
		targets[n.id] = n.raftAddr
	}
	mesh, err := chaos.NewNet(targets)
	if err != nil {
		return nil, err
	}
	c.net = mesh
	for _, n := range c.nodes {
		var via []string
		for to, addr := range mesh.PeerAddrs(n.id) {
			via = append(via, to+"="+addr)
		}
		n.args = []string{"serve", "--id", n.id, "--grpc-addr", n.grpcAddr, "--raft-addr", n.raftAddr,
			"--metrics-addr", "", "--data-dir", n.dir, "--initial-cluster", strings.Join(peers, ","),
			"--raft-peer-addrs", strings.Join(via, ","), "--log-level", "info"}
		conn, err := grpc.NewClient(n.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		n.conn = conn
		if err := c.start(n); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func freeLoopbackAddr() string {
	addr, err := chaos.FreeAddr()
	if err != nil {
		panic(err)
	}
	return addr
}

func (c *chaosCluster) start(n *chaosNode) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.cmd, n.paused, n.expected = cmd, false, false
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		defer n.mu.Unlock()
		if !n.expected {
			n.exits = append(n.exits, fmt.Sprintf("%s exited on its own: %v", n.id, err))
		}
		if n.cmd == cmd {
			n.cmd = nil
		}
	}()
	return nil
}

// kill is SIGKILL: no clean shutdown, as a machine losing power.
func (c *chaosCluster) kill(n *chaosNode) {
	n.mu.Lock()
	cmd := n.cmd
	if cmd != nil {
		n.expected = true
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		gone := n.cmd == nil
		n.mu.Unlock()
		if gone {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *chaosCluster) signal(n *chaosNode, sig syscall.Signal, paused bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		_ = n.cmd.Process.Signal(sig)
		n.paused = paused
	}
}

// pause stops the process (SIGSTOP) without it noticing, as a long GC or VM pause.
func (c *chaosCluster) pause(n *chaosNode)  { c.signal(n, syscall.SIGSTOP, true) }
func (c *chaosCluster) resume(n *chaosNode) { c.signal(n, syscall.SIGCONT, false) }

func (c *chaosCluster) running(n *chaosNode) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// healAll ends every fault: links healed, paused nodes resumed, dead nodes restarted.
func (c *chaosCluster) healAll() error {
	c.net.HealAll()
	for _, n := range c.nodes {
		c.resume(n)
		if err := c.start(n); err != nil {
			return err
		}
	}
	return nil
}

func (c *chaosCluster) stop() {
	for _, n := range c.nodes {
		c.resume(n)
		c.kill(n)
		n.conn.Close()
	}
	c.net.Close()
}

func (c *chaosCluster) status(ctx context.Context, n *chaosNode, withHash bool) (*conclavev1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return conclavev1grpc.NewClusterServiceClient(n.conn).Status(ctx, &conclavev1.StatusRequest{IncludeStateHash: withHash})
}

// leader returns the node some running node reports as leader, or nil.
func (c *chaosCluster) leader(ctx context.Context) *chaosNode {
	for _, n := range c.nodes {
		if !c.running(n) {
			continue
		}
		st, err := c.status(ctx, n, false)
		if err != nil || st.GetLeaderId() == "" {
			continue
		}
		for _, m := range c.nodes {
			if m.id == st.GetLeaderId() {
				return m
			}
		}
	}
	return nil
}

// waitLeader polls until a leader is known or the timeout passes.
func (c *chaosCluster) waitLeader(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c.leader(ctx) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("chaos: no leader elected")
}

// waitConverged polls until every node reports the same applied index and state hash.
func (c *chaosCluster) waitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		var hashes []string
		ok := true
		for _, n := range c.nodes {
			st, err := c.status(ctx, n, true)
			if err != nil {
				ok = false
				last = fmt.Sprintf("%s: %v", n.id, err)
				break
			}
			hashes = append(hashes, fmt.Sprintf("%d/%x", st.GetStateHashIndex(), st.GetStateHash()))
		}
		if ok && hashes[0] == hashes[1] && hashes[1] == hashes[2] {
			return nil
		}
		if ok {
			last = strings.Join(hashes, " ")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("chaos: replicas did not converge: %s", last)
}

// failures reports processes that exited on their own and logs that mention a panic.
func (c *chaosCluster) failures() []string {
	var out []string
	for _, n := range c.nodes {
		n.mu.Lock()
		out = append(out, n.exits...)
		n.mu.Unlock()
		if b, err := os.ReadFile(n.logPath); err == nil && strings.Contains(string(b), "panic:") {
			out = append(out, fmt.Sprintf("%s panicked (see %s)", n.id, n.logPath))
		}
	}
	return out
}
