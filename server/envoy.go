package server

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	envoycommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/server/envoyrl"
)

// The response headers ShouldRateLimit asks Envoy to add, named as in the IETF RateLimit
// header fields draft (draft-ietf-httpapi-ratelimit-headers, versions 03 to 06) and as
// envoyproxy/ratelimit names them by default. They describe the most restrictive
// limited descriptor: the limit (requests per unit), what remains of it, and the seconds
// until its window resets.
const (
	HeaderRateLimitLimit     = "RateLimit-Limit"
	HeaderRateLimitRemaining = "RateLimit-Remaining"
	HeaderRateLimitReset     = "RateLimit-Reset"
)

// envoyService is envoy.service.ratelimit.v3.RateLimitService, so that Envoy and Istio
// can use Conclave as their global rate-limit service. A domain's descriptors are
// policies named by package envoyrl. ShouldRateLimit maps each descriptor to its policy
// from a linearizable read (a follower that had not yet applied an import would let the
// first requests through unlimited; a policy deleted before the decision makes it map
// again), then decides every limited descriptor in ONE Check command — one raft entry —
// whose verdicts are exact across the cluster and across failover.
type envoyService struct {
	rlsv3.UnimplementedRateLimitServiceServer
	node Node
}

var _ rlsv3.RateLimitServiceServer = (*envoyService)(nil)

// registerEnvoy serves envoy.service.ratelimit.v3.RateLimitService on r, over node.
func registerEnvoy(r grpc.ServiceRegistrar, node Node) {
	rlsv3.RegisterRateLimitServiceServer(r, &envoyService{node: node})
}

func (s *envoyService) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := validateShouldRateLimit(req); err != nil {
		return nil, toStatus(err)
	}
	plan, err := s.plan(ctx, req)
	if err != nil {
		return nil, err
	}
	checked, err := s.decide(ctx, plan)
	if status.Code(err) == codes.NotFound {
		// A policy the read found was deleted before it was used (an import replacing
		// the domain), and nothing was consumed: map again and decide again.
		if plan, err = s.plan(ctx, req); err == nil {
			checked, err = s.decide(ctx, plan)
		}
	}
	if err != nil {
		return nil, err
	}
	return plan.response(checked, plan.peeked), nil
}

// plan maps req's descriptors to limiter keys and policies from a linearizable read,
// and in the same read peeks at the keys of descriptors that ask zero hits.
func (s *envoyService) plan(ctx context.Context, req *rlsv3.RateLimitRequest) (*envoyPlan, error) {
	plan, _, err := read(ctx, s.node, conclavev1.Consistency_CONSISTENCY_LINEARIZABLE, func(v *fsm.View) (*envoyPlan, error) {
		plan, err := planEnvoy(viewPolicies{v}, req)
		if err != nil || len(plan.peek.GetKeys()) == 0 {
			return plan, err
		}
		resp, err := v.PeekRateLimit(plan.peek)
		if err != nil {
			return nil, err
		}
		plan.peeked = resp.GetVerdicts()
		return plan, nil
	})
	if err != nil {
		return nil, err
	}
	if err := sameKeys(plan.peek.GetKeys(), plan.peeked); err != nil {
		return nil, err
	}
	return plan, nil
}

// decide applies the plan's Check, if it has keys, and returns its verdicts in key
// order. It is the plan's only write, so a request that fails has consumed nothing and
// can be decided again.
func (s *envoyService) decide(ctx context.Context, plan *envoyPlan) ([]*conclavev1.KeyVerdict, error) {
	var checked []*conclavev1.KeyVerdict
	if len(plan.check.GetKeys()) > 0 {
		cmd := &fsmv1.Command{Op: &fsmv1.Command_RateLimitCheck{RateLimitCheck: plan.check}}
		resp, _, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetRateLimitCheck)
		if err != nil {
			return nil, err
		}
		checked = resp.GetVerdicts()
	}
	if err := sameKeys(plan.check.GetKeys(), checked); err != nil {
		return nil, err
	}
	return checked, nil
}

// sameKeys checks that verdicts answer keys, one each, in order.
func sameKeys(keys []*conclavev1.RateLimitKey, verdicts []*conclavev1.KeyVerdict) error {
	if len(verdicts) != len(keys) {
		return status.Errorf(codes.Internal, "server: %d rate-limit keys answered with %d verdicts", len(keys), len(verdicts))
	}
	for i, v := range verdicts {
		if v.GetKey() != keys[i].GetKey() {
			return status.Errorf(codes.Internal, "server: rate-limit verdict %d is for key %q, asked %q", i, v.GetKey(), keys[i].GetKey())
		}
	}
	return nil
}

// viewPolicies is the policy table of a view, as envoyrl resolves against it.
type viewPolicies struct{ v *fsm.View }

func (p viewPolicies) Policy(name string) (*conclavev1.RateLimitPolicy, bool) {
	return p.v.Policy(name)
}

func (p viewPolicies) HasPrefix(prefix string) bool {
	ps, _ := p.v.Policies(prefix, "", 1)
	return len(ps) > 0
}

// envoyPlan is how one ShouldRateLimit request is decided: each descriptor's status as
// far as the mapping decides it, one Check of the limited descriptors' keys, and one Peek
// of the keys of limited descriptors that ask zero hits.
type envoyPlan struct {
	statuses []*rlsv3.RateLimitResponse_DescriptorStatus
	// slot is, per descriptor, where its verdict comes from; nil when the descriptor is
	// not limited (its status is final).
	slot  []*envoySlot
	check *conclavev1.CheckRequest
	peek  *conclavev1.PeekRequest
	// peeked are peek's verdicts, read with the plan.
	peeked []*conclavev1.KeyVerdict
}

// envoySlot is a limited descriptor's key in the plan's Check or Peek.
type envoySlot struct {
	peek  bool
	index int // in check.Keys or peek.Keys
	// limit is reported as current_limit; requests_per_unit is filled from the verdict.
	limit *rlsv3.RateLimitResponse_RateLimit
}

// planEnvoy maps req's descriptors through the policies of s. Descriptors that resolve
// to the same limiter key share one key of the Check (their hits are added) and its
// verdict; the first of them chooses the policy. A descriptor that asks zero hits (its
// hits_addend set to 0: check only) is peeked at as a hit of 1 that consumes nothing.
func planEnvoy(s envoyrl.Store, req *rlsv3.RateLimitRequest) (*envoyPlan, error) {
	n := len(req.GetDescriptors())
	p := &envoyPlan{
		statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, n),
		slot:     make([]*envoySlot, n),
		check:    &conclavev1.CheckRequest{Partial: true}, // every descriptor counts on its own, as envoyproxy/ratelimit
		peek:     &conclavev1.PeekRequest{},
	}
	known := envoyrl.HasDomain(s, req.GetDomain())
	checkIndex, peekIndex := make(map[string]*envoySlot), make(map[string]*envoySlot)
	for i, d := range req.GetDescriptors() {
		p.statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
		if !known {
			continue // a domain without configuration limits nothing, as envoyproxy/ratelimit
		}
		key, limit := resolveDescriptor(s, req.GetDomain(), d)
		switch {
		case key == nil:
			continue
		case limit == nil: // unlimited, reported as envoyproxy/ratelimit does
			p.statuses[i].LimitRemaining = math.MaxUint32
			continue
		}
		hits := envoyHits(req, d)
		if hits == 0 {
			if p.slot[i] = peekIndex[key.GetKey()]; p.slot[i] == nil {
				p.slot[i] = &envoySlot{peek: true, index: len(p.peek.Keys), limit: limit}
				peekIndex[key.GetKey()] = p.slot[i]
				p.peek.Keys = append(p.peek.Keys, key)
			}
			continue
		}
		if sl := checkIndex[key.GetKey()]; sl != nil {
			k := p.check.Keys[sl.index]
			if k.Cost += hits; k.Cost > MaxRateLimitCost {
				return nil, invalid(fmt.Sprintf("descriptors[%d].hits_addend", i),
					"with the earlier descriptors of limiter key %q the hits are %d, more than %d", key.GetKey(), k.Cost, MaxRateLimitCost)
			}
			p.slot[i] = sl
			continue
		}
		key.Cost = hits
		p.slot[i] = &envoySlot{index: len(p.check.Keys), limit: limit}
		checkIndex[key.GetKey()] = p.slot[i]
		p.check.Keys = append(p.check.Keys, key)
	}
	return p, nil
}

// resolveDescriptor returns the Check key that decides d and the limit to report; a nil
// key when d is not limited, a nil limit when it is unlimited. A descriptor's own limit
// override is decided inline under that limit, as envoyproxy/ratelimit does.
func resolveDescriptor(s envoyrl.Store, domain string, d *envoycommon.RateLimitDescriptor) (*conclavev1.RateLimitKey, *rlsv3.RateLimitResponse_RateLimit) {
	entries := envoyEntries(d.GetEntries())
	key := &conclavev1.RateLimitKey{Key: envoyrl.LimiterKey(domain, entries)}
	if o := d.GetLimit(); o != nil {
		key.Limit = &conclavev1.RateLimitKey_Inline{Inline: &conclavev1.RateLimitPolicy{
			Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW,
			Limit:     uint64(o.GetRequestsPerUnit()),
			PeriodMs:  overridePeriodMs(o),
		}}
		limit := &rlsv3.RateLimitResponse_RateLimit{Unit: rlsv3.RateLimitResponse_RateLimit_Unit(o.GetUnit())}
		if m := o.GetUnitMultiplier(); m != nil {
			limit.UnitMultiplier = wrapperspb.UInt32(m.GetValue())
		}
		return key, limit
	}
	pol := envoyrl.Resolve(s, domain, entries)
	switch {
	case pol == nil:
		return nil, nil
	case envoyrl.IsUnlimited(pol):
		return key, nil
	}
	key.Limit = &conclavev1.RateLimitKey_Policy{Policy: pol.GetName()}
	unit, mult := envoyrl.PeriodUnit(pol.GetPeriodMs())
	limit := &rlsv3.RateLimitResponse_RateLimit{Name: pol.GetName(), Unit: unit}
	if mult != 1 {
		limit.UnitMultiplier = wrapperspb.UInt32(mult)
	}
	return key, limit
}

// envoyHits is the hits descriptor d asks: its own hits_addend when set, else the
// request's, else 1 (as envoyproxy/ratelimit).
func envoyHits(req *rlsv3.RateLimitRequest, d *envoycommon.RateLimitDescriptor) uint64 {
	if h := d.GetHitsAddend(); h != nil {
		return h.GetValue()
	}
	return max(1, uint64(req.GetHitsAddend()))
}

// envoyEntries converts a descriptor's entries.
func envoyEntries(es []*envoycommon.RateLimitDescriptor_Entry) []envoyrl.Entry {
	out := make([]envoyrl.Entry, len(es))
	for i, e := range es {
		out[i] = envoyrl.Entry{Key: e.GetKey(), Value: e.GetValue()}
	}
	return out
}

// response fills the plan's statuses from the verdicts of its Check and Peek (in key
// order) and builds the answer: OVER_LIMIT when any descriptor is over its limit (a
// shadow-mode policy's verdict is always allowed, so it never is).
func (p *envoyPlan) response(checked, peeked []*conclavev1.KeyVerdict) *rlsv3.RateLimitResponse {
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: p.statuses}
	for i, sl := range p.slot {
		if sl == nil {
			continue
		}
		st := p.statuses[i]
		verdicts := checked
		if sl.peek {
			verdicts = peeked
		}
		v := verdicts[sl.index]
		st.CurrentLimit = proto.CloneOf(sl.limit)
		st.CurrentLimit.RequestsPerUnit = clampUint32(v.GetLimit())
		st.LimitRemaining = sl.limitRemaining(v)
		st.DurationUntilReset = durationpb.New(time.Duration(max(0, v.GetResetAfterMs())) * time.Millisecond)
		if !v.GetAllowed() {
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		}
	}
	resp.ResponseHeadersToAdd = rateLimitHeaders(resp.GetStatuses())
	return resp
}

// limitRemaining is the limit_remaining of the slot's verdict v. A peek asked for one
// hit it did not take: when that hit would be allowed, it is added back.
func (sl *envoySlot) limitRemaining(v *conclavev1.KeyVerdict) uint32 {
	r := v.GetRemaining()
	if sl.peek && v.GetWouldAllow() {
		r++
	}
	return clampUint32(r)
}

// rateLimitHeaders returns the RateLimit header fields of the most restrictive limited
// descriptor — an over-limit one (the one that resets last), else the one with the
// least remaining (the first of equals) — or nil when no descriptor is limited.
func rateLimitHeaders(statuses []*rlsv3.RateLimitResponse_DescriptorStatus) []*corev3.HeaderValue {
	var best *rlsv3.RateLimitResponse_DescriptorStatus
	for _, st := range statuses {
		if st.GetCurrentLimit() == nil {
			continue
		}
		over, bestOver := st.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT, best.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT
		switch {
		case best == nil, over && !bestOver:
			best = st
		case over && bestOver:
			if st.GetDurationUntilReset().AsDuration() > best.GetDurationUntilReset().AsDuration() {
				best = st
			}
		case !over && !bestOver && st.GetLimitRemaining() < best.GetLimitRemaining():
			best = st
		}
	}
	if best == nil {
		return nil
	}
	reset := (best.GetDurationUntilReset().AsDuration() + time.Second - 1) / time.Second // whole seconds, rounded up
	return []*corev3.HeaderValue{
		{Key: HeaderRateLimitLimit, Value: strconv.FormatUint(uint64(best.GetCurrentLimit().GetRequestsPerUnit()), 10)},
		{Key: HeaderRateLimitRemaining, Value: strconv.FormatUint(uint64(best.GetLimitRemaining()), 10)},
		{Key: HeaderRateLimitReset, Value: strconv.FormatInt(int64(reset), 10)},
	}
}

func clampUint32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}
