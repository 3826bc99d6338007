package envoyrl

import (
	"strings"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// Prefix begins every policy name and limiter key this package makes. Conclave keeps
// it for Envoy: a policy or key under it that was not made here changes Envoy's
// decisions.
const Prefix = "envoy/"

// Unlimited is the limit of the policy that stands for an unlimited descriptor (and
// for a leaf without a rate_limit): the largest limit Conclave stores
// (server.MaxRateLimit is defined as it), which no requests_per_unit (a uint32) can reach. Such a policy
// is never checked: its descriptors are answered OK without a raft write.
const Unlimited uint64 = 1 << 40

// MaxNameBytes is the longest policy name Conclave stores (server.MaxPolicyNameBytes is
// defined as it).
const MaxNameBytes = 256

// escape percent-encodes the bytes of s that the naming scheme reserves.
func escape(s string) string {
	if !strings.ContainsAny(s, "%/=*") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b.WriteString("%25")
		case '/':
			b.WriteString("%2F")
		case '=':
			b.WriteString("%3D")
		case '*':
			b.WriteString("%2A")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// DomainPrefix is the prefix of every policy name and limiter key of domain,
// "envoy/<domain>/".
func DomainPrefix(domain string) string { return Prefix + escape(domain) + "/" }

// Entry is one key/value entry of a request descriptor.
type Entry struct{ Key, Value string }

// LimiterKey is the limiter key a request descriptor of domain with entries is decided
// on: envoy/<domain>/<key>=<value>/… with every entry's concrete value.
func LimiterKey(domain string, entries []Entry) string {
	var b strings.Builder
	b.WriteString(DomainPrefix(domain))
	for i, e := range entries {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(escape(e.Key))
		b.WriteByte('=')
		b.WriteString(escape(e.Value))
	}
	return b.String()
}

// segment is a config node's name segment: <key>, <key>=<value>, or <key>=<prefix>*
// for a wildcard value (a value ending in '*').
func segment(key, value string) string {
	switch {
	case value == "":
		return escape(key)
	case strings.HasSuffix(value, "*"):
		return escape(key) + "=" + escape(strings.TrimSuffix(value, "*")) + "*"
	default:
		return escape(key) + "=" + escape(value)
	}
}

// unitPeriods are the fixed-window periods of the units, in milliseconds, as
// envoyproxy/ratelimit's dividers (a month is 30 days, a year 365; windows are aligned
// to the Unix epoch).
var unitPeriods = []struct {
	unit rlsv3.RateLimitResponse_RateLimit_Unit
	ms   int64
}{
	{rlsv3.RateLimitResponse_RateLimit_SECOND, 1000},
	{rlsv3.RateLimitResponse_RateLimit_MINUTE, 60 * 1000},
	{rlsv3.RateLimitResponse_RateLimit_HOUR, 60 * 60 * 1000},
	{rlsv3.RateLimitResponse_RateLimit_DAY, 24 * 60 * 60 * 1000},
	{rlsv3.RateLimitResponse_RateLimit_WEEK, 7 * 24 * 60 * 60 * 1000},
	{rlsv3.RateLimitResponse_RateLimit_MONTH, 30 * 24 * 60 * 60 * 1000},
	{rlsv3.RateLimitResponse_RateLimit_YEAR, 365 * 24 * 60 * 60 * 1000},
}

// UnitPeriodMs is the period of unit in milliseconds; 0 for UNKNOWN or a value out of
// the enum.
func UnitPeriodMs(unit rlsv3.RateLimitResponse_RateLimit_Unit) int64 {
	for _, u := range unitPeriods {
		if u.unit == unit {
			return u.ms
		}
	}
	return 0
}

// PeriodUnit describes a period as Envoy's unit and multiplier: the unit whose period it
// is (multiplier 1), else the largest unit it is a whole number of (a policy put by hand
// under Prefix), else SECOND.
func PeriodUnit(periodMs int64) (unit rlsv3.RateLimitResponse_RateLimit_Unit, multiplier uint32) {
	for _, u := range unitPeriods {
		if u.ms == periodMs {
			return u.unit, 1
		}
	}
	for i := len(unitPeriods) - 1; i >= 0; i-- {
		if u := unitPeriods[i]; periodMs > u.ms && periodMs%u.ms == 0 && periodMs/u.ms <= 1<<32-1 {
			return u.unit, uint32(periodMs / u.ms)
		}
	}
	return rlsv3.RateLimitResponse_RateLimit_SECOND, 1
}
