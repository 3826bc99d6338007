package cluster_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func createSession(t *testing.T, n *cluster.Node, ttl time.Duration) uint64 {
	t.Helper()
	res := mustApply(t, n, &fsmv1.Command{Op: &fsmv1.Command_SessionCreate{SessionCreate: &fsmv1.SessionCreate{TtlMs: ttl.Milliseconds()}}})
	return res.GetSession().GetId()
}

func sessionExists(n *cluster.Node, id uint64) bool {
	found := false
	n.Machine().Read(0, func(v *fsm.View) { _, _, found = v.Session(id) })
	return found
}

func TestSessions_ExpireWithoutKeepAliveAndDeleteAttachedKeys(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers()
	id := createSession(t, c.nodes[f[0]].node, time.Second)
	set := &fsmv1.Command{Op: &fsmv1.Command_Set{Set: &conclavev1.SetRequest{Key: []byte("ephemeral"), Value: []byte("v"), SessionId: id}}}
	mustApply(t, c.nodes[f[0]].node, set)
	mustApply(t, c.nodes[f[0]].node, setCmd("durable", "v"))

	// Nobody keeps it alive: the leader proposes SessionExpire, which deletes the
	// attached key on every node in the same entry.
	eventually(t, 30*time.Second, func() error {
		for _, tn := range c.nodes {
			if sessionExists(tn.node, id) {
				return fmt.Errorf("%s still has session %d", tn.cfg.ID, id)
			}
		}
		return nil
	})
	for _, tn := range c.nodes {
		if _, ok := get(t, tn.node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "ephemeral"); ok {
			t.Fatalf("%s kept the key of an expired session", tn.cfg.ID)
		}
		if _, ok := get(t, tn.node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, "durable"); !ok {
			t.Fatalf("%s lost a key attached to no session", tn.cfg.ID)
		}
	}
	if _, err := c.nodes[f[1]].node.KeepAlive(ctxT(t), id); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("keep-alive of an expired session: %v, want NotFound", err)
	}
}

func TestSessions_KeepAliveThroughFollowerAndFailover(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers()
	ttl := time.Second
	id := createSession(t, c.nodes[f[0]].node, ttl)

	// Keep it alive through a follower (forwarded to the leader, no raft write) for
	// several TTLs, then through a leader change: a new leader grants a fresh full TTL.
	keepAliveFor := func(via func() *cluster.Node, d time.Duration) {
		t.Helper()
		tick := time.NewTicker(ttl / 5)
		defer tick.Stop()
		end := time.After(d)
		for {
			select {
			case <-end:
				return
			case <-tick.C:
				if _, err := via().KeepAlive(ctxT(t), id); err != nil && errors.Is(err, fsm.ErrNotFound) {
					t.Fatalf("session %d expired while kept alive: %v", id, err)
				}
			}
		}
	}
	keepAliveFor(func() *cluster.Node { return c.nodes[f[1]].node }, 4*ttl)
	if !sessionExists(c.nodes[f[1]].node, id) {
		t.Fatal("session kept alive was expired")
	}
	old := c.waitLeader()
	c.stop(c.nodes[old])
	c.waitLeader()
	keepAliveFor(func() *cluster.Node { return c.nodes[c.followers()[0]].node }, 4*ttl)
	for _, tn := range c.running() {
		if !sessionExists(tn.node, id) {
			t.Fatalf("%s: session kept alive across failover was expired", tn.cfg.ID)
		}
	}
}
