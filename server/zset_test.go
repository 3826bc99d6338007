package server

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

func scored(pairs ...any) []*conclavev1.ScoredMember {
	var out []*conclavev1.ScoredMember
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, &conclavev1.ScoredMember{Member: pairs[i].(string), Score: float64(pairs[i+1].(int))})
	}
	return out
}

func rankedNames(ms []*conclavev1.RankedMember) string {
	var names []string
	for _, m := range ms {
		names = append(names, m.GetMember())
	}
	return strings.Join(names, " ")
}

// TestSortedSet_Leaderboard drives every SortedSetService method once through gRPC.
func TestSortedSet_Leaderboard(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	zc := conclavev1grpc.NewSortedSetServiceClient(ts.conn)
	key := []byte("daily")

	add, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: scored("ann", 300, "bob", 200, "cat", 200, "dan", 100), TtlMs: 86_400_000})
	if err != nil || add.GetAdded() != 4 || add.GetHeader().GetRevision() == 0 {
		t.Fatalf("Add: %v %v", add, err)
	}
	inc, err := zc.IncrementScore(ctx, &conclavev1.IncrementScoreRequest{Key: key, Member: "dan", Delta: 150})
	if err != nil || inc.GetScore() != 250 {
		t.Fatalf("IncrementScore: %v %v", inc, err)
	}
	top, err := zc.Top(ctx, &conclavev1.TopRequest{Key: key, Count: 3, RankMode: conclavev1.RankMode_RANK_MODE_COMPETITION})
	if err != nil || rankedNames(top.GetMembers()) != "ann dan cat" || top.GetMembers()[2].GetRank() != 2 {
		t.Fatalf("Top: %v %v", top, err)
	}
	rank, err := zc.Rank(ctx, &conclavev1.RankRequest{Key: key, Member: "bob", Reverse: true, Mode: conclavev1.RankMode_RANK_MODE_DENSE})
	if err != nil || !rank.GetFound() || rank.GetRank() != 2 || rank.GetScore() != 200 {
		t.Fatalf("Rank: %v %v", rank, err)
	}
	around, err := zc.Around(ctx, &conclavev1.AroundRequest{Key: key, Member: "dan", Count: 1, Reverse: true})
	if err != nil || rankedNames(around.GetMembers()) != "ann dan cat" {
		t.Fatalf("Around: %v %v", around, err)
	}
	score, err := zc.Score(ctx, &conclavev1.ScoreRequest{Key: key, Member: "cat", Consistency: conclavev1.Consistency_CONSISTENCY_STALE})
	if err != nil || !score.GetFound() || score.GetScore() != 200 {
		t.Fatalf("Score: %v %v", score, err)
	}
	ms, err := zc.MultiScore(ctx, &conclavev1.MultiScoreRequest{Key: key, Members: []string{"ann", "zed"}})
	if err != nil || len(ms.GetScores()) != 2 || !ms.GetScores()[0].GetFound() || ms.GetScores()[1].GetFound() {
		t.Fatalf("MultiScore: %v %v", ms, err)
	}
	card, err := zc.Cardinality(ctx, &conclavev1.CardinalityRequest{Key: key})
	if err != nil || card.GetCount() != 4 {
		t.Fatalf("Cardinality: %v %v", card, err)
	}
	count, err := zc.Count(ctx, &conclavev1.CountRequest{Key: key, Interval: &conclavev1.CountRequest_Score{Score: &conclavev1.ScoreInterval{Min: &conclavev1.ScoreBound{Score: 200, Exclusive: true}}}})
	if err != nil || count.GetCount() != 2 {
		t.Fatalf("Count: %v %v", count, err)
	}
	// Page through everyone, two at a time.
	var all []string
	for tok := ""; ; {
		r, err := zc.Range(ctx, &conclavev1.RangeRequest{Key: key, Reverse: true, Limit: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, rankedNames(r.GetMembers()))
		if tok = r.GetNextPageToken(); tok == "" {
			break
		}
	}
	if strings.Join(all, "|") != "ann dan|cat bob" {
		t.Fatalf("pages %q", all)
	}
	if _, err := zc.UnionStore(ctx, &conclavev1.UnionStoreRequest{Destination: []byte("weekly"), Keys: [][]byte{key, []byte("other")}}); err != nil {
		t.Fatal(err)
	}
	inter, err := zc.IntersectStore(ctx, &conclavev1.IntersectStoreRequest{Destination: []byte("both"), Keys: [][]byte{key, []byte("weekly")}, Aggregate: conclavev1.Aggregate_AGGREGATE_MAX})
	if err != nil || inter.GetCount() != 4 {
		t.Fatalf("IntersectStore: %v %v", inter, err)
	}
	diff, err := zc.DiffStore(ctx, &conclavev1.DiffStoreRequest{Destination: []byte("none"), Keys: [][]byte{key, []byte("weekly")}})
	if err != nil || diff.GetCount() != 0 {
		t.Fatalf("DiffStore: %v %v", diff, err)
	}
	rr, err := zc.RemoveRange(ctx, &conclavev1.RemoveRangeRequest{Key: []byte("weekly"), Interval: &conclavev1.RemoveRangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: 0, Stop: 1}}})
	if err != nil || rr.GetRemoved() != 2 {
		t.Fatalf("RemoveRange: %v %v", rr, err)
	}
	pop, err := zc.PopMax(ctx, &conclavev1.PopMaxRequest{Key: key})
	if err != nil || len(pop.GetMembers()) != 1 || pop.GetMembers()[0].GetMember() != "ann" {
		t.Fatalf("PopMax: %v %v", pop, err)
	}
	rem, err := zc.Remove(ctx, &conclavev1.SortedSetServiceRemoveRequest{Key: key, Members: []string{"bob", "zed"}})
	if err != nil || rem.GetRemoved() != 1 {
		t.Fatalf("Remove: %v %v", rem, err)
	}
	// The keyspace sees the set: a TTL, and a string read is refused with the rule.
	ttl, err := ts.kv.TTL(ctx, &conclavev1.TTLRequest{Key: key})
	if err != nil || ttl.GetTtlMs() <= 0 {
		t.Fatalf("TTL: %v %v", ttl, err)
	}
	_, err = ts.kv.Get(ctx, &conclavev1.GetRequest{Key: key})
	wantCode(t, err, codes.FailedPrecondition, "WRONG_TYPE")
	_, err = zc.Add(ctx, &conclavev1.AddRequest{Key: []byte("str"), Members: scored("x", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("s"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	_, err = zc.Range(ctx, &conclavev1.RangeRequest{Key: []byte("s")})
	wantCode(t, err, codes.FailedPrecondition, "WRONG_TYPE")
}

// TestSortedSet_PopWait: a waiting PopMin is answered by a later Add, writes nothing to
// the log while it waits, and times out empty.
func TestSortedSet_PopWait(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	zc := conclavev1grpc.NewSortedSetServiceClient(ts.conn)
	key := []byte("jobs")

	got := make(chan *conclavev1.PopMinResponse, 1)
	errs := make(chan error, 1)
	before, reads := ts.node.applies.Load(), ts.node.reads.Load()
	go func() {
		r, err := zc.PopMin(ctx, &conclavev1.PopMinRequest{Key: key, WaitMs: 20_000, RequestId: "pop-1"})
		got <- r
		errs <- err
	}()
	// The waiter is parked once it has looked (a stale read). With a request id it first
	// proposed one pop (it might have been a retry); nothing more while it waits.
	eventually(t, 10*time.Second, "the waiter to look at the set", func() bool { return ts.node.reads.Load() > reads })
	if n := ts.node.applies.Load() - before; n != 1 {
		t.Fatalf("an idle waiter applied %d commands; want its first pop only", n)
	}
	if _, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: scored("job-2", 2, "job-1", 1)}); err != nil {
		t.Fatal(err)
	}
	r, err := <-got, <-errs
	if err != nil || len(r.GetMembers()) != 1 || r.GetMembers()[0].GetMember() != "job-1" {
		t.Fatalf("PopMin: %v %v", r, err)
	}
	// A retry under the same request id answers the same member.
	r, err = zc.PopMin(ctx, &conclavev1.PopMinRequest{Key: key, WaitMs: 1000, RequestId: "pop-1"})
	if err != nil || len(r.GetMembers()) != 1 || r.GetMembers()[0].GetMember() != "job-1" {
		t.Fatalf("retried PopMin: %v %v", r, err)
	}
	r, err = zc.PopMin(ctx, &conclavev1.PopMinRequest{Key: key, Count: 5})
	if err != nil || len(r.GetMembers()) != 1 {
		t.Fatalf("PopMin count 5: %v %v", r, err)
	}
	r, err = zc.PopMin(ctx, &conclavev1.PopMinRequest{Key: key, WaitMs: 50})
	if err != nil || len(r.GetMembers()) != 0 {
		t.Fatalf("PopMin that times out: %v %v", r, err)
	}
}

func TestSortedSet_BadInput(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	zc := conclavev1grpc.NewSortedSetServiceClient(ts.conn)
	key := []byte("k")
	long := strings.Repeat("m", 4097)
	for _, tt := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"add no key", func() error { _, err := zc.Add(ctx, &conclavev1.AddRequest{Members: scored("a", 1)}); return err }, "key"},
		{"add no members", func() error { _, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key}); return err }, "members"},
		{"add NaN", func() error {
			_, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: []*conclavev1.ScoredMember{{Member: "a", Score: math.NaN()}}})
			return err
		}, "members[0].score"},
		{"add member too long", func() error {
			_, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: []*conclavev1.ScoredMember{{Member: long}}})
			return err
		}, "members[0].member"},
		{"add NX XX", func() error {
			_, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: scored("a", 1), IfAbsent: true, IfPresent: true})
			return err
		}, "if_present"},
		{"add GT LT", func() error {
			_, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: scored("a", 1), OnlyGreater: true, OnlyLess: true})
			return err
		}, "only_less"},
		{"add INCR two", func() error {
			_, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: scored("a", 1, "b", 2), Increment: true})
			return err
		}, "members"},
		{"add bad tie break", func() error {
			_, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: scored("a", 1), TieBreak: 9})
			return err
		}, "tie_break"},
		{"incr NaN", func() error {
			_, err := zc.IncrementScore(ctx, &conclavev1.IncrementScoreRequest{Key: key, Delta: math.NaN()})
			return err
		}, "delta"},
		{"range limit", func() error { _, err := zc.Range(ctx, &conclavev1.RangeRequest{Key: key, Limit: 10_001}); return err }, "limit"},
		{"range offset", func() error { _, err := zc.Range(ctx, &conclavev1.RangeRequest{Key: key, Offset: -1}); return err }, "offset"},
		{"range token", func() error {
			_, err := zc.Range(ctx, &conclavev1.RangeRequest{Key: key, PageToken: "nope"})
			return err
		}, "page_token"},
		{"range NaN bound", func() error {
			_, err := zc.Range(ctx, &conclavev1.RangeRequest{Key: key, Interval: &conclavev1.RangeRequest_Score{Score: &conclavev1.ScoreInterval{Max: &conclavev1.ScoreBound{Score: math.NaN()}}}})
			return err
		}, "score.max.score"},
		{"rank mode", func() error { _, err := zc.Rank(ctx, &conclavev1.RankRequest{Key: key, Mode: 7}); return err }, "mode"},
		{"around count", func() error { _, err := zc.Around(ctx, &conclavev1.AroundRequest{Key: key, Count: 1001}); return err }, "count"},
		{"top count", func() error { _, err := zc.Top(ctx, &conclavev1.TopRequest{Key: key, Count: -1}); return err }, "count"},
		{"remove none", func() error {
			_, err := zc.Remove(ctx, &conclavev1.SortedSetServiceRemoveRequest{Key: key})
			return err
		}, "members"},
		{"remove range without interval", func() error { _, err := zc.RemoveRange(ctx, &conclavev1.RemoveRangeRequest{Key: key}); return err }, "interval"},
		{"pop wait too long", func() error {
			_, err := zc.PopMin(ctx, &conclavev1.PopMinRequest{Key: key, WaitMs: MaxPopWaitMs + 1})
			return err
		}, "wait_ms"},
		{"pop count", func() error { _, err := zc.PopMax(ctx, &conclavev1.PopMaxRequest{Key: key, Count: -1}); return err }, "count"},
		{"store weights", func() error {
			_, err := zc.UnionStore(ctx, &conclavev1.UnionStoreRequest{Destination: key, Keys: [][]byte{key}, Weights: []float64{1, 2}})
			return err
		}, "weights"},
		{"store no keys", func() error { _, err := zc.DiffStore(ctx, &conclavev1.DiffStoreRequest{Destination: key}); return err }, "keys"},
		{"store aggregate", func() error {
			_, err := zc.IntersectStore(ctx, &conclavev1.IntersectStoreRequest{Destination: key, Keys: [][]byte{key}, Aggregate: 5})
			return err
		}, "aggregate"},
	} {
		t.Run(tt.name, func(t *testing.T) { wantField(t, tt.call(), tt.field) })
	}
}

// TestSortedSet_PopWaitRetryAfterEmptying: a waiting pop whose answer was lost is
// retried under its request id after it emptied the set; the retry must return what the
// first attempt popped (from the dedup table), not wait on the empty set.
func TestSortedSet_PopWaitRetryAfterEmptying(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	zc := conclavev1grpc.NewSortedSetServiceClient(ts.conn)
	key := []byte("jobs")
	if _, err := zc.Add(ctx, &conclavev1.AddRequest{Key: key, Members: scored("job-1", 1)}); err != nil {
		t.Fatal(err)
	}
	for _, req := range []*conclavev1.PopMaxRequest{
		{Key: key, WaitMs: 60_000, RequestId: "pop-1"},
		{Key: key, WaitMs: 60_000, RequestId: "pop-1"}, // the retry
	} {
		r, err := zc.PopMax(ctx, req)
		if err != nil || len(r.GetMembers()) != 1 || r.GetMembers()[0].GetMember() != "job-1" {
			t.Fatalf("PopMax %v = %v, %v; want job-1", req, r, err)
		}
	}
}

// laggingNode applies to the leader's machine but reads a follower's, which has not
// caught up; its Changed fires when the test says the follower applied an entry.
type laggingNode struct {
	*localNode
	follower *fsm.Machine
	mu       sync.Mutex
	changed  chan struct{}
}

func (n *laggingNode) Read(ctx context.Context, c conclavev1.Consistency, fn func(v *fsm.View)) (*conclavev1.ResponseHeader, error) {
	n.reads.Add(1)
	n.follower.Read(0, fn)
	return &conclavev1.ResponseHeader{NodeId: "follower"}, nil
}

func (n *laggingNode) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

func (n *laggingNode) followerApplied() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.changed)
	n.changed = make(chan struct{})
}

// TestSortedSet_PopWaitOnLaggingFollower: a waiter on a follower that still shows a
// member another popper took proposes one pop, finds it empty, and then writes nothing
// more while the follower catches up.
func TestSortedSet_PopWaitOnLaggingFollower(t *testing.T) {
	leader := newLocalNode()
	add := &fsmv1.Command{Op: &fsmv1.Command_ZsetAdd{ZsetAdd: &conclavev1.AddRequest{Key: []byte("q"), Members: scored("a", 1)}}}
	ctx := testContext(t)
	if _, err := leader.Apply(ctx, add); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Apply(ctx, &fsmv1.Command{Op: &fsmv1.Command_ZsetPop{ZsetPop: &fsmv1.ZsetPop{Key: []byte("q")}}}); err != nil {
		t.Fatal(err)
	}
	follower := fsm.New()
	follower.ApplyCommand(1, add) // the add, not yet the other pop
	n := &laggingNode{localNode: leader, follower: follower, changed: make(chan struct{})}
	s := &sortedSetService{node: n}
	before := leader.applies.Load()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := s.PopMin(ctx, &conclavev1.PopMinRequest{Key: []byte("q"), WaitMs: 60_000})
		done <- err
	}()
	// The follower applies 20 entries older than the other pop. The waiter looks once as
	// it starts, then once after each: its i-th look comes before the i-th apply.
	for i := range int64(20) {
		eventually(t, 10*time.Second, "the waiter to look again", func() bool { return n.reads.Load() > i })
		n.followerApplied()
	}
	eventually(t, 10*time.Second, "the waiter to look a last time", func() bool { return n.reads.Load() > 20 })
	cancel()
	<-done
	if got := leader.applies.Load() - before; got != 1 {
		t.Fatalf("the waiter proposed %d pops; want 1", got)
	}
}
