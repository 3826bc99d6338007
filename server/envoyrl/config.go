package envoyrl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.yaml.in/yaml/v3"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Config is one domain of envoyproxy/ratelimit's configuration, as in its YAML files.
type Config struct {
	Domain      string       `yaml:"domain"`
	Descriptors []Descriptor `yaml:"descriptors"`
}

// Descriptor is one node of a domain's descriptor tree. A descriptor without a value
// matches any value of its key; a value ending in '*' matches every value with that
// prefix.
type Descriptor struct {
	Key         string       `yaml:"key"`
	Value       string       `yaml:"value"`
	RateLimit   *RateLimit   `yaml:"rate_limit"`
	ShadowMode  bool         `yaml:"shadow_mode"`
	Descriptors []Descriptor `yaml:"descriptors"`

	// Metrics-only settings of envoyproxy/ratelimit, accepted and ignored.
	DetailedMetric bool `yaml:"detailed_metric"`
	ValueToMetric  bool `yaml:"value_to_metric"`
}

// RateLimit is a descriptor's limit: requests_per_unit per unit (second, minute, hour,
// day, week, month, year), or unlimited.
type RateLimit struct {
	Unit            string `yaml:"unit"`
	RequestsPerUnit uint32 `yaml:"requests_per_unit"`
	Unlimited       bool   `yaml:"unlimited"`
	// Name is accepted and ignored: envoyproxy/ratelimit uses it only for replaces.
	Name string `yaml:"name"`
	// Replaces is refused: one limit replacing another within a request is not supported.
	Replaces []struct {
		Name string `yaml:"name"`
	} `yaml:"replaces"`
}

// Parse reads one envoyproxy/ratelimit configuration file. As envoyproxy/ratelimit, it
// refuses unknown keys, an empty domain, a descriptor without a key, two descriptors
// with the same key and value at one level, an unknown unit, and a unit on an unlimited
// limit; and, because Conclave stores limits of at least 1 with names of at most
// MaxNameBytes, a requests_per_unit of 0 and a name too long. Errors name the field
// ("descriptors[2].descriptors[0].rate_limit.unit").
func Parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("envoyrl: empty configuration")
		}
		return nil, fmt.Errorf("envoyrl: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("envoyrl: more than one YAML document: one domain per file")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks c as Parse does.
func (c *Config) Validate() error {
	if c.Domain == "" {
		return errors.New("envoyrl: domain: must not be empty")
	}
	_, err := c.Policies()
	return err
}

// Policies returns the policies that store c, in name order: one per descriptor with a
// rate_limit, and one (with limit Unlimited) per leaf descriptor without one. See the
// package documentation for the names.
func (c *Config) Policies() ([]*conclavev1.RateLimitPolicy, error) {
	if c.Domain == "" {
		return nil, errors.New("envoyrl: domain: must not be empty")
	}
	var out []*conclavev1.RateLimitPolicy
	if err := addPolicies(&out, DomainPrefix(c.Domain), "descriptors", c.Descriptors); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *conclavev1.RateLimitPolicy) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

func addPolicies(out *[]*conclavev1.RateLimitPolicy, parent, field string, ds []Descriptor) error {
	seen := make(map[string]bool, len(ds))
	for i, d := range ds {
		at := fmt.Sprintf("%s[%d]", field, i)
		if d.Key == "" {
			return fmt.Errorf("envoyrl: %s.key: must not be empty", at)
		}
		seg := segment(d.Key, d.Value)
		if seen[seg] {
			return fmt.Errorf("envoyrl: %s: duplicate descriptor key %q value %q at this level", at, d.Key, d.Value)
		}
		seen[seg] = true
		name := parent + seg
		if len(name) > MaxNameBytes {
			return fmt.Errorf("envoyrl: %s: policy name %q is %d bytes, more than %d", at, name, len(name), MaxNameBytes)
		}
		p, err := policyOf(at, name, d)
		if err != nil {
			return err
		}
		if p != nil {
			*out = append(*out, p)
		}
		if err := addPolicies(out, name+"/", at+".descriptors", d.Descriptors); err != nil {
			return err
		}
	}
	return nil
}

// policyOf is the policy of node d named name, or nil when d needs none (no rate_limit,
// but children).
func policyOf(at, name string, d Descriptor) (*conclavev1.RateLimitPolicy, error) {
	unlimited := &conclavev1.RateLimitPolicy{Name: name, Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW,
		Limit: Unlimited, PeriodMs: UnitPeriodMs(rlsv3.RateLimitResponse_RateLimit_SECOND)}
	rl := d.RateLimit
	if rl == nil {
		if len(d.Descriptors) > 0 {
			return nil, nil
		}
		return unlimited, nil
	}
	if len(rl.Replaces) > 0 {
		return nil, fmt.Errorf("envoyrl: %s.rate_limit.replaces: not supported by Conclave", at)
	}
	unit, err := ParseUnit(rl.Unit)
	switch {
	case rl.Unlimited && rl.Unit != "":
		return nil, fmt.Errorf("envoyrl: %s.rate_limit.unit: must not be set when unlimited", at)
	case rl.Unlimited:
		return unlimited, nil
	case err != nil:
		return nil, fmt.Errorf("envoyrl: %s.rate_limit.unit: %w", at, err)
	case rl.RequestsPerUnit == 0:
		return nil, fmt.Errorf("envoyrl: %s.rate_limit.requests_per_unit: must be at least 1 (use unlimited: true for no limit)", at)
	}
	return &conclavev1.RateLimitPolicy{Name: name, Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW,
		Limit: uint64(rl.RequestsPerUnit), PeriodMs: UnitPeriodMs(unit), ShadowMode: d.ShadowMode}, nil
}

// ParseUnit reads a unit as envoyproxy/ratelimit does (case-insensitive name).
func ParseUnit(s string) (rlsv3.RateLimitResponse_RateLimit_Unit, error) {
	v, ok := rlsv3.RateLimitResponse_RateLimit_Unit_value[strings.ToUpper(s)]
	u := rlsv3.RateLimitResponse_RateLimit_Unit(v)
	if !ok || UnitPeriodMs(u) == 0 {
		return 0, fmt.Errorf("invalid unit %q: want second, minute, hour, day, week, month or year", s)
	}
	return u, nil
}
