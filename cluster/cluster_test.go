package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	"github.com/conclave-dev/conclave/proto/conclave/fsm/v1/fsmv1grpc"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustApply(t *testing.T, n *cluster.Node, cmd *fsmv1.Command) *fsmv1.Result {
	t.Helper()
	res, err := n.Apply(ctxT(t), cmd)
	if err != nil {
		t.Fatalf("apply on %s: %v", n.ID(), err)
	}
	if res.GetError() != nil {
		t.Fatalf("apply on %s: %v", n.ID(), fsm.ErrorFromProto(res.GetError()))
	}
	return res
}

func get(t *testing.T, n *cluster.Node, c conclavev1.Consistency, key string) (string, bool) {
	t.Helper()
	var val string
	var found bool
	_, err := n.Read(ctxT(t), c, func(v *fsm.View) {
		kv, ok := v.Get([]byte(key))
		val, found = string(kv.GetValue()), ok
	})
	if err != nil {
		t.Fatalf("read on %s: %v", n.ID(), err)
	}
	return val, found
}

func TestCluster_WriteOnFollowerReadOnOtherFollower(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers()
	if len(f) != 2 {
		t.Fatalf("want 2 followers, got %d", len(f))
	}
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		mustApply(t, c.nodes[f[0]].node, setCmd(key, "v"))
		// Linearizable: the other follower must see the acknowledged write at once.
		if _, ok := get(t, c.nodes[f[1]].node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, key); !ok {
			t.Fatalf("follower %s did not see %s written through %s", c.nodes[f[1]].cfg.ID, key, c.nodes[f[0]].cfg.ID)
		}
	}
	c.waitConverged()
}

func TestCluster_KillLeaderNewLeaderOldRejoins(t *testing.T) {
	c := newTestCluster(t, 3)
	old := c.waitLeader()
	mustApply(t, c.nodes[old].node, setCmd("before", "1"))
	c.stop(c.nodes[old])

	leader := c.waitLeader()
	if leader == old {
		t.Fatalf("stopped node still leads")
	}
	for i := range 10 {
		mustApply(t, c.nodes[c.followers()[0]].node, setCmd(fmt.Sprintf("after%d", i), "2"))
	}
	c.restart(old)
	c.waitConverged()
	if v, ok := get(t, c.nodes[old].node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "after9"); !ok || v != "2" {
		t.Fatalf("rejoined node reads after9 = %q, %v", v, ok)
	}
}

func TestCluster_RestartAllFromDisk(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	for i := range 50 {
		mustApply(t, c.nodes[leader].node, setCmd(fmt.Sprintf("k%d", i), fmt.Sprint(i)))
	}
	// A snapshot on one node, so recovery covers snapshot + log as well as log alone.
	if _, err := c.nodes[leader].node.Snapshot(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	mustApply(t, c.nodes[leader].node, setCmd("last", "x"))
	for _, tn := range c.nodes {
		c.stop(tn)
	}
	for i := range c.nodes {
		c.restart(i)
	}
	leader = c.waitLeader()
	for _, tn := range c.nodes {
		if v, ok := get(t, tn.node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "k49"); !ok || v != "49" {
			t.Fatalf("%s after restart: k49 = %q, %v", tn.cfg.ID, v, ok)
		}
		if _, ok := get(t, tn.node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "last"); !ok {
			t.Fatalf("%s after restart lost the last write", tn.cfg.ID)
		}
	}
	c.waitConverged()
}

func TestCluster_JoinAndRemove(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	mustApply(t, c.nodes[leader].node, setCmd("seen-by-new", "yes"))

	cfg := testConfig(t, "n4")
	cfg.Join = c.nodes[c.followers()[0]].cfg.GRPCAddr // joining through a follower forwards
	c.nodes = append(c.nodes, c.start(cfg))
	n4 := c.nodes[3].node

	eventually(t, 30*time.Second, func() error {
		st, err := c.nodes[leader].node.Status(ctxT(t))
		if err != nil {
			return err
		}
		for _, m := range st.GetMembers() {
			if m.GetId() == "n4" && m.GetVoter() && m.GetGrpcAddress() == cfg.GRPCAddr {
				return nil
			}
		}
		return fmt.Errorf("n4 not a voter yet: %v", st.GetMembers())
	})
	if v, ok := get(t, n4, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "seen-by-new"); !ok || v != "yes" {
		t.Fatalf("new member reads %q, %v", v, ok)
	}

	members, err := c.nodes[c.followers()[0]].node.Remove(ctxT(t), "n4")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.GetId() == "n4" {
			t.Fatalf("n4 still a member: %v", members)
		}
	}
	c.stop(c.nodes[3])
	if _, err := c.nodes[leader].node.Remove(ctxT(t), "nope"); err == nil {
		t.Fatal("removing an unknown member succeeded")
	}
	mustApply(t, c.nodes[leader].node, setCmd("after-remove", "ok"))
	c.waitConverged()
}

func TestCluster_IncrementRetriedWithRequestIDAppliesOnce(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers()
	incr := &fsmv1.Command{RequestId: "req-1", Op: &fsmv1.Command_Increment{Increment: &conclavev1.IncrementRequest{Key: []byte("hits"), Delta: 5}}}
	first := mustApply(t, c.nodes[f[0]].node, incr)
	// The retry goes to another node, as a client's would after a timeout.
	second := mustApply(t, c.nodes[f[1]].node, incr)
	if first.GetIncrement().GetValue() != 5 || second.GetIncrement().GetValue() != 5 || first.GetIndex() != second.GetIndex() {
		t.Fatalf("first %v, retry %v: want the same result", first, second)
	}
	if v, _ := get(t, c.nodes[f[1]].node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "hits"); v != "5" {
		t.Fatalf("hits = %q, want 5", v)
	}
}

func TestCluster_TTLExpiresOnEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	cmd := &fsmv1.Command{Op: &fsmv1.Command_Set{Set: &conclavev1.SetRequest{Key: []byte("short"), Value: []byte("v"), TtlMs: 200}}}
	mustApply(t, c.nodes[leader].node, cmd)
	// The leader's ExpireDue deletes the key through the log on every node.
	eventually(t, 30*time.Second, func() error {
		for _, tn := range c.nodes {
			count := 0
			tn.node.Machine().Read(0, func(v *fsm.View) { count = v.KeyCount() })
			if count != 0 {
				return fmt.Errorf("%s still stores %d keys", tn.cfg.ID, count)
			}
		}
		return nil
	})
	for _, tn := range c.nodes {
		if _, ok := get(t, tn.node, conclavev1.Consistency_CONSISTENCY_STALE, "short"); ok {
			t.Fatalf("%s still serves the expired key", tn.cfg.ID)
		}
	}
	c.waitConverged()
}

func TestCluster_LinearizableReadJudgesTTLByLeaderClock(t *testing.T) {
	var skew atomic.Int64 // followers' clock offset, set once n1 leads
	c := newTestClusterWith(t, 3, func(cfg *cluster.Config) {
		if cfg.ID != "n1" {
			cfg.Clock = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		}
	})
	c.transferLeadershipTo("n1")
	// Followers' clocks now run an hour fast: judged by their own clocks, every key
	// with a shorter TTL would look expired.
	skew.Store(int64(time.Hour))
	set := &fsmv1.Command{Op: &fsmv1.Command_Set{Set: &conclavev1.SetRequest{Key: []byte("k"), Value: []byte("v"), TtlMs: int64(10 * time.Minute / time.Millisecond)}}}
	mustApply(t, c.nodes[0].node, set)
	for _, tn := range c.nodes {
		if _, ok := get(t, tn.node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "k"); !ok {
			t.Fatalf("%s: a key the leader considers live is absent to a linearizable read", tn.cfg.ID)
		}
	}
}

func TestCluster_ForwardServiceRefusesLeaderOnlyCommands(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	before := c.nodes[leader].node.Machine().LeaderStartTerm()
	conn, err := grpc.NewClient(c.nodes[leader].cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forged := &fsmv1.Command{Op: &fsmv1.Command_LeaderStart{LeaderStart: &fsmv1.LeaderStart{Term: 1 << 62}}}
	resp, err := fsmv1grpc.NewForwardServiceClient(conn).Apply(ctxT(t), &fsmv1.ApplyRequest{Commands: []*fsmv1.Command{forged}})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(fsm.ErrorFromProto(resp.GetOutcomes()[0].GetResult().GetError()), fsm.ErrInvalidArgument) {
		t.Fatalf("forged LeaderStart: outcome %v, want InvalidArgument", resp.GetOutcomes()[0])
	}
	if got := c.nodes[leader].node.Machine().LeaderStartTerm(); got != before {
		t.Fatalf("LeaderStartTerm moved from %d to %d", before, got)
	}
}

func TestCluster_JoinRejectsReusedRaftAddress(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	_, err := c.nodes[leader].node.Join(ctxT(t), "n9", c.nodes[0].cfg.RaftAddr, "127.0.0.1:1")
	if !errors.Is(err, cluster.ErrMemberConflict) {
		t.Fatalf("join with n1's raft address: %v, want ErrMemberConflict", err)
	}
}
