package main

import (
	"cmp"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/cluster/chaos"
	"github.com/conclave-dev/conclave/fsm"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
	"github.com/conclave-dev/conclave/server"
)

// memSortedSetService is a linearizable SortedSetService of TIE_BREAK_LEX sets that, like
// the state machine, answers a known request id with its first result (unless
// forgetIDs). A write whose number (counting every write, repeats included) lost says
// is applied (or answered from the ids) and then answered Unavailable
// (LEADERSHIP_LOST), so its outcome is unknown to the client. half adds half a point to
// every increment, as a float bug would.
type memSortedSetService struct {
	conclavev1grpc.UnimplementedSortedSetServiceServer
	lost      func(write int) bool
	forgetIDs bool
	half      bool

	mu      sync.Mutex
	writes  int
	sets    map[string]map[string]float64
	answers map[string]proto.Message
}

func newMemSortedSetService(lost func(int) bool, forgetIDs bool) *memSortedSetService {
	return &memSortedSetService{lost: lost, forgetIDs: forgetIDs, sets: map[string]map[string]float64{}, answers: map[string]proto.Message{}}
}

// write runs apply once per request id (unless forgetIDs) and answers as lost says.
func (s *memSortedSetService) write(id string, apply func() proto.Message) (proto.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	resp, ok := s.answers[id]
	if !ok || s.forgetIDs {
		resp = apply()
		s.answers[id] = resp
	}
	if s.lost(s.writes) {
		return nil, reasonErr(codes.Unavailable, "LEADERSHIP_LOST")
	}
	return resp, nil
}

func (s *memSortedSetService) IncrementScore(_ context.Context, r *conclavev1.IncrementScoreRequest) (*conclavev1.IncrementScoreResponse, error) {
	resp, err := s.write(r.GetRequestId(), func() proto.Message {
		set := s.sets[string(r.GetKey())]
		if set == nil {
			set = map[string]float64{}
			s.sets[string(r.GetKey())] = set
		}
		set[r.GetMember()] += r.GetDelta()
		if s.half {
			set[r.GetMember()] += 0.5
		}
		return &conclavev1.IncrementScoreResponse{Score: set[r.GetMember()]}
	})
	if err != nil {
		return nil, err
	}
	return resp.(*conclavev1.IncrementScoreResponse), nil
}

func (s *memSortedSetService) Remove(_ context.Context, r *conclavev1.SortedSetServiceRemoveRequest) (*conclavev1.SortedSetServiceRemoveResponse, error) {
	resp, err := s.write(r.GetRequestId(), func() proto.Message {
		out := &conclavev1.SortedSetServiceRemoveResponse{}
		set := s.sets[string(r.GetKey())]
		for _, m := range r.GetMembers() {
			if _, ok := set[m]; ok {
				delete(set, m)
				out.Removed++
			}
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	return resp.(*conclavev1.SortedSetServiceRemoveResponse), nil
}

func (s *memSortedSetService) Score(_ context.Context, r *conclavev1.ScoreRequest) (*conclavev1.ScoreResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.sets[string(r.GetKey())][r.GetMember()]
	return &conclavev1.ScoreResponse{Found: ok, Score: v}, nil
}

func (s *memSortedSetService) Top(_ context.Context, r *conclavev1.TopRequest) (*conclavev1.TopResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []*conclavev1.RankedMember
	for m, v := range s.sets[string(r.GetKey())] {
		ms = append(ms, &conclavev1.RankedMember{Member: m, Score: v})
	}
	slices.SortFunc(ms, func(a, b *conclavev1.RankedMember) int {
		return cmp.Or(cmp.Compare(b.GetScore(), a.GetScore()), cmp.Compare(b.GetMember(), a.GetMember()))
	})
	return &conclavev1.TopResponse{Members: ms[:min(len(ms), int(r.GetCount()))]}, nil
}

// serveZsets serves svc on loopback and returns a client of it.
func serveZsets(t *testing.T, register func(*grpc.Server)) conclavev1grpc.SortedSetServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conclavev1grpc.NewSortedSetServiceClient(conn)
}

// runZsetSteps runs rounds of one sorted-set step per client (three clients, seeded
// generators, so every run is the same) against zs, the retry to the same service, and
// then lists every board through zs.
func runZsetSteps(t *testing.T, w *workload, zs conclavev1grpc.SortedSetServiceClient, rounds int, seed uint64) []porcupine.Operation {
	t.Helper()
	var rngs []*rand.Rand
	for i := range 3 {
		rngs = append(rngs, rand.New(rand.NewPCG(seed, uint64(i))))
	}
	for seq := range rounds {
		for i, rng := range rngs {
			w.zsetStep(zs, zs, i, seq, rng)
		}
	}
	for _, key := range w.boards {
		if !w.zsetTop(context.Background(), zs, 3, key, len(chaosZsetMembers)) {
			t.Fatalf("final Top of %s failed", key)
		}
	}
	return w.rec.Operations()
}

func checkZsets(t *testing.T, ops []porcupine.Operation) bool {
	t.Helper()
	res, err := chaos.Check(chaos.ZsetModel, ops, 0, "")
	if err != nil || res.TimedOut {
		t.Fatalf("check: %+v, %v", res, err)
	}
	return res.Linearizable
}

// zsetKinds counts a sorted-set history's operations by kind and outcome and fails the
// test when one is missing.
func zsetKinds(t *testing.T, ops []porcupine.Operation) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(chaos.Input), op.Output.(chaos.Output)
		kind := map[chaos.Op]string{chaos.OpZsetIncrement: "increment", chaos.OpZsetScore: "score", chaos.OpZsetTop: "top", chaos.OpZsetRemove: "remove"}[in.Op]
		if out.Unknown {
			kind += " unknown"
		}
		seen[kind]++
	}
	for _, kind := range []string{"increment", "increment unknown", "score", "top", "remove"} {
		if seen[kind] == 0 {
			t.Fatalf("no %s operation in %d: %v", kind, len(ops), seen)
		}
	}
	return seen
}

func newZsetWorkload(boards int) *workload {
	w := newWorkload(0, 0, nil, nil)
	w.addBoards(boards)
	return w
}

func TestChaos_ZsetWorkloadHistoryIsLinearizable(t *testing.T) {
	// Every fifth and every eleventh write is lost: one lost on both attempts stays
	// unknown, one lost once is answered on its retry with the same request id.
	svc := newMemSortedSetService(func(n int) bool { return n%5 == 0 || n%11 == 0 }, false)
	w := newZsetWorkload(2)
	ops := runZsetSteps(t, w, serveZsets(t, func(s *grpc.Server) { conclavev1grpc.RegisterSortedSetServiceServer(s, svc) }), 60, 1)
	rest, zsets := chaos.SplitZsets(ops)
	if len(rest) != 0 {
		t.Fatalf("%d other operations from sorted-set steps", len(rest))
	}
	seen := zsetKinds(t, zsets)
	if w.zsetRetried == 0 {
		t.Fatal("no write answered on its retry")
	}
	summary := w.zsetSummary(zsets)
	t.Logf("%d sorted-set operations: %v; %s", len(zsets), seen, summary)
	if !strings.Contains(summary, "zset/0 increments=") || !strings.Contains(summary, "zset/1 increments=") {
		t.Fatalf("summary %q", summary)
	}
	if !checkZsets(t, zsets) {
		t.Fatal("sorted-set history of a linearizable service is not linearizable")
	}
	if problems := w.zsetProblemsSeen(); len(problems) != 0 {
		t.Fatalf("problems %v", problems)
	}
}

func TestChaos_ZsetRetryThatAppliesAgainIsCaught(t *testing.T) {
	// Every fifth write is lost and answered on its retry, which — the ids forgotten —
	// adds the delta a second time.
	svc := newMemSortedSetService(func(n int) bool { return n%5 == 0 }, true)
	w := newZsetWorkload(2)
	ops := runZsetSteps(t, w, serveZsets(t, func(s *grpc.Server) { conclavev1grpc.RegisterSortedSetServiceServer(s, svc) }), 60, 1)
	if w.zsetRetried == 0 {
		t.Fatal("no write answered on its retry")
	}
	if checkZsets(t, ops) {
		t.Fatal("history of retries applying twice is linearizable")
	}
}

func TestChaos_NonIntegralZsetScoreIsAProblem(t *testing.T) {
	svc := newMemSortedSetService(func(int) bool { return false }, false)
	svc.half = true
	w := newZsetWorkload(1)
	runZsetSteps(t, w, serveZsets(t, func(s *grpc.Server) { conclavev1grpc.RegisterSortedSetServiceServer(s, svc) }), 10, 1)
	if problems := w.zsetProblemsSeen(); len(problems) == 0 {
		t.Fatal("scores of half points are not reported")
	} else {
		t.Logf("%q", problems)
	}
}

func TestChaos_RefusedZsetWritesAreLeftOut(t *testing.T) {
	w := newZsetWorkload(1)
	refusing := &refusingZsets{}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 40 {
		w.zsetStep(refusing, refusing, 0, i, rng)
	}
	if ops := w.rec.Operations(); len(ops) != 0 {
		t.Fatalf("refused operations recorded: %v", ops)
	}
	if refusing.writes == 0 || refusing.writes%2 != 0 {
		t.Fatalf("%d write calls, want two per write", refusing.writes)
	}
}

// refusingZsets refuses every call before the log (NO_LEADER).
type refusingZsets struct {
	conclavev1grpc.SortedSetServiceClient
	writes int
}

func (r *refusingZsets) IncrementScore(context.Context, *conclavev1.IncrementScoreRequest, ...grpc.CallOption) (*conclavev1.IncrementScoreResponse, error) {
	r.writes++
	return nil, reasonErr(codes.Unavailable, "NO_LEADER")
}

func (r *refusingZsets) Remove(context.Context, *conclavev1.SortedSetServiceRemoveRequest, ...grpc.CallOption) (*conclavev1.SortedSetServiceRemoveResponse, error) {
	r.writes++
	return nil, reasonErr(codes.Unavailable, "NO_LEADER")
}

func (r *refusingZsets) Score(context.Context, *conclavev1.ScoreRequest, ...grpc.CallOption) (*conclavev1.ScoreResponse, error) {
	return nil, reasonErr(codes.Unavailable, "NO_LEADER")
}

func (r *refusingZsets) Top(context.Context, *conclavev1.TopRequest, ...grpc.CallOption) (*conclavev1.TopResponse, error) {
	return nil, reasonErr(codes.Unavailable, "NO_LEADER")
}

// newFSMZsets serves the real SortedSetService over an fsmNode on loopback.
func newFSMZsets(t *testing.T, lost func(index uint64) bool) conclavev1grpc.SortedSetServiceClient {
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
	return conclavev1grpc.NewSortedSetServiceClient(conn)
}

// TestChaos_ZsetWorkloadAgainstTheStateMachine runs the workload's sorted-set steps
// through the real SortedSetService and state machine, with some answers lost, and
// checks the history with ZsetModel: the workload's requests are valid, the model and
// fsm/ agree on scores and on Top's order (ties by member descending), a set whose last
// member is removed starts again, and the state machine answers a retried request id
// with its first result.
func TestChaos_ZsetWorkloadAgainstTheStateMachine(t *testing.T) {
	w := newZsetWorkload(2)
	ops := runZsetSteps(t, w, newFSMZsets(t, func(i uint64) bool { return i%5 == 0 || i%11 == 0 }), 80, 2)
	seen := zsetKinds(t, ops)
	if w.zsetRetried == 0 {
		t.Fatal("no write answered on its retry")
	}
	ties := 0
	for _, op := range ops {
		if op.Input.(chaos.Input).Op != chaos.OpZsetTop {
			continue
		}
		var es []chaos.ZsetEntry
		if err := json.Unmarshal([]byte(op.Output.(chaos.Output).Value), &es); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(es); i++ {
			if es[i].Score == es[i-1].Score {
				ties++
				break
			}
		}
	}
	if ties == 0 {
		t.Fatal("no Top listed equal scores: the tie order is not checked")
	}
	t.Logf("%v; Tops with ties=%d; %s", seen, ties, w.zsetSummary(ops))
	if problems := w.zsetProblemsSeen(); len(problems) != 0 {
		t.Fatalf("problems %v", problems)
	}
	if !checkZsets(t, ops) {
		t.Fatal("the state machine's sorted-set history does not satisfy ZsetModel")
	}
}

func TestChaos_ZsetsFlag(t *testing.T) {
	f := newChaosCmd().Flags().Lookup("zsets")
	if f == nil || f.DefValue != "2" {
		t.Fatalf("--zsets flag %+v, want default 2 (on, as --limiters)", f)
	}
	if w := newZsetWorkload(0); len(w.boards) != 0 {
		t.Fatalf("boards %v with --zsets 0", w.boards)
	}
}
