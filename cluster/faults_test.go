package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/anishathalye/porcupine"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/cluster/chaos"
	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// newFaultyCluster starts a three-node cluster whose raft links all run through a proxy
// mesh the test controls.
func newFaultyCluster(t *testing.T) (*testCluster, *chaos.Net) {
	t.Helper()
	var mesh *chaos.Net
	c := newTestClusterWith(t, 3, func(cfg *cluster.Config) {
		if mesh == nil {
			targets := map[string]string{}
			for _, p := range cfg.InitialCluster {
				targets[p.ID] = p.RaftAddr
			}
			var err error
			if mesh, err = chaos.NewNet(targets); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { mesh.Close() })
		}
		cfg.PeerAddrs = mesh.PeerAddrs(cfg.ID)
	})
	return c, mesh
}

func TestFaults_IsolatedLeaderStepsAsideAndServesNoStaleReads(t *testing.T) {
	c, mesh := newFaultyCluster(t)
	old := c.waitLeader()
	mustApply(t, c.nodes[old].node, setCmd("k", "before"))

	mesh.Isolate(c.nodes[old].cfg.ID)
	// The majority elects a new leader and takes writes.
	var leader int
	eventually(t, 30*time.Second, func() error {
		for i, tn := range c.nodes {
			if i != old && tn.node.IsLeader() {
				leader = i
				return nil
			}
		}
		return errors.New("no new leader on the majority side")
	})
	mustApply(t, c.nodes[leader].node, setCmd("k", "after"))

	// The old leader cannot confirm leadership, so it must not answer a linearizable
	// read — least of all with the old value.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var got string
	_, err := c.nodes[old].node.Read(ctx, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, func(v *fsm.View) {
		kv, _ := v.Get([]byte("k"))
		got = string(kv.GetValue())
	})
	if err == nil {
		t.Fatalf("isolated old leader served a linearizable read (%q)", got)
	}

	mesh.HealAll()
	c.waitConverged()
	if v, _ := get(t, c.nodes[old].node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "k"); v != "after" {
		t.Fatalf("healed old leader reads %q, want after", v)
	}
}

// TestFaults_HistoriesStayLinearizable runs concurrent clients on every node while the
// mesh isolates the leader, splits 2|1, flaps links and delays traffic, then checks the
// recorded history with porcupine and that the replicas converge.
func TestFaults_HistoriesStayLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("fault schedule skipped in -short mode")
	}
	c, mesh := newFaultyCluster(t)
	c.waitLeader()
	rec := chaos.NewRecorder()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			faultyClient(ctx, rec, c.nodes[i%3].node, i)
		}()
	}

	ids := mesh.IDs()
	leaderID := func() string { return c.nodes[c.waitLeader()].cfg.ID }
	waitOps := func(n int) {
		target := rec.Len() + n
		eventually(t, 60*time.Second, func() error {
			if rec.Len() < target {
				return fmt.Errorf("%d operations, want %d", rec.Len(), target)
			}
			return nil
		})
	}
	waitOps(50)
	mesh.Isolate(leaderID()) // isolate the leader
	waitOps(50)
	mesh.HealAll()
	waitOps(50)
	mesh.Partition([]string{ids[0]}, []string{ids[1], ids[2]}) // 2|1 split
	waitOps(50)
	mesh.HealAll()
	for range 5 { // flap the leader's links
		mesh.Isolate(leaderID())
		waitOps(10)
		mesh.HealAll()
		waitOps(10)
	}
	mesh.SetDelay(20 * time.Millisecond)
	waitOps(50)
	mesh.SetDelay(0)
	stop()
	wg.Wait()

	c.waitConverged()
	unknown := 0
	for _, op := range rec.Operations() {
		if op.Output.(chaos.Output).Unknown {
			unknown++
		}
	}
	t.Logf("%d operations, %d of unknown outcome", rec.Len(), unknown)
	regs, ctrs := chaos.SplitCounters(rec.Operations())
	dir := t.TempDir()
	for _, chk := range []struct {
		name string
		ops  []porcupine.Operation
	}{{"register", regs}, {"counter", ctrs}} {
		model := chaos.RegisterModel
		if chk.name == "counter" {
			model = chaos.CounterModel
		}
		res, err := chaos.Check(model, chk.ops, time.Minute, filepath.Join(dir, chk.name+".html"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Violation() {
			t.Fatalf("%s history not linearizable: %s, %s", chk.name, res.Visualization, res.History)
		}
		if res.TimedOut {
			t.Fatalf("%s history: the check timed out, so it proves nothing", chk.name)
		}
		t.Logf("%s: %d operations checked, linearizable=%v timed-out=%v", chk.name, res.Ops, res.Linearizable, res.TimedOut)
	}
	if v := chaos.CheckStaleReads(regs); len(v) > 0 {
		t.Fatalf("stale reads returned values never written: %v", v)
	}
}

// faultyClient loops on random operations against one node until ctx ends, recording
// each; an operation that failed is of unknown outcome (writes) or left out (reads).
func faultyClient(ctx context.Context, rec *chaos.Recorder, n *cluster.Node, id int) {
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	// Paced, so the history stays small enough for porcupine to decide.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		key := fmt.Sprintf("reg/%d", rng.IntN(5))
		octx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		switch p := rng.IntN(10); {
		case p < 4:
			pend := rec.Call(id, chaos.Input{Op: chaos.OpGet, Key: key})
			var out chaos.Output
			_, err := n.Read(octx, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, func(v *fsm.View) {
				kv, ok := v.Get([]byte(key))
				out = chaos.Output{OK: true, Found: ok, Value: string(kv.GetValue()), Revision: kv.GetModRevision()}
			})
			if err != nil {
				pend.Discard()
			} else {
				pend.Return(out)
			}
		case p < 8:
			val := fmt.Sprintf("%d-%d", id, seq)
			pend := rec.Call(id, chaos.Input{Op: chaos.OpSet, Key: key, Value: val})
			res, err := n.Apply(octx, setCmd(key, val))
			if notApplied(err) {
				pend.Discard()
			} else if err != nil || res.GetError() != nil {
				pend.Unknown()
			} else {
				pend.Return(chaos.Output{OK: true, Revision: res.GetSet().GetKv().GetModRevision()})
			}
		default:
			ctr := "ctr/0"
			pend := rec.Call(id, chaos.Input{Op: chaos.OpIncrement, Key: ctr, Delta: 1})
			res, err := n.Apply(octx, &fsmv1.Command{Op: &fsmv1.Command_Increment{Increment: &conclavev1.IncrementRequest{Key: []byte(ctr), Delta: 1}}})
			if notApplied(err) {
				pend.Discard()
			} else if err != nil || res.GetError() != nil {
				pend.Unknown()
			} else {
				pend.Return(chaos.Output{OK: true, Counter: res.GetIncrement().GetValue(), Revision: res.GetIncrement().GetKv().GetModRevision()})
			}
		}
		cancel()
	}
}

// notApplied reports errors that say a command certainly never reached the log.
func notApplied(err error) bool {
	return errors.Is(err, cluster.ErrNoLeader) || errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrNotReady)
}
