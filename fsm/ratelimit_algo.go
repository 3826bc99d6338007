package fsm

import (
	"math"
	"math/bits"
	"slices"
	"sort"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Bounds on rate-limit policies. They keep a limiter's memory bounded and its arithmetic
// inside int64 nanoseconds.
const (
	// MaxPolicyPeriodMs is the longest period (or slot TTL) a policy may have: ten years.
	MaxPolicyPeriodMs int64 = 10 * 366 * 24 * 3600 * 1000
	// MaxPolicyBurst is the largest GCRA burst.
	MaxPolicyBurst uint64 = 1_000_000_000
	// MaxSlidingWindowLimit is the largest SLIDING_WINDOW limit: the window keeps a log of
	// up to limit admissions per key.
	MaxSlidingWindowLimit uint64 = 100_000
	// MaxConcurrencyLimit is the largest CONCURRENCY limit: slot ids of one Check are
	// numbered below 2^16.
	MaxConcurrencyLimit uint64 = 65_535
	// maxTolerance bounds GCRA's burst × emission interval (about 73 years), so that
	// now + 2 × tolerance stays far from overflowing.
	maxTolerance int64 = 1 << 61
)

const (
	algGCRA        = conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA
	algSliding     = conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_SLIDING_WINDOW
	algFixed       = conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW
	algConcurrency = conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY
)

// limitSpec is a policy's numbers as a limiter uses them. Two policies with equal specs
// share limiter state; a Check under another spec starts the key afresh. Shadow mode and
// the name are not part of it. Specs in the state are immutable and interned.
type limitSpec struct {
	alg      conclavev1.RateLimitAlgorithm // never UNSPECIFIED
	limit    uint64
	periodMs int64
	burst    uint64 // GCRA: hits at once (a policy's 0 reads as limit); 0 for the others
	// Derived from the fields above.
	period    int64 // ns
	interval  int64 // GCRA: emission interval ceil(period/limit), ≥ 1 ns
	tolerance int64 // GCRA: burst × interval
}

// ValidatePolicy checks a rate-limit policy the way the machine does before using it,
// so the server can reject bad input before it reaches the log. The name is not checked
// (an inline policy has none). The error is an *Error wrapping ErrInvalidArgument.
func ValidatePolicy(p *conclavev1.RateLimitPolicy) error {
	_, err := specOf(p, nil, "policy")
	return nilIfNone(err)
}

// specOf validates p and returns its spec; errors name key and what, the policy's role.
func specOf(p *conclavev1.RateLimitPolicy, key []byte, what string) (limitSpec, *Error) {
	sp := limitSpec{alg: p.GetAlgorithm(), limit: p.GetLimit(), periodMs: p.GetPeriodMs()}
	if sp.alg == conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_UNSPECIFIED {
		sp.alg = algGCRA
	}
	bad := func(format string, args ...any) (limitSpec, *Error) {
		return limitSpec{}, errInvalid(key, what+": "+format, args...)
	}
	switch {
	case sp.alg < algGCRA || sp.alg > algConcurrency:
		return bad("unknown algorithm %d", int32(sp.alg))
	case sp.limit == 0:
		return bad("limit must be positive")
	case sp.periodMs <= 0:
		return bad("period_ms must be positive")
	case sp.periodMs > MaxPolicyPeriodMs:
		return bad("period_ms must be at most %d (ten years)", MaxPolicyPeriodMs)
	case sp.alg == algSliding && sp.limit > MaxSlidingWindowLimit:
		return bad("a sliding window's limit must be at most %d", MaxSlidingWindowLimit)
	case sp.alg == algConcurrency && sp.limit > MaxConcurrencyLimit:
		return bad("a concurrency limit must be at most %d", MaxConcurrencyLimit)
	}
	sp.period = sp.periodMs * 1_000_000
	if sp.alg != algGCRA {
		return sp, nil
	}
	if sp.limit > uint64(sp.period) {
		return bad("limit %d per %d ms is more than one per nanosecond", sp.limit, sp.periodMs)
	}
	sp.burst = p.GetBurst()
	if sp.burst == 0 {
		sp.burst = sp.limit
	}
	if sp.burst > MaxPolicyBurst {
		return bad("burst must be at most %d", MaxPolicyBurst)
	}
	sp.interval = int64((uint64(sp.period) + sp.limit - 1) / sp.limit)
	hi, lo := bits.Mul64(sp.burst, uint64(sp.interval))
	if hi != 0 || lo > uint64(maxTolerance) {
		return bad("burst %d at one hit per %d ns spans more than 2^61 ns", sp.burst, sp.interval)
	}
	sp.tolerance = int64(lo)
	return sp, nil
}

// policy is the spec as the policy recorded with a limiter's state.
func (sp *limitSpec) policy() *conclavev1.RateLimitPolicy {
	return &conclavev1.RateLimitPolicy{Algorithm: sp.alg, Limit: sp.limit, PeriodMs: sp.periodMs, Burst: sp.burst}
}

// limiter is the state of one rate-limit key. Like entries, a limiter in the tree is
// never changed in place: a change stores a new one. Its log may share a backing array
// with the version it replaced, but only ever grows past that version's end, so older
// versions (held by snapshots) never see a write.
type limiter struct {
	key  string
	spec *limitSpec
	at   int64  // GCRA: the theoretical arrival time; FIXED_WINDOW: the window's start
	n    uint64 // FIXED_WINDOW: hits in the window; SLIDING_WINDOW: the log's total cost
	// log (nil for GCRA and FIXED_WINDOW, which keeps the struct at 48 bytes):
	// SLIDING_WINDOW: admissions (at, cost), oldest first, distinct times.
	// CONCURRENCY: slots held (expiry, id), in order of expiry.
	log *[]mark
}

// marks is the limiter's log; nil for none.
func (l *limiter) marks() []mark {
	if l == nil || l.log == nil {
		return nil
	}
	return *l.log
}

type mark struct {
	at int64
	v  uint64
}

// deadline is when the limiter is idle (back to full) and may be deleted.
func (l *limiter) deadline() int64 {
	switch l.spec.alg {
	case algFixed:
		return satAdd(l.at, l.spec.period)
	case algSliding:
		log := l.marks()
		return satAdd(log[len(log)-1].at, l.spec.period)
	case algConcurrency:
		log := l.marks()
		return log[len(log)-1].at
	}
	return l.at
}

// verdict is one key's decision, in nanoseconds.
type verdict struct {
	allowed   bool
	remaining uint64
	reset     int64 // until the limiter is back to full
	retry     int64 // until the cost would fit: 0 when allowed, -1 never
}

// decide says whether cost fits the limiter cur (nil: full) at now, with the numbers as
// they would be after taking it (when it fits) or as they are (when it does not).
func (sp *limitSpec) decide(cur *limiter, now int64, cost uint64) verdict {
	switch sp.alg {
	case algFixed:
		return sp.decideFixed(cur, now, cost)
	case algSliding, algConcurrency:
		return sp.decideLog(cur, now, cost)
	}
	return sp.decideGCRA(cur, now, cost)
}

// status is the limiter cur (nil: full) as it is at now: allowed when one more hit fits,
// the remaining hits and the time until full, and else the time until one hit fits.
func (sp *limitSpec) status(cur *limiter, now int64) verdict {
	v := sp.decide(cur, now, 1)
	if v.allowed {
		// A cost above every limit is refused with the numbers as they are.
		v = sp.decide(cur, now, math.MaxUint64)
		v.allowed, v.retry = true, 0
	}
	return v
}

// take returns the limiter after consuming cost at now; decide must have allowed it.
// CONCURRENCY slots get ids index<<16 | i.
func (sp *limitSpec) take(cur *limiter, key string, now int64, cost, index uint64) *limiter {
	next := &limiter{key: key, spec: sp}
	switch sp.alg {
	case algFixed:
		start, count := sp.window(cur, now)
		next.at, next.n = start, count+cost
	case algSliding:
		hits, sum := sp.live(cur, now)
		if n := len(hits); n > 0 && hits[n-1].at == now {
			// Coalesce: the newest hit is read by cur, so copy before changing it.
			hits = slices.Clone(hits)
			hits[n-1].v += cost
		} else {
			hits = append(hits, mark{now, cost})
		}
		next.log, next.n = &hits, sum+cost
	case algConcurrency:
		slots, _ := sp.live(cur, now)
		exp := satAdd(now, sp.period)
		for i := range cost {
			slots = append(slots, mark{exp, index<<16 | i})
		}
		next.log = &slots
	default:
		tat := now
		if cur != nil {
			tat = max(cur.at, now)
		}
		next.at = satAdd(tat, int64(cost)*sp.interval)
	}
	return next
}

// give returns the limiter after a refund of cost (or, for CONCURRENCY, of the slots
// listed) at now; nil when it is back to full.
func (sp *limitSpec) give(cur *limiter, now int64, cost uint64, slots []uint64) *limiter {
	if cur == nil {
		return nil
	}
	next := &limiter{key: cur.key, spec: sp}
	switch sp.alg {
	case algFixed:
		_, count := sp.window(cur, now)
		next.at, next.n = cur.at, count-min(count, cost)
		if next.n == 0 {
			return nil
		}
	case algSliding:
		hits, sum := sp.live(cur, now)
		hits = slices.Clone(hits)
		next.n = sum - min(sum, cost)
		for left := cost; left > 0 && len(hits) > 0; {
			last := &hits[len(hits)-1]
			d := min(last.v, left)
			last.v -= d
			left -= d
			if last.v == 0 {
				hits = hits[:len(hits)-1]
			}
		}
		if len(hits) == 0 {
			return nil
		}
		next.log = &hits
	case algConcurrency:
		held, _ := sp.live(cur, now)
		release := make(map[uint64]bool, len(slots)) // looked up only, never iterated
		for _, id := range slots {
			release[id] = true
		}
		left := slices.DeleteFunc(slices.Clone(held), func(s mark) bool { return release[s.v] })
		if len(left) == 0 {
			return nil
		}
		next.log = &left
	default:
		used := cur.at - now
		if used <= 0 || cost >= uint64(used)/uint64(sp.interval)+1 {
			return nil
		}
		next.at = cur.at - int64(cost)*sp.interval
		if next.at <= now {
			return nil
		}
	}
	return next
}

func (sp *limitSpec) decideGCRA(cur *limiter, now int64, cost uint64) verdict {
	var used int64 // how far the theoretical arrival time is ahead of now
	if cur != nil {
		used = max(cur.at-now, 0)
	}
	v := verdict{reset: used, remaining: sp.gcraRemaining(used)}
	if cost > sp.burst {
		v.retry = -1
		return v
	}
	after := satAdd(used, int64(cost)*sp.interval)
	if after > sp.tolerance {
		v.retry = after - sp.tolerance
		return v
	}
	return verdict{allowed: true, reset: after, remaining: sp.gcraRemaining(after)}
}

// gcraRemaining is how many more hits fit while the arrival time is used ahead of now.
func (sp *limitSpec) gcraRemaining(used int64) uint64 {
	if used >= sp.tolerance {
		return 0
	}
	return uint64((sp.tolerance - used) / sp.interval)
}

// window returns the start of the fixed window holding now (windows are aligned to the
// unix epoch) and the hits counted in it.
func (sp *limitSpec) window(cur *limiter, now int64) (start int64, count uint64) {
	start = now - now%sp.period
	if now < 0 && now%sp.period != 0 {
		start -= sp.period
	}
	if cur != nil && cur.at == start {
		count = cur.n
	}
	return start, count
}

func (sp *limitSpec) decideFixed(cur *limiter, now int64, cost uint64) verdict {
	start, count := sp.window(cur, now)
	end := satAdd(start, sp.period) - now
	v := verdict{remaining: sp.limit - min(count, sp.limit)}
	if count > 0 {
		v.reset = end
	}
	switch {
	case cost > sp.limit:
		v.retry = -1
	case cost > v.remaining:
		v.retry = end
	default:
		return verdict{allowed: true, remaining: v.remaining - cost, reset: end}
	}
	return v
}

// live returns the part of cur's log that still counts at now — a sliding window's hits
// after now-period, or the slots expiring after now — and, for a sliding window, their
// total cost. The slice shares cur's backing array: callers copy before changing it.
func (sp *limitSpec) live(cur *limiter, now int64) ([]mark, uint64) {
	if cur == nil {
		return nil, 0
	}
	after := now
	if sp.alg == algSliding {
		after = now - sp.period
	}
	log := cur.marks()
	i := sort.Search(len(log), func(i int) bool { return log[i].at > after })
	if sp.alg != algSliding {
		return log[i:], 0
	}
	sum := cur.n
	for _, h := range log[:i] {
		sum -= h.v
	}
	return log[i:], sum
}

// decideLog decides a sliding window (a log of hits) or a concurrency limit (a log of
// slots): in both, the oldest marks leave first, at mark time + leave.
func (sp *limitSpec) decideLog(cur *limiter, now int64, cost uint64) verdict {
	marks, used := sp.live(cur, now)
	weight := func(m mark) uint64 { return m.v }
	leave := sp.period // a hit leaves the window period after it was admitted
	if sp.alg == algConcurrency {
		used, leave = uint64(len(marks)), 0 // a slot is one, and leaves at its expiry
		weight = func(mark) uint64 { return 1 }
	}
	v := verdict{remaining: sp.limit - min(used, sp.limit)}
	if n := len(marks); n > 0 {
		v.reset = satAdd(marks[n-1].at, leave) - now
	}
	switch {
	case cost > sp.limit:
		v.retry = -1
	case cost > v.remaining:
		need := used + cost - sp.limit // what must leave first
		v.retry = v.reset              // all of it, at the latest
		for _, m := range marks {
			if w := weight(m); w >= need {
				v.retry = satAdd(m.at, leave) - now
				break
			} else {
				need -= w
			}
		}
	default:
		return verdict{allowed: true, remaining: v.remaining - cost, reset: satAdd(now, sp.period) - now}
	}
	return v
}

// satAdd is a+b for b ≥ 0, saturating at MaxInt64 instead of overflowing.
func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
