package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

const (
	algGCRA        = conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA
	algSliding     = conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_SLIDING_WINDOW
	algFixed       = conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW
	algConcurrency = conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY
)

func policy(alg conclavev1.RateLimitAlgorithm, limit uint64, periodMs int64) *conclavev1.RateLimitPolicy {
	return &conclavev1.RateLimitPolicy{Algorithm: alg, Limit: limit, PeriodMs: periodMs}
}

func gcra(limit uint64, periodMs int64, burst uint64) *conclavev1.RateLimitPolicy {
	p := policy(algGCRA, limit, periodMs)
	p.Burst = burst
	return p
}

func named(p *conclavev1.RateLimitPolicy, name string) *conclavev1.RateLimitPolicy {
	p = proto.CloneOf(p)
	p.Name = name
	return p
}

func shadowed(p *conclavev1.RateLimitPolicy) *conclavev1.RateLimitPolicy {
	p = proto.CloneOf(p)
	p.ShadowMode = true
	return p
}

// inline is a key with an inline policy; byName one with a named policy.
func inline(key string, cost uint64, p *conclavev1.RateLimitPolicy) *conclavev1.RateLimitKey {
	return &conclavev1.RateLimitKey{Key: key, Cost: cost, Limit: &conclavev1.RateLimitKey_Inline{Inline: p}}
}

func byName(key string, cost uint64, name string) *conclavev1.RateLimitKey {
	return &conclavev1.RateLimitKey{Key: key, Cost: cost, Limit: &conclavev1.RateLimitKey_Policy{Policy: name}}
}

func check(keys ...*conclavev1.RateLimitKey) *conclavev1.CheckRequest {
	return &conclavev1.CheckRequest{Keys: keys}
}

func putPolicy(p *conclavev1.RateLimitPolicy) *conclavev1.PutPolicyRequest {
	return &conclavev1.PutPolicyRequest{Policy: p}
}

// rl applies commands to one machine at increasing raft indexes and explicit times.
type rl struct {
	t     *testing.T
	m     *fsm.Machine
	index uint64
}

func newRL(t *testing.T) *rl { return &rl{t: t, m: fsm.New()} }

// do applies op at t0+ms and returns its result; a failed command must change nothing.
func (b *rl) do(atMs int64, op proto.Message, wantErr error) *fsmv1.Result {
	b.t.Helper()
	b.index++
	return run(b.t, b.m, step{index: b.index, now: t0 + atMs*ms, op: op, err: wantErr})
}

func (b *rl) check(atMs int64, partial bool, keys ...*conclavev1.RateLimitKey) *conclavev1.CheckResponse {
	b.t.Helper()
	return b.do(atMs, &conclavev1.CheckRequest{Keys: keys, Partial: partial}, nil).GetRateLimitCheck()
}

func (b *rl) refund(atMs int64, keys ...*conclavev1.RateLimitKey) *conclavev1.RefundResponse {
	b.t.Helper()
	return b.do(atMs, &conclavev1.RefundRequest{Keys: keys}, nil).GetRateLimitRefund()
}

func (b *rl) peek(atMs int64, keys ...*conclavev1.RateLimitKey) *conclavev1.PeekResponse {
	b.t.Helper()
	var resp *conclavev1.PeekResponse
	var err error
	b.m.Read(t0+atMs*ms, func(v *fsm.View) { resp, err = v.PeekRateLimit(&conclavev1.PeekRequest{Keys: keys}) })
	if err != nil {
		b.t.Fatalf("PeekRateLimit: %v", err)
	}
	return resp
}

func (b *rl) limiter(atMs int64, key string) *fsmv1.LimiterRecord {
	var out *fsmv1.LimiterRecord
	b.m.Read(t0+atMs*ms, func(v *fsm.View) { out, _ = v.Limiter(key) })
	return out
}

func (b *rl) view(atMs int64, fn func(v *fsm.View)) { b.m.Read(t0+atMs*ms, fn) }

// v is an expected verdict: allowed, remaining, reset_after_ms, retry_after_ms.
type v struct {
	allowed         bool
	remaining       uint64
	reset, retryMs  int64
	shadow, wouldOK bool
}

func ok(remaining uint64, reset int64) v { return v{allowed: true, remaining: remaining, reset: reset} }
func no(remaining uint64, reset, retry int64) v {
	return v{remaining: remaining, reset: reset, retryMs: retry}
}

func wantVerdict(t *testing.T, what string, got *conclavev1.KeyVerdict, want v) {
	t.Helper()
	g := v{got.GetAllowed(), got.GetRemaining(), got.GetResetAfterMs(), got.GetRetryAfterMs(), got.GetShadow(), got.GetWouldAllow()}
	if !want.shadow {
		want.wouldOK = want.allowed // without shadow mode would_allow is the verdict
	}
	if g != want {
		t.Errorf("%s: verdict %+v, want %+v", what, g, want)
	}
}

// hit is one Check of one key at t0+at ms with an expected verdict.
type hit struct {
	at   int64
	cost uint64
	want v
}

// runHits checks the hits in order on key "k" under p; then, at each hit's time, the
// limiter is either stored (not back to full) or absent.
func runHits(t *testing.T, p *conclavev1.RateLimitPolicy, hits []hit) *rl {
	t.Helper()
	b := newRL(t)
	for i, h := range hits {
		peek := b.peek(h.at, inline("k", h.cost, p))
		resp := b.check(h.at, false, inline("k", h.cost, p))
		what := fmt.Sprintf("hit %d (+%dms, cost %d)", i, h.at, h.cost)
		wantVerdict(t, what, resp.GetVerdicts()[0], h.want)
		if resp.GetAllowed() != h.want.allowed || resp.GetVerdicts()[0].GetLimit() != p.GetLimit() {
			t.Errorf("%s: response %v", what, resp)
		}
		if !proto.Equal(peek.GetVerdicts()[0], withoutSlots(resp.GetVerdicts()[0])) {
			t.Errorf("%s: Peek said %v, Check %v", what, peek.GetVerdicts()[0], resp.GetVerdicts()[0])
		}
	}
	return b
}

func withoutSlots(kv *conclavev1.KeyVerdict) *conclavev1.KeyVerdict {
	kv = proto.CloneOf(kv)
	kv.Slots = nil
	return kv
}

func TestRateLimit_GCRA(t *testing.T) {
	// 5 per second: one hit per 200 ms, 5 at once.
	five := gcra(5, 1000, 0)
	tests := []struct {
		name string
		p    *conclavev1.RateLimitPolicy
		hits []hit
	}{
		{"burst then refill", five, []hit{
			{0, 1, ok(4, 200)}, {0, 1, ok(3, 400)}, {0, 1, ok(2, 600)}, {0, 1, ok(1, 800)}, {0, 1, ok(0, 1000)},
			{0, 1, no(0, 1000, 200)},
			{199, 1, no(0, 801, 1)},
			{200, 1, ok(0, 1000)}, // one emission interval later, exactly one more
			{300, 1, no(0, 900, 100)},
			{700, 1, ok(1, 700)}, // 500 ms refilled 2.5 hits, the half does not count
		}},
		{"a cost takes cost intervals", five, []hit{
			{0, 3, ok(2, 600)}, {0, 3, no(2, 600, 200)}, {200, 3, ok(0, 1000)},
		}},
		{"cost of the whole burst from empty", five, []hit{{0, 5, ok(0, 1000)}}},
		{"cost above the burst never fits", five, []hit{{0, 6, no(5, 0, -1)}, {0, 1, ok(4, 200)}, {0, 6, no(4, 200, -1)}}},
		{"cost 0 means 1", five, []hit{{0, 0, ok(4, 200)}}},
		{"idle bucket is full again", five, []hit{{0, 5, ok(0, 1000)}, {1000, 5, ok(0, 1000)}, {5000, 1, ok(4, 200)}}},
		{"burst above the rate", gcra(1, 1000, 3), []hit{
			{0, 1, ok(2, 1000)}, {0, 1, ok(1, 2000)}, {0, 1, ok(0, 3000)}, {0, 1, no(0, 3000, 1000)}, {1000, 1, ok(0, 3000)},
		}},
		{"burst below the rate", gcra(10, 1000, 2), []hit{
			{0, 1, ok(1, 100)}, {0, 1, ok(0, 200)}, {0, 1, no(0, 200, 100)}, {50, 1, no(0, 150, 50)}, {100, 1, ok(0, 200)},
		}},
		{"the interval and the times round up", gcra(3, 1000, 1), []hit{
			// one hit per 333,333,334 ns
			{0, 1, ok(0, 334)}, {333, 1, no(0, 1, 1)}, {334, 1, ok(0, 334)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runHits(t, tc.p, tc.hits) })
	}
}

func TestRateLimit_SlidingWindow(t *testing.T) {
	three := policy(algSliding, 3, 1000)
	tests := []struct {
		name string
		p    *conclavev1.RateLimitPolicy
		hits []hit
	}{
		{"fill, deny until the oldest leaves", three, []hit{
			{0, 1, ok(2, 1000)}, {100, 1, ok(1, 1000)}, {200, 1, ok(0, 1000)},
			{300, 1, no(0, 900, 700)},
			{999, 1, no(0, 201, 1)},
			{1000, 1, ok(0, 1000)}, // the hit at 0 leaves exactly at 1000
			{1050, 1, no(0, 950, 50)},
			{1100, 2, no(1, 900, 100)}, // at 1100 the hit at 100 has left, one remains; two need the one at 200 gone too
			{1200, 2, ok(0, 1000)},
		}},
		{"never more than the limit in any window", three, []hit{
			{0, 3, ok(0, 1000)}, {500, 1, no(0, 500, 500)}, {999, 1, no(0, 1, 1)}, {1000, 3, ok(0, 1000)},
		}},
		{"retry waits for enough old hits", policy(algSliding, 4, 1000), []hit{
			{0, 1, ok(3, 1000)}, {100, 1, ok(2, 1000)}, {200, 2, ok(0, 1000)},
			{300, 2, no(0, 900, 800)}, // the hits at 0 and 100 must both leave
			{300, 3, no(0, 900, 900)},
		}},
		{"cost above the limit never fits", three, []hit{{0, 4, no(3, 0, -1)}, {0, 2, ok(1, 1000)}, {10, 4, no(1, 990, -1)}}},
		{"idle window is full again", three, []hit{{0, 3, ok(0, 1000)}, {1000, 3, ok(0, 1000)}, {3000, 1, ok(2, 1000)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runHits(t, tc.p, tc.hits) })
	}
}

func TestRateLimit_SlidingWindowCoalescesEqualTimes(t *testing.T) {
	b := newRL(t)
	p := policy(algSliding, 10, 1000)
	b.check(500, false, inline("k", 2, p))
	b.check(100, false, inline("k", 3, p)) // an earlier now: the machine's clock stays at +500ms
	if hits := b.limiter(500, "k").GetHits(); len(hits) != 1 || hits[0].GetCost() != 5 || hits[0].GetAtUnixNano() != t0+500*ms {
		t.Fatalf("hits %v, want one of cost 5 at +500ms", hits)
	}
	wantVerdict(t, "peek", b.peek(600, inline("k", 5, p)).GetVerdicts()[0], ok(0, 1000))
}

func TestRateLimit_FixedWindow(t *testing.T) {
	// t0 is a whole number of seconds since the epoch: windows of 1 s start at t0+N s.
	three := policy(algFixed, 3, 1000)
	tests := []struct {
		name string
		p    *conclavev1.RateLimitPolicy
		hits []hit
	}{
		{"count per aligned window", three, []hit{
			{0, 1, ok(2, 1000)}, {500, 2, ok(0, 500)}, {600, 1, no(0, 400, 400)},
			{999, 1, no(0, 1, 1)},
			{1000, 1, ok(2, 1000)}, // exactly at the boundary: a new window
			{1999, 2, ok(0, 1)},
			{2000, 3, ok(0, 1000)},
		}},
		{"a first hit mid-window resets at the window's end", three, []hit{{1700, 1, ok(2, 300)}}},
		{"a cost that does not fit waits for the next window", three, []hit{{0, 2, ok(1, 1000)}, {10, 2, no(1, 990, 990)}, {10, 1, ok(0, 990)}}},
		{"cost above the limit never fits", three, []hit{{0, 4, no(3, 0, -1)}, {0, 1, ok(2, 1000)}, {0, 4, no(2, 1000, -1)}}},
		{"windows align to the epoch, not to the first hit", policy(algFixed, 1, 60_000), []hit{
			// t0 is 20 s into a minute (1.7e9 s = 28,333,333 min + 20 s).
			{0, 1, ok(0, 40_000)}, {39_999, 1, no(0, 1, 1)}, {40_000, 1, ok(0, 60_000)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runHits(t, tc.p, tc.hits) })
	}
}

func TestRateLimit_ConcurrencySlots(t *testing.T) {
	two := policy(algConcurrency, 2, 1000) // 2 slots held at most, each for 1 s unless released
	b := newRL(t)
	r := b.check(0, false, inline("k", 1, two))
	first := b.index
	wantVerdict(t, "first", r.GetVerdicts()[0], ok(1, 1000))
	if got := r.GetVerdicts()[0].GetSlots(); !slices.Equal(got, []uint64{first << 16}) {
		t.Fatalf("slots %v, want [%d<<16]", got, first)
	}
	r = b.check(100, false, inline("k", 1, two))
	second := r.GetVerdicts()[0].GetSlots()
	wantVerdict(t, "second", r.GetVerdicts()[0], ok(0, 1000))
	r = b.check(200, false, inline("k", 1, two))
	wantVerdict(t, "full", r.GetVerdicts()[0], no(0, 900, 800))
	if len(r.GetVerdicts()[0].GetSlots()) != 0 {
		t.Fatalf("a denied acquire got slots %v", r.GetVerdicts()[0].GetSlots())
	}
	wantVerdict(t, "above the limit", b.check(200, false, inline("k", 3, two)).GetVerdicts()[0], no(0, 900, -1))

	// The first slot expires exactly at +1000ms; its place is free then.
	wantVerdict(t, "after the first slot's TTL", b.check(1000, false, inline("k", 1, two)).GetVerdicts()[0], ok(0, 1000))

	// Releasing the second slot (and an unknown id, ignored) frees one place.
	rf := b.refund(1010, &conclavev1.RateLimitKey{Key: "k", Limit: &conclavev1.RateLimitKey_Inline{Inline: two}, Slots: append(second, 12345)})
	wantVerdict(t, "after release", rf.GetVerdicts()[0], ok(1, 990))
	if held := b.limiter(1010, "k").GetSlots(); len(held) != 1 || held[0].GetId() == second[0] {
		t.Fatalf("held slots %v after releasing %v", held, second)
	}

	// One Check acquires cost slots with ids index<<16 | i.
	r = b.check(2000, false, inline("k", 2, two))
	if got, want := r.GetVerdicts()[0].GetSlots(), []uint64{b.index << 16, b.index<<16 | 1}; !slices.Equal(got, want) {
		t.Fatalf("slots %v, want %v", got, want)
	}
	// When every slot has expired the limiter is idle: due for ExpireDue, read as absent.
	b.view(3000, func(v *fsm.View) {
		if _, found := v.Limiter("k"); found || v.LimiterCount() != 1 || v.DueCount(10) != 1 {
			t.Errorf("at +3000ms: Limiter found %v, LimiterCount %d, DueCount %d; want false, 1, 1", found, v.LimiterCount(), v.DueCount(10))
		}
	})
}

func TestRateLimit_AllOrNothing(t *testing.T) {
	one := policy(algFixed, 1, 10_000)
	b := newRL(t)
	b.check(0, false, inline("a", 1, one))

	// "a" is spent: nothing is consumed, "b" says what it would have done alone.
	r := b.check(1, false, inline("b", 1, one), inline("a", 1, one), inline("c", 1, gcra(2, 1000, 0)))
	if r.GetAllowed() {
		t.Fatal("overall allowed with a spent key")
	}
	wantVerdict(t, "b", r.GetVerdicts()[0], ok(0, 9999))
	wantVerdict(t, "a", r.GetVerdicts()[1], no(0, 9999, 9999))
	wantVerdict(t, "c", r.GetVerdicts()[2], ok(1, 500))
	if got := []string{r.GetVerdicts()[0].GetKey(), r.GetVerdicts()[1].GetKey(), r.GetVerdicts()[2].GetKey()}; !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Fatalf("verdicts in order %v, want the request's", got)
	}
	if b.limiter(1, "b") != nil || b.limiter(1, "c") != nil {
		t.Fatal("a refused all-or-nothing Check consumed")
	}
	// The same keys again with partial: the keys that fit consume.
	r = b.check(2, true, inline("b", 1, one), inline("a", 1, one), inline("c", 1, gcra(2, 1000, 0)))
	if r.GetAllowed() || !r.GetVerdicts()[0].GetAllowed() || r.GetVerdicts()[1].GetAllowed() {
		t.Fatalf("partial: %v", r)
	}
	if b.limiter(2, "b") == nil || b.limiter(2, "c") == nil {
		t.Fatal("a partial Check did not consume on the keys that fit")
	}
	// Every key allowed: all consume, in one command.
	r = b.check(3, false, inline("d", 1, one), inline("e", 1, one))
	if !r.GetAllowed() || b.limiter(3, "d") == nil || b.limiter(3, "e") == nil {
		t.Fatalf("all allowed: %v", r)
	}
}

func TestRateLimit_ShadowMode(t *testing.T) {
	one := policy(algFixed, 1, 10_000)
	b := newRL(t)
	b.do(0, putPolicy(named(shadowed(one), "shadow")), nil)
	wantVerdict(t, "first", b.check(0, false, byName("s", 1, "shadow")).GetVerdicts()[0], v{allowed: true, reset: 10_000, shadow: true, wouldOK: true})

	// Over the limit: reported allowed, the limiter's own verdict in would_allow; the
	// shadow key does not hold back the other key, and consumes nothing itself.
	r := b.check(1, false, byName("s", 1, "shadow"), inline("x", 1, one))
	if !r.GetAllowed() {
		t.Fatalf("a shadow key held the Check back: %v", r)
	}
	wantVerdict(t, "over", r.GetVerdicts()[0], v{allowed: true, reset: 9999, retryMs: 9999, shadow: true})
	if got := b.limiter(1, "s").GetCount(); got != 1 {
		t.Fatalf("shadow key count %d, want 1", got)
	}
	if b.limiter(1, "x") == nil {
		t.Fatal("the other key did not consume")
	}
	// Turning shadow mode off keeps the state (same numbers): now it is enforced.
	b.do(2, putPolicy(named(one, "shadow")), nil)
	wantVerdict(t, "enforced", b.check(2, false, byName("s", 1, "shadow")).GetVerdicts()[0], no(0, 9998, 9998))
}

func TestRateLimit_PolicyChangeStartsAfresh(t *testing.T) {
	b := newRL(t)
	b.do(0, putPolicy(named(policy(algFixed, 1, 10_000), "p")), nil)
	wantVerdict(t, "first", b.check(0, false, byName("k", 1, "p")).GetVerdicts()[0], ok(0, 10_000))
	wantVerdict(t, "spent", b.check(1, false, byName("k", 1, "p")).GetVerdicts()[0], no(0, 9999, 9999))

	for i, tc := range []struct {
		p     *conclavev1.RateLimitPolicy
		reset int64
	}{
		{policy(algFixed, 2, 10_000), 10_000 - 10}, // another limit (windows align to the epoch)
		{policy(algFixed, 2, 20_000), 20_000 - 11}, // another period
		{policy(algSliding, 2, 20_000), 20_000},    // another algorithm
	} {
		at := int64(10 + i)
		b.do(at, putPolicy(named(tc.p, "p")), nil)
		wantVerdict(t, fmt.Sprintf("policy %d, peek", i), b.peek(at, byName("k", 1, "p")).GetVerdicts()[0], ok(1, tc.reset))
		wantVerdict(t, fmt.Sprintf("policy %d", i), b.check(at, false, byName("k", 1, "p")).GetVerdicts()[0], ok(1, tc.reset))
		if got := b.limiter(at, "k").GetPolicy(); got.GetAlgorithm() != tc.p.GetAlgorithm() || got.GetLimit() != tc.p.GetLimit() || got.GetPeriodMs() != tc.p.GetPeriodMs() {
			t.Fatalf("policy %d: limiter made under %v", i, got)
		}
	}
	// Only the burst changes: GCRA state restarts too.
	b.do(20, putPolicy(named(gcra(1, 1000, 1), "g")), nil)
	b.check(20, false, byName("g", 1, "g"))
	b.do(21, putPolicy(named(gcra(1, 1000, 2), "g")), nil)
	wantVerdict(t, "new burst", b.check(21, false, byName("g", 1, "g")).GetVerdicts()[0], ok(1, 1000))
	// Burst 0 and burst = limit are the same spec: the state stays.
	b.do(22, putPolicy(named(gcra(2, 2000, 0), "g")), nil)
	b.check(22, false, byName("g", 2, "g"))
	b.do(23, putPolicy(named(gcra(2, 2000, 2), "g")), nil)
	wantVerdict(t, "same spec", b.check(23, false, byName("g", 1, "g")).GetVerdicts()[0], no(0, 1999, 999))

	// Deleting a policy leaves its limiters to expire; a Check naming it fails.
	if r := b.do(30, &conclavev1.DeletePolicyRequest{Name: "p"}, nil); !r.GetPolicyDelete().GetDeleted() {
		t.Fatalf("delete: %v", r)
	}
	if r := b.do(30, &conclavev1.DeletePolicyRequest{Name: "p"}, nil); r.GetPolicyDelete().GetDeleted() {
		t.Fatalf("second delete: %v", r)
	}
	b.do(31, check(byName("k", 1, "p")), fsm.ErrNotFound)
}

func TestRateLimit_Refund(t *testing.T) {
	tests := []struct {
		name       string
		p          *conclavev1.RateLimitPolicy
		take, back uint64 // at +0ms, then refunded at +100ms
		want       v      // the refund's verdict: the limiter as it is after it
		stored     bool
	}{
		{"gcra", gcra(5, 1000, 0), 5, 2, ok(2, 500), true},
		{"gcra, more than taken", gcra(5, 1000, 0), 3, 9, ok(5, 0), false},
		{"gcra, nothing left after refill", gcra(5, 1000, 0), 1, 1, ok(5, 0), false},
		{"fixed", policy(algFixed, 3, 1000), 3, 1, ok(1, 900), true},
		{"fixed, more than taken", policy(algFixed, 3, 1000), 2, 5, ok(3, 0), false},
		{"sliding", policy(algSliding, 3, 1000), 3, 2, ok(2, 900), true},
		{"sliding, more than taken", policy(algSliding, 3, 1000), 1, 2, ok(3, 0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newRL(t)
			b.check(0, false, inline("k", tc.take, tc.p))
			r := b.refund(100, inline("k", tc.back, tc.p))
			wantVerdict(t, "refund", r.GetVerdicts()[0], tc.want)
			if stored := b.limiter(100, "k") != nil; stored != tc.stored {
				t.Fatalf("limiter stored %v, want %v", stored, tc.stored)
			}
			wantVerdict(t, "peek after", b.peek(100, inline("k", 1, tc.p)).GetVerdicts()[0], b.afterOne(tc.want, tc.p))
		})
	}

	t.Run("sliding gives back the newest hits first", func(t *testing.T) {
		b := newRL(t)
		p := policy(algSliding, 4, 1000)
		b.check(0, false, inline("k", 1, p))
		b.check(100, false, inline("k", 2, p))
		b.check(200, false, inline("k", 1, p))
		b.refund(300, inline("k", 2, p))
		hits := b.limiter(300, "k").GetHits()
		if len(hits) != 2 || hits[0].GetCost() != 1 || hits[1].GetCost() != 1 || hits[1].GetAtUnixNano() != t0+100*ms {
			t.Fatalf("hits after refund %v", hits)
		}
	})
	t.Run("no state, or state under another policy, is left alone", func(t *testing.T) {
		b := newRL(t)
		wantVerdict(t, "none", b.refund(0, inline("k", 1, policy(algFixed, 3, 1000))).GetVerdicts()[0], ok(3, 0))
		b.check(0, false, inline("k", 3, policy(algFixed, 3, 1000)))
		wantVerdict(t, "other", b.refund(0, inline("k", 3, policy(algFixed, 4, 1000))).GetVerdicts()[0], ok(4, 0))
		if got := b.limiter(0, "k").GetCount(); got != 3 {
			t.Fatalf("count %d after a refund under another policy, want 3", got)
		}
	})
	t.Run("a spent limiter reports when one hit fits", func(t *testing.T) {
		b := newRL(t)
		one := policy(algConcurrency, 1, 1000)
		b.check(0, false, inline("k", 1, one))
		held := &conclavev1.RateLimitKey{Key: "k", Limit: &conclavev1.RateLimitKey_Inline{Inline: one}, Slots: []uint64{999}}
		wantVerdict(t, "unknown slot", b.refund(100, held).GetVerdicts()[0], no(0, 900, 900))
		b.do(100, &conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{
			{Key: "k", Limit: &conclavev1.RateLimitKey_Inline{Inline: policy(algFixed, 1, 1000)}, Slots: []uint64{1}}}}, fsm.ErrWrongType)
	})
}

// afterOne is what a Check of cost 1 says after a refund left the limiter as want says
// (for the tables above: the remaining minus one).
func (b *rl) afterOne(want v, p *conclavev1.RateLimitPolicy) v {
	reset := want.reset
	switch p.GetAlgorithm() {
	case algFixed:
		if reset == 0 {
			reset = 1000 - 100 // the window of +100ms ends at +1000ms
		}
	case algSliding:
		reset = p.GetPeriodMs()
	default:
		reset += p.GetPeriodMs() / int64(p.GetLimit())
	}
	return ok(want.remaining-1, reset)
}

func TestRateLimit_IdleExpiry(t *testing.T) {
	b := newRL(t)
	b.check(0, false,
		inline("g", 1, gcra(1, 1000, 0)),               // idle at +1000ms
		inline("s", 1, policy(algSliding, 2, 2000)),    // idle at +2000ms
		inline("f", 1, policy(algFixed, 2, 4000)),      // window [t0, t0+4s): idle at +4000ms
		inline("c", 1, policy(algConcurrency, 1, 500)), // slot expires at +500ms
	)
	due := func(atMs int64) (n, stored, live int) {
		b.view(atMs, func(v *fsm.View) {
			n, stored = v.DueCount(100), v.LimiterCount()
			ls, _ := v.Limiters("", "", -1)
			live = len(ls)
		})
		return
	}
	for _, tc := range []struct {
		at                int64
		due, stored, live int
	}{{0, 0, 4, 4}, {499, 0, 4, 4}, {500, 1, 4, 3}, {1000, 2, 4, 2}, {2000, 3, 4, 1}, {3999, 3, 4, 1}, {4000, 4, 4, 0}} {
		if n, stored, live := due(tc.at); n != tc.due || stored != tc.stored || live != tc.live {
			t.Errorf("+%dms: DueCount %d, LimiterCount %d, live %d; want %d, %d, %d", tc.at, n, stored, live, tc.due, tc.stored, tc.live)
		}
	}
	b.view(4000, func(v *fsm.View) {
		if got := v.DueCount(3); got != 3 {
			t.Errorf("DueCount(3) = %d", got)
		}
	})
	// A bounded ExpireDue deletes the oldest idle limiters first.
	b.do(2000, &fsmv1.ExpireDue{Limit: 2}, nil)
	if n, stored, _ := due(2000); n != 1 || stored != 2 {
		t.Fatalf("after ExpireDue{2} at +2000ms: DueCount %d, LimiterCount %d; want 1, 2", n, stored)
	}
	b.view(2000, func(v *fsm.View) {
		ls, _ := v.Limiters("", "", -1)
		if len(ls) != 1 || ls[0].GetKey() != "f" {
			t.Fatalf("live limiters %v, want f", ls)
		}
	})
	b.do(5000, &fsmv1.ExpireDue{Limit: 100}, nil)
	if n, stored, _ := due(5000); n != 0 || stored != 0 {
		t.Fatalf("after ExpireDue at +5000ms: DueCount %d, LimiterCount %d", n, stored)
	}
	// An ExpireDue before a limiter is idle keeps it.
	b.check(6000, false, inline("g", 1, gcra(1, 1000, 0)))
	b.do(6999, &fsmv1.ExpireDue{Limit: 100}, nil)
	if b.limiter(6999, "g") == nil {
		t.Fatal("ExpireDue deleted a limiter before it was idle")
	}
}

func TestRateLimit_PeekConsumesNothing(t *testing.T) {
	b := newRL(t)
	p := policy(algConcurrency, 2, 1000)
	b.check(0, false, inline("c", 1, p), inline("g", 3, gcra(5, 1000, 0)))
	before := snapshotBytes(t, b.m)
	var peeks []*conclavev1.PeekResponse
	for range 3 {
		peeks = append(peeks, b.peek(10, inline("c", 1, p), inline("g", 2, gcra(5, 1000, 0))))
	}
	if !bytes.Equal(before, snapshotBytes(t, b.m)) {
		t.Fatal("Peek changed the machine")
	}
	for _, pk := range peeks[1:] {
		if !proto.Equal(pk, peeks[0]) {
			t.Fatalf("Peek answers differ: %v vs %v", pk, peeks[0])
		}
	}
	r := b.check(10, false, inline("c", 1, p), inline("g", 2, gcra(5, 1000, 0)))
	if !r.GetAllowed() || !peeks[0].GetAllowed() || len(peeks[0].GetVerdicts()[0].GetSlots()) != 0 {
		t.Fatalf("peek %v, check %v", peeks[0], r)
	}
	for i := range r.GetVerdicts() {
		if !proto.Equal(withoutSlots(r.GetVerdicts()[i]), peeks[0].GetVerdicts()[i]) {
			t.Errorf("key %d: Peek %v, Check %v", i, peeks[0].GetVerdicts()[i], r.GetVerdicts()[i])
		}
	}
	// Peek reads at its own time, later than the machine's clock.
	wantVerdict(t, "later", b.peek(5000, inline("g", 1, gcra(5, 1000, 0))).GetVerdicts()[0], ok(4, 200))
	b.m.Read(t0, func(v *fsm.View) {
		if _, err := v.PeekRateLimit(&conclavev1.PeekRequest{Keys: []*conclavev1.RateLimitKey{byName("x", 1, "missing")}}); !errors.Is(err, fsm.ErrNotFound) {
			t.Errorf("Peek of a missing policy: %v, want ErrNotFound", err)
		}
	})
}

func TestRateLimit_Errors(t *testing.T) {
	valid := policy(algFixed, 3, 1000)
	slot := &conclavev1.RateLimitKey{Key: "k", Limit: &conclavev1.RateLimitKey_Inline{Inline: policy(algConcurrency, 1, 1000)}, Slots: []uint64{1}}
	inv, nf := fsm.ErrInvalidArgument, fsm.ErrNotFound
	tests := []struct {
		name string
		op   proto.Message
		err  error
	}{
		{"put without a name", putPolicy(valid), inv},
		{"put without a policy", &conclavev1.PutPolicyRequest{}, inv},
		{"limit 0", putPolicy(named(policy(algFixed, 0, 1000), "p")), inv},
		{"period 0", putPolicy(named(policy(algFixed, 1, 0), "p")), inv},
		{"negative period", putPolicy(named(policy(algFixed, 1, -5), "p")), inv},
		{"period over ten years", putPolicy(named(policy(algFixed, 1, fsm.MaxPolicyPeriodMs+1), "p")), inv},
		{"unknown algorithm", putPolicy(named(policy(9, 1, 1000), "p")), inv},
		{"sliding limit too large", putPolicy(named(policy(algSliding, fsm.MaxSlidingWindowLimit+1, 1000), "p")), inv},
		{"concurrency limit too large", putPolicy(named(policy(algConcurrency, fsm.MaxConcurrencyLimit+1, 1000), "p")), inv},
		{"burst too large", putPolicy(named(gcra(1, 1000, fsm.MaxPolicyBurst+1), "p")), inv},
		{"burst spanning centuries", putPolicy(named(gcra(1, fsm.MaxPolicyPeriodMs, 100), "p")), inv},
		{"gcra finer than a nanosecond", putPolicy(named(gcra(2_000_000, 1, 0), "p")), inv},
		{"delete without a name", &conclavev1.DeletePolicyRequest{}, inv},
		{"check without keys", check(), inv},
		{"check of an empty key", check(inline("", 1, valid)), inv},
		{"check naming a key twice", check(inline("k", 1, valid), inline("j", 1, valid), inline("k", 1, valid)), inv},
		{"check of a missing policy", check(inline("j", 1, valid), byName("k", 1, "missing")), nf},
		{"check without a policy", check(&conclavev1.RateLimitKey{Key: "k"}), inv},
		{"check with an invalid inline policy", check(inline("j", 1, valid), inline("k", 1, policy(algFixed, 0, 1000))), inv},
		{"check with slots", check(slot), inv},
		{"refund without keys", &conclavev1.RefundRequest{}, inv},
		{"refund of slots of a fixed window", &conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{
			{Key: "k", Limit: &conclavev1.RateLimitKey_Inline{Inline: valid}, Slots: []uint64{1}}}}, fsm.ErrWrongType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newRL(t)
			b.check(0, false, inline("j", 1, valid)) // some state a failed command must leave alone
			res := b.do(1, tc.op, tc.err)
			var fe *fsm.Error
			if !errors.As(fsm.ErrorFromProto(res.GetError()), &fe) || fe.Msg == "" {
				t.Fatalf("error %v", res.GetError())
			}
			t.Logf("%v", fe)
		})
	}
	if err := fsm.ValidatePolicy(policy(algFixed, 0, 1)); !errors.Is(err, fsm.ErrInvalidArgument) {
		t.Errorf("ValidatePolicy of limit 0: %v", err)
	}
	if err := fsm.ValidatePolicy(valid); err != nil {
		t.Errorf("ValidatePolicy of a valid policy: %v", err)
	}
}

func TestRateLimit_Policies(t *testing.T) {
	b := newRL(t)
	for _, name := range []string{"api/b", "web", "api/a", "api/c", "apiz"} {
		b.do(0, putPolicy(named(policy(algFixed, 1, 1000), name)), nil)
	}
	b.do(0, putPolicy(named(gcra(7, 1000, 9), "api/b")), nil) // replaces
	names := func(ps []*conclavev1.RateLimitPolicy) (out []string) {
		for _, p := range ps {
			out = append(out, p.GetName())
		}
		return out
	}
	b.view(0, func(v *fsm.View) {
		if p, ok := v.Policy("api/b"); !ok || !proto.Equal(p, named(gcra(7, 1000, 9), "api/b")) {
			t.Errorf("Policy(api/b) = %v, %v", p, ok)
		}
		if _, ok := v.Policy("nope"); ok {
			t.Error("Policy(nope) found")
		}
		for _, tc := range []struct {
			prefix, after string
			limit         int
			want          []string
			more          bool
		}{
			{"", "", -1, []string{"api/a", "api/b", "api/c", "apiz", "web"}, false},
			{"api/", "", 2, []string{"api/a", "api/b"}, true},
			{"api/", "api/b", 2, []string{"api/c"}, false},
			{"api/", "api/c", 2, nil, false},
			{"", "apiz", 1, []string{"web"}, false},
			{"x", "", -1, nil, false},
		} {
			got, more := v.Policies(tc.prefix, tc.after, tc.limit)
			if !slices.Equal(names(got), tc.want) || more != tc.more {
				t.Errorf("Policies(%q, %q, %d) = %v, %v; want %v, %v", tc.prefix, tc.after, tc.limit, names(got), more, tc.want, tc.more)
			}
		}
	})
	// Policies and limiters survive Snapshot→Restore, byte for byte.
	b.check(0, false, byName("k1", 1, "api/b"), inline("k2", 1, policy(algSliding, 3, 1000)),
		inline("k3", 2, policy(algConcurrency, 3, 1000)), byName("k4", 1, "web"))
	snap := snapshotBytes(t, b.m)
	r := restored(t, b.m)
	if !bytes.Equal(snapshotBytes(t, r), snap) || dump(r, t0) != dump(b.m, t0) {
		t.Fatal("Snapshot→Restore→Snapshot is not the identity with rate limits")
	}
	// The restored machine decides as the original.
	for _, m := range []*fsm.Machine{b.m, r} {
		res := m.ApplyCommand(b.index+1, cmd(t0+10*ms, check(byName("k1", 7, "api/b"), inline("k3", 1, policy(algConcurrency, 3, 1000)))))
		if res.GetRateLimitCheck().GetAllowed() != true || len(res.GetRateLimitCheck().GetVerdicts()[1].GetSlots()) != 1 {
			t.Fatalf("after restore: %v", res)
		}
	}
	if !bytes.Equal(snapshotBytes(t, r), snapshotBytes(t, b.m)) {
		t.Fatal("original and restored diverged")
	}
}

// TestRateLimit_NeverOverLimit hammers one key of each window algorithm with random
// costs at random times and checks the guarantee directly on what was admitted: a
// sliding window never admits more than limit in any window of period; a fixed window
// never more than limit per aligned window; a concurrency limit never holds more than
// limit slots; GCRA never more than burst + elapsed/interval in any interval.
func TestRateLimit_NeverOverLimit(t *testing.T) {
	seed := testSeed(t)
	const limit, periodMs = 5, 1000
	for _, p := range []*conclavev1.RateLimitPolicy{
		policy(algSliding, limit, periodMs), policy(algFixed, limit, periodMs),
		policy(algConcurrency, limit, periodMs), gcra(limit, periodMs, 3),
	} {
		t.Run(p.GetAlgorithm().String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, uint64(p.GetAlgorithm())))
			m := fsm.New()
			type admit struct {
				at   int64
				cost uint64
			}
			var admitted []admit
			var held []uint64
			now, denied := t0, 0
			for i := range 3000 {
				now += r.Int64N(120 * ms)
				index := uint64(i + 1)
				if p.GetAlgorithm() == algConcurrency && len(held) > 0 && r.IntN(4) == 0 {
					k := r.IntN(len(held))
					m.ApplyCommand(index, cmd(now, &conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{
						{Key: "k", Limit: &conclavev1.RateLimitKey_Inline{Inline: p}, Slots: held[k : k+1]}}}))
					held = slices.Delete(held, k, k+1)
					continue
				}
				cost := 1 + uint64(r.IntN(3))
				res := m.ApplyCommand(index, cmd(now, check(inline("k", cost, p))))
				kv := res.GetRateLimitCheck().GetVerdicts()[0]
				if !kv.GetAllowed() {
					denied++
					if kv.GetRetryAfterMs() <= 0 {
						t.Fatalf("denied with retry_after %d", kv.GetRetryAfterMs())
					}
					continue
				}
				admitted = append(admitted, admit{now, cost})
				held = append(held, kv.GetSlots()...)
				if p.GetAlgorithm() == algConcurrency {
					var live int
					m.Read(now, func(v *fsm.View) { l, _ := v.Limiter("k"); live = len(l.GetSlots()) })
					if live > limit {
						t.Fatalf("%d slots held, limit %d", live, limit)
					}
				}
			}
			period := periodMs * ms
			for i, a := range admitted {
				var sum uint64
				for _, b := range admitted[i:] {
					switch p.GetAlgorithm() {
					case algSliding:
						if b.at < a.at+period {
							sum += b.cost
						}
					case algFixed:
						if b.at/period == a.at/period {
							sum += b.cost
						}
					case algGCRA:
						interval := period / limit
						if float64(sum+b.cost) > float64(p.GetBurst())+float64(b.at-a.at)/float64(interval) {
							t.Fatalf("GCRA admitted %d between +%dms and +%dms", sum+b.cost, (a.at-t0)/ms, (b.at-t0)/ms)
						}
						sum += b.cost
					}
				}
				if p.GetAlgorithm() != algGCRA && sum > limit {
					t.Fatalf("%d admitted in the window of +%dms", sum, (a.at-t0)/ms)
				}
			}
			if len(admitted) == 0 || denied == 0 {
				t.Fatalf("%d admitted, %d denied: the load does not test the limit", len(admitted), denied)
			}
			t.Logf("%d admitted, %d denied", len(admitted), denied)
		})
	}
}

// BenchmarkRateLimit_IdleKeyMemory measures the heap one idle GCRA limiter costs: a
// million keys each hit once, applied from encoded log entries as raft hands them over
// (the target: 1,000,000 idle keys in 200 MB), and again on a machine restored
// from its snapshot.
func BenchmarkRateLimit_IdleKeyMemory(b *testing.B) {
	const keys = 1_000_000
	p := gcra(100, 3_600_000, 0) // a key hit once waits 36 s to be full again
	heap := func() uint64 {
		var st runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&st)
		return st.HeapInuse
	}
	var perKey, perRestored, perCheck float64
	for range b.N {
		before := heap()
		entries := make([][]byte, keys)
		for i := range entries {
			data, err := proto.Marshal(cmd(t0+int64(i)*1000, check(inline(fmt.Sprintf("user:%07d", i), 1, p))))
			if err != nil {
				b.Fatal(err)
			}
			entries[i] = data
		}
		m := fsm.New()
		start := time.Now()
		for i, data := range entries {
			m.Apply(uint64(i+1), data)
		}
		perCheck = float64(time.Since(start).Nanoseconds()) / keys
		entries = nil
		after := heap()
		var n int
		m.Read(0, func(v *fsm.View) { n = v.LimiterCount() })
		if n != keys {
			b.Fatalf("%d limiters stored, want %d", n, keys)
		}
		perKey = (float64(after) - float64(before)) / keys

		// A follower restoring the snapshot holds the same state.
		before = heap()
		r := restored(b, m)
		after = heap()
		perRestored = (float64(after) - float64(before)) / keys
		runtime.KeepAlive(m)
		runtime.KeepAlive(r)
	}
	b.ReportMetric(perKey, "heap-B/key")
	b.ReportMetric(perRestored, "restored-B/key")
	b.ReportMetric(perCheck, "ns/apply")
}

// BenchmarkRateLimit_Check3Keys applies one Check of three keys (GCRA by name, sliding
// window and fixed window inline) per iteration, 10 µs of command time apart.
func BenchmarkRateLimit_Check3Keys(b *testing.B) {
	m := fsm.New()
	m.ApplyCommand(1, cmd(t0, putPolicy(named(gcra(1000, 1000, 0), "api"))))
	sliding, fixed := policy(algSliding, 1000, 1000), policy(algFixed, 1_000_000_000, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		u := strconv.Itoa(i % 1000)
		c := cmd(t0+int64(i)*10_000, check(byName("user:"+u, 1, "api"), inline("ip:"+u, 1, sliding), inline("tenant", 1, fixed)))
		m.ApplyCommand(uint64(i+2), c)
	}
}

// TestRateLimit_PersistWhileApplying persists a snapshot while Checks and Refunds keep
// growing and trimming the same logs, and Peeks read them (run with -race): a limiter's
// log may share its backing array with the version a snapshot holds, so this is where a
// write into that version would show.
func TestRateLimit_PersistWhileApplying(t *testing.T) {
	m, ref := fsm.New(), fsm.New()
	sliding, slots := policy(algSliding, 50, 1000), policy(algConcurrency, 50, 1000)
	apply := func(target *fsm.Machine, i uint64) {
		now := t0 + int64(i)*10*ms
		var op proto.Message
		switch i % 5 {
		case 4:
			op = &conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{inline("s", 1, sliding),
				{Key: "c", Limit: &conclavev1.RateLimitKey_Inline{Inline: slots}, Slots: []uint64{(i - 1) << 16}}}}
		default:
			op = check(inline("s", 1+i%3, sliding), inline("c", 1+i%2, slots))
		}
		target.ApplyCommand(i, cmd(now, op))
	}
	var index uint64
	for range 303 { // the first command after the snapshot is a Refund
		index++
		apply(m, index)
		apply(ref, index)
	}
	snap := m.Snapshot()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := index + 1; i <= index+2000; i++ {
			apply(m, i)
		}
	})
	for range 2 {
		wg.Go(func() {
			for range 300 {
				m.Read(0, func(v *fsm.View) {
					if _, err := v.PeekRateLimit(&conclavev1.PeekRequest{Keys: []*conclavev1.RateLimitKey{inline("s", 1, sliding), inline("c", 1, slots)}}); err != nil {
						t.Error(err)
					}
				})
			}
		})
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if want := snapshotBytes(t, ref); !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("snapshot persisted during applies differs from the state at the snapshot (%d vs %d bytes)", buf.Len(), len(want))
	}
	var again bytes.Buffer
	if _, err := snap.WriteTo(&again); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Fatalf("second WriteTo differs (err %v)", err)
	}
}
