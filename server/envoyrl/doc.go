// Package envoyrl maps envoyproxy/ratelimit's configuration — a domain and its nested
// descriptors — to Conclave rate-limit policies, and a request's descriptor back to the
// policy and limiter key that decide it. It is the one place that knows the naming
// scheme; the Envoy gRPC service (server/envoy.go) and `conclave ratelimit import`
// (cmd/conclave) both use it.
//
// Naming. Every node of a domain's descriptor tree is stored as one policy named
//
//	envoy/<domain>/<segment>/<segment>/…
//
// where a segment is <key>=<value> for a descriptor with a value, <key>=<prefix>* for a
// wildcard value ("value: foo*"), and <key> for a descriptor without a value (it matches
// any value of its key). The bytes '%', '/', '=' and '*' inside domains, keys and values
// are percent-encoded (%25, %2F, %3D, %2A), so names are unambiguous and a name's parent
// is its prefix up to the last '/'. A node with a rate_limit is a FIXED_WINDOW policy
// (limit = requests_per_unit, period = the unit, shadow_mode as configured); a node that
// is unlimited, and a leaf without a rate_limit, is a FIXED_WINDOW policy whose limit is
// Unlimited. A node without a rate_limit that has children is not stored: it exists
// while its children do.
//
// A request descriptor is decided on the limiter key envoy/<domain>/<key>=<value>/…
// built from the request's own entries (every entry with its concrete value), under the
// policy of the node it resolves to.
//
// Import (a replace of one domain's policies) talks to a cluster only through the
// RateLimitService client its caller hands it. The package does no other I/O and does
// not depend on the server, the cluster or the state machine.
package envoyrl
