package main

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	"github.com/anishathalye/porcupine"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/conclave-dev/conclave/client"
	"github.com/conclave-dev/conclave/cluster/chaos"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// memLockService is a linearizable LockService of EXCLUSIVE locks with raft-like tokens
// (one index bumped by every call). Every unknownEvery-th Acquire or Release is applied
// and then answered Unavailable (LEADERSHIP_LOST), so its outcome is unknown to the
// client. expire ends a session as the server's expiry would: its holds vanish.
type memLockService struct {
	conclavev1grpc.UnimplementedLockServiceServer
	unknownEvery int

	mu      sync.Mutex
	index   uint64
	writes  int
	holders map[string]*conclavev1.LockHolder
	gone    map[uint64]bool
}

func newMemLockService(unknownEvery int) *memLockService {
	return &memLockService{unknownEvery: unknownEvery, holders: map[string]*conclavev1.LockHolder{}, gone: map[uint64]bool{}}
}

func reasonErr(code codes.Code, reason string) error {
	st, _ := status.New(code, reason).WithDetails(&errdetails.ErrorInfo{Domain: "conclave.dev", Reason: reason})
	return st.Err()
}

// answer returns err, or Unavailable (LEADERSHIP_LOST) for every unknownEvery-th write:
// the write was applied (or refused) but the client cannot know.
func (s *memLockService) answer(err error) error {
	s.writes++
	if s.unknownEvery > 0 && s.writes%s.unknownEvery == 0 {
		return reasonErr(codes.Unavailable, "LEADERSHIP_LOST")
	}
	return err
}

func (s *memLockService) Acquire(_ context.Context, r *conclavev1.AcquireRequest) (*conclavev1.AcquireResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	if s.gone[r.GetSessionId()] {
		return nil, reasonErr(codes.NotFound, "NOT_FOUND")
	}
	h, ok := s.holders[r.GetName()]
	switch {
	case ok && h.GetSessionId() != r.GetSessionId():
		return nil, s.answer(reasonErr(codes.FailedPrecondition, "LOCK_HELD"))
	case !ok:
		h = &conclavev1.LockHolder{SessionId: r.GetSessionId(), Token: s.index}
		s.holders[r.GetName()] = h
	}
	if err := s.answer(nil); err != nil {
		return nil, err
	}
	return &conclavev1.AcquireResponse{Token: h.GetToken()}, nil
}

func (s *memLockService) Release(_ context.Context, r *conclavev1.ReleaseRequest) (*conclavev1.ReleaseResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	h, ok := s.holders[r.GetName()]
	if !ok || h.GetToken() != r.GetToken() {
		return nil, s.answer(reasonErr(codes.Aborted, "FENCE_STALE"))
	}
	delete(s.holders, r.GetName())
	return &conclavev1.ReleaseResponse{}, s.answer(nil)
}

func (s *memLockService) Inspect(_ context.Context, r *conclavev1.InspectRequest) (*conclavev1.InspectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &conclavev1.InspectResponse{}
	if h, ok := s.holders[r.GetName()]; ok {
		resp.Holders = append(resp.Holders, h)
	}
	return resp, nil
}

func (s *memLockService) expire(session uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone[session] = true
	for name, h := range s.holders {
		if h.GetSessionId() == session {
			delete(s.holders, name)
		}
	}
}

// lockWorkloadTest is a workload of three lock clients against a memLockService, stepped
// one client after another from seeded generators, so every run is the same.
type lockWorkloadTest struct {
	w     *workload
	svc   *memLockService
	locks conclavev1grpc.LockServiceClient
	lcs   []*lockClient
	rngs  []*rand.Rand
	seq   int
}

func newLockWorkloadTest(t *testing.T, unknownEvery int) *lockWorkloadTest {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := newMemLockService(unknownEvery)
	srv := grpc.NewServer()
	conclavev1grpc.RegisterLockServiceServer(srv, svc)
	conclavev1grpc.RegisterSessionServiceServer(srv, &fakeSessions{sessions: map[uint64]*conclavev1.Session{}})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cl, err := client.New(client.Config{Endpoints: []string{lis.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	lt := &lockWorkloadTest{w: newWorkload(0, 3, nil, cl), svc: svc, locks: conclavev1grpc.NewLockServiceClient(conn)}
	for i := range 3 {
		lt.lcs = append(lt.lcs, &lockClient{})
		lt.rngs = append(lt.rngs, rand.New(rand.NewPCG(1, uint64(i))))
	}
	return lt
}

// steps runs n rounds of one lock step per client.
func (lt *lockWorkloadTest) steps(n int) {
	for range n {
		for i, lc := range lt.lcs {
			lt.w.lockStep(lt.locks, lc, i, lt.seq, lt.rngs[i])
		}
		lt.seq++
	}
}

func checkLocks(t *testing.T, ops []porcupine.Operation) bool {
	t.Helper()
	res, err := chaos.Check(chaos.LockModel, ops, 0, "")
	if err != nil || res.TimedOut {
		t.Fatalf("check: %+v, %v", res, err)
	}
	return res.Linearizable
}

func TestChaos_LockWorkloadHistoryIsLinearizable(t *testing.T) {
	lt := newLockWorkloadTest(t, 7)
	lt.steps(150)
	ops := lt.w.rec.Operations()
	kv, locks := chaos.SplitLocks(ops)
	if len(kv) != 0 {
		t.Fatalf("%d KV operations from lock steps", len(kv))
	}
	seen := map[string]int{}
	for _, op := range locks {
		in, out := op.Input.(chaos.Input), op.Output.(chaos.Output)
		switch {
		case out.Unknown:
			seen["unknown"]++
		case in.Op == chaos.OpAcquire && out.OK:
			seen["granted"]++
		case in.Op == chaos.OpAcquire:
			seen["held"]++
		case in.Op == chaos.OpRelease && out.OK:
			seen["released"]++
		case in.Op == chaos.OpInspect && out.Holders > 0:
			seen["inspected held"]++
		}
	}
	for _, kind := range []string{"unknown", "granted", "held", "released", "inspected held"} {
		if seen[kind] == 0 {
			t.Fatalf("no %s operation in %d: %v", kind, len(locks), seen)
		}
	}
	t.Logf("%d lock operations: %v", len(locks), seen)
	if !checkLocks(t, locks) {
		t.Fatal("lock history of a linearizable service is not linearizable")
	}
	skipped, lost := lt.w.endSessions()
	if len(skipped) != 0 || len(lost) != 0 {
		t.Fatalf("skipped %v, lost %v", skipped, lost)
	}
}

func TestChaos_LostSessionSkipsItsLocks(t *testing.T) {
	lt := newLockWorkloadTest(t, 0)
	lt.steps(30)
	victim := -1
	for i, lc := range lt.lcs {
		if len(lc.cur.held) > 0 {
			victim = i
			break
		}
	}
	if victim < 0 {
		t.Fatal("no client holds a lock after 30 rounds")
	}
	var heldByVictim []string
	for name := range lt.lcs[victim].cur.held {
		heldByVictim = append(heldByVictim, name)
	}
	lt.svc.expire(lt.lcs[victim].cur.s.ID()) // its holds vanish without a Release
	lt.steps(60)

	_, locks := chaos.SplitLocks(lt.w.rec.Operations())
	if checkLocks(t, locks) {
		t.Fatal("history with holds released by an expiry is linearizable: the test shows nothing")
	}
	skipped, lost := lt.w.endSessions()
	if len(lost) != 1 {
		t.Fatalf("lost sessions %v, want the victim's", lost)
	}
	t.Logf("lost %v; skipped %v", lost, skipped)
	drop := map[string]bool{}
	for name := range skipped {
		drop[name] = true
	}
	// No outcome was unknown: exactly the locks the session held when it ended.
	if len(drop) != len(heldByVictim) || len(drop) == len(lt.w.locks) {
		t.Fatalf("skipped %v, want the locks held by the lost session: %v", skipped, heldByVictim)
	}
	for _, name := range heldByVictim {
		if !drop[name] {
			t.Fatalf("lock %s held by the lost session is not skipped: %v", name, skipped)
		}
	}
	if !checkLocks(t, chaos.WithoutKeys(locks, drop)) {
		t.Fatal("history without the lost session's locks is not linearizable")
	}
}
