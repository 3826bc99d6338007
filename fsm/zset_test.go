package fsm_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// zadd builds an Add of "member score" pairs, e.g. zadd("k", "a", 1, "b", 2).
func zadd(key string, pairs ...any) *conclavev1.AddRequest {
	req := &conclavev1.AddRequest{Key: []byte(key)}
	for i := 0; i < len(pairs); i += 2 {
		req.Members = append(req.Members, &conclavev1.ScoredMember{Member: pairs[i].(string), Score: toFloat(pairs[i+1])})
	}
	return req
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	panic(fmt.Sprintf("score %T", v))
}

func with(req *conclavev1.AddRequest, f func(*conclavev1.AddRequest)) *conclavev1.AddRequest {
	f(req)
	return req
}

func zincr(key, member string, delta float64) *conclavev1.IncrementScoreRequest {
	return &conclavev1.IncrementScoreRequest{Key: []byte(key), Member: member, Delta: delta}
}

func scoreIv(min, max *conclavev1.ScoreBound) *conclavev1.ScoreInterval {
	return &conclavev1.ScoreInterval{Min: min, Max: max}
}

func incl(f float64) *conclavev1.ScoreBound { return &conclavev1.ScoreBound{Score: f} }
func excl(f float64) *conclavev1.ScoreBound { return &conclavev1.ScoreBound{Score: f, Exclusive: true} }

func lexIv(min, max *conclavev1.LexBound) *conclavev1.LexInterval {
	return &conclavev1.LexInterval{Min: min, Max: max}
}

func lexIncl(m string) *conclavev1.LexBound { return &conclavev1.LexBound{Member: m} }
func lexExcl(m string) *conclavev1.LexBound { return &conclavev1.LexBound{Member: m, Exclusive: true} }

// members renders ranked members as "member:score@rank …".
func members[M interface {
	GetMember() string
	GetScore() float64
}](ms []M) string {
	var parts []string
	for _, m := range ms {
		p := fmt.Sprintf("%s:%v", m.GetMember(), m.GetScore())
		if r, ok := any(m).(*conclavev1.RankedMember); ok {
			p += fmt.Sprintf("@%d", r.GetRank())
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// zrange reads a Range at now, failing the test on an error.
func zrange(t *testing.T, m *fsm.Machine, req *conclavev1.RangeRequest) *conclavev1.RangeResponse {
	t.Helper()
	var resp *conclavev1.RangeResponse
	var err error
	m.Read(m.Clock(), func(v *fsm.View) { resp, err = v.ZsetRange(req) })
	if err != nil {
		t.Fatalf("ZsetRange(%v): %v", req, err)
	}
	return resp
}

// all lists every member of key in ascending order.
func all(t *testing.T, m *fsm.Machine, key string) string {
	t.Helper()
	return members(zrange(t, m, &conclavev1.RangeRequest{Key: []byte(key)}).GetMembers())
}

func TestZset_AddFlags(t *testing.T) {
	m := fsm.New()
	res := run(t, m, step{index: 1, now: t0, op: zadd("z", "a", 1, "b", 2)})
	if r := res.GetZsetAdd(); r.GetAdded() != 2 || r.GetChanged() != 2 || r.Score != nil {
		t.Fatalf("add = %v", r)
	}
	tests := []struct {
		name    string
		req     *conclavev1.AddRequest
		added   int64
		changed int64
		score   *float64 // increment's answer
		want    string   // the set afterwards
	}{
		{"same score changes nothing", zadd("z", "a", 1), 0, 0, nil, "a:1@0 b:2@1"},
		{"new score", zadd("z", "a", 3), 0, 1, nil, "b:2@0 a:3@1"},
		{"NX skips existing, adds new", with(zadd("z", "a", 9, "c", 0), func(r *conclavev1.AddRequest) { r.IfAbsent = true }), 1, 1, nil, "c:0@0 b:2@1 a:3@2"},
		{"XX skips new, updates existing", with(zadd("z", "d", 9, "c", 5), func(r *conclavev1.AddRequest) { r.IfPresent = true }), 0, 1, nil, "b:2@0 a:3@1 c:5@2"},
		{"GT updates only upwards, still adds", with(zadd("z", "a", 1, "b", 4, "e", -1), func(r *conclavev1.AddRequest) { r.OnlyGreater = true }), 1, 2, nil, "e:-1@0 a:3@1 b:4@2 c:5@3"},
		{"LT updates only downwards", with(zadd("z", "a", 7, "c", 0), func(r *conclavev1.AddRequest) { r.OnlyLess = true }), 0, 1, nil, "e:-1@0 c:0@1 a:3@2 b:4@3"},
		{"INCR returns the new score", with(zadd("z", "a", 2.5), func(r *conclavev1.AddRequest) { r.Increment = true }), 0, 1, ptr(5.5), "e:-1@0 c:0@1 b:4@2 a:5.5@3"},
		{"INCR of a new member starts at 0", with(zadd("z", "f", -2), func(r *conclavev1.AddRequest) { r.Increment = true }), 1, 1, ptr(-2.0), "f:-2@0 e:-1@1 c:0@2 b:4@3 a:5.5@4"},
		{"INCR NX on an existing member: no score", with(zadd("z", "a", 1), func(r *conclavev1.AddRequest) { r.Increment, r.IfAbsent = true, true }), 0, 0, nil, "f:-2@0 e:-1@1 c:0@2 b:4@3 a:5.5@4"},
		{"INCR XX on a new member: no score", with(zadd("z", "g", 1), func(r *conclavev1.AddRequest) { r.Increment, r.IfPresent = true, true }), 0, 0, nil, "f:-2@0 e:-1@1 c:0@2 b:4@3 a:5.5@4"},
		{"INCR GT downwards: no score", with(zadd("z", "a", -1), func(r *conclavev1.AddRequest) { r.Increment, r.OnlyGreater = true, true }), 0, 0, nil, "f:-2@0 e:-1@1 c:0@2 b:4@3 a:5.5@4"},
		{"INCR by 0 answers the score", with(zadd("z", "a", 0), func(r *conclavev1.AddRequest) { r.Increment = true }), 0, 0, ptr(5.5), "f:-2@0 e:-1@1 c:0@2 b:4@3 a:5.5@4"},
		{"infinities and -0", zadd("z", "f", math.Inf(-1), "a", math.Inf(1), "e", math.Copysign(0, -1)), 0, 3, nil, "f:-Inf@0 c:0@1 e:0@2 b:4@3 a:+Inf@4"},
	}
	index := uint64(1)
	for _, tc := range tests {
		index++
		before := get(m, t0, "z")
		res := run(t, m, step{index: index, now: t0, op: tc.req})
		r := res.GetZsetAdd()
		if r.GetAdded() != tc.added || r.GetChanged() != tc.changed {
			t.Errorf("%s: added %d changed %d, want %d %d", tc.name, r.GetAdded(), r.GetChanged(), tc.added, tc.changed)
		}
		if (r.Score == nil) != (tc.score == nil) || tc.score != nil && r.GetScore() != *tc.score {
			t.Errorf("%s: score %v, want %v", tc.name, r.Score, tc.score)
		}
		if got := all(t, m, "z"); got != tc.want {
			t.Errorf("%s: set = %s, want %s", tc.name, got, tc.want)
		}
		// Only a change makes a revision.
		after := get(m, t0, "z")
		if tc.changed == 0 && after.GetModRevision() != before.GetModRevision() || tc.changed > 0 && after.GetModRevision() != index {
			t.Errorf("%s: mod_revision %d (was %d)", tc.name, after.GetModRevision(), before.GetModRevision())
		}
	}

	bad := []struct {
		name string
		req  proto.Message
		err  error
	}{
		{"NX and XX", with(zadd("z", "a", 1), func(r *conclavev1.AddRequest) { r.IfAbsent, r.IfPresent = true, true }), fsm.ErrInvalidArgument},
		{"GT and LT", with(zadd("z", "a", 1), func(r *conclavev1.AddRequest) { r.OnlyGreater, r.OnlyLess = true, true }), fsm.ErrInvalidArgument},
		{"NX and GT", with(zadd("z", "a", 1), func(r *conclavev1.AddRequest) { r.IfAbsent, r.OnlyGreater = true, true }), fsm.ErrInvalidArgument},
		{"INCR with two members", with(zadd("z", "a", 1, "b", 1), func(r *conclavev1.AddRequest) { r.Increment = true }), fsm.ErrInvalidArgument},
		{"no members", zadd("z"), fsm.ErrInvalidArgument},
		{"NaN score", zadd("z", "new", 1, "a", math.NaN()), fsm.ErrInvalidArgument},
		{"empty key", zadd("", "a", 1), fsm.ErrInvalidArgument},
		{"INCR to NaN", with(zadd("z", "a", math.Inf(-1)), func(r *conclavev1.AddRequest) { r.Increment = true }), fsm.ErrOutOfRange},
		{"ZINCRBY to NaN", zincr("z", "a", math.Inf(-1)), fsm.ErrOutOfRange},
		{"ZINCRBY by NaN", zincr("z", "a", math.NaN()), fsm.ErrInvalidArgument},
		{"negative TTL", with(zadd("new", "a", 1), func(r *conclavev1.AddRequest) { r.TtlMs = -1 }), fsm.ErrInvalidArgument},
	}
	for _, tc := range bad {
		index++
		t.Run(tc.name, func(t *testing.T) { run(t, m, step{index: index, now: t0, op: tc.req, err: tc.err}) })
	}
}

func ptr[T any](v T) *T { return &v }

// board is a→10 b→20 c→20 d→30 e→30 f→40 at key "b".
func board(t *testing.T) *fsm.Machine {
	m := fsm.New()
	run(t, m, step{index: 1, now: t0, op: zadd("b", "a", 10, "b", 20, "c", 20, "d", 30, "e", 30, "f", 40)})
	return m
}

func TestZset_RankModes(t *testing.T) {
	m := board(t)
	want := map[conclavev1.RankMode][2]string{ // ascending, descending: ranks of a..f
		conclavev1.RankMode_RANK_MODE_ORDINAL:     {"0 1 2 3 4 5", "5 4 3 2 1 0"},
		conclavev1.RankMode_RANK_MODE_UNSPECIFIED: {"0 1 2 3 4 5", "5 4 3 2 1 0"},
		conclavev1.RankMode_RANK_MODE_DENSE:       {"0 1 1 2 2 3", "3 2 2 1 1 0"},
		conclavev1.RankMode_RANK_MODE_COMPETITION: {"0 1 1 3 3 5", "5 3 3 1 1 0"},
	}
	for mode, w := range want {
		for dir, reverse := range []bool{false, true} {
			var ranks []string
			m.Read(t0, func(v *fsm.View) {
				for _, member := range []string{"a", "b", "c", "d", "e", "f"} {
					r, err := v.ZsetRank(&conclavev1.RankRequest{Key: []byte("b"), Member: member, Reverse: reverse, Mode: mode})
					if err != nil || !r.GetFound() {
						t.Fatalf("rank %s: %v %v", member, r, err)
					}
					ranks = append(ranks, fmt.Sprint(r.GetRank()))
				}
			})
			if got := strings.Join(ranks, " "); got != w[dir] {
				t.Errorf("%v reverse=%v: ranks %s, want %s", mode, reverse, got, w[dir])
			}
			// A Range reports the same ranks, whichever page it starts on.
			for _, limit := range []int64{1, 2, 6} {
				var got []string
				for tok := ""; ; {
					r := zrange(t, m, &conclavev1.RangeRequest{Key: []byte("b"), Reverse: reverse, RankMode: mode, Limit: limit, PageToken: tok})
					for _, rm := range r.GetMembers() {
						got = append(got, rm.GetMember()+"="+fmt.Sprint(rm.GetRank()))
					}
					if tok = r.GetNextPageToken(); tok == "" {
						break
					}
				}
				byMember := map[string]string{}
				for _, g := range got {
					byMember[g[:1]] = g[2:]
				}
				var ordered []string
				for _, member := range []string{"a", "b", "c", "d", "e", "f"} {
					ordered = append(ordered, byMember[member])
				}
				if strings.Join(ordered, " ") != w[dir] || len(got) != 6 {
					t.Errorf("%v reverse=%v limit %d: range %v, want ranks %s", mode, reverse, limit, got, w[dir])
				}
			}
		}
	}
	m.Read(t0, func(v *fsm.View) {
		if r, err := v.ZsetRank(&conclavev1.RankRequest{Key: []byte("b"), Member: "zz"}); err != nil || r.GetFound() {
			t.Errorf("rank of a missing member: %v %v", r, err)
		}
		if r, err := v.ZsetRank(&conclavev1.RankRequest{Key: []byte("nope"), Member: "a"}); err != nil || r.GetFound() {
			t.Errorf("rank in a missing key: %v %v", r, err)
		}
	})
}

func TestZset_Range(t *testing.T) {
	m := board(t)
	key := []byte("b")
	rank := func(a, b int64) *conclavev1.RangeRequest {
		return &conclavev1.RangeRequest{Key: key, Interval: &conclavev1.RangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: a, Stop: b}}}
	}
	score := func(iv *conclavev1.ScoreInterval) *conclavev1.RangeRequest {
		return &conclavev1.RangeRequest{Key: key, Interval: &conclavev1.RangeRequest_Score{Score: iv}}
	}
	rev := func(r *conclavev1.RangeRequest) *conclavev1.RangeRequest { r.Reverse = true; return r }
	page := func(r *conclavev1.RangeRequest, offset, limit int64) *conclavev1.RangeRequest {
		r.Offset, r.Limit = offset, limit
		return r
	}
	tests := []struct {
		name string
		req  *conclavev1.RangeRequest
		want string
		more bool
	}{
		{"all", &conclavev1.RangeRequest{Key: key}, "a:10@0 b:20@1 c:20@2 d:30@3 e:30@4 f:40@5", false},
		{"rank 0..2", rank(0, 2), "a:10@0 b:20@1 c:20@2", false},
		{"rank -2..-1", rank(-2, -1), "e:30@4 f:40@5", false},
		{"rank 0..-1", rank(0, -1), "a:10@0 b:20@1 c:20@2 d:30@3 e:30@4 f:40@5", false},
		{"rank -100..1", rank(-100, 1), "a:10@0 b:20@1", false},
		{"rank 4..100", rank(4, 100), "e:30@4 f:40@5", false},
		{"rank 3..2 is empty", rank(3, 2), "", false},
		{"rank 6..9 is empty", rank(6, 9), "", false},
		{"reverse rank 0..1 is the top", rev(rank(0, 1)), "f:40@0 e:30@1", false},
		{"reverse rank -1..-1 is the bottom", rev(rank(-1, -1)), "a:10@5", false},
		{"score [20,30]", score(scoreIv(incl(20), incl(30))), "b:20@1 c:20@2 d:30@3 e:30@4", false},
		{"score (20,30]", score(scoreIv(excl(20), incl(30))), "d:30@3 e:30@4", false},
		{"score [20,30)", score(scoreIv(incl(20), excl(30))), "b:20@1 c:20@2", false},
		{"score (20,30)", score(scoreIv(excl(20), excl(30))), "", false},
		{"score -inf..15", score(scoreIv(nil, incl(15))), "a:10@0", false},
		{"score 35..+inf", score(scoreIv(incl(35), nil)), "f:40@5", false},
		{"score explicit infinities", score(scoreIv(incl(math.Inf(-1)), incl(math.Inf(1)))), "a:10@0 b:20@1 c:20@2 d:30@3 e:30@4 f:40@5", false},
		{"score (+inf", score(scoreIv(excl(math.Inf(1)), nil)), "", false},
		{"score min > max", score(scoreIv(incl(30), incl(20))), "", false},
		{"reverse score [20,30]", rev(score(scoreIv(incl(20), incl(30)))), "e:30@1 d:30@2 c:20@3 b:20@4", false},
		{"offset 1 limit 2", page(score(scoreIv(incl(20), nil)), 1, 2), "c:20@2 d:30@3", true},
		{"offset past the end", page(score(scoreIv(incl(20), nil)), 10, 2), "", false},
		{"reverse offset 1 limit 2", page(rev(score(scoreIv(nil, incl(30)))), 1, 2), "d:30@2 c:20@3", true},
		{"limit exactly the rest", page(rank(0, 2), 0, 3), "a:10@0 b:20@1 c:20@2", false},
		{"missing key", &conclavev1.RangeRequest{Key: []byte("none")}, "", false},
	}
	for _, tc := range tests {
		r := zrange(t, m, tc.req)
		if got := members(r.GetMembers()); got != tc.want || (r.GetNextPageToken() != "") != tc.more {
			t.Errorf("%s: %s (more %v), want %s (more %v)", tc.name, got, r.GetNextPageToken() != "", tc.want, tc.more)
		}
	}
	m.Read(t0, func(v *fsm.View) {
		if _, err := v.ZsetRange(&conclavev1.RangeRequest{Key: key, PageToken: "!!"}); err == nil {
			t.Error("a bad page token was accepted")
		}
	})
}

func TestZset_PageTokenStableWhileScoresChange(t *testing.T) {
	m := board(t)
	first := zrange(t, m, &conclavev1.RangeRequest{Key: []byte("b"), Reverse: true, Limit: 2})
	if got := members(first.GetMembers()); got != "f:40@0 e:30@1" {
		t.Fatalf("first page %s", got)
	}
	// f drops below everyone and a new member takes the top: an offset would now skip
	// e's neighbour d or repeat e; the token continues right after e.
	run(t, m, step{index: 2, now: t0, op: zadd("b", "f", 0, "g", 99)})
	next := zrange(t, m, &conclavev1.RangeRequest{Key: []byte("b"), Reverse: true, Limit: 2, PageToken: first.GetNextPageToken()})
	if got := members(next.GetMembers()); got != "d:30@2 c:20@3" {
		t.Fatalf("second page %s, want d and c", got)
	}
	// The token's own member gone: the next page starts where it would have been.
	run(t, m, step{index: 3, now: t0, op: &conclavev1.SortedSetServiceRemoveRequest{Key: []byte("b"), Members: []string{"c"}}})
	again := zrange(t, m, &conclavev1.RangeRequest{Key: []byte("b"), Reverse: true, Limit: 2, PageToken: next.GetNextPageToken()})
	if got := members(again.GetMembers()); got != "b:20@3 a:10@4" {
		t.Fatalf("third page %s", got)
	}
}

func TestZset_Lex(t *testing.T) {
	m := fsm.New()
	run(t, m, step{index: 1, now: t0, op: zadd("l", "a", 0, "b", 0, "c", 0, "d", 0, "e", 0, "f", 0, "g", 0)})
	lex := func(iv *conclavev1.LexInterval) *conclavev1.RangeRequest {
		return &conclavev1.RangeRequest{Key: []byte("l"), Interval: &conclavev1.RangeRequest_Lex{Lex: iv}}
	}
	for _, tc := range []struct {
		iv   *conclavev1.LexInterval
		want string
	}{
		{lexIv(nil, lexIncl("c")), "a b c"},                // - [c
		{lexIv(nil, lexExcl("c")), "a b"},                  // - (c
		{lexIv(lexIncl("aaa"), lexExcl("g")), "b c d e f"}, // [aaa (g
		{lexIv(lexExcl("b"), lexIncl("d")), "c d"},
		{lexIv(lexIncl("e"), nil), "e f g"},
		{lexIv(lexIncl("x"), nil), ""},
		{lexIv(lexIncl("d"), lexIncl("b")), ""},
	} {
		var got []string
		for _, rm := range zrange(t, m, lex(tc.iv)).GetMembers() {
			got = append(got, rm.GetMember())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("lex %v: %v, want %s", tc.iv, got, tc.want)
		}
		var count int64
		m.Read(t0, func(v *fsm.View) {
			count, _ = v.ZsetCount(&conclavev1.CountRequest{Key: []byte("l"), Interval: &conclavev1.CountRequest_Lex{Lex: tc.iv}})
		})
		if count != int64(len(got)) {
			t.Errorf("lex count %v = %d, want %d", tc.iv, count, len(got))
		}
	}
	// Mixed scores: lex intervals read the lowest score's members (Redis leaves it undefined).
	run(t, m, step{index: 2, now: t0, op: zadd("l", "b", 1, "0", -1)})
	if got := members(zrange(t, m, lex(lexIv(nil, nil))).GetMembers()); got != "0:-1@0" {
		t.Errorf("lex over mixed scores: %s", got)
	}
	run(t, m,
		step{index: 3, now: t0, op: &conclavev1.RemoveRangeRequest{Key: []byte("l"), Interval: &conclavev1.RemoveRangeRequest_Lex{Lex: lexIv(nil, nil)}}},
		step{index: 4, now: t0, op: &conclavev1.RemoveRangeRequest{Key: []byte("l"), Interval: &conclavev1.RemoveRangeRequest_Lex{Lex: lexIv(lexExcl("c"), lexIncl("f"))}}},
	)
	if got := all(t, m, "l"); got != "a:0@0 c:0@1 g:0@2 b:1@3" {
		t.Errorf("after lex removes: %s", got)
	}
	// A set ranked by arrival has no member order to range over.
	run(t, m, step{index: 5, now: t0, op: with(zadd("arr", "a", 1), func(r *conclavev1.AddRequest) { r.TieBreak = conclavev1.TieBreak_TIE_BREAK_ARRIVAL })})
	m.Read(t0, func(v *fsm.View) {
		if _, err := v.ZsetRange(&conclavev1.RangeRequest{Key: []byte("arr"), Interval: &conclavev1.RangeRequest_Lex{Lex: lexIv(nil, nil)}}); !isCode(err, fsm.ErrConditionFailed) {
			t.Errorf("lex range on an arrival set: %v", err)
		}
	})
}

func isCode(err, want error) bool { return errors.Is(err, want) }

func TestZset_CountScoreAroundTop(t *testing.T) {
	m := board(t)
	key := []byte("b")
	m.Read(t0, func(v *fsm.View) {
		for _, tc := range []struct {
			iv   *conclavev1.ScoreInterval
			want int64
		}{
			{scoreIv(nil, nil), 6}, {scoreIv(incl(20), incl(30)), 4}, {scoreIv(excl(20), excl(40)), 2}, {scoreIv(incl(50), nil), 0},
		} {
			if n, err := v.ZsetCount(&conclavev1.CountRequest{Key: key, Interval: &conclavev1.CountRequest_Score{Score: tc.iv}}); err != nil || n != tc.want {
				t.Errorf("count %v = %d %v, want %d", tc.iv, n, err, tc.want)
			}
		}
		if s, ok, err := v.ZsetScore(key, "d"); s != 30 || !ok || err != nil {
			t.Errorf("score d = %v %v %v", s, ok, err)
		}
		if _, ok, err := v.ZsetScore(key, "x"); ok || err != nil {
			t.Errorf("score x found %v %v", ok, err)
		}
		if n, err := v.ZsetCard(key); n != 6 || err != nil {
			t.Errorf("card = %d %v", n, err)
		}
		for _, tc := range []struct {
			member  string
			count   int64
			reverse bool
			mode    conclavev1.RankMode
			want    string
		}{
			{"c", 1, false, 0, "b:20@1 c:20@2 d:30@3"},
			{"c", 1, true, 0, "d:30@2 c:20@3 b:20@4"},
			{"a", 2, false, 0, "a:10@0 b:20@1 c:20@2"},
			{"a", 2, true, conclavev1.RankMode_RANK_MODE_COMPETITION, "c:20@3 b:20@3 a:10@5"},
			{"f", 1, true, conclavev1.RankMode_RANK_MODE_DENSE, "f:40@0 e:30@1"},
			{"d", 0, false, 0, "d:30@3"},
		} {
			r, err := v.ZsetAround(&conclavev1.AroundRequest{Key: key, Member: tc.member, Count: tc.count, Reverse: tc.reverse, RankMode: tc.mode})
			if err != nil || !r.GetFound() || members(r.GetMembers()) != tc.want {
				t.Errorf("around %s ±%d reverse=%v: %s %v, want %s", tc.member, tc.count, tc.reverse, members(r.GetMembers()), err, tc.want)
			}
		}
		for _, tc := range []struct {
			req  *conclavev1.TopRequest
			want string
		}{
			{&conclavev1.TopRequest{Key: key, Count: 3}, "f:40@0 e:30@1 d:30@2"},
			{&conclavev1.TopRequest{Key: key, Count: 3, RankMode: conclavev1.RankMode_RANK_MODE_COMPETITION}, "f:40@0 e:30@1 d:30@1"},
			{&conclavev1.TopRequest{Key: key, Count: 2, Lowest: true}, "a:10@0 b:20@1"},
			{&conclavev1.TopRequest{Key: key}, "f:40@0 e:30@1 d:30@2 c:20@3 b:20@4 a:10@5"},
		} {
			r, err := v.ZsetTop(tc.req)
			if err != nil || members(r.GetMembers()) != tc.want {
				t.Errorf("top %v: %s %v, want %s", tc.req, members(r.GetMembers()), err, tc.want)
			}
		}
	})
}

func TestZset_RemovePopRemoveRange(t *testing.T) {
	m := board(t)
	key := []byte("b")
	rr := func(iv any) *conclavev1.RemoveRangeRequest {
		r := &conclavev1.RemoveRangeRequest{Key: key}
		switch x := iv.(type) {
		case *conclavev1.RankInterval:
			r.Interval = &conclavev1.RemoveRangeRequest_Rank{Rank: x}
		case *conclavev1.ScoreInterval:
			r.Interval = &conclavev1.RemoveRangeRequest_Score{Score: x}
		}
		return r
	}
	res := run(t, m, step{index: 2, now: t0, op: &conclavev1.SortedSetServiceRemoveRequest{Key: key, Members: []string{"a", "x", "a"}}})
	if res.GetZsetRemove().GetRemoved() != 1 {
		t.Errorf("remove: %v", res)
	}
	res = run(t, m, step{index: 3, now: t0, op: rr(&conclavev1.RankInterval{Start: -1, Stop: -1})})
	if res.GetZsetRemoveRange().GetRemoved() != 1 || all(t, m, "b") != "b:20@0 c:20@1 d:30@2 e:30@3" {
		t.Errorf("remove rank -1: %v, %s", res, all(t, m, "b"))
	}
	res = run(t, m, step{index: 4, now: t0, op: rr(scoreIv(excl(20), nil))})
	if res.GetZsetRemoveRange().GetRemoved() != 2 || all(t, m, "b") != "b:20@0 c:20@1" {
		t.Errorf("remove score (20: %v, %s", res, all(t, m, "b"))
	}
	res = run(t, m, step{index: 5, now: t0, op: rr(scoreIv(incl(100), nil))})
	if res.GetZsetRemoveRange().GetRemoved() != 0 || get(m, t0, "b").GetModRevision() != 4 {
		t.Errorf("removing nothing: %v, %v", res, get(m, t0, "b"))
	}
	run(t, m, step{index: 6, now: t0, op: zadd("b", "x", 1, "y", 2, "z", 3)})
	res = run(t, m, step{index: 7, now: t0, op: &fsmv1.ZsetPop{Key: key, Count: 2, Max: true}})
	if got := members(res.GetZsetPop().GetMembers()); got != "c:20 b:20" {
		t.Errorf("pop max 2: %s", got)
	}
	res = run(t, m, step{index: 8, now: t0, op: &fsmv1.ZsetPop{Key: key}})
	if got := members(res.GetZsetPop().GetMembers()); got != "x:1" {
		t.Errorf("pop min: %s", got)
	}
	res = run(t, m, step{index: 9, now: t0, op: &fsmv1.ZsetPop{Key: key, Count: 10}})
	if got := members(res.GetZsetPop().GetMembers()); got != "y:2 z:3" || get(m, t0, "b") != nil {
		t.Errorf("pop all: %s; key %v", got, get(m, t0, "b"))
	}
	res = run(t, m, step{index: 10, now: t0, op: &fsmv1.ZsetPop{Key: key}})
	if len(res.GetZsetPop().GetMembers()) != 0 {
		t.Errorf("pop from a missing key: %v", res)
	}
	run(t, m,
		step{index: 11, now: t0, op: zadd("b", "x", 1)},
		step{index: 12, now: t0, op: rr(&conclavev1.RankInterval{Start: 0, Stop: -1})},
		step{index: 13, now: t0, op: &fsmv1.ZsetPop{Key: key, Count: -1}, err: fsm.ErrInvalidArgument},
	)
	if get(m, t0, "b") != nil {
		t.Error("removing every member left the key")
	}
}

func TestZset_TieBreaks(t *testing.T) {
	m := fsm.New()
	arrival := func(key string, tie conclavev1.TieBreak, pairs ...any) *conclavev1.AddRequest {
		return with(zadd(key, pairs...), func(r *conclavev1.AddRequest) { r.TieBreak = tie })
	}
	top := func(key string, lowest bool) string {
		var r *conclavev1.TopResponse
		m.Read(t0, func(v *fsm.View) {
			r, _ = v.ZsetTop(&conclavev1.TopRequest{Key: []byte(key), Lowest: lowest})
		})
		return members(r.GetMembers())
	}
	run(t, m,
		// Lex: ties by member, reversed when read from the top (as Redis's ZREVRANGE).
		step{index: 1, now: t0, op: zadd("lex", "zed", 10, "amy", 10, "bob", 5)},
		// Arrival: zed reached 10 first, then amy (whose later same-score add keeps her place).
		step{index: 2, now: t0, op: arrival("hi", conclavev1.TieBreak_TIE_BREAK_ARRIVAL, "zed", 10, "bob", 5)},
		step{index: 3, now: t0, op: arrival("hi", conclavev1.TieBreak_TIE_BREAK_LEX, "amy", 10)}, // an existing set keeps its tie-break
		step{index: 4, now: t0, op: zincr("hi", "bob", 5)},
		step{index: 5, now: t0, op: zadd("hi", "zed", 10)},
		step{index: 6, now: t0, op: arrival("lo", conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING, "zed", 61.5, "amy", 61.5, "cat", 70)},
	)
	if got := top("lex", false); got != "zed:10@0 amy:10@1 bob:5@2" {
		t.Errorf("lex top: %s", got)
	}
	if got := top("hi", false); got != "zed:10@0 amy:10@1 bob:10@2" {
		t.Errorf("arrival top: %s", got)
	}
	if got := top("lo", true); got != "zed:61.5@0 amy:61.5@1 cat:70@2" {
		t.Errorf("arrival-ascending lowest: %s", got)
	}
	// Arrival order survives a snapshot.
	if got := restored(t, m); dump(got, t0) != dump(m, t0) {
		t.Errorf("restored:\n%s\nwant:\n%s", dump(got, t0), dump(m, t0))
	}
}
