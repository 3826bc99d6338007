package main

import (
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/cluster/chaos"
	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
	"github.com/conclave-dev/conclave/server"
)

// memRateLimitService is a linearizable RateLimitService of FIXED_WINDOW limiters within
// one window that, like the state machine, answers a known request id with its first
// verdict (unless forgetIDs). A Check whose write number (counting every Check, repeats
// included) lost says is applied (or answered from the ids) and then answered
// Unavailable (LEADERSHIP_LOST), so its outcome is unknown to the client.
type memRateLimitService struct {
	conclavev1grpc.UnimplementedRateLimitServiceServer
	lost      func(write int) bool
	forgetIDs bool

	mu         sync.Mutex
	writes     int
	counts     map[string]uint64
	answers    map[string]*conclavev1.CheckResponse
	resetAfter int64 // reset_after_ms of every verdict
}

func newMemRateLimitService(lost func(int) bool, forgetIDs bool) *memRateLimitService {
	return &memRateLimitService{lost: lost, forgetIDs: forgetIDs, counts: map[string]uint64{},
		answers: map[string]*conclavev1.CheckResponse{}, resetAfter: time.Hour.Milliseconds()}
}

// decide is the verdict on k at the current counts, and whether it fits.
func (s *memRateLimitService) decide(k *conclavev1.RateLimitKey) *conclavev1.KeyVerdict {
	limit, n, cost := k.GetInline().GetLimit(), s.counts[k.GetKey()], max(k.GetCost(), 1)
	v := &conclavev1.KeyVerdict{Key: k.GetKey(), Limit: limit, ResetAfterMs: s.resetAfter}
	if cost <= limit && n <= limit-cost {
		v.Allowed, v.WouldAllow, v.Remaining = true, true, limit-n-cost
	} else {
		v.Remaining, v.RetryAfterMs = limit-min(n, limit), s.resetAfter
	}
	return v
}

func (s *memRateLimitService) Check(_ context.Context, r *conclavev1.CheckRequest) (*conclavev1.CheckResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	resp, ok := s.answers[r.GetRequestId()]
	if !ok || s.forgetIDs {
		k := r.GetKeys()[0]
		v := s.decide(k)
		if v.Allowed {
			s.counts[k.GetKey()] += max(k.GetCost(), 1)
		}
		resp = &conclavev1.CheckResponse{Allowed: v.Allowed, Verdicts: []*conclavev1.KeyVerdict{v}}
		s.answers[r.GetRequestId()] = resp
	}
	if s.lost(s.writes) {
		return nil, reasonErr(codes.Unavailable, "LEADERSHIP_LOST")
	}
	return resp, nil
}

func (s *memRateLimitService) Peek(_ context.Context, r *conclavev1.PeekRequest) (*conclavev1.PeekResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.decide(r.GetKeys()[0])
	return &conclavev1.PeekResponse{Allowed: v.Allowed, Verdicts: []*conclavev1.KeyVerdict{v}}, nil
}

// limitWorkloadTest is a workload of three rate-limit clients against a
// memRateLimitService, stepped one client after another from seeded generators, so
// every run is the same.
type limitWorkloadTest struct {
	w      *workload
	svc    *memRateLimitService
	limits conclavev1grpc.RateLimitServiceClient
	rngs   []*rand.Rand
	seq    int
}

func newLimitWorkloadTest(t *testing.T, svc *memRateLimitService) *limitWorkloadTest {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	conclavev1grpc.RegisterRateLimitServiceServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	lt := &limitWorkloadTest{w: newWorkload(0, 0, []uint64{15, 30}, nil), svc: svc, limits: conclavev1grpc.NewRateLimitServiceClient(conn)}
	for i := range 3 {
		lt.rngs = append(lt.rngs, rand.New(rand.NewPCG(1, uint64(i))))
	}
	return lt
}

// steps runs n rounds of one rate-limit step per client; the retry goes to the same
// service.
func (lt *limitWorkloadTest) steps(n int) {
	for range n {
		for i, rng := range lt.rngs {
			lt.w.limitStep(lt.limits, lt.limits, i, lt.seq, rng)
		}
		lt.seq++
	}
}

func checkLimits(t *testing.T, ops []porcupine.Operation) bool {
	t.Helper()
	res, err := chaos.Check(chaos.RateLimitModel, ops, 0, "")
	if err != nil || res.TimedOut {
		t.Fatalf("check: %+v, %v", res, err)
	}
	return res.Linearizable
}

func TestChaos_LimitWorkloadHistoryIsLinearizable(t *testing.T) {
	// Every fifth and every eleventh write is lost: a Check lost on both attempts (writes
	// 10 and 11, 44 and 45, …) stays unknown, one lost once is answered on its retry with
	// the same request id.
	lt := newLimitWorkloadTest(t, newMemRateLimitService(func(n int) bool { return n%5 == 0 || n%11 == 0 }, false))
	lt.steps(40)
	rest, limits := chaos.SplitLimits(lt.w.rec.Operations())
	if len(rest) != 0 {
		t.Fatalf("%d other operations from rate-limit steps", len(rest))
	}
	seen := map[string]int{}
	for _, op := range limits {
		in, out := op.Input.(chaos.Input), op.Output.(chaos.Output)
		switch {
		case in.Op == chaos.OpLimitPeek:
			seen["peek"]++
		case out.Unknown:
			seen["unknown"]++
		case out.OK:
			seen["allowed"]++
		default:
			seen["denied"]++
		}
		if in.Cost == 2 {
			seen["cost 2"]++
		}
	}
	for _, kind := range []string{"peek", "unknown", "allowed", "denied", "cost 2"} {
		if seen[kind] == 0 {
			t.Fatalf("no %s operation in %d: %v", kind, len(limits), seen)
		}
	}
	if lt.w.limitRetried == 0 {
		t.Fatal("no Check answered on its retry")
	}
	summary := lt.w.limitSummary(limits)
	t.Logf("%d rate-limit operations: %v; %s", len(limits), seen, summary)
	if !strings.Contains(summary, "rl/0 (limit 15)") || !strings.Contains(summary, "rl/1 (limit 30)") {
		t.Fatalf("summary %q", summary)
	}
	if !checkLimits(t, limits) {
		t.Fatal("rate-limit history of a linearizable service is not linearizable")
	}
	drop, problems := lt.w.limitCheckPlan(t.Logf)
	if len(drop) != 0 || len(problems) != 0 {
		t.Fatalf("skipped %v, problems %v", drop, problems)
	}
}

func TestChaos_RetryThatConsumesAgainIsCaught(t *testing.T) {
	// Every fifth write is lost and answered on its retry, which — the ids forgotten —
	// takes the hits a second time.
	lt := newLimitWorkloadTest(t, newMemRateLimitService(func(n int) bool { return n%5 == 0 }, true))
	lt.steps(40)
	_, limits := chaos.SplitLimits(lt.w.rec.Operations())
	if lt.w.limitRetried == 0 {
		t.Fatal("no Check answered on its retry")
	}
	if checkLimits(t, limits) {
		t.Fatal("history of retries consuming twice is linearizable")
	}
}

func TestChaos_RefusedChecksAreLeftOut(t *testing.T) {
	svc := newMemRateLimitService(func(int) bool { return false }, false)
	lt := newLimitWorkloadTest(t, svc)
	refusing := &refusingLimits{}
	for i := range 20 {
		lt.w.limitStep(refusing, refusing, 0, i, lt.rngs[0])
	}
	if ops := lt.w.rec.Operations(); len(ops) != 0 {
		t.Fatalf("refused operations recorded: %v", ops)
	}
	if refusing.checks == 0 || refusing.checks%2 != 0 {
		t.Fatalf("%d Check calls, want two per Check", refusing.checks)
	}
}

// refusingLimits refuses every call before the log (NO_LEADER).
type refusingLimits struct {
	conclavev1grpc.RateLimitServiceClient
	checks int
}

func (r *refusingLimits) Check(context.Context, *conclavev1.CheckRequest, ...grpc.CallOption) (*conclavev1.CheckResponse, error) {
	r.checks++
	return nil, reasonErr(codes.Unavailable, "NO_LEADER")
}

func (r *refusingLimits) Peek(context.Context, *conclavev1.PeekRequest, ...grpc.CallOption) (*conclavev1.PeekResponse, error) {
	return nil, status.Error(codes.Unavailable, "no leader")
}

func TestChaos_LimitWindowCrossingSkipsTheKey(t *testing.T) {
	svc := newMemRateLimitService(func(int) bool { return false }, false)
	lt := newLimitWorkloadTest(t, svc)
	lt.steps(5)
	svc.mu.Lock()
	svc.resetAfter = chaosLimitPeriodMs // as if a new window had begun
	svc.mu.Unlock()
	lt.steps(5)
	drop, problems := lt.w.limitCheckPlan(t.Logf)
	if len(drop) != 2 || !drop["rl/0"] || !drop["rl/1"] || len(problems) != 0 {
		t.Fatalf("skipped %v, problems %v; want both keys skipped", drop, problems)
	}
}

func TestChaos_MalformedLimitAnswerIsAProblem(t *testing.T) {
	w := newWorkload(0, 0, []uint64{5}, nil)
	w.limitVerdict("rl/0", 5, true, []*conclavev1.KeyVerdict{{Key: "rl/0", Limit: 6, Allowed: true}})
	w.limitVerdict("rl/0", 5, true, nil)
	if _, problems := w.limitCheckPlan(t.Logf); len(problems) != 2 {
		t.Fatalf("problems %v, want two", problems)
	}
}

func TestChaos_Limits(t *testing.T) {
	o := chaosOptions{duration: time.Minute, rate: 100, locks: 3, limiters: 2}
	got := chaosLimits(o)
	if len(got) != 2 || got[0] < 10 || got[1] <= got[0] {
		t.Fatalf("limits %v", got)
	}
	o.duration /= 2
	if half := chaosLimits(o); half[0] >= got[0] || half[1] >= got[1] {
		t.Fatalf("limits for 30s %v not below those for 60s %v", half, got)
	}
	if o.limiters = 0; chaosLimits(o) != nil {
		t.Fatal("limits without limiters")
	}
}

// fsmNode is a server.Node over one in-memory state machine, for running the real
// RateLimitService: every Apply is applied at once, at the next index and the current
// time, and one whose index lost says is then answered as if leadership had been lost
// (cluster.ErrLeadershipLost: applied, the outcome unknown to the client). The Node
// methods the rate-limit service does not call are left nil.
type fsmNode struct {
	server.Node
	lost func(index uint64) bool

	mu    sync.Mutex
	m     *fsm.Machine
	index uint64
}

func (n *fsmNode) ID() string        { return "n1" }
func (n *fsmNode) LeaderKnown() bool { return true }
func (n *fsmNode) Header(revision uint64) *conclavev1.ResponseHeader {
	return &conclavev1.ResponseHeader{Revision: revision, NodeId: "n1", AppliedIndex: n.m.AppliedIndex()}
}

func (n *fsmNode) Apply(_ context.Context, cmd *fsmv1.Command) (*fsmv1.Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.index++
	cmd = proto.CloneOf(cmd)
	cmd.NowUnixNano = time.Now().UnixNano() // as the leader stamps it
	res := n.m.ApplyCommand(n.index, cmd)
	if n.lost(n.index) {
		return nil, cluster.ErrLeadershipLost
	}
	return res, nil
}

func (n *fsmNode) Read(_ context.Context, _ conclavev1.Consistency, fn func(v *fsm.View)) (*conclavev1.ResponseHeader, error) {
	n.m.Read(time.Now().UnixNano(), fn)
	return n.Header(n.m.AppliedIndex()), nil
}

// newFSMRateLimits serves the real RateLimitService over an fsmNode on loopback.
func newFSMRateLimits(t *testing.T, lost func(index uint64) bool) conclavev1grpc.RateLimitServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{}, &fsmNode{m: fsm.New(), lost: lost}, nil)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conclavev1grpc.NewRateLimitServiceClient(conn)
}

// TestChaos_LimitWorkloadAgainstTheStateMachine runs the workload's rate-limit steps
// through the real RateLimitService and state machine, with some answers lost, and
// checks the history with RateLimitModel: the workload's requests are valid (the ten-
// year window included), the model and fsm/ agree on FIXED_WINDOW verdicts, and the
// state machine answers a retried request id with its first verdict.
func TestChaos_LimitWorkloadAgainstTheStateMachine(t *testing.T) {
	// Every fifth and every eleventh Check is applied but its answer lost: a Check lost
	// on both attempts stays unknown, one lost once is answered on its retry.
	rl := newFSMRateLimits(t, func(i uint64) bool { return i%5 == 0 || i%11 == 0 })
	w := newWorkload(0, 0, []uint64{15, 30}, nil)
	var rngs []*rand.Rand
	for i := range 3 {
		rngs = append(rngs, rand.New(rand.NewPCG(2, uint64(i))))
	}
	for seq := range 50 {
		for i, rng := range rngs {
			w.limitStep(rl, rl, i, seq, rng)
		}
	}
	for j := range w.limiters {
		if !w.peekLimit(context.Background(), rl, 3, j) {
			t.Fatalf("final peek of %s failed", w.limiters[j])
		}
	}
	ops := w.rec.Operations()
	counts := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(chaos.Input), op.Output.(chaos.Output)
		switch {
		case in.Op == chaos.OpLimitPeek:
			counts["peek"]++
		case out.Unknown:
			counts["unknown"]++
		case out.OK:
			counts["allowed"]++
		default:
			counts["denied"]++
		}
	}
	for _, kind := range []string{"peek", "unknown", "allowed", "denied"} {
		if counts[kind] == 0 {
			t.Fatalf("no %s operation in %d: %v", kind, len(ops), counts)
		}
	}
	if w.limitRetried == 0 {
		t.Fatal("no Check answered on its retry")
	}
	t.Logf("%s", w.limitSummary(ops))
	if drop, problems := w.limitCheckPlan(t.Logf); len(drop) != 0 || len(problems) != 0 {
		t.Fatalf("skipped %v, problems %v", drop, problems)
	}
	if !checkLimits(t, ops) {
		t.Fatal("the state machine's rate-limit history does not satisfy RateLimitModel")
	}
}

func TestChaos_InvalidLimitRequestIsAProblem(t *testing.T) {
	rl := newFSMRateLimits(t, func(uint64) bool { return false })
	w := newWorkload(0, 0, []uint64{0}, nil) // a limit of 0 is invalid
	rng := rand.New(rand.NewPCG(1, 1))
	for seq := range 8 {
		w.limitStep(rl, rl, 0, seq, rng)
	}
	if ops := w.rec.Operations(); len(ops) != 0 {
		t.Fatalf("refused operations recorded: %v", ops)
	}
	if _, problems := w.limitCheckPlan(t.Logf); len(problems) == 0 {
		t.Fatal("invalid requests are not reported")
	} else {
		t.Logf("%q", problems)
	}
}
