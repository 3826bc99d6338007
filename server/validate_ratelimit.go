package server

import (
	"fmt"
	"strings"

	"github.com/conclave-dev/conclave/fsm"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/server/envoyrl"
)

// Limits on rate-limit requests.
const (
	// MaxRateLimitKeys is the most keys one Check, Peek or Refund names.
	MaxRateLimitKeys = 128
	// MaxRateLimitCost bounds a key's cost (and a CONCURRENCY Check's slots).
	MaxRateLimitCost = 65535
	// MaxRateLimit bounds a policy's limit; MaxSlidingLimit a sliding window's limit,
	// whose exact log of admissions is kept per key (the state machine's own cap).
	MaxRateLimit    = envoyrl.Unlimited
	MaxSlidingLimit = fsm.MaxSlidingWindowLimit
	// MaxPolicyNameBytes is the longest policy name.
	MaxPolicyNameBytes = envoyrl.MaxNameBytes
)

// checkPolicy validates a policy at field; named says a name is required.
func checkPolicy(field string, p *conclavev1.RateLimitPolicy, named bool) error {
	switch {
	case p == nil:
		return invalid(field, "is required")
	case named && (p.GetName() == "" || len(p.GetName()) > MaxPolicyNameBytes):
		return invalid(at(field, "name"), "must be 1 to %d bytes, got %d", MaxPolicyNameBytes, len(p.GetName()))
	case p.GetAlgorithm() < 0 || p.GetAlgorithm() > conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY:
		return invalid(at(field, "algorithm"), "must be GCRA, SLIDING_WINDOW, FIXED_WINDOW or CONCURRENCY, got %d", p.GetAlgorithm())
	case p.GetLimit() == 0 || p.GetLimit() > MaxRateLimit:
		return invalid(at(field, "limit"), "must be 1 to %d, got %d", uint64(MaxRateLimit), p.GetLimit())
	case p.GetAlgorithm() == conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_SLIDING_WINDOW && p.GetLimit() > MaxSlidingLimit:
		return invalid(at(field, "limit"), "a sliding window keeps every admission: at most %d, got %d", MaxSlidingLimit, p.GetLimit())
	case p.GetPeriodMs() <= 0 || p.GetPeriodMs() > fsm.MaxPolicyPeriodMs:
		return invalid(at(field, "period_ms"), "must be 1 to %d (10 years), got %d", int64(fsm.MaxPolicyPeriodMs), p.GetPeriodMs())
	case p.GetBurst() > fsm.MaxPolicyBurst:
		return invalid(at(field, "burst"), "must be at most %d, got %d", fsm.MaxPolicyBurst, p.GetBurst())
	case p.GetBurst() != 0 && !isGCRA(p.GetAlgorithm()):
		return invalid(at(field, "burst"), "applies only to GCRA")
	}
	// The state machine's own rules (per-algorithm caps), so no bad policy reaches the log.
	if err := fsm.ValidatePolicy(p); err != nil {
		return invalid(field, "%s", strings.TrimPrefix(err.Error(), "policy: "))
	}
	return nil
}

func isGCRA(a conclavev1.RateLimitAlgorithm) bool {
	return a == conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_UNSPECIFIED || a == conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA
}

func checkPolicyName(field, name string) error {
	if name == "" || len(name) > MaxPolicyNameBytes {
		return invalid(field, "must be 1 to %d bytes, got %d", MaxPolicyNameBytes, len(name))
	}
	return nil
}

// checkRateLimitKeys validates the keys of a Check, Peek or Refund; refund allows slots.
func checkRateLimitKeys(keys []*conclavev1.RateLimitKey, refund bool) error {
	if n := len(keys); n == 0 || n > MaxRateLimitKeys {
		return invalid("keys", "must name 1 to %d keys, got %d", MaxRateLimitKeys, n)
	}
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		f := fmt.Sprintf("keys[%d]", i)
		if err := checkKey(at(f, "key"), []byte(k.GetKey())); err != nil {
			return err
		}
		if seen[k.GetKey()] {
			return invalid(at(f, "key"), "%q is named twice", k.GetKey())
		}
		seen[k.GetKey()] = true
		if k.GetCost() > MaxRateLimitCost {
			return invalid(at(f, "cost"), "must be at most %d, got %d", MaxRateLimitCost, k.GetCost())
		}
		if len(k.GetSlots()) > 0 && !refund {
			return invalid(at(f, "slots"), "are released by Refund only")
		}
		if len(k.GetSlots()) > MaxRateLimitCost {
			return invalid(at(f, "slots"), "at most %d, got %d", MaxRateLimitCost, len(k.GetSlots()))
		}
		switch l := k.GetLimit().(type) {
		case *conclavev1.RateLimitKey_Policy:
			if err := checkPolicyName(at(f, "policy"), l.Policy); err != nil {
				return err
			}
		case *conclavev1.RateLimitKey_Inline:
			if err := checkPolicy(at(f, "inline"), l.Inline, false); err != nil {
				return err
			}
			if len(k.GetSlots()) > 0 && l.Inline.GetAlgorithm() != conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY {
				return invalid(at(f, "slots"), "are only for CONCURRENCY limits")
			}
		default:
			return invalid(at(f, "limit"), "set policy (a stored policy's name) or inline (a policy)")
		}
	}
	return nil
}

// checkPolicyPrefix validates ListPolicies' prefix and page token (the last name returned).
func checkPolicyPage(req *conclavev1.ListPoliciesRequest) error {
	switch {
	case len(req.GetPrefix()) > MaxPolicyNameBytes:
		return invalid("prefix", "must be at most %d bytes, got %d", MaxPolicyNameBytes, len(req.GetPrefix()))
	case req.GetPageSize() > MaxPageSize:
		return invalid("page_size", "must be at most %d, got %d", MaxPageSize, req.GetPageSize())
	case req.GetPageToken() != "" && !strings.HasPrefix(req.GetPageToken(), req.GetPrefix()):
		return invalid("page_token", "does not continue a listing of this prefix")
	}
	return checkConsistency(req.GetConsistency())
}
