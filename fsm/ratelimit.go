package fsm

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Rate limiting (issue 5). Every limiter is a function of its stored state and the
// command's now (DESIGN §5):
//
//   - A Check decides every key first. By default it is all-or-nothing: unless every key
//     is allowed, nothing is consumed. With partial, each allowed key consumes. The
//     verdict of a key is always its own — the numbers as if its cost were taken when it
//     fits — so CheckResponse.allowed says whether anything was consumed.
//   - A key under a shadow-mode policy is reported allowed (shadow, would_allow = the
//     limiter's verdict, the other numbers the limiter's) and does not hold the others
//     back; it consumes only if the limiter allowed it. Without shadow mode would_allow
//     equals allowed.
//   - A limiter's state records the spec it was made under; under another spec (algorithm,
//     limit, period or burst) the key reads as full and a consuming Check starts it afresh.
//   - State is deleted as soon as it is back to full, or by ExpireDue once its idle
//     deadline passes; readers treat a passed deadline as full.

// specCacheMax bounds the spec intern table; past it the table starts over (limiters
// keep their specs: interning only saves memory).
const specCacheMax = 4096

// intern returns the shared copy of sp.
func (s *state) intern(sp limitSpec) *limitSpec {
	if p, ok := s.specs[sp]; ok {
		return p
	}
	if len(s.specs) >= specCacheMax {
		s.specs = make(map[limitSpec]*limitSpec)
	}
	p := &sp
	s.specs[sp] = p
	return p
}

// liveLimiter returns key's limiter if it was made under sp and is not idle at now.
func (s *state) liveLimiter(key string, sp *limitSpec, now int64) *limiter {
	l, ok := s.limiters.Get(&limiter{key: key})
	if !ok || *l.spec != *sp || l.deadline() <= now {
		return nil
	}
	return l
}

// limiterDeadline orders the limiters' idle-deadline index by deadline, then key. It
// points at the limiter rather than copying its key: 16 bytes an entry instead of 24.
type limiterDeadline struct {
	at int64
	l  *limiter
}

func limiterDeadlineLess(a, b limiterDeadline) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.l.key < b.l.key
}

// putLimiter replaces key's limiter with l, or deletes it when l is nil or idle at now,
// keeping the deadline index true.
func (s *state) putLimiter(key string, l *limiter, now int64) {
	if old, ok := s.limiters.Delete(&limiter{key: key}); ok {
		s.limiterDeadlines.Delete(limiterDeadline{old.deadline(), old})
	}
	if l == nil || l.deadline() <= now {
		return
	}
	s.limiters.Set(l)
	s.limiterDeadlines.Set(limiterDeadline{l.deadline(), l})
}

// expireLimiters deletes up to limit limiters whose idle deadline is at or before now.
func (s *state) expireLimiters(now int64, limit int) {
	for range limit {
		d, ok := s.limiterDeadlines.Min()
		if !ok || d.at > now {
			return
		}
		s.limiterDeadlines.Delete(d)
		s.limiters.Delete(d.l)
	}
}

// rlKey is one key of a Check, Peek or Refund, resolved and validated.
type rlKey struct {
	key    string
	cost   uint64
	spec   limitSpec
	shadow bool
	slots  []uint64
}

// resolveKeys validates keys and resolves their policies. Keys must be non-empty and
// distinct; slots are allowed only in a refund, and only for CONCURRENCY.
func (s *state) resolveKeys(keys []*conclavev1.RateLimitKey, refund bool) ([]rlKey, *Error) {
	if len(keys) == 0 {
		return nil, errInvalid(nil, "a rate-limit request needs at least one key")
	}
	out := make([]rlKey, len(keys))
	seen := make(map[string]bool, len(keys)) // looked up only, never iterated
	for i, k := range keys {
		key := k.GetKey()
		if key == "" {
			return nil, errInvalid(nil, "rate-limit key must not be empty")
		}
		if seen[key] {
			return nil, errInvalid([]byte(key), "rate-limit key is named twice in one request")
		}
		seen[key] = true
		var p *conclavev1.RateLimitPolicy
		what := "inline policy"
		switch l := k.GetLimit().(type) {
		case *conclavev1.RateLimitKey_Inline:
			p = l.Inline
		case *conclavev1.RateLimitKey_Policy:
			what = "policy " + strconv.Quote(l.Policy)
			found, ok := s.policies.Get(&conclavev1.RateLimitPolicy{Name: l.Policy})
			if !ok {
				return nil, newError(fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, []byte(key), "rate-limit %s does not exist", what)
			}
			p = found
		default:
			return nil, errInvalid([]byte(key), "rate-limit key needs a policy name or an inline policy")
		}
		sp, err := specOf(p, []byte(key), what)
		if err != nil {
			return nil, err
		}
		switch {
		case len(k.GetSlots()) > 0 && !refund:
			return nil, errInvalid([]byte(key), "slots are released by Refund only")
		case len(k.GetSlots()) > 0 && sp.alg != algConcurrency:
			// A policy's algorithm is state when named: like a value of the wrong type.
			return nil, newError(fsmv1.ErrorCode_ERROR_CODE_WRONG_TYPE, []byte(key), "slots are only for CONCURRENCY limits, and this key's policy is %s", sp.alg)
		}
		out[i] = rlKey{key: key, cost: max(k.GetCost(), 1), spec: sp, shadow: p.GetShadowMode(), slots: k.GetSlots()}
	}
	return out, nil
}

// rateLimit decides every key at now and, with commit, consumes on the keys whose cost
// fits when every key is allowed or partial is set. Slot ids come from index. Without
// commit it only reads (a Peek) and is safe beside other readers.
func (s *state) rateLimit(keys []rlKey, partial bool, index uint64, now int64, commit bool) (bool, []*conclavev1.KeyVerdict) {
	curs := make([]*limiter, len(keys))
	verdicts := make([]verdict, len(keys))
	all := true
	for i := range keys {
		k := &keys[i]
		curs[i] = s.liveLimiter(k.key, &k.spec, now)
		verdicts[i] = k.spec.decide(curs[i], now, k.cost)
		all = all && (verdicts[i].allowed || k.shadow)
	}
	out := make([]*conclavev1.KeyVerdict, len(keys))
	for i := range keys {
		k := &keys[i]
		out[i] = verdicts[i].proto(k)
		if !commit || !(all || partial) || !verdicts[i].allowed {
			continue
		}
		next := s.intern(k.spec).take(curs[i], k.key, now, k.cost, index)
		s.putLimiter(k.key, next, now)
		if k.spec.alg == algConcurrency {
			log := next.marks()
			for _, m := range log[len(log)-int(k.cost):] {
				out[i].Slots = append(out[i].Slots, m.v)
			}
		}
	}
	return all, out
}

func (v verdict) proto(k *rlKey) *conclavev1.KeyVerdict {
	retry := v.retry
	if retry > 0 {
		retry = ceilMs(retry)
	}
	return &conclavev1.KeyVerdict{
		Key: k.key, Allowed: v.allowed || k.shadow, Limit: k.spec.limit, Remaining: v.remaining,
		ResetAfterMs: ceilMs(v.reset), RetryAfterMs: retry, Shadow: k.shadow, WouldAllow: v.allowed,
	}
}

// ceilMs is ns in milliseconds rounded up, so it is positive while ns is.
func ceilMs(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return (ns-1)/1_000_000 + 1
}

func (m *Machine) rateLimitCheck(index uint64, now int64, req *conclavev1.CheckRequest) (*fsmv1.Result_RateLimitCheck, *Error) {
	keys, err := m.st.resolveKeys(req.GetKeys(), false)
	if err != nil {
		return nil, err
	}
	allowed, verdicts := m.st.rateLimit(keys, req.GetPartial(), index, now, true)
	return &fsmv1.Result_RateLimitCheck{RateLimitCheck: &conclavev1.CheckResponse{Allowed: allowed, Verdicts: verdicts}}, nil
}

// rateLimitRefund gives back each key's cost (CONCURRENCY: releases the slots listed;
// unknown ids are ignored). A key with no state under its policy is left alone. The
// verdicts are the limiters as they are after it: allowed when one more hit fits,
// remaining not reduced by a hypothetical hit.
func (m *Machine) rateLimitRefund(now int64, req *conclavev1.RefundRequest) (*fsmv1.Result_RateLimitRefund, *Error) {
	keys, err := m.st.resolveKeys(req.GetKeys(), true)
	if err != nil {
		return nil, err
	}
	resp := &conclavev1.RefundResponse{}
	for i := range keys {
		k := &keys[i]
		cur := m.st.liveLimiter(k.key, &k.spec, now)
		if cur != nil {
			cur = cur.spec.give(cur, now, k.cost, k.slots)
			m.st.putLimiter(k.key, cur, now)
		}
		resp.Verdicts = append(resp.Verdicts, k.spec.status(cur, now).proto(k))
	}
	return &fsmv1.Result_RateLimitRefund{RateLimitRefund: resp}, nil
}

func (m *Machine) policyPut(req *conclavev1.PutPolicyRequest) (*fsmv1.Result_PolicyPut, *Error) {
	p := req.GetPolicy()
	if p.GetName() == "" {
		return nil, errInvalid(nil, "rate-limit policy name must not be empty")
	}
	if _, err := specOf(p, nil, "policy "+strconv.Quote(p.GetName())); err != nil {
		return nil, err
	}
	m.st.policies.Set(proto.CloneOf(p))
	return &fsmv1.Result_PolicyPut{PolicyPut: &conclavev1.PutPolicyResponse{}}, nil
}

func (m *Machine) policyDelete(req *conclavev1.DeletePolicyRequest) (*fsmv1.Result_PolicyDelete, *Error) {
	if req.GetName() == "" {
		return nil, errInvalid(nil, "rate-limit policy name must not be empty")
	}
	_, deleted := m.st.policies.Delete(&conclavev1.RateLimitPolicy{Name: req.GetName()})
	return &fsmv1.Result_PolicyDelete{PolicyDelete: &conclavev1.DeletePolicyResponse{Deleted: deleted}}, nil
}

// PeekRateLimit returns what a Check of req's keys (all-or-nothing) would return at the
// view's time, consuming nothing and acquiring no slots. A bad request returns an *Error
// (InvalidArgument, or NotFound for a named policy that does not exist).
func (v *View) PeekRateLimit(req *conclavev1.PeekRequest) (*conclavev1.PeekResponse, error) {
	keys, err := v.st.resolveKeys(req.GetKeys(), false)
	if err != nil {
		return nil, err
	}
	allowed, verdicts := v.st.rateLimit(keys, false, 0, v.now, false)
	return &conclavev1.PeekResponse{Allowed: allowed, Verdicts: verdicts}, nil
}

// Policy returns the stored rate-limit policy name.
func (v *View) Policy(name string) (*conclavev1.RateLimitPolicy, bool) {
	return v.st.policies.Get(&conclavev1.RateLimitPolicy{Name: name})
}

// Policies returns up to limit stored policies whose name has prefix and sorts after
// `after` (empty: from the start), in name order (a negative limit: all); more says
// whether others remain.
func (v *View) Policies(prefix, after string, limit int) (out []*conclavev1.RateLimitPolicy, more bool) {
	v.st.policies.Ascend(&conclavev1.RateLimitPolicy{Name: max(prefix, after)}, func(p *conclavev1.RateLimitPolicy) bool {
		switch {
		case !strings.HasPrefix(p.GetName(), prefix):
			return false
		case p.GetName() == after:
			return true
		case len(out) == limit:
			more = true
			return false
		}
		out = append(out, p)
		return true
	})
	return out, more
}

// Limiter returns the state of rate-limit key, unless it is back to full at the view's
// time (then, as when there is none, false).
func (v *View) Limiter(key string) (*fsmv1.LimiterRecord, bool) {
	l, ok := v.st.limiters.Get(&limiter{key: key})
	if !ok || l.deadline() <= v.now {
		return nil, false
	}
	return l.proto(), true
}

// Limiters returns up to limit limiters not back to full whose key has prefix and sorts
// after `after`, in key order (a negative limit: all); more says whether others remain.
func (v *View) Limiters(prefix, after string, limit int) (out []*fsmv1.LimiterRecord, more bool) {
	v.st.limiters.Ascend(&limiter{key: max(prefix, after)}, func(l *limiter) bool {
		switch {
		case !strings.HasPrefix(l.key, prefix):
			return false
		case l.key == after || l.deadline() <= v.now:
			return true
		case len(out) == limit:
			more = true
			return false
		}
		out = append(out, l.proto())
		return true
	})
	return out, more
}

// LimiterCount is the number of stored limiters, including idle ones not yet deleted.
func (v *View) LimiterCount() int { return v.st.limiters.Len() }

// proto is the limiter as a snapshot record.
func (l *limiter) proto() *fsmv1.LimiterRecord {
	r := &fsmv1.LimiterRecord{Key: l.key, Policy: l.spec.policy(), ExpiresAtUnixNano: l.deadline()}
	switch l.spec.alg {
	case algFixed:
		r.WindowStartUnixNano, r.Count = l.at, l.n
	case algSliding:
		for _, h := range l.marks() {
			r.Hits = append(r.Hits, &fsmv1.LimiterHit{AtUnixNano: h.at, Cost: h.v})
		}
	case algConcurrency:
		for _, s := range l.marks() {
			r.Slots = append(r.Slots, &fsmv1.LimiterSlot{Id: s.v, ExpiresAtUnixNano: s.at})
		}
	default:
		r.TatUnixNano = l.at
	}
	return r
}

// limiterFromProto rebuilds a limiter from a snapshot record, checking what the machine
// relies on: a valid policy, a non-empty log in time order and counts within the limit.
func (s *state) limiterFromProto(r *fsmv1.LimiterRecord) (*limiter, bool) {
	sp, err := specOf(r.GetPolicy(), nil, "policy")
	if err != nil || r.GetKey() == "" {
		return nil, false
	}
	l := &limiter{key: r.GetKey(), spec: s.intern(sp)}
	var log []mark
	switch sp.alg {
	case algFixed:
		l.at, l.n = r.GetWindowStartUnixNano(), r.GetCount()
		return l, l.at >= 0 && l.at%sp.period == 0 && l.n > 0 && l.n <= sp.limit
	case algSliding:
		for i, h := range r.GetHits() {
			if h.GetCost() == 0 || h.GetAtUnixNano() < 0 || (i > 0 && h.GetAtUnixNano() <= log[i-1].at) || h.GetCost() > sp.limit-l.n {
				return nil, false
			}
			log = append(log, mark{h.GetAtUnixNano(), h.GetCost()})
			l.n += h.GetCost()
		}
		l.log = &log
		return l, len(log) > 0
	case algConcurrency:
		for i, x := range r.GetSlots() {
			if x.GetExpiresAtUnixNano() < 0 || (i > 0 && x.GetExpiresAtUnixNano() < log[i-1].at) || uint64(i) >= sp.limit {
				return nil, false
			}
			log = append(log, mark{x.GetExpiresAtUnixNano(), x.GetId()})
		}
		l.log = &log
		return l, len(log) > 0
	}
	l.at = r.GetTatUnixNano()
	return l, l.at >= 0
}
