package envoyrl

import (
	"sort"
	"strings"
	"testing"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// memStore is a Store over a sorted list of policies, as the state machine keeps them.
type memStore struct {
	names []string
	by    map[string]*conclavev1.RateLimitPolicy
}

func newMemStore(ps []*conclavev1.RateLimitPolicy) *memStore {
	s := &memStore{by: make(map[string]*conclavev1.RateLimitPolicy)}
	for _, p := range ps {
		s.names = append(s.names, p.GetName())
		s.by[p.GetName()] = p
	}
	sort.Strings(s.names)
	return s
}

func (s *memStore) Policy(name string) (*conclavev1.RateLimitPolicy, bool) {
	p, ok := s.by[name]
	return p, ok
}

func (s *memStore) HasPrefix(prefix string) bool {
	i := sort.SearchStrings(s.names, prefix)
	return i < len(s.names) && strings.HasPrefix(s.names[i], prefix)
}

// storeOf parses yaml and stores its policies.
func storeOf(t *testing.T, yaml string) *memStore {
	t.Helper()
	c, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := c.Policies()
	if err != nil {
		t.Fatal(err)
	}
	return newMemStore(ps)
}

// entries parses "k=v,k2=v2" ("k=" is an empty value).
func entries(s string) []Entry {
	var out []Entry
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, Entry{Key: k, Value: v})
	}
	return out
}

// matchConfig exercises every rule of envoyproxy/ratelimit's lookup.
const matchConfig = `
domain: edge
descriptors:
  # Per client IP, with one IP allowed more and one not limited.
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: remote_address
    value: 10.0.0.1
    rate_limit: {unit: second, requests_per_unit: 100}
  - key: remote_address
    value: 10.0.0.2
    rate_limit: {unlimited: true}

  # Nested: marketing messages per number; any message per number.
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 5}
  - key: to_number
    rate_limit: {unit: day, requests_per_unit: 100}

  # A node with its own limit and a deeper one.
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 1000}
    shadow_mode: true
    descriptors:
      - key: user
        rate_limit: {unit: minute, requests_per_unit: 10}

  # Exact before wildcard before key alone; the longest wildcard wins.
  - key: path
    value: /api/*
    rate_limit: {unit: hour, requests_per_unit: 50}
  - key: path
    value: /api/admin/*
    rate_limit: {unit: hour, requests_per_unit: 5}
  - key: path
    value: /api/health
    rate_limit: {unlimited: true}
  - key: path
    rate_limit: {unit: hour, requests_per_unit: 500}

  # An exact node without a limit hides the key-only node, as in envoyproxy/ratelimit.
  - key: country
    rate_limit: {unit: second, requests_per_unit: 3}
  - key: country
    value: nz

  # Only a deeper level is limited.
  - key: api_key
    descriptors:
      - key: method
        value: POST
        rate_limit: {unit: second, requests_per_unit: 2}
`

func TestResolve(t *testing.T) {
	s := storeOf(t, matchConfig)
	tests := []struct {
		name    string
		domain  string
		entries string
		want    string // the policy's name; "" when not limited
	}{
		{"key only matches any value", "edge", "remote_address=1.2.3.4", "envoy/edge/remote_address"},
		{"exact value first", "edge", "remote_address=10.0.0.1", "envoy/edge/remote_address=10.0.0.1"},
		{"unlimited value", "edge", "remote_address=10.0.0.2", "envoy/edge/remote_address=10.0.0.2"},
		{"empty value goes to the key", "edge", "remote_address=", "envoy/edge/remote_address"},
		{"nested", "edge", "message_type=marketing,to_number=2061234567", "envoy/edge/message_type=marketing/to_number"},
		{"nested parent alone is not limited", "edge", "message_type=marketing", ""},
		{"other parent value", "edge", "message_type=transactional,to_number=1", ""},
		{"top-level key-only", "edge", "to_number=2061234567", "envoy/edge/to_number"},
		{"request deeper than the config", "edge", "to_number=1,extra=x", ""},
		{"node with a limit and children: the node", "edge", "tenant=acme", "envoy/edge/tenant"},
		{"node with a limit and children: the child", "edge", "tenant=acme,user=bob", "envoy/edge/tenant/user"},
		{"child key unknown", "edge", "tenant=acme,group=x", ""},
		{"exact beats wildcard", "edge", "path=/api/health", "envoy/edge/path=%2Fapi%2Fhealth"},
		{"longest wildcard", "edge", "path=/api/admin/users", "envoy/edge/path=%2Fapi%2Fadmin%2F*"},
		{"shorter wildcard", "edge", "path=/api/users", "envoy/edge/path=%2Fapi%2F*"},
		{"wildcard matches its own prefix", "edge", "path=/api/", "envoy/edge/path=%2Fapi%2F*"},
		{"no wildcard: key alone", "edge", "path=/static/a.css", "envoy/edge/path"},
		// A leaf without a limit is stored as unlimited: the request is not limited.
		{"exact node without a limit hides the key", "edge", "country=nz", "envoy/edge/country=nz"},
		{"other value uses the key", "edge", "country=au", "envoy/edge/country"},
		{"intermediate without a limit", "edge", "api_key=k1", ""},
		{"intermediate then exact", "edge", "api_key=k1,method=POST", "envoy/edge/api_key/method=POST"},
		{"intermediate then other value", "edge", "api_key=k1,method=GET", ""},
		{"unknown key", "edge", "nothing=here", ""},
		{"unknown domain", "other", "remote_address=1.2.3.4", ""},
		{"a domain that is a prefix of another", "edg", "remote_address=1.2.3.4", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(s, tt.domain, entries(tt.entries))
			if got.GetName() != tt.want {
				t.Fatalf("Resolve(%s, %s) = %q, want %q", tt.domain, tt.entries, got.GetName(), tt.want)
			}
		})
	}
	if !HasDomain(s, "edge") || HasDomain(s, "edg") || HasDomain(s, "other") {
		t.Fatal("HasDomain: want edge only")
	}
	for name, want := range map[string]bool{"envoy/edge/remote_address=10.0.0.2": true, "envoy/edge/country=nz": true, "envoy/edge/remote_address": false} {
		if p, _ := s.Policy(name); IsUnlimited(p) != want {
			t.Errorf("IsUnlimited(%s) = %v, want %v", name, !want, want)
		}
	}
}
