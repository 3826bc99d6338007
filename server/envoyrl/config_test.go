package envoyrl

import (
	"fmt"
	"strings"
	"testing"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// policyLine is a policy as one comparable line: "name limit/period_ms[ shadow]".
func policyLine(p *conclavev1.RateLimitPolicy) string {
	s := fmt.Sprintf("%s %d/%d", p.GetName(), p.GetLimit(), p.GetPeriodMs())
	if p.GetLimit() == Unlimited {
		s = p.GetName() + " unlimited"
	}
	if p.GetAlgorithm() != conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW {
		s += " " + p.GetAlgorithm().String()
	}
	if p.GetShadowMode() {
		s += " shadow"
	}
	return s
}

func TestParse_Policies(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "envoyproxy/ratelimit README: mongo_cps",
			yaml: `
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500
  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 500
`,
			want: []string{
				"envoy/mongo_cps/database=default 500/1000",
				"envoy/mongo_cps/database=users 500/1000",
			},
		},
		{
			name: "nested, key-only, unlimited, shadow, every unit",
			yaml: `
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 5}
  - key: to_number
    rate_limit: {unit: DAY, requests_per_unit: 100}
  - key: remote_address
    value: 10.0.0.1
    rate_limit: {unlimited: true}
  - key: a
    rate_limit: {unit: second, requests_per_unit: 1}
    shadow_mode: true
    detailed_metric: true
  - key: b
    rate_limit: {unit: minute, requests_per_unit: 2, name: b-limit}
  - key: c
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: d
    rate_limit: {unit: week, requests_per_unit: 4}
  - key: e
    rate_limit: {unit: month, requests_per_unit: 5}
  - key: f
    rate_limit: {unit: year, requests_per_unit: 6}
  - key: leaf_without_limit
`,
			want: []string{
				"envoy/messaging/a 1/1000 shadow",
				"envoy/messaging/b 2/60000",
				"envoy/messaging/c 3/3600000",
				"envoy/messaging/d 4/604800000",
				"envoy/messaging/e 5/2592000000",
				"envoy/messaging/f 6/31536000000",
				"envoy/messaging/leaf_without_limit unlimited",
				"envoy/messaging/message_type=marketing/to_number 5/86400000",
				"envoy/messaging/remote_address=10.0.0.1 unlimited",
				"envoy/messaging/to_number 100/86400000",
			},
		},
		{
			name: "a node with a limit and children; wildcard; reserved bytes escaped",
			yaml: `
domain: "edge/proxy"
descriptors:
  - key: path
    value: "/foo*"
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: "k=1"
    value: "50%*off*"
    rate_limit: {unit: second, requests_per_unit: 7}
    descriptors:
      - key: user
        rate_limit: {unit: second, requests_per_unit: 1}
  - key: number
    value: 42
    rate_limit: {unit: second, requests_per_unit: 42}
`,
			want: []string{
				"envoy/edge%2Fproxy/k%3D1=50%25%2Aoff* 7/1000",
				"envoy/edge%2Fproxy/k%3D1=50%25%2Aoff*/user 1/1000",
				"envoy/edge%2Fproxy/number=42 42/1000",
				"envoy/edge%2Fproxy/path=%2Ffoo* 20/60000",
			},
		},
		{
			name: "a domain without descriptors stores nothing",
			yaml: "domain: empty\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			ps, err := c.Policies()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, policyLine(p))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("policies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty file", "", "empty configuration"},
		{"not YAML", "domain: [", "yaml:"},
		{"unknown key", "domain: d\ndescriptors:\n  - key: a\n    rate_limt: {unit: second}\n", "field rate_limt not found"},
		{"unknown rate_limit key", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, quota_mode: true}\n", "field quota_mode not found"},
		{"two documents", "domain: a\n---\ndomain: b\n", "more than one YAML document"},
		{"empty domain", "descriptors:\n  - key: a\n", "domain: must not be empty"},
		{"empty key", "domain: d\ndescriptors:\n  - value: v\n", "descriptors[0].key: must not be empty"},
		{"duplicate", "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - {key: b, value: c}\n      - {key: b, value: c}\n",
			"descriptors[0].descriptors[1]: duplicate descriptor"},
		{"unknown unit", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
			`descriptors[0].rate_limit.unit: invalid unit "fortnight"`},
		{"missing unit", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {requests_per_unit: 1}\n", "descriptors[0].rate_limit.unit"},
		{"unit when unlimited", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, unlimited: true}\n",
			"descriptors[0].rate_limit.unit: must not be set when unlimited"},
		{"zero requests", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 0}\n",
			"descriptors[0].rate_limit.requests_per_unit: must be at least 1"},
		{"negative requests", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: -1}\n", "cannot unmarshal"},
		{"replaces", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: x}]}\n",
			"descriptors[0].rate_limit.replaces: not supported"},
		{"name too long", "domain: d\ndescriptors:\n  - key: " + strings.Repeat("k", MaxNameBytes) + "\n", "more than 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestLimiterKey(t *testing.T) {
	tests := []struct {
		domain  string
		entries []Entry
		want    string
	}{
		{"edge", []Entry{{"remote_address", "10.0.0.1"}}, "envoy/edge/remote_address=10.0.0.1"},
		{"edge", []Entry{{"a", "1"}, {"b", "2"}}, "envoy/edge/a=1/b=2"},
		// A '/' or '=' inside a domain, key or value cannot be taken for a separator.
		{"e/d", []Entry{{"a=b", "c/d"}}, "envoy/e%2Fd/a%3Db=c%2Fd"},
		{"e", []Entry{{"a", "b/c=d"}}, "envoy/e/a=b%2Fc%3Dd"},
		{"e", []Entry{{"a", "100%*"}}, "envoy/e/a=100%25%2A"},
		{"e", []Entry{{"a", ""}}, "envoy/e/a="},
	}
	for _, tt := range tests {
		if got := LimiterKey(tt.domain, tt.entries); got != tt.want {
			t.Errorf("LimiterKey(%q, %v) = %q, want %q", tt.domain, tt.entries, got, tt.want)
		}
	}
}

func TestPeriodUnit(t *testing.T) {
	for _, u := range unitPeriods {
		if got, m := PeriodUnit(u.ms); got != u.unit || m != 1 {
			t.Errorf("PeriodUnit(%d) = %v x%d, want %v x1", u.ms, got, m, u.unit)
		}
	}
	if got, m := PeriodUnit(2 * 86400000); got.String() != "DAY" || m != 2 {
		t.Errorf("PeriodUnit(2 days) = %v x%d, want DAY x2", got, m)
	}
	if got, m := PeriodUnit(1500); got.String() != "SECOND" || m != 1 {
		t.Errorf("PeriodUnit(1.5 s) = %v x%d, want SECOND x1", got, m)
	}
}
