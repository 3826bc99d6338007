package server

import (
	"fmt"

	envoycommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/conclave-dev/conclave/server/envoyrl"
)

// validateShouldRateLimit checks an Envoy RateLimitRequest before anything is read or
// written. A request that breaks a rule is InvalidArgument naming the field, like the
// Conclave services' requests (envoyproxy/ratelimit answers an empty domain or
// descriptor list with an error too).
func validateShouldRateLimit(req *rlsv3.RateLimitRequest) error {
	switch n := len(req.GetDescriptors()); {
	case req.GetDomain() == "":
		return invalid("domain", "must not be empty")
	case n == 0 || n > MaxRateLimitKeys:
		return invalid("descriptors", "must have 1 to %d descriptors, got %d", MaxRateLimitKeys, n)
	case req.GetHitsAddend() > MaxRateLimitCost:
		return invalid("hits_addend", "must be at most %d, got %d", MaxRateLimitCost, req.GetHitsAddend())
	}
	for i, d := range req.GetDescriptors() {
		f := fmt.Sprintf("descriptors[%d]", i)
		if len(d.GetEntries()) == 0 {
			return invalid(at(f, "entries"), "must not be empty")
		}
		for j, e := range d.GetEntries() {
			if e.GetKey() == "" {
				return invalid(at(f, fmt.Sprintf("entries[%d].key", j)), "must not be empty")
			}
		}
		if key := envoyrl.LimiterKey(req.GetDomain(), envoyEntries(d.GetEntries())); len(key) > MaxKeyBytes {
			return invalid(at(f, "entries"), "the limiter key they make is %d bytes, more than %d", len(key), MaxKeyBytes)
		}
		if h := d.GetHitsAddend(); h != nil && h.GetValue() > MaxRateLimitCost {
			return invalid(at(f, "hits_addend"), "must be at most %d, got %d", MaxRateLimitCost, h.GetValue())
		}
		if d.GetIsNegativeHits() {
			return invalid(at(f, "is_negative_hits"), "not supported: give hits back with conclave.v1.RateLimitService/Refund")
		}
		if l := d.GetLimit(); l != nil {
			if err := checkEnvoyOverride(at(f, "limit"), l); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkEnvoyOverride validates a descriptor's limit override at field.
func checkEnvoyOverride(field string, l *envoycommon.RateLimitDescriptor_RateLimitOverride) error {
	m := l.GetUnitMultiplier()
	switch period := overridePeriodMs(l); {
	case period == 0:
		return invalid(field+".unit", "must be SECOND, MINUTE, HOUR, DAY, MONTH or YEAR, got %v", l.GetUnit())
	case l.GetRequestsPerUnit() == 0:
		return invalid(field+".requests_per_unit", "must be at least 1")
	case m != nil && m.GetValue() == 0:
		return invalid(field+".unit_multiplier", "must be at least 1 when set")
	case period > MaxTTLMs:
		return invalid(field+".unit_multiplier", "makes a period longer than %d ms (10 years)", MaxTTLMs)
	}
	return nil
}

// overridePeriodMs is the period of a limit override in milliseconds (unit times
// unit_multiplier); 0 for a unit envoy.type.v3.RateLimitUnit does not name.
func overridePeriodMs(l *envoycommon.RateLimitDescriptor_RateLimitOverride) int64 {
	if _, ok := typev3.RateLimitUnit_name[int32(l.GetUnit())]; !ok {
		return 0
	}
	// envoy.type.v3.RateLimitUnit numbers its units as the service's RateLimit.Unit does.
	ms := envoyrl.UnitPeriodMs(rlsv3.RateLimitResponse_RateLimit_Unit(l.GetUnit()))
	if ms == 0 {
		return 0
	}
	if m := l.GetUnitMultiplier(); m != nil && m.GetValue() > 1 {
		if int64(m.GetValue()) > MaxTTLMs/ms {
			return MaxTTLMs + 1 // longer than any period allowed, without overflowing
		}
		ms *= int64(m.GetValue())
	}
	return ms
}
