package cluster_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

const (
	faultLock     = "L"       // the one exclusive lock every worker contends for
	faultPrefix   = "fenced/" // holders' fenced writes: one key each, valued with the token
	writesPerHold = 3         // fenced writes per hold (the victim keeps going until rejected)
	opTimeout     = 2 * time.Second
)

// TestLocks_MutualExclusionUnderLeaderKillAndPartition runs two workers per node, each
// with its own short session kept alive through its node, contending for one lock. A
// holder makes writes fenced by its token, each to a key of its own valued with the
// token, so those keys ordered by mod revision (the raft index that applied them) are
// the replicated history of which token wrote when. Meanwhile the test kills the leader
// and restarts it, then isolates the node of a holder until its session has expired on
// the majority side and the lock has gone to another, and heals.
//
// It checks that
//   - the replicated history is one contiguous run per token, tokens increasing (never two
//     holders writing), every acknowledged write is in it at the index it was
//     acknowledged at, and in index order the acknowledged writes' tokens never go back;
//   - no node ever shows two holders, each node sees holder tokens only increase, no token
//     is granted to two workers and each worker's tokens increase;
//   - the partitioned holder's fenced write after its session ended is rejected with
//     fsm.ErrAborted;
//   - sessions kept alive through nodes that stayed up survive the leader kill;
//   - every node converges to the same state.
func TestLocks_MutualExclusionUnderLeaderKillAndPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("fault schedule skipped in -short mode")
	}
	c, mesh := newFaultyCluster(t)
	c.waitLeader()
	r := newLockRun(t, c)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	workers := make([]*lockWorker, 6)
	for i := range workers {
		workers[i] = &lockWorker{r: r, id: i, slot: i % len(c.nodes)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[i].run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.monitor(ctx)
	}()
	// Registered after the cluster's cleanups, so it runs first: no worker outlives the
	// test or talks to a node being torn down, even when the test stops early.
	t.Cleanup(func() {
		mesh.HealAll()
		stop()
		wg.Wait()
	})

	r.waitGrants(6)

	// Phase 1: kill the leader, restart it once the others have elected a new one. The
	// sessions of workers on the other two nodes must live through the failover: the new
	// leader gives them a fresh TTL and their keep-alives reach it.
	old := c.waitLeader()
	eventually(t, 30*time.Second, func() error {
		for _, w := range workers {
			if w.sess.Load() == 0 || w.lost.Load() {
				return fmt.Errorf("worker %d has no live session yet", w.id)
			}
		}
		return nil
	})
	kept := map[*lockWorker]uint64{}
	for _, w := range workers {
		if w.slot != old {
			kept[w] = w.sess.Load()
		}
	}
	t.Logf("phase 1: killing leader %s", c.nodes[old].cfg.ID)
	c.stop(c.nodes[old])
	c.waitLeader()
	failover := time.Now()
	c.restart(old)
	r.setNode(old, c.nodes[old].node)
	// Run on until more than a TTL has passed under the new leader (a session it did not
	// hear from would have expired by then) and the lock has changed hands a few times.
	target := r.grants.Load() + 4
	eventually(t, 30*time.Second, func() error {
		if since := time.Since(failover); since < r.ttl*3/2 {
			return fmt.Errorf("%v of the phase passed, want %v", since.Round(time.Millisecond), r.ttl*3/2)
		}
		if g := r.grants.Load(); g < target {
			return fmt.Errorf("%d grants, want %d", g, target)
		}
		return nil
	})
	leader := c.nodes[c.waitLeader()].node
	for w, id := range kept {
		if now := w.sess.Load(); now != id {
			t.Errorf("worker %d on %s lost session %d across the leader kill (now %d)", w.id, c.nodes[w.slot].cfg.ID, id, now)
		}
		if !sessionLive(t, leader, id) {
			t.Errorf("session %d of worker %d, kept alive through %s, did not survive the leader kill", id, w.id, c.nodes[w.slot].cfg.ID)
		}
	}

	// Phase 2: the next worker to make a fenced write as holder becomes the victim: it
	// keeps writing until a write is rejected. Isolate its node so its keep-alives fail,
	// wait until the majority has expired its session and granted the lock to another,
	// then heal: the victim, still believing it holds the lock, must be fenced off.
	r.victimWanted.Store(true)
	var v victim
	eventually(t, 30*time.Second, func() error {
		select {
		case v = <-r.victims:
			return nil
		default:
			return errors.New("no holder has taken the victim role yet")
		}
	})
	victimID := c.nodes[v.slot].cfg.ID
	t.Logf("phase 2: isolating %s (leader: %v), where session %d holds %s with token %d",
		victimID, c.nodes[v.slot].node.IsLeader(), v.session, faultLock, v.token)
	mesh.Isolate(victimID)
	eventually(t, 30*time.Second, func() error {
		for i := range c.nodes {
			if i != v.slot && sessionExists(r.node(i), v.session) {
				return fmt.Errorf("%s still has the victim's session %d", c.nodes[i].cfg.ID, v.session)
			}
		}
		for i := range c.nodes {
			if i != v.slot && lockHolderToken(r.node(i)) > v.token {
				return nil
			}
		}
		return fmt.Errorf("the majority has not granted %s past token %d yet", faultLock, v.token)
	})
	// The majority makes progress while the victim's node is cut off, also when that node
	// was the leader (a waiter's grant must not stay parked on a deposed leader).
	eventually(t, 30*time.Second, func() error {
		if m := r.maxAckedToken(); m <= v.token {
			return fmt.Errorf("no fenced write by a later holder during the partition (highest token written %d)", m)
		}
		return nil
	})
	t.Log("phase 2: a later holder wrote during the partition; healing")
	mesh.HealAll()
	eventually(t, 30*time.Second, func() error {
		if err := r.ackOrder(); err != nil {
			t.Fatal(err) // a fenced write of the partitioned holder was accepted
		}
		if r.victimAborted.Load() == 0 {
			return errors.New("the partitioned holder has not had a fenced write rejected yet")
		}
		return nil
	})
	r.waitGrants(r.grants.Load() + 4)

	stop()
	wg.Wait()
	c.waitConverged()
	if err := r.ackOrder(); err != nil {
		t.Error(err)
	}
	r.checkHistory(c)
}

// lockRun is the state the workers, the monitor and the checks share.
type lockRun struct {
	t     *testing.T
	nodes []atomic.Pointer[cluster.Node] // by slot; replaced when a node restarts
	ttl   time.Duration

	grants        atomic.Int64 // grants observed by workers
	aborted       atomic.Int64 // fenced writes rejected with ErrAborted
	victimAborted atomic.Int64 // … of them by the partitioned victim
	sessions      atomic.Int64 // sessions created
	samples       atomic.Int64 // lock states the monitor looked at

	victimWanted atomic.Bool // the next holder to write takes the victim role
	victims      chan victim

	mu       sync.Mutex
	granted  map[uint64]int // token → worker it was granted to
	acked    []ackedWrite   // fenced writes acknowledged to their worker
	failures int            // monitor violations reported
}

type victim struct {
	slot    int
	session uint64
	token   uint64
}

// ackedWrite is a fenced write to key acknowledged as applied at index with token.
type ackedWrite struct {
	key          string
	index, token uint64
}

func newLockRun(t *testing.T, c *testCluster) *lockRun {
	r := &lockRun{t: t, nodes: make([]atomic.Pointer[cluster.Node], len(c.nodes)),
		victims: make(chan victim, 1), granted: map[uint64]int{}}
	for i, tn := range c.nodes {
		r.nodes[i].Store(tn.node)
	}
	// The shortest TTL a node allows, so a session that is not kept alive ends soon.
	r.ttl = c.nodes[0].node.MinSessionTTL()
	return r
}

func (r *lockRun) node(slot int) *cluster.Node       { return r.nodes[slot].Load() }
func (r *lockRun) setNode(slot int, n *cluster.Node) { r.nodes[slot].Store(n) }

// waitGrants waits until workers have observed at least n grants in all.
func (r *lockRun) waitGrants(n int64) {
	r.t.Helper()
	eventually(r.t, 30*time.Second, func() error {
		if g := r.grants.Load(); g < n {
			return fmt.Errorf("%d grants, want %d", g, n)
		}
		return nil
	})
}

// observeGrant records that worker w was granted token: no token goes to two workers,
// and a worker's tokens only grow.
func (r *lockRun) observeGrant(w *lockWorker, token uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if other, ok := r.granted[token]; ok && other != w.id {
		r.t.Errorf("token %d granted to worker %d and worker %d", token, other, w.id)
	}
	r.granted[token] = w.id
	if token <= w.last {
		r.t.Errorf("worker %d granted token %d after token %d", w.id, token, w.last)
	}
	w.last = token
	r.grants.Add(1)
}

func (r *lockRun) ack(a ackedWrite) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acked = append(r.acked, a)
}

// ackOrder checks that, taken in revision order, acknowledged fenced writes never go
// back to a lower token: once a later holder has written, an earlier one never does.
func (r *lockRun) ackOrder() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	acked := slices.Clone(r.acked)
	slices.SortFunc(acked, func(a, b ackedWrite) int { return cmp.Compare(a.index, b.index) })
	for i := 1; i < len(acked); i++ {
		if a, b := acked[i-1], acked[i]; b.token < a.token {
			return fmt.Errorf("fenced write with token %d acknowledged at index %d, after token %d wrote at index %d", b.token, b.index, a.token, a.index)
		}
	}
	return nil
}

func (r *lockRun) maxAckedToken() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m uint64
	for _, a := range r.acked {
		m = max(m, a.token)
	}
	return m
}

// violation reports a monitor finding, the first few only.
func (r *lockRun) violation(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures++; r.failures <= 5 {
		r.t.Errorf(format, args...)
	}
}

// monitor samples the lock on every node's local state until ctx ends: an exclusive lock
// never has two holders, and on one node (applying the log in order) the holder's token
// only grows — grants happen in token order.
func (r *lockRun) monitor(ctx context.Context) {
	type seen struct {
		m     *fsm.Machine
		token uint64
	}
	last := make([]seen, len(r.nodes))
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for i := range r.nodes {
			m := r.node(i).Machine()
			if last[i].m != m { // restarted: it replays the log from the start
				last[i] = seen{m: m}
			}
			var holders []*fsmv1.LockHolder
			m.Read(0, func(v *fsm.View) {
				if l, ok := v.Lock(faultLock); ok {
					holders = l.GetHolders()
				}
			})
			r.samples.Add(1)
			if len(holders) > 1 {
				r.violation("node slot %d: exclusive lock %s has %d holders: %v", i, faultLock, len(holders), holders)
			}
			for _, h := range holders {
				if h.GetToken() < last[i].token {
					r.violation("node slot %d: holder token %d after %d", i, h.GetToken(), last[i].token)
				}
				last[i].token = h.GetToken()
			}
		}
	}
}

// checkHistory checks the replicated history of fenced writes — every key under
// faultPrefix, in mod-revision order — against what workers saw.
func (r *lockRun) checkHistory(c *testCluster) {
	t := r.t
	t.Helper()
	var history []*conclavev1.KeyValue
	_, err := c.nodes[c.waitLeader()].node.Read(ctxT(t), conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, func(v *fsm.View) {
		var after []byte
		for {
			kvs, more := v.Scan([]byte(faultPrefix), after, 1000, false)
			history = append(history, kvs...)
			if !more || len(kvs) == 0 {
				return
			}
			after = kvs[len(kvs)-1].GetKey()
		}
	})
	if err != nil {
		t.Fatalf("read the history: %v", err)
	}
	slices.SortFunc(history, func(a, b *conclavev1.KeyValue) int { return cmp.Compare(a.GetModRevision(), b.GetModRevision()) })
	r.mu.Lock()
	defer r.mu.Unlock()

	// One contiguous run per token, tokens increasing: never two holders writing.
	byKey := map[string]*conclavev1.KeyValue{}
	holders := map[uint64]bool{}
	var prev uint64
	for _, kv := range history {
		byKey[string(kv.GetKey())] = kv
		tok, err := strconv.ParseUint(string(kv.GetValue()), 10, 64)
		if err != nil {
			t.Fatalf("%s holds %q, not a token: %v", kv.GetKey(), kv.GetValue(), err)
		}
		at := kv.GetModRevision()
		if tok < prev {
			t.Errorf("index %d: token %d wrote after token %d: a stale holder wrote", at, tok, prev)
		} else if tok != prev && holders[tok] {
			t.Errorf("index %d: token %d writes again after token %d: two holders interleaved", at, tok, prev)
		}
		if _, ok := r.granted[tok]; !ok {
			t.Errorf("index %d: token %d was never granted to a worker", at, tok)
		}
		holders[tok] = true
		prev = tok
	}

	// Every acknowledged write is in the history, at the index it was acknowledged at.
	for _, a := range r.acked {
		kv, ok := byKey[a.key]
		if !ok || kv.GetModRevision() != a.index || string(kv.GetValue()) != strconv.FormatUint(a.token, 10) {
			t.Errorf("write to %s with token %d acknowledged at %d, but the history has %v", a.key, a.token, a.index, kv)
		}
	}
	if len(holders) < 5 {
		t.Errorf("only %d holders wrote: the run exercised too little", len(holders))
	}
	t.Logf("%d grants; %d holders made %d fenced writes (%d acknowledged); %d fenced writes rejected as stale "+
		"(%d by the partitioned holder); %d sessions created; %d lock samples",
		r.grants.Load(), len(holders), len(history), len(r.acked), r.aborted.Load(), r.victimAborted.Load(),
		r.sessions.Load(), r.samples.Load())
}

// lockWorker is one client: one session at a time, kept alive through its node, looping
// acquire → fenced writes → release.
type lockWorker struct {
	r    *lockRun
	id   int
	slot int // the node it talks to

	sess   atomic.Uint64 // current session; 0 = none
	lost   atomic.Bool   // the leader no longer knows sess
	stopKA context.CancelFunc
	seq    int
	last   uint64 // last token granted (guarded by r.mu)
	victim bool
	held   uint64 // token of the hold to release on the way out
}

func (w *lockWorker) run(ctx context.Context) {
	defer w.finish()
	for ctx.Err() == nil {
		if w.sess.Load() == 0 || w.lost.Load() {
			w.newSession(ctx)
			continue
		}
		token, ok := w.acquire(ctx)
		if !ok {
			continue
		}
		w.r.observeGrant(w, token)
		w.held = token
		if !w.critical(ctx, token) {
			// Fenced off: the hold ended with the session.
			w.held = 0
			w.lost.Store(true)
			continue
		}
		if ctx.Err() == nil {
			w.release(ctx, token)
			w.held = 0
		}
	}
}

// newSession drops the current session, if any, and creates one with the shortest TTL.
func (w *lockWorker) newSession(ctx context.Context) {
	if w.stopKA != nil {
		w.stopKA()
		w.stopKA = nil
	}
	w.sess.Store(0)
	res, err := w.apply(ctx, &fsmv1.Command{RequestId: w.requestID(), Op: &fsmv1.Command_SessionCreate{
		SessionCreate: &fsmv1.SessionCreate{Owner: fmt.Sprintf("worker-%d", w.id), TtlMs: w.r.ttl.Milliseconds()}}})
	if err != nil {
		return
	}
	if e := res.GetError(); e != nil {
		w.r.t.Errorf("worker %d: create session: %v", w.id, fsm.ErrorFromProto(e))
		return
	}
	id := res.GetSession().GetId()
	w.r.sessions.Add(1)
	w.sess.Store(id)
	w.lost.Store(false)
	kctx, cancel := context.WithCancel(ctx)
	w.stopKA = cancel
	go w.keepAlive(kctx, id)
}

// keepAlive renews session id through the worker's node a few times per TTL until ctx
// ends or the leader says the session is gone. Other failures (no leader, node down,
// partition) are retried: the session lives as long as one renewal a TTL gets through.
func (w *lockWorker) keepAlive(ctx context.Context, id uint64) {
	tick := time.NewTicker(w.r.ttl / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		kctx, cancel := context.WithTimeout(ctx, w.r.ttl/4)
		_, err := w.r.node(w.slot).KeepAlive(kctx, id)
		cancel()
		if errors.Is(err, fsm.ErrNotFound) {
			w.lost.Store(true)
			return
		}
	}
}

// acquire queues for the lock and waits for the grant the way the server's Acquire does.
func (w *lockWorker) acquire(ctx context.Context) (uint64, bool) {
	res, err := w.apply(ctx, &fsmv1.Command{RequestId: w.requestID(), Op: &fsmv1.Command_LockAcquire{
		LockAcquire: &fsmv1.LockAcquire{Name: faultLock, SessionId: w.sess.Load(), Wait: true}}})
	if err != nil {
		return 0, false
	}
	if e := fsm.ErrorFromProto(res.GetError()); e != nil {
		if errors.Is(e, fsm.ErrNotFound) {
			w.lost.Store(true) // the session ended
		} else {
			w.r.t.Errorf("worker %d: acquire: %v", w.id, e)
		}
		return 0, false
	}
	if res.GetLock().GetGranted() {
		return res.GetLock().GetToken(), true
	}
	hold, err := w.r.node(w.slot).WaitGrant(ctx, faultLock, res.GetLock().GetWaiter())
	switch {
	case errors.Is(err, fsm.ErrNotFound):
		w.lost.Store(true) // the request is gone with its session
		return 0, false
	case err != nil: // node shut down, or ctx ended: ask again (the session's request stays queued)
		pause(ctx, 50*time.Millisecond)
		return 0, false
	}
	return hold.GetToken(), true
}

// critical makes fenced writes as holder of token. It returns false when one was
// rejected as stale (the hold is gone), true otherwise.
func (w *lockWorker) critical(ctx context.Context, token uint64) bool {
	for i := 0; i < writesPerHold || w.victim; i++ {
		err := w.fencedWrite(ctx, token)
		switch {
		case errors.Is(err, fsm.ErrAborted):
			w.r.aborted.Add(1)
			if w.victim {
				w.r.victimAborted.Add(1)
				w.victim = false
			}
			return false
		case err != nil:
			return true // ctx ended
		}
		// A confirmed holder may take the victim role: it then writes until fenced off.
		if i == 0 && w.r.victimWanted.CompareAndSwap(true, false) {
			w.victim = true
			w.r.victims <- victim{slot: w.slot, session: w.sess.Load(), token: token}
		}
	}
	return true
}

// fencedWrite writes token, fenced by the lock, to a key of its own under faultPrefix.
// It returns nil once the write is applied, the fsm error if it was refused (ErrAborted:
// the lock is no longer held with token), or ctx's error.
func (w *lockWorker) fencedWrite(ctx context.Context, token uint64) error {
	id := w.requestID()
	key := faultPrefix + id
	res, err := w.apply(ctx, &fsmv1.Command{RequestId: id, Op: &fsmv1.Command_Set{Set: &conclavev1.SetRequest{
		Key: []byte(key), Value: []byte(strconv.FormatUint(token, 10)), Fence: &conclavev1.Fence{Lock: faultLock, Token: token}}}})
	if err != nil {
		return err
	}
	if e := fsm.ErrorFromProto(res.GetError()); e != nil {
		if !errors.Is(e, fsm.ErrAborted) {
			w.r.t.Errorf("worker %d: fenced write with token %d: %v", w.id, token, e)
		}
		return e
	}
	w.r.ack(ackedWrite{key: key, index: res.GetSet().GetKv().GetModRevision(), token: token})
	return nil
}

// release gives the hold back; a stale token (the session ended meanwhile) is fine.
func (w *lockWorker) release(ctx context.Context, token uint64) {
	res, err := w.apply(ctx, &fsmv1.Command{RequestId: w.requestID(), Op: &fsmv1.Command_LockRelease{
		LockRelease: &fsmv1.LockRelease{Name: faultLock, Token: token}}})
	if err != nil {
		return
	}
	if e := fsm.ErrorFromProto(res.GetError()); e != nil && !errors.Is(e, fsm.ErrAborted) {
		w.r.t.Errorf("worker %d: release token %d: %v", w.id, token, e)
	}
}

// finish releases a hold interrupted by the end of the run and ends the session, so the
// cluster settles; both are best effort (a session left behind expires by itself).
func (w *lockWorker) finish() {
	if w.stopKA != nil {
		w.stopKA()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*opTimeout)
	defer cancel()
	n := w.r.node(w.slot)
	if w.held != 0 {
		n.Apply(ctx, &fsmv1.Command{Op: &fsmv1.Command_LockRelease{LockRelease: &fsmv1.LockRelease{Name: faultLock, Token: w.held}}})
	}
	if id := w.sess.Load(); id != 0 {
		n.Apply(ctx, &fsmv1.Command{Op: &fsmv1.Command_SessionRevoke{SessionRevoke: &fsmv1.SessionRevoke{Id: id}}})
	}
}

// apply applies cmd through the worker's current node, retrying the same command (its
// request id makes that safe) through leader changes, restarts and partitions until
// the outcome is known or ctx ends.
func (w *lockWorker) apply(ctx context.Context, cmd *fsmv1.Command) (*fsmv1.Result, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, opTimeout)
		res, err := w.r.node(w.slot).Apply(actx, cmd)
		cancel()
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		pause(ctx, 50*time.Millisecond)
	}
}

func (w *lockWorker) requestID() string {
	w.seq++
	return fmt.Sprintf("w%d/%d", w.id, w.seq)
}

// lockHolderToken is the token of faultLock's holder in n's local state, 0 if none.
func lockHolderToken(n *cluster.Node) uint64 {
	var token uint64
	n.Machine().Read(0, func(v *fsm.View) {
		if l, ok := v.Lock(faultLock); ok && len(l.GetHolders()) > 0 {
			token = l.GetHolders()[0].GetToken()
		}
	})
	return token
}

// sessionLive reports whether n, in a linearizable read, knows session id.
func sessionLive(t *testing.T, n *cluster.Node, id uint64) bool {
	t.Helper()
	found := false
	if _, err := n.Read(ctxT(t), conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, func(v *fsm.View) {
		_, _, found = v.Session(id)
	}); err != nil {
		t.Fatalf("read session %d on %s: %v", id, n.ID(), err)
	}
	return found
}

// pause waits d or until ctx ends: pacing for retries, not synchronisation.
func pause(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}
