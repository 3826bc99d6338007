package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/client"
	"github.com/conclave-dev/conclave/cluster/chaos"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// The end-to-end tests build the real binary and run three `conclave serve` processes
// on free loopback ports, as an operator would.

type proc struct {
	id, grpc, raft, dir string
	cmd                 *exec.Cmd
	log                 *bytes.Buffer
}

type e2eCluster struct {
	t       *testing.T
	bin     string
	initial string
	nodes   []*proc
}

func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	bin := filepath.Join(t.TempDir(), "conclave")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort picks a port below the ephemeral range, so a killed node restarts on it.
func freePort(t *testing.T) string {
	t.Helper()
	addr, err := chaos.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func startE2ECluster(t *testing.T) *e2eCluster {
	c := &e2eCluster{t: t, bin: buildBinary(t)}
	var peers []string
	for i := 1; i <= 3; i++ {
		p := &proc{id: fmt.Sprintf("n%d", i), grpc: freePort(t), raft: freePort(t), dir: filepath.Join(t.TempDir(), "data")}
		c.nodes = append(c.nodes, p)
		peers = append(peers, p.id+"="+p.raft)
	}
	c.initial = strings.Join(peers, ",")
	for i := range c.nodes {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.kill(i)
		}
	})
	return c
}

func (c *e2eCluster) start(i int) {
	p := c.nodes[i]
	p.log = &bytes.Buffer{}
	p.cmd = exec.Command(c.bin, "serve", "--id", p.id, "--grpc-addr", p.grpc, "--raft-addr", p.raft,
		"--metrics-addr", "", "--data-dir", p.dir, "--initial-cluster", c.initial, "--log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
}

// kill is SIGKILL: no graceful anything.
func (c *e2eCluster) kill(i int) {
	p := c.nodes[i]
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	if c.t.Failed() {
		c.t.Logf("log of %s:\n%s", p.id, p.log.String())
	}
	p.cmd = nil
}

func (c *e2eCluster) endpoints() []string {
	var out []string
	for _, p := range c.nodes {
		out = append(out, p.grpc)
	}
	return out
}

func (c *e2eCluster) client(endpoints ...string) *client.Client {
	c.t.Helper()
	cl, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: 20 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// leader polls until some node reports a leader and returns its index.
func (c *e2eCluster) leader() int {
	c.t.Helper()
	var idx int
	poll(c.t, 60*time.Second, func() error {
		for i, p := range c.nodes {
			if p.cmd == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.client(p.grpc).Cluster().Status(ctx, &conclavev1.StatusRequest{})
			cancel()
			if err == nil && st.GetRaftState() == "Leader" {
				idx = i
				return nil
			}
		}
		return fmt.Errorf("no leader yet")
	})
	return idx
}

func poll(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not met within %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval; fn decides
	}
}

// staleGet reads key from exactly one node's local state.
func staleGet(ctx context.Context, cl *client.Client, key string) (bool, error) {
	r, err := cl.KV().Get(ctx, &conclavev1.GetRequest{Key: []byte(key), Consistency: conclavev1.Consistency_CONSISTENCY_STALE})
	return r.GetFound(), err
}

func TestE2E_KillLeaderUnderLoadLosesNothing(t *testing.T) {
	c := startE2ECluster(t)
	c.leader()
	cl := c.client(c.endpoints()...)

	var acked sync.Map // key → value of every acknowledged write
	var nacked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d/%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := cl.Set(ctx, key, []byte(key))
				cancel()
				if err == nil {
					acked.Store(key, key)
					nacked.Add(1)
				}
			}
		}()
	}
	waitAcked := func(n int64) {
		poll(t, 60*time.Second, func() error {
			if got := nacked.Load(); got < n {
				return fmt.Errorf("%d writes acknowledged, want %d", got, n)
			}
			return nil
		})
	}
	waitAcked(200)
	old := c.leader()
	c.kill(old)
	before := nacked.Load()
	c.leader()
	waitAcked(before + 200) // writes go on under the new leader
	c.start(old)
	waitAcked(nacked.Load() + 100)
	close(stop)
	wg.Wait()

	// Every acknowledged write is on every node, the restarted one included.
	for _, p := range c.nodes {
		node := c.client(p.grpc)
		poll(t, 60*time.Second, func() error {
			var missing []string
			acked.Range(func(k, _ any) bool {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if ok, err := staleGet(ctx, node, k.(string)); err != nil || !ok {
					missing = append(missing, k.(string))
				}
				return len(missing) < 5
			})
			if len(missing) > 0 {
				return fmt.Errorf("%s misses acknowledged keys %v", p.id, missing)
			}
			return nil
		})
	}
	t.Logf("%d acknowledged writes, all present on every node", nacked.Load())
}

func TestE2E_TTLDisappearsOnEveryNode(t *testing.T) {
	c := startE2ECluster(t)
	c.leader()
	cl := c.client(c.endpoints()...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.Set(ctx, "session", []byte("x"), client.WithTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.nodes {
		node := c.client(p.grpc)
		poll(t, 30*time.Second, func() error {
			if ok, err := staleGet(ctx, node, "session"); err != nil || ok {
				return fmt.Errorf("%s: found=%v err=%v", p.id, ok, err)
			}
			return nil
		})
	}
	// The leader's ExpireDue removed it from storage too, on every node.
	for _, p := range c.nodes {
		poll(t, 30*time.Second, func() error {
			st, err := c.client(p.grpc).Cluster().Status(ctx, &conclavev1.StatusRequest{})
			if err != nil || st.GetKeyCount() != 0 {
				return fmt.Errorf("%s: keys=%d err=%v", p.id, st.GetKeyCount(), err)
			}
			return nil
		})
	}
}

func TestE2E_LockRunProcessesNeverOverlap(t *testing.T) {
	c := startE2ECluster(t)
	c.leader()
	out := filepath.Join(t.TempDir(), "appended")
	// Each critical section appends a start and an end line around a short piece of
	// work; overlapping holders would interleave them.
	script := `echo "start $CONCLAVE_FENCING_TOKEN" >> "$OUT"; sleep 0.02; echo "end $CONCLAVE_FENCING_TOKEN" >> "$OUT"`
	var wg sync.WaitGroup
	errs := make(chan error, 4*3)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				cmd := exec.Command(c.bin, "lock", "run", "appender", "--ttl", "5s",
					"--endpoints", c.nodes[w%3].grpc, "--", "sh", "-c", script)
				cmd.Env = append(os.Environ(), "OUT="+out)
				if b, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("lock run (worker %d): %v\n%s", w, err, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2*4*3 {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), 2*4*3, b)
	}
	var last uint64
	for i := 0; i < len(lines); i += 2 {
		var start, end uint64
		if _, err := fmt.Sscanf(lines[i], "start %d", &start); err != nil {
			t.Fatalf("line %d %q: want a start (sections overlapped?)\n%s", i, lines[i], b)
		}
		if _, err := fmt.Sscanf(lines[i+1], "end %d", &end); err != nil || end != start {
			t.Fatalf("line %d %q after start %d: sections overlapped\n%s", i+1, lines[i+1], start, b)
		}
		if start <= last {
			t.Fatalf("fencing token %d after %d: tokens must strictly increase\n%s", start, last, b)
		}
		last = start
	}
}
