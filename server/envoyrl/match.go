package envoyrl

import (
	"strings"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Store is what resolving needs from the policy table. Its methods must see one
// consistent state for the length of a Resolve.
type Store interface {
	// Policy returns the policy named name.
	Policy(name string) (*conclavev1.RateLimitPolicy, bool)
	// HasPrefix reports whether some policy's name begins with prefix.
	HasPrefix(prefix string) bool
}

// HasDomain reports whether domain has any configuration in s. A request for a domain
// without one is answered OK for every descriptor, as envoyproxy/ratelimit does.
func HasDomain(s Store, domain string) bool { return s.HasPrefix(DomainPrefix(domain)) }

// Resolve finds the config node of domain that a request descriptor with entries
// resolves to, as envoyproxy/ratelimit does: level by level, the node for the entry's
// key and value, else the longest wildcard value that prefixes it, else the node for
// the key alone; the descriptor is limited only when its last entry reaches a node with
// a policy. It returns that policy, or nil when the descriptor is not limited (a policy
// with limit Unlimited says the node is unlimited).
func Resolve(s Store, domain string, entries []Entry) *conclavev1.RateLimitPolicy {
	parent := DomainPrefix(domain)
	for i, e := range entries {
		name, ok := child(s, parent, e)
		if !ok {
			return nil
		}
		if i == len(entries)-1 {
			p, _ := s.Policy(name)
			return p
		}
		if !s.HasPrefix(name + "/") {
			return nil // the node has no children: the request is deeper than the config
		}
		parent = name + "/"
	}
	return nil
}

// exists reports whether the node named name is configured: it has a policy, or children.
func exists(s Store, name string) bool {
	if _, ok := s.Policy(name); ok {
		return true
	}
	return s.HasPrefix(name + "/")
}

// child returns the node under parent that e selects: key=value, else the longest
// key=prefix* with value's prefix, else key alone.
func child(s Store, parent string, e Entry) (string, bool) {
	key := parent + escape(e.Key)
	if e.Value != "" {
		if name := key + "=" + escape(e.Value); exists(s, name) {
			return name, true
		}
	}
	if name, ok := wildcard(s, key+"=", e.Value); ok {
		return name, true
	}
	return key, exists(s, key)
}

// wildcard returns the wildcard node base+<prefix>* with the longest prefix of value.
// It walks the prefixes from the shortest and stops at the first that no name begins
// with, so a lookup costs little more than the configuration shares with value.
func wildcard(s Store, base, value string) (string, bool) {
	found, ok := "", false
	var b strings.Builder
	b.WriteString(base)
	for n := 0; ; n++ {
		if !s.HasPrefix(b.String()) {
			break
		}
		if name := b.String() + "*"; exists(s, name) {
			found, ok = name, true
		}
		if n == len(value) {
			break
		}
		b.WriteString(escape(value[n : n+1]))
	}
	return found, ok
}

// IsUnlimited reports whether p stands for an unlimited descriptor.
func IsUnlimited(p *conclavev1.RateLimitPolicy) bool { return p.GetLimit() >= Unlimited }
