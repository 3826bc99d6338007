package fsm_test

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// lockBench applies commands at increasing indexes and reads locks back.
type lockBench struct {
	t     *testing.T
	m     *fsm.Machine
	index uint64
}

func newLockBench(t *testing.T, sessions int) *lockBench {
	b := &lockBench{t: t, m: fsm.New()}
	for range sessions {
		b.ok(&fsmv1.SessionCreate{TtlMs: 10_000}) // sessions 1, 2, 3, …
	}
	return b
}

func (b *lockBench) apply(op proto.Message) (*fsmv1.Result, error) {
	b.t.Helper()
	b.index++
	res := b.m.ApplyCommand(b.index, cmd(t0+int64(b.index)*s, op))
	return res, fsm.ErrorFromProto(res.GetError())
}

func (b *lockBench) ok(op proto.Message) *fsmv1.Result {
	b.t.Helper()
	res, err := b.apply(op)
	if err != nil {
		b.t.Fatalf("index %d: %v", b.index, err)
	}
	return res
}

func (b *lockBench) holders(name string) []uint64 {
	var out []uint64
	b.m.Read(0, func(v *fsm.View) {
		if l, ok := v.Lock(name); ok {
			for _, h := range l.GetHolders() {
				out = append(out, h.GetSessionId())
			}
		}
	})
	return out
}

func (b *lockBench) snapshot() []byte {
	var buf bytes.Buffer
	if _, err := b.m.Snapshot().WriteTo(&buf); err != nil {
		b.t.Fatal(err)
	}
	return buf.Bytes()
}

func acquire(name string, session uint64, wait bool) *fsmv1.LockAcquire {
	return &fsmv1.LockAcquire{Name: name, SessionId: session, Wait: wait}
}

func shared(name string, session uint64, limit uint32) *fsmv1.LockAcquire {
	return &fsmv1.LockAcquire{Name: name, SessionId: session, Mode: fsmv1.LockMode_LOCK_MODE_SHARED, Limit: limit, Wait: true}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLock_GrantFIFOHandoverAndTokens(t *testing.T) {
	b := newLockBench(t, 3)
	first := b.ok(acquire("L", 1, false)).GetLock()
	if !first.GetGranted() || first.GetToken() != b.index {
		t.Fatalf("first acquire %v: want granted with token = its index %d", first, b.index)
	}
	if _, err := b.apply(acquire("L", 2, false)); !errors.Is(err, fsm.ErrLockHeld) {
		t.Fatalf("try-once on a held lock: %v, want ErrLockHeld", err)
	}
	w2 := b.ok(acquire("L", 2, true)).GetLock()
	w3 := b.ok(acquire("L", 3, true)).GetLock()
	if w2.GetGranted() || w2.GetWaiter() == 0 || w3.GetWaiter() <= w2.GetWaiter() {
		t.Fatalf("waiters %v %v", w2, w3)
	}
	if again := b.ok(acquire("L", 1, false)).GetLock(); again.GetToken() != first.GetToken() {
		t.Fatalf("holder acquiring again got %v, want its token %d", again, first.GetToken())
	}

	if _, err := b.apply(&fsmv1.LockRelease{Name: "L", Token: first.GetToken() + 1}); !errors.Is(err, fsm.ErrAborted) {
		t.Fatalf("release with a wrong token: %v, want ErrAborted", err)
	}
	if got := b.holders("L"); !equal(got, []uint64{1}) {
		t.Fatalf("a refused release changed the holders: %v", got)
	}

	b.ok(&fsmv1.LockRelease{Name: "L", Token: first.GetToken()})
	handover := b.index
	var tok2 uint64
	b.m.Read(0, func(v *fsm.View) {
		l, _ := v.Lock("L")
		tok2 = l.GetHolders()[0].GetToken()
		if got := l.GetHolders()[0]; got.GetSessionId() != 2 || got.GetRequest() != w2.GetWaiter() {
			t.Fatalf("after release holder %v, want session 2 for request %d", got, w2.GetWaiter())
		}
	})
	if tok2 != handover || tok2 <= first.GetToken() {
		t.Fatalf("handover token %d, want the release's index %d (> %d)", tok2, handover, first.GetToken())
	}
	b.ok(&fsmv1.LockRelease{Name: "L", Token: tok2})
	if got := b.holders("L"); !equal(got, []uint64{3}) {
		t.Fatalf("holders %v, want [3]", got)
	}
}

func TestLock_SessionEndReleasesAndGrants(t *testing.T) {
	b := newLockBench(t, 3)
	b.ok(acquire("L", 1, false))
	b.ok(acquire("L", 2, true))
	b.ok(acquire("M", 1, true))
	b.ok(&fsmv1.SessionExpire{Ids: []uint64{1}})
	if got := b.holders("L"); !equal(got, []uint64{2}) {
		t.Fatalf("after session 1 expired: holders %v, want [2]", got)
	}
	if got := b.holders("M"); len(got) != 0 {
		t.Fatalf("expired session still holds M: %v", got)
	}
	b.ok(&fsmv1.SessionRevoke{Id: 2})
	b.m.Read(0, func(v *fsm.View) {
		if _, ok := v.Lock("L"); ok {
			t.Fatal("a lock with no holders or waiters is still stored")
		}
	})
	if _, err := b.apply(acquire("L", 1, false)); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("acquire for an ended session: %v, want ErrNotFound", err)
	}
}

func TestLock_SemaphoreAndReadWrite(t *testing.T) {
	b := newLockBench(t, 6)
	b.ok(shared("S", 1, 2))
	b.ok(shared("S", 2, 2))
	b.ok(shared("S", 3, 2))
	if got := b.holders("S"); !equal(got, []uint64{1, 2}) {
		t.Fatalf("semaphore of 2: holders %v", got)
	}
	if _, err := b.apply(shared("S", 4, 3)); !errors.Is(err, fsm.ErrInvalidArgument) {
		t.Fatalf("semaphore limit mismatch: %v, want invalid", err)
	}
	var tok1 uint64
	b.m.Read(0, func(v *fsm.View) { l, _ := v.Lock("S"); tok1 = l.GetHolders()[0].GetToken() })
	b.ok(&fsmv1.LockRelease{Name: "S", Token: tok1})
	if got := b.holders("S"); !equal(got, []uint64{2, 3}) {
		t.Fatalf("after a release: holders %v, want [2 3]", got)
	}

	// Read/write lock: readers share (limit 0); a waiting writer holds back later
	// readers (FIFO, so writers do not starve).
	b.ok(shared("RW", 1, 0))
	b.ok(shared("RW", 2, 0))
	b.ok(acquire("RW", 3, true))
	b.ok(shared("RW", 4, 0))
	if got := b.holders("RW"); !equal(got, []uint64{1, 2}) {
		t.Fatalf("readers %v, want [1 2] with the writer and reader 4 waiting", got)
	}
	b.ok(&fsmv1.SessionRevoke{Id: 1})
	b.ok(&fsmv1.SessionRevoke{Id: 2})
	if got := b.holders("RW"); !equal(got, []uint64{3}) {
		t.Fatalf("after the readers left: %v, want the writer [3]", got)
	}
	b.ok(&fsmv1.SessionRevoke{Id: 3})
	if got := b.holders("RW"); !equal(got, []uint64{4}) {
		t.Fatalf("after the writer left: %v, want reader [4]", got)
	}
}

func TestLock_CancelHeadWaiterGrantsThoseBehind(t *testing.T) {
	b := newLockBench(t, 3)
	b.ok(shared("RW", 1, 0))
	w := b.ok(acquire("RW", 2, true)).GetLock() // writer waits behind reader 1
	b.ok(shared("RW", 3, 0))                    // reader 3 waits behind the writer
	b.ok(&fsmv1.LockCancel{Name: "RW", Waiter: w.GetWaiter()})
	if got := b.holders("RW"); !equal(got, []uint64{1, 3}) {
		t.Fatalf("after the writer gave up: %v, want [1 3]", got)
	}
}

func TestLock_FencedWrites(t *testing.T) {
	b := newLockBench(t, 1)
	tok := b.ok(acquire("L", 1, false)).GetLock().GetToken()
	fence := &conclavev1.Fence{Lock: "L", Token: tok}
	b.ok(&conclavev1.SetRequest{Key: []byte("k"), Value: []byte("v1"), Fence: fence})
	b.ok(&fsmv1.LockRelease{Name: "L", Token: tok})
	for name, op := range map[string]proto.Message{
		"set":    &conclavev1.SetRequest{Key: []byte("k"), Value: []byte("v2"), Fence: fence},
		"delete": &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("k")}, Fence: fence},
		"txn":    &conclavev1.TxnRequest{Fence: fence, Success: []*conclavev1.TxnOp{{Op: &conclavev1.TxnOp_Delete{Delete: &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("k")}}}}}},
	} {
		if _, err := b.apply(op); !errors.Is(err, fsm.ErrAborted) {
			t.Fatalf("%s with a stale token: %v, want ErrAborted", name, err)
		}
	}
	b.m.Read(0, func(v *fsm.View) {
		if kv, ok := v.Get([]byte("k")); !ok || string(kv.GetValue()) != "v1" {
			t.Fatalf("stale fenced writes changed k: %v", kv)
		}
	})
}

func TestLock_SnapshotRestore(t *testing.T) {
	b := newLockBench(t, 3)
	b.ok(acquire("L", 1, false))
	b.ok(acquire("L", 2, true))
	b.ok(shared("S", 3, 2))
	snap := b.snapshot()
	r := &lockBench{t: t, m: fsm.New(), index: b.index}
	if err := r.m.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.snapshot(), snap) {
		t.Fatal("Snapshot→Restore→Snapshot changed the bytes")
	}
	// The derived session→locks index was rebuilt: ending session 1 hands L over.
	r.ok(&fsmv1.SessionRevoke{Id: 1})
	b.ok(&fsmv1.SessionRevoke{Id: 1})
	if got := r.holders("L"); !equal(got, []uint64{2}) {
		t.Fatalf("restored machine after revoke: %v, want [2]", got)
	}
	if !bytes.Equal(r.snapshot(), b.snapshot()) {
		t.Fatal("restored and original machines diverged")
	}
}

func (b *lockBench) lock(name string) *fsmv1.LockRecord {
	var out *fsmv1.LockRecord
	b.m.Read(0, func(v *fsm.View) { out, _ = v.Lock(name) })
	return out
}

func TestLock_LockDelayAfterSessionEnd(t *testing.T) {
	b := newLockBench(t, 2)                                       // sessions 1, 2
	b.ok(&fsmv1.SessionCreate{TtlMs: 10_000, LockDelayMs: 5_000}) // session 3
	b.ok(acquire("L", 3, false))
	b.ok(acquire("M", 3, false))
	b.ok(acquire("L", 1, true)) // waits behind session 3
	b.ok(&fsmv1.SessionExpire{Ids: []uint64{3}})
	ended := b.index // commands are one second apart: the delay lasts 5 more of them

	if l := b.lock("L"); len(l.GetHolders()) != 0 || len(l.GetWaiters()) != 1 || l.GetDelayUntilUnixNano() != t0+int64(ended)*s+5*s {
		t.Fatalf("after the holder's session expired: %v, want no holder, one waiter, delayed 5 s", l)
	}
	if _, err := b.apply(acquire("M", 2, false)); !errors.Is(err, fsm.ErrLockHeld) {
		t.Fatalf("try-once during the lock-delay: %v, want ErrLockHeld", err)
	}
	var due int
	b.m.Read(t0+int64(ended+4)*s, func(v *fsm.View) { due = v.DueCount(10) })
	if due != 0 {
		t.Fatalf("DueCount before the delay passed: %d", due)
	}
	b.ok(&fsmv1.ExpireDue{Limit: 10}) // ended+2: still delayed
	if got := b.holders("L"); len(got) != 0 {
		t.Fatalf("granted during the lock-delay: %v", got)
	}
	b.m.Read(t0+int64(ended+5)*s, func(v *fsm.View) { due = v.DueCount(10) })
	if due == 0 {
		t.Fatal("DueCount when the delay has passed: 0, want the leader told to propose ExpireDue")
	}
	for b.index < ended+5 {
		b.ok(nil)
	}
	// The leader's ExpireDue ends the delay and grants the waiter, with its own index.
	b.ok(&fsmv1.ExpireDue{Limit: 10})
	l := b.lock("L")
	if h := l.GetHolders(); len(h) != 1 || h[0].GetSessionId() != 1 || h[0].GetToken() != b.index || l.GetDelayUntilUnixNano() != 0 {
		t.Fatalf("after the delay: %v, want session 1 holding with token %d", l, b.index)
	}
	// A try-once acquire after the delay ends it itself.
	if res := b.ok(acquire("M", 2, false)).GetLock(); !res.GetGranted() {
		t.Fatalf("acquire after M's delay: %v", res)
	}

	// Releasing explicitly, or a session without a lock-delay, delays nothing.
	tok := b.ok(acquire("N", 2, false)).GetLock().GetToken()
	b.ok(&fsmv1.LockRelease{Name: "N", Token: tok})
	b.ok(&fsmv1.SessionRevoke{Id: 2})
	if l := b.lock("N"); l != nil {
		t.Fatalf("lock N after an explicit release: %v, want gone", l)
	}
	if l := b.lock("M"); l != nil {
		t.Fatalf("lock M after its holder without lock-delay was revoked: %v, want gone", l)
	}
}

func TestLock_ProclaimChangesTheHoldersValue(t *testing.T) {
	b := newLockBench(t, 2)
	tok := b.ok(&fsmv1.LockAcquire{Name: "E", SessionId: 1, Value: []byte("a")}).GetLock().GetToken()
	b.ok(&fsmv1.LockAcquire{Name: "E", SessionId: 2, Value: []byte("b"), Wait: true})
	if h := b.lock("E").GetHolders()[0]; string(h.GetValue()) != "a" || h.GetRevision() != tok {
		t.Fatalf("leader %v, want value a at revision %d", h, tok)
	}
	b.ok(&fsmv1.LockProclaim{Name: "E", Token: tok, Value: []byte("a2")})
	if h := b.lock("E").GetHolders()[0]; string(h.GetValue()) != "a2" || h.GetRevision() != b.index || h.GetToken() != tok {
		t.Fatalf("after proclaim %v, want value a2 at revision %d, token %d", h, b.index, tok)
	}
	if _, err := b.apply(&fsmv1.LockProclaim{Name: "E", Token: tok + 1, Value: []byte("x")}); !errors.Is(err, fsm.ErrAborted) {
		t.Fatalf("proclaim with a token that does not lead: %v, want ErrAborted", err)
	}
	b.ok(&fsmv1.LockRelease{Name: "E", Token: tok})
	if h := b.lock("E").GetHolders()[0]; h.GetSessionId() != 2 || string(h.GetValue()) != "b" {
		t.Fatalf("next leader %v, want session 2 with its campaign value b", h)
	}
	if _, err := b.apply(&fsmv1.LockProclaim{Name: "E", Token: tok, Value: []byte("x")}); !errors.Is(err, fsm.ErrAborted) {
		t.Fatalf("proclaim by a resigned leader: %v, want ErrAborted", err)
	}
}
