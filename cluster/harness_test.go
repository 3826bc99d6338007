package cluster_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/cluster/chaos"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// testNode is one in-process node: a cluster.Node and a gRPC server carrying the
// internal ForwardService and the ClusterService calls nodes make of each other.
type testNode struct {
	cfg  cluster.Config
	node *cluster.Node
	srv  *grpc.Server
}

type testCluster struct {
	t     *testing.T
	nodes []*testNode
}

// freeAddr picks a port below the ephemeral range, so a stopped node restarts on it.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := chaos.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func testConfig(t *testing.T, id string) cluster.Config {
	cfg := cluster.DefaultConfig()
	cfg.ID = id
	cfg.RaftAddr = freeAddr(t)
	cfg.GRPCAddr = freeAddr(t)
	cfg.DataDir = t.TempDir()
	cfg.ExpireInterval = 20 * time.Millisecond
	return cfg
}

// newTestCluster starts n nodes bootstrapped as one cluster and waits for a leader.
func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	return newTestClusterWith(t, n, func(*cluster.Config) {})
}

// newTestClusterWith is newTestCluster with a hook to adjust each node's configuration.
func newTestClusterWith(t *testing.T, n int, adjust func(*cluster.Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	var peers []cluster.Peer
	var cfgs []cluster.Config
	for i := 1; i <= n; i++ {
		cfg := testConfig(t, fmt.Sprintf("n%d", i))
		peers = append(peers, cluster.Peer{ID: cfg.ID, RaftAddr: cfg.RaftAddr})
		cfgs = append(cfgs, cfg)
	}
	for _, cfg := range cfgs {
		cfg.InitialCluster = peers
		adjust(&cfg)
		c.nodes = append(c.nodes, c.start(cfg))
	}
	t.Cleanup(func() {
		for _, tn := range c.nodes {
			c.stop(tn)
		}
	})
	c.waitLeader()
	return c
}

func (c *testCluster) start(cfg cluster.Config) *testNode {
	c.t.Helper()
	log := zaptest.NewLogger(c.t, zaptest.Level(zap.WarnLevel))
	node, err := cluster.New(cfg, log)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.ID, err)
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		c.t.Fatal(err)
	}
	srv := grpc.NewServer()
	node.RegisterForwardService(srv)
	conclavev1grpc.RegisterClusterServiceServer(srv, &peerClusterService{node: node})
	go srv.Serve(lis)
	return &testNode{cfg: cfg, node: node, srv: srv}
}

// stop shuts a node down (a crash as far as the others can tell); idempotent.
func (c *testCluster) stop(tn *testNode) {
	if tn.srv == nil {
		return
	}
	tn.srv.Stop()
	tn.node.Close()
	tn.srv = nil
}

// restart starts a stopped node again from its data directory.
func (c *testCluster) restart(i int) {
	c.nodes[i] = c.start(c.nodes[i].cfg)
}

func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, tn := range c.nodes {
		if tn.srv != nil {
			out = append(out, tn)
		}
	}
	return out
}

// waitLeader returns the index of the leader among running nodes once one is ready to
// serve linearizable reads.
func (c *testCluster) waitLeader() int {
	c.t.Helper()
	var leader int
	eventually(c.t, 30*time.Second, func() error {
		for i, tn := range c.nodes {
			if tn.srv == nil || !tn.node.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := tn.node.ReadIndex(ctx); err != nil {
				return err
			}
			leader = i
			return nil
		}
		return fmt.Errorf("no leader")
	})
	return leader
}

func (c *testCluster) followers() []int {
	var out []int
	for i, tn := range c.nodes {
		if tn.srv != nil && !tn.node.IsLeader() {
			out = append(out, i)
		}
	}
	return out
}

// waitConverged waits until every running node has applied the same index and holds
// byte-identical state.
func (c *testCluster) waitConverged() {
	c.t.Helper()
	eventually(c.t, 30*time.Second, func() error {
		var first [32]byte
		var firstIdx uint64
		for i, tn := range c.running() {
			hb, idx, err := tn.node.StateHash()
			if err != nil {
				return err
			}
			h := [32]byte(hb)
			if i == 0 {
				first, firstIdx = h, idx
				continue
			}
			if idx != firstIdx || h != first {
				return fmt.Errorf("%s at %d (%x) vs %d (%x)", tn.cfg.ID, idx, h[:4], firstIdx, first[:4])
			}
		}
		return nil
	})
}

// eventually polls fn until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(wait) // polling interval, not synchronisation: fn decides
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// peerClusterService is the slice of ClusterService that nodes call on each other
// (Status for promotion, Join and Remove for forwarding).
type peerClusterService struct {
	conclavev1grpc.UnimplementedClusterServiceServer
	node *cluster.Node
}

func (p *peerClusterService) Status(ctx context.Context, _ *conclavev1.StatusRequest) (*conclavev1.StatusResponse, error) {
	return p.node.Status(ctx)
}

func (p *peerClusterService) Join(ctx context.Context, r *conclavev1.JoinRequest) (*conclavev1.JoinResponse, error) {
	m, err := p.node.Join(ctx, r.GetId(), r.GetRaftAddress(), r.GetGrpcAddress())
	return &conclavev1.JoinResponse{Members: m}, err
}

func (p *peerClusterService) Remove(ctx context.Context, r *conclavev1.RemoveRequest) (*conclavev1.RemoveResponse, error) {
	m, err := p.node.Remove(ctx, r.GetId())
	return &conclavev1.RemoveResponse{Members: m}, err
}

func setCmd(key, value string) *fsmv1.Command {
	return &fsmv1.Command{Op: &fsmv1.Command_Set{Set: &conclavev1.SetRequest{Key: []byte(key), Value: []byte(value)}}}
}

// transferLeadershipTo makes the node with id the leader, ready for reads.
func (c *testCluster) transferLeadershipTo(id string) {
	c.t.Helper()
	eventually(c.t, 30*time.Second, func() error {
		leader := c.waitLeader()
		if c.nodes[leader].cfg.ID == id {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.nodes[leader].node.TransferLeadership(ctx, id)
		if err == nil {
			err = fmt.Errorf("transferred; waiting for %s to lead", id)
		}
		return err
	})
}
