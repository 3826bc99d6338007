package client

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeZsets is a SortedSetService over plain maps, sorting on every read. Like the
// server, it answers a write whose request id it has seen with the first answer. The
// first unavailable calls (of any method) fail with Unavailable before doing anything;
// the first lose writes are applied and then answered with Unavailable, as a write whose
// leader was lost. It records every request it receives.
type fakeZsets struct {
	conclavev1grpc.UnimplementedSortedSetServiceServer

	mu          sync.Mutex
	sets        map[string]*fakeZset
	arrivals    uint64
	answered    map[string]proto.Message // by request id
	unavailable int
	lose        int
	requests    []proto.Message
}

type fakeZset struct {
	tie     conclavev1.TieBreak
	ttlMs   int64
	scores  map[string]float64
	arrived map[string]uint64 // when the member reached its score
}

// enter records a request and returns the error the call is set to fail with.
func (f *fakeZsets) enter(req proto.Message) error {
	f.requests = append(f.requests, proto.Clone(req))
	if f.unavailable > 0 {
		f.unavailable--
		return status.Error(codes.Unavailable, "fake: no leader")
	}
	return nil
}

// write runs apply for a write with request id id, once per id.
func (f *fakeZsets) write(req proto.Message, id string, apply func() proto.Message) (proto.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(req); err != nil {
		return nil, err
	}
	resp, seen := f.answered[id]
	if !seen || id == "" {
		resp = apply()
		f.answered[id] = resp
	}
	if f.lose > 0 {
		f.lose--
		return nil, status.Error(codes.Unavailable, "fake: leadership lost")
	}
	return resp, nil
}

// set returns the set at key, creating it with tie and ttlMs when create.
func (f *fakeZsets) set(key []byte, create bool, tie conclavev1.TieBreak, ttlMs int64) *fakeZset {
	z := f.sets[string(key)]
	if z == nil && create {
		z = &fakeZset{tie: tie, ttlMs: ttlMs, scores: map[string]float64{}, arrived: map[string]uint64{}}
		f.sets[string(key)] = z
	}
	return z
}

func (f *fakeZsets) score(z *fakeZset, member string, score float64) {
	f.arrivals++
	z.scores[member], z.arrived[member] = score, f.arrivals
}

// ranked returns the set's members in order, best first when reverse, with ranks.
func (z *fakeZset) ranked(reverse bool, mode conclavev1.RankMode) []*conclavev1.RankedMember {
	var ms []string
	for m := range z.scores {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b string) int {
		if z.scores[a] != z.scores[b] {
			if z.scores[a] < z.scores[b] {
				return -1
			}
			return 1
		}
		switch z.tie {
		case conclavev1.TieBreak_TIE_BREAK_ARRIVAL: // the first to arrive is last ascending
			return int(z.arrived[b]) - int(z.arrived[a])
		case conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING:
			return int(z.arrived[a]) - int(z.arrived[b])
		}
		if a < b {
			return -1
		}
		return 1
	})
	if reverse {
		slices.Reverse(ms)
	}
	out := make([]*conclavev1.RankedMember, len(ms))
	dense := int64(0)
	for i, m := range ms {
		r := &conclavev1.RankedMember{Member: m, Score: z.scores[m], Rank: int64(i)}
		if i > 0 && z.scores[m] != out[i-1].GetScore() {
			dense++
		}
		switch {
		case mode == conclavev1.RankMode_RANK_MODE_DENSE:
			r.Rank = dense
		case mode == conclavev1.RankMode_RANK_MODE_COMPETITION && i > 0 && z.scores[m] == out[i-1].GetScore():
			r.Rank = out[i-1].GetRank()
		}
		out[i] = r
	}
	return out
}

func (f *fakeZsets) Add(_ context.Context, r *conclavev1.AddRequest) (*conclavev1.AddResponse, error) {
	resp, err := f.write(r, r.GetRequestId(), func() proto.Message {
		z := f.set(r.GetKey(), true, r.GetTieBreak(), r.GetTtlMs())
		resp := &conclavev1.AddResponse{}
		for _, sm := range r.GetMembers() {
			old, exists := z.scores[sm.GetMember()]
			score := sm.GetScore()
			if r.GetIncrement() {
				score += old
			}
			switch {
			case exists && (r.GetIfAbsent() || score == old ||
				r.GetOnlyGreater() && score <= old || r.GetOnlyLess() && score >= old):
				continue
			case !exists && r.GetIfPresent():
				continue
			case !exists:
				resp.Added++
			}
			resp.Changed++
			f.score(z, sm.GetMember(), score)
			if r.GetIncrement() {
				resp.Score = &score
			}
		}
		return resp
	})
	if err != nil {
		return nil, err
	}
	return resp.(*conclavev1.AddResponse), nil
}

func (f *fakeZsets) IncrementScore(_ context.Context, r *conclavev1.IncrementScoreRequest) (*conclavev1.IncrementScoreResponse, error) {
	resp, err := f.write(r, r.GetRequestId(), func() proto.Message {
		z := f.set(r.GetKey(), true, r.GetTieBreak(), r.GetTtlMs())
		f.score(z, r.GetMember(), z.scores[r.GetMember()]+r.GetDelta())
		return &conclavev1.IncrementScoreResponse{Score: z.scores[r.GetMember()]}
	})
	if err != nil {
		return nil, err
	}
	return resp.(*conclavev1.IncrementScoreResponse), nil
}

func (f *fakeZsets) Remove(_ context.Context, r *conclavev1.SortedSetServiceRemoveRequest) (*conclavev1.SortedSetServiceRemoveResponse, error) {
	resp, err := f.write(r, r.GetRequestId(), func() proto.Message {
		resp := &conclavev1.SortedSetServiceRemoveResponse{}
		if z := f.set(r.GetKey(), false, 0, 0); z != nil {
			for _, m := range r.GetMembers() {
				if _, ok := z.scores[m]; ok {
					delete(z.scores, m)
					resp.Removed++
				}
			}
		}
		return resp
	})
	if err != nil {
		return nil, err
	}
	return resp.(*conclavev1.SortedSetServiceRemoveResponse), nil
}

// read runs fn on the set at key (nil when absent) after recording the request.
func (f *fakeZsets) read(req proto.Message, key []byte, fn func(z *fakeZset)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(req); err != nil {
		return err
	}
	fn(f.set(key, false, 0, 0))
	return nil
}

func (f *fakeZsets) Cardinality(_ context.Context, r *conclavev1.CardinalityRequest) (*conclavev1.CardinalityResponse, error) {
	resp := &conclavev1.CardinalityResponse{}
	return resp, f.read(r, r.GetKey(), func(z *fakeZset) {
		if z != nil {
			resp.Count = int64(len(z.scores))
		}
	})
}

func (f *fakeZsets) Score(_ context.Context, r *conclavev1.ScoreRequest) (*conclavev1.ScoreResponse, error) {
	resp := &conclavev1.ScoreResponse{}
	return resp, f.read(r, r.GetKey(), func(z *fakeZset) {
		if z != nil {
			resp.Score, resp.Found = z.scores[r.GetMember()]
		}
	})
}

func (f *fakeZsets) Rank(_ context.Context, r *conclavev1.RankRequest) (*conclavev1.RankResponse, error) {
	resp := &conclavev1.RankResponse{}
	return resp, f.read(r, r.GetKey(), func(z *fakeZset) {
		if z == nil {
			return
		}
		for _, m := range z.ranked(r.GetReverse(), r.GetMode()) {
			if m.GetMember() == r.GetMember() {
				resp.Found, resp.Rank, resp.Score = true, m.GetRank(), m.GetScore()
			}
		}
	})
}

func (f *fakeZsets) Top(_ context.Context, r *conclavev1.TopRequest) (*conclavev1.TopResponse, error) {
	resp := &conclavev1.TopResponse{}
	return resp, f.read(r, r.GetKey(), func(z *fakeZset) {
		if z == nil {
			return
		}
		n := r.GetCount()
		if n == 0 {
			n = 10
		}
		ms := z.ranked(!r.GetLowest(), r.GetRankMode())
		resp.Members = ms[:min(int(n), len(ms))]
	})
}

func (f *fakeZsets) Around(_ context.Context, r *conclavev1.AroundRequest) (*conclavev1.AroundResponse, error) {
	resp := &conclavev1.AroundResponse{}
	return resp, f.read(r, r.GetKey(), func(z *fakeZset) {
		if z == nil {
			return
		}
		ms := z.ranked(r.GetReverse(), r.GetRankMode())
		i := slices.IndexFunc(ms, func(m *conclavev1.RankedMember) bool { return m.GetMember() == r.GetMember() })
		if i < 0 {
			return
		}
		n := int(r.GetCount())
		resp.Found, resp.Members = true, ms[max(i-n, 0):min(i+n+1, len(ms))]
	})
}

func (f *fakeZsets) setFail(unavailable, lose int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unavailable, f.lose = unavailable, lose
}

// received returns the requests received, of type T.
func received[T proto.Message](f *fakeZsets) []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []T
	for _, r := range f.requests {
		if t, ok := r.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// newZsetTestClient serves one fakeZsets on n in-process endpoints and returns a Client
// over them whose first endpoint is zs0.
func newZsetTestClient(t *testing.T, n int) (*Client, *fakeZsets) {
	t.Helper()
	f := &fakeZsets{sets: map[string]*fakeZset{}, answered: map[string]proto.Message{}}
	lis := map[string]*bufconn.Listener{}
	cfg := DefaultConfig()
	cfg.Endpoints = nil
	for i := range n {
		name := fmt.Sprintf("zs%d", i)
		l := bufconn.Listen(1 << 16)
		lis[name] = l
		srv := grpc.NewServer()
		conclavev1grpc.RegisterSortedSetServiceServer(srv, f)
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(srv.Stop)
		cfg.Endpoints = append(cfg.Endpoints, name)
	}
	cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return lis[addr].DialContext(ctx)
	})}
	cfg.RequestTimeout = 5 * time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.conn.current.Store(0)
	t.Cleanup(func() { _ = c.Close() })
	return c, f
}

// entries formats entries as "member=score#rank ...".
func entries(es []Entry) string {
	var s string
	for i, e := range es {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=%g#%d", e.Member, e.Score, e.Rank)
	}
	return s
}

func TestLeaderboard_SubmitKeepsTheBestScore(t *testing.T) {
	c, f := newZsetTestClient(t, 1)
	ctx := context.Background()
	b := c.Leaderboard("arcade")
	for i, tt := range []struct {
		member string
		score  float64
		want   bool
	}{
		{"ann", 100, true},
		{"ann", 90, false},  // worse: kept 100
		{"ann", 100, false}, // equal: kept, with its first arrival
		{"bob", 100, true},
		{"ann", 120, true},
	} {
		got, err := b.Submit(ctx, tt.member, tt.score)
		if err != nil || got != tt.want {
			t.Fatalf("Submit #%d (%s, %g) = %v, %v; want %v", i, tt.member, tt.score, got, err, tt.want)
		}
	}
	if e, found, err := b.RankOf(ctx, "ann"); err != nil || !found || e != (Entry{Member: "ann", Score: 120, Rank: 0}) {
		t.Fatalf("RankOf(ann) = %+v, %v, %v; want first with 120", e, found, err)
	}
	adds := received[*conclavev1.AddRequest](f)
	seen := map[string]bool{}
	for _, r := range adds {
		if string(r.GetKey()) != "arcade" || !r.GetOnlyGreater() || r.GetOnlyLess() || r.GetIncrement() ||
			r.GetTieBreak() != conclavev1.TieBreak_TIE_BREAK_ARRIVAL || r.GetTtlMs() != 0 || r.GetRequestId() == "" || seen[r.GetRequestId()] {
			t.Fatalf("add request = %v: want key arcade, only_greater, arrival ties, no TTL and a fresh request id", r)
		}
		seen[r.GetRequestId()] = true
	}
	if r := received[*conclavev1.RankRequest](f)[0]; !r.GetReverse() || r.GetConsistency() != conclavev1.Consistency_CONSISTENCY_UNSPECIFIED {
		t.Fatalf("rank request = %v: want reverse (highest first), linearizable", r)
	}
}

func TestLeaderboard_TopAroundAndRanks(t *testing.T) {
	c, f := newZsetTestClient(t, 1)
	ctx := context.Background()
	b := c.Leaderboard("board", WithRankMode(conclavev1.RankMode_RANK_MODE_COMPETITION), StaleReads())
	for _, s := range []struct {
		m string
		s float64
	}{{"ann", 50}, {"bob", 70}, {"cat", 70}, {"dan", 30}, {"eve", 90}} {
		if _, err := b.Submit(ctx, s.m, s.s); err != nil {
			t.Fatal(err)
		}
	}
	// bob reached 70 before cat: with arrival ties bob ranks ahead; competition ranks tie them.
	top, err := b.Top(ctx, 3)
	if got, want := entries(top), "eve=90#0 bob=70#1 cat=70#1"; err != nil || got != want {
		t.Fatalf("Top(3) = %s, %v; want %s", got, err, want)
	}
	around, err := b.Around(ctx, "ann", 1)
	if got, want := entries(around), "cat=70#1 ann=50#3 dan=30#4"; err != nil || got != want {
		t.Fatalf("Around(ann, 1) = %s, %v; want %s", got, err, want)
	}
	if e, found, err := b.RankOf(ctx, "cat"); err != nil || !found || e.Rank != 1 || e.Score != 70 {
		t.Fatalf("RankOf(cat) = %+v, %v, %v; want rank 1 (tied with bob)", e, found, err)
	}
	if e, found, err := b.RankOf(ctx, "zed"); err != nil || found || e.Member != "zed" {
		t.Fatalf("RankOf(zed) = %+v, %v, %v; want not found", e, found, err)
	}
	if es, err := b.Around(ctx, "zed", 2); err != nil || es != nil {
		t.Fatalf("Around(zed) = %v, %v; want nil", es, err)
	}
	if n, err := b.Len(ctx); err != nil || n != 5 {
		t.Fatalf("Len = %d, %v; want 5", n, err)
	}
	if n, err := b.Remove(ctx, "dan", "zed"); err != nil || n != 1 {
		t.Fatalf("Remove(dan, zed) = %d, %v; want 1", n, err)
	}
	tr := received[*conclavev1.TopRequest](f)[0]
	ar := received[*conclavev1.AroundRequest](f)[0]
	if tr.GetCount() != 3 || tr.GetLowest() || tr.GetRankMode() != conclavev1.RankMode_RANK_MODE_COMPETITION ||
		tr.GetConsistency() != conclavev1.Consistency_CONSISTENCY_STALE {
		t.Fatalf("top request = %v: want count 3, highest first, competition ranks, stale", tr)
	}
	if !ar.GetReverse() || ar.GetCount() != 1 || ar.GetRankMode() != conclavev1.RankMode_RANK_MODE_COMPETITION ||
		ar.GetConsistency() != conclavev1.Consistency_CONSISTENCY_STALE {
		t.Fatalf("around request = %v: want reverse, count 1, competition ranks, stale", ar)
	}
}

func TestLeaderboard_LowestFirst(t *testing.T) {
	c, f := newZsetTestClient(t, 1)
	ctx := context.Background()
	b := c.Leaderboard("100m", LowestFirst())
	for _, s := range []struct {
		m string
		s float64
	}{{"ann", 10.4}, {"bob", 9.9}, {"ann", 10.9}, {"cat", 9.9}, {"ann", 9.8}} {
		if _, err := b.Submit(ctx, s.m, s.s); err != nil {
			t.Fatal(err)
		}
	}
	top, err := b.Top(ctx, 0)
	if got, want := entries(top), "ann=9.8#0 bob=9.9#1 cat=9.9#2"; err != nil || got != want {
		t.Fatalf("Top = %s, %v; want %s (lowest first, bob's 9.9 first)", got, err, want)
	}
	if e, found, err := b.RankOf(ctx, "cat"); err != nil || !found || e.Rank != 2 {
		t.Fatalf("RankOf(cat) = %+v, %v, %v; want rank 2", e, found, err)
	}
	add := received[*conclavev1.AddRequest](f)[0]
	if add.GetOnlyGreater() || !add.GetOnlyLess() || add.GetTieBreak() != conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING {
		t.Fatalf("add request = %v: want only_less and ascending arrival ties", add)
	}
	if tr := received[*conclavev1.TopRequest](f)[0]; !tr.GetLowest() {
		t.Fatalf("top request = %v: want lowest", tr)
	}
	if rr := received[*conclavev1.RankRequest](f)[0]; rr.GetReverse() {
		t.Fatalf("rank request = %v: want ascending ranks", rr)
	}

	lex := c.Leaderboard("golf", LowestFirst(), WithTieBreak(conclavev1.TieBreak_TIE_BREAK_LEX))
	if _, err := lex.Submit(ctx, "x", 72); err != nil {
		t.Fatal(err)
	}
	if adds := received[*conclavev1.AddRequest](f); adds[len(adds)-1].GetTieBreak() != conclavev1.TieBreak_TIE_BREAK_LEX {
		t.Fatalf("add request = %v: want the tie-break asked for", adds[len(adds)-1])
	}
}

func TestLeaderboard_IncrementAppliedOnceAcrossFailover(t *testing.T) {
	c, f := newZsetTestClient(t, 3)
	ctx := context.Background()
	b := c.Leaderboard("points")
	// The first attempt is applied but its answer lost; the retry, on the next endpoint,
	// carries the same request id and gets the first answer.
	f.setFail(0, 1)
	score, err := b.Increment(ctx, "ann", 5)
	if err != nil || score != 5 {
		t.Fatalf("Increment = %g, %v; want 5 after one failover", score, err)
	}
	incs := received[*conclavev1.IncrementScoreRequest](f)
	if len(incs) != 2 || incs[0].GetRequestId() == "" || incs[0].GetRequestId() != incs[1].GetRequestId() {
		t.Fatalf("increment requests = %v: want two attempts sharing one request id", incs)
	}
	if c.Endpoint() != "zs1" {
		t.Fatalf("endpoint = %s, want zs1", c.Endpoint())
	}
	if score, err = b.Increment(ctx, "ann", -2.5); err != nil || score != 2.5 {
		t.Fatalf("second Increment = %g, %v; want 2.5", score, err)
	}

	// The same for Submit, and for the reads (which need no id).
	f.setFail(1, 1)
	if ok, err := b.Submit(ctx, "bob", 7); err != nil || !ok {
		t.Fatalf("Submit = %v, %v; want recorded", ok, err)
	}
	f.setFail(1, 0)
	if top, err := b.Top(ctx, 2); err != nil || entries(top) != "bob=7#0 ann=2.5#1" {
		t.Fatalf("Top = %s, %v", entries(top), err)
	}
}

func TestLeaderboard_Daily(t *testing.T) {
	c, f := newZsetTestClient(t, 1)
	ctx := context.Background()
	now := time.Date(2024, 3, 10, 22, 0, 0, 0, time.UTC)
	b := c.Leaderboard("daily", Daily(nil, time.Hour))
	b.now = func() time.Time { return now }
	if b.Key() != "daily:2024-03-10" {
		t.Fatalf("Key = %q, want daily:2024-03-10", b.Key())
	}
	if _, err := b.Submit(ctx, "ann", 10); err != nil {
		t.Fatal(err)
	}
	// Two hours left in the day, and an hour kept after it.
	if r := received[*conclavev1.AddRequest](f)[0]; string(r.GetKey()) != "daily:2024-03-10" || r.GetTtlMs() != (3*time.Hour).Milliseconds() {
		t.Fatalf("add request = %v: want today's key and a TTL of 3h", r)
	}

	now = now.Add(2*time.Hour + time.Minute) // the next day
	if _, err := b.Increment(ctx, "bob", 1); err != nil {
		t.Fatal(err)
	}
	if r := received[*conclavev1.IncrementScoreRequest](f)[0]; string(r.GetKey()) != "daily:2024-03-11" ||
		r.GetTtlMs() != (24*time.Hour-time.Minute+time.Hour).Milliseconds() {
		t.Fatalf("increment request = %v: want the new day's key and its TTL", r)
	}
	yesterday := b.At(now.Add(-24 * time.Hour))
	if top, err := yesterday.Top(ctx, 5); err != nil || entries(top) != "ann=10#0" {
		t.Fatalf("yesterday's Top = %s, %v; want ann alone", entries(top), err)
	}
	if top, err := b.Top(ctx, 5); err != nil || entries(top) != "bob=1#0" {
		t.Fatalf("today's Top = %s, %v; want bob alone", entries(top), err)
	}
	now = now.Add(2 * time.Hour) // yesterday's board has expired
	if _, err := yesterday.Submit(ctx, "late", 1); err == nil {
		t.Fatal("Submit to an expired day's board succeeded")
	}

	// In a time zone: the day is the zone's.
	tokyo := time.FixedZone("JST", 9*3600)
	j := c.Leaderboard("daily", Daily(tokyo, 0))
	j.now = func() time.Time { return time.Date(2024, 3, 10, 16, 0, 0, 0, time.UTC) } // 01:00 on the 11th in Tokyo
	if j.Key() != "daily:2024-03-11" {
		t.Fatalf("Key in JST = %q, want daily:2024-03-11", j.Key())
	}
	if c.Leaderboard("plain").At(now).Key() != "plain" {
		t.Fatal("At changed the key of a board that is not daily")
	}
}

func TestLeaderboard_ExpireAfter(t *testing.T) {
	c, f := newZsetTestClient(t, 1)
	b := c.Leaderboard("weekly", ExpireAfter(7*24*time.Hour+time.Microsecond))
	if _, err := b.Increment(context.Background(), "ann", 1); err != nil {
		t.Fatal(err)
	}
	if r := received[*conclavev1.IncrementScoreRequest](f)[0]; r.GetTtlMs() != (7*24*time.Hour).Milliseconds()+1 {
		t.Fatalf("increment request = %v: want the TTL rounded up to a whole millisecond", r)
	}
}

func TestClient_SortedSetRetryPolicy(t *testing.T) {
	ctx := context.Background()
	key := []byte("k")
	reads := []struct {
		name string
		call func(*Client) error
	}{
		{"score", func(c *Client) error {
			_, err := c.SortedSets().Score(ctx, &conclavev1.ScoreRequest{Key: key, Member: "m"})
			return err
		}},
		{"cardinality", func(c *Client) error {
			_, err := c.SortedSets().Cardinality(ctx, &conclavev1.CardinalityRequest{Key: key})
			return err
		}},
		{"rank", func(c *Client) error {
			_, err := c.SortedSets().Rank(ctx, &conclavev1.RankRequest{Key: key, Member: "m"})
			return err
		}},
		{"top", func(c *Client) error {
			_, err := c.SortedSets().Top(ctx, &conclavev1.TopRequest{Key: key})
			return err
		}},
		{"around", func(c *Client) error {
			_, err := c.SortedSets().Around(ctx, &conclavev1.AroundRequest{Key: key, Member: "m"})
			return err
		}},
		{"remove (request id)", func(c *Client) error {
			_, err := c.SortedSets().Remove(ctx, &conclavev1.SortedSetServiceRemoveRequest{Key: key, Members: []string{"m"}})
			return err
		}},
	}
	for _, tt := range reads {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newZsetTestClient(t, 2)
			f.setFail(1, 0)
			if err := tt.call(c); err != nil {
				t.Fatalf("call after one Unavailable = %v, want it retried on the next endpoint", err)
			}
		})
	}
	for _, m := range []string{
		conclavev1grpc.SortedSetService_Add_FullMethodName,
		conclavev1grpc.SortedSetService_IncrementScore_FullMethodName,
		conclavev1grpc.SortedSetService_Remove_FullMethodName,
		conclavev1grpc.SortedSetService_RemoveRange_FullMethodName,
		conclavev1grpc.SortedSetService_PopMin_FullMethodName,
		conclavev1grpc.SortedSetService_PopMax_FullMethodName,
		conclavev1grpc.SortedSetService_UnionStore_FullMethodName,
		conclavev1grpc.SortedSetService_IntersectStore_FullMethodName,
		conclavev1grpc.SortedSetService_DiffStore_FullMethodName,
	} {
		if safeToRepeat[m] {
			t.Errorf("%s is in safeToRepeat: a write is safe only with its request id", m)
		}
	}
	for _, req := range []proto.Message{
		&conclavev1.AddRequest{}, &conclavev1.IncrementScoreRequest{}, &conclavev1.SortedSetServiceRemoveRequest{},
		&conclavev1.RemoveRangeRequest{}, &conclavev1.PopMinRequest{}, &conclavev1.PopMaxRequest{},
		&conclavev1.UnionStoreRequest{}, &conclavev1.IntersectStoreRequest{}, &conclavev1.DiffStoreRequest{},
	} {
		if requestID(withRequestID(req)) == "" {
			t.Errorf("%T: withRequestID filled no request_id", req)
		}
	}
}
