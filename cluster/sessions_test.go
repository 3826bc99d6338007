package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

func TestLocks_MutualExclusionAcrossNodes(t *testing.T) {
	c := newTestCluster(t, 3)
	// Three sessions, one per node, contend for one lock; each holder checks that no
	// one else holds it and that tokens only grow, then releases.
	var (
		mu      sync.Mutex
		holding = 0
		last    uint64
	)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := c.nodes[i].node
			sess := createSession(t, n, 10*time.Second)
			for range 10 {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				res, err := n.Apply(ctx, &fsmv1.Command{Op: &fsmv1.Command_LockAcquire{LockAcquire: &fsmv1.LockAcquire{Name: "L", SessionId: sess, Wait: true}}})
				if err != nil || res.GetError() != nil {
					cancel()
					t.Errorf("acquire: %v %v", err, res.GetError())
					return
				}
				token := res.GetLock().GetToken()
				if !res.GetLock().GetGranted() {
					var hold *fsmv1.LockHolder
					hold, err = n.WaitGrant(ctx, "L", res.GetLock().GetWaiter())
					token = hold.GetToken()
				}
				cancel()
				if err != nil {
					t.Errorf("wait: %v", err)
					return
				}
				mu.Lock()
				holding++
				if holding != 1 || token <= last {
					t.Errorf("holders %d, token %d after %d", holding, token, last)
				}
				last = token
				mu.Unlock()
				// Work while holding: a write fenced by the token, which must succeed.
				mustApply(t, n, &fsmv1.Command{Op: &fsmv1.Command_Set{Set: &conclavev1.SetRequest{
					Key: []byte("guarded"), Value: []byte(fmt.Sprint(token)), Fence: &conclavev1.Fence{Lock: "L", Token: token}}}})
				mu.Lock()
				holding--
				mu.Unlock()
				mustApply(t, n, &fsmv1.Command{Op: &fsmv1.Command_LockRelease{LockRelease: &fsmv1.LockRelease{Name: "L", Token: token}}})
			}
		}()
	}
	wg.Wait()
}

// TestLocks_LockDelayEndsByTheLeader: a holder's session with a lock-delay ends; the
// waiter is granted only once the leader's ExpireDue ends the delay, on every node.
func TestLocks_LockDelayEndsByTheLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers()
	holder, waiter := c.nodes[f[0]].node, c.nodes[f[1]].node
	res := mustApply(t, holder, &fsmv1.Command{Op: &fsmv1.Command_SessionCreate{SessionCreate: &fsmv1.SessionCreate{TtlMs: 10_000, LockDelayMs: 1_000}}})
	s1, s2 := res.GetSession().GetId(), createSession(t, waiter, 10*time.Second)
	acq := func(n *cluster.Node, sess uint64) *fsmv1.LockResult {
		return mustApply(t, n, &fsmv1.Command{Op: &fsmv1.Command_LockAcquire{LockAcquire: &fsmv1.LockAcquire{Name: "L", SessionId: sess, Wait: true}}}).GetLock()
	}
	first := acq(holder, s1)
	queued := acq(waiter, s2)
	revoked := mustApply(t, holder, &fsmv1.Command{Op: &fsmv1.Command_SessionRevoke{SessionRevoke: &fsmv1.SessionRevoke{Id: s1}}})

	hold, err := waiter.WaitGrant(ctxT(t), "L", queued.GetWaiter())
	if err != nil {
		t.Fatal(err)
	}
	// The grant came from a later entry (the leader's ExpireDue), not from the revoke.
	if hold.GetToken() <= revoked.GetIndex() || hold.GetToken() <= first.GetToken() {
		t.Fatalf("granted with token %d; the revoke was index %d: the lock-delay was skipped", hold.GetToken(), revoked.GetIndex())
	}
	c.waitConverged()
	for _, tn := range c.nodes {
		var delayed *fsmv1.LockRecord
		tn.node.Machine().Read(0, func(v *fsm.View) { delayed, _ = v.Lock("L") })
		if h := delayed.GetHolders(); len(h) != 1 || h[0].GetToken() != hold.GetToken() || delayed.GetDelayUntilUnixNano() != 0 {
			t.Fatalf("%s: lock %v, want one holder with token %d and no delay", tn.cfg.ID, delayed, hold.GetToken())
		}
	}
}
