package server

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	envoycommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
	"github.com/conclave-dev/conclave/server/envoyrl"
)

// envoyEpoch is the time of the commands of an envoyTest: 30.25 s into a minute (and an
// hour, and a UTC day), so every fixed window's reset is known exactly. It is far in the
// future, so reads — at max(wall clock, machine clock) — are at this time too.
var envoyEpoch = time.Date(2100, 1, 1, 0, 0, 30, 250_000_000, time.UTC)

// envoyClockNode is a localNode whose commands carry the time the test sets.
type envoyClockNode struct {
	*localNode
	now atomic.Int64

	hookMu    sync.Mutex
	afterRead func() // run once, after the next read
}

func (n *envoyClockNode) Apply(ctx context.Context, cmd *fsmv1.Command) (*fsmv1.Result, error) {
	n.applies.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.index++
	stamped := proto.CloneOf(cmd)
	stamped.NowUnixNano = n.now.Load()
	data, err := proto.Marshal(stamped)
	if err != nil {
		return nil, err
	}
	res := n.m.Apply(n.index, data)
	n.changedMu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.changedMu.Unlock()
	return res, nil
}

func (n *envoyClockNode) Read(ctx context.Context, c conclavev1.Consistency, fn func(v *fsm.View)) (*conclavev1.ResponseHeader, error) {
	h, err := n.localNode.Read(ctx, c, fn)
	n.hookMu.Lock()
	hook := n.afterRead
	n.afterRead = nil
	n.hookMu.Unlock()
	if hook != nil {
		hook()
	}
	return h, err
}

func (n *envoyClockNode) advance(d time.Duration) { n.now.Add(int64(d)) }

// envoyTest is a server on a envoyClockNode with an Envoy client and a Conclave rate-limit client.
type envoyTest struct {
	*testServer
	node  *envoyClockNode
	envoy rlsv3.RateLimitServiceClient
	rl    conclavev1grpc.RateLimitServiceClient
}

func newEnvoyTest(t *testing.T) *envoyTest {
	t.Helper()
	node := &envoyClockNode{localNode: newLocalNode()}
	node.now.Store(envoyEpoch.UnixNano())
	ts := serveTest(t, New(Config{}, node, zaptest.NewLogger(t)), node.localNode)
	return &envoyTest{testServer: ts, node: node,
		envoy: rlsv3.NewRateLimitServiceClient(ts.conn), rl: conclavev1grpc.NewRateLimitServiceClient(ts.conn)}
}

// importYAML parses an envoyproxy/ratelimit configuration and imports it into the server.
func (e *envoyTest) importYAML(t *testing.T, yaml string, dryRun bool) []envoyrl.Change {
	t.Helper()
	c, err := envoyrl.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	changes, err := envoyrl.Import(testContext(t), e.rl, c, dryRun)
	if err != nil {
		t.Fatal(err)
	}
	return changes
}

// desc is a descriptor of key/value pairs.
func envoyDesc(kv ...string) *envoycommon.RateLimitDescriptor {
	d := &envoycommon.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &envoycommon.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// withHits sets a descriptor's own hits_addend.
func envoyWithHits(d *envoycommon.RateLimitDescriptor, hits uint64) *envoycommon.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(hits)
	return d
}

// call asks ShouldRateLimit and counts the raft entries it wrote.
func (e *envoyTest) call(t *testing.T, domain string, hits uint32, ds ...*envoycommon.RateLimitDescriptor) (*rlsv3.RateLimitResponse, int64) {
	t.Helper()
	before := e.node.applies.Load()
	resp, err := e.envoy.ShouldRateLimit(testContext(t), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds, HitsAddend: hits})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	if len(resp.GetStatuses()) != len(ds) {
		t.Fatalf("%d statuses for %d descriptors", len(resp.GetStatuses()), len(ds))
	}
	return resp, e.node.applies.Load() - before
}

// limited is what a descriptor status should say when the descriptor is limited.
type envoyLimited struct {
	code      rlsv3.RateLimitResponse_Code
	limit     uint32
	unit      rlsv3.RateLimitResponse_RateLimit_Unit
	remaining uint32
	reset     time.Duration
}

func wantEnvoyLimited(t *testing.T, what string, st *rlsv3.RateLimitResponse_DescriptorStatus, w envoyLimited) {
	t.Helper()
	got := envoyLimited{code: st.GetCode(), limit: st.GetCurrentLimit().GetRequestsPerUnit(), unit: st.GetCurrentLimit().GetUnit(),
		remaining: st.GetLimitRemaining(), reset: st.GetDurationUntilReset().AsDuration()}
	if st.GetCurrentLimit() == nil || got != w {
		t.Fatalf("%s: status %v, want %+v", what, st, w)
	}
}

// wantUnlimited fails unless st is OK without a current limit, with remaining as given.
func wantEnvoyUnlimited(t *testing.T, what string, st *rlsv3.RateLimitResponse_DescriptorStatus, remaining uint32) {
	t.Helper()
	if st.GetCode() != rlsv3.RateLimitResponse_OK || st.GetCurrentLimit() != nil || st.GetLimitRemaining() != remaining || st.GetDurationUntilReset() != nil {
		t.Fatalf("%s: status %v, want OK with no current limit and remaining %d", what, st, remaining)
	}
}

// wantHeaders fails unless resp asks for exactly the RateLimit headers limit, remaining
// and reset (all empty: no headers).
func wantEnvoyHeaders(t *testing.T, what string, resp *rlsv3.RateLimitResponse, limit, remaining, reset string) {
	t.Helper()
	got := map[string]string{}
	for _, h := range resp.GetResponseHeadersToAdd() {
		got[h.GetKey()] = h.GetValue()
	}
	want := map[string]string{HeaderRateLimitLimit: limit, HeaderRateLimitRemaining: remaining, HeaderRateLimitReset: reset}
	if limit == "" {
		want = map[string]string{}
	}
	if len(got) != len(want) || len(resp.GetResponseHeadersToAdd()) != len(want) {
		t.Fatalf("%s: headers %v, want %v", what, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: headers %v, want %v", what, got, want)
		}
	}
}

const (
	envoyOK     = rlsv3.RateLimitResponse_OK
	envoyOver   = rlsv3.RateLimitResponse_OVER_LIMIT
	envoySecond = rlsv3.RateLimitResponse_RateLimit_SECOND
	envoyMinute = rlsv3.RateLimitResponse_RateLimit_MINUTE
	envoyHour   = rlsv3.RateLimitResponse_RateLimit_HOUR
	envoyDay    = rlsv3.RateLimitResponse_RateLimit_DAY
)

// envoyEdgeConfig is an envoyproxy/ratelimit configuration with nested descriptors, key-only
// descriptors, an unlimited value, shadow mode and several units.
const envoyEdgeConfig = `
domain: edge
descriptors:
  - key: remote_address
    rate_limit:
      unit: minute
      requests_per_unit: 3
  - key: remote_address
    value: 10.0.0.9
    rate_limit:
      unlimited: true
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 2
  - key: plan
    value: free
    shadow_mode: true
    rate_limit:
      unit: second
      requests_per_unit: 1
  - key: api_key
    rate_limit:
      unit: hour
      requests_per_unit: 10
`

func TestEnvoy_ShouldRateLimit(t *testing.T) {
	e := newEnvoyTest(t)
	changes := e.importYAML(t, envoyEdgeConfig, false)
	if len(changes) != 5 {
		t.Fatalf("import: %d changes, want 5: %v", len(changes), changes)
	}
	minuteReset, hourReset, dayReset := 29750*time.Millisecond, 59*time.Minute+29750*time.Millisecond, 23*time.Hour+59*time.Minute+29750*time.Millisecond

	// Key-only descriptor: requests_per_unit hits are OK, the next is OVER_LIMIT; one raft entry each.
	for i, remaining := range []uint32{2, 1, 0} {
		resp, writes := e.call(t, "edge", 0, envoyDesc("remote_address", "1.2.3.4"))
		if resp.GetOverallCode() != envoyOK || writes != 1 {
			t.Fatalf("hit %d: overall %v with %d writes, want OK with 1", i+1, resp.GetOverallCode(), writes)
		}
		wantEnvoyLimited(t, "remote_address", resp.GetStatuses()[0], envoyLimited{envoyOK, 3, envoyMinute, remaining, minuteReset})
		wantEnvoyHeaders(t, "remote_address", resp, "3", string(rune('0'+remaining)), "30")
		if name := resp.GetStatuses()[0].GetCurrentLimit().GetName(); name != "envoy/edge/remote_address" {
			t.Fatalf("current_limit.name = %q", name)
		}
	}
	resp, _ := e.call(t, "edge", 0, envoyDesc("remote_address", "1.2.3.4"))
	if resp.GetOverallCode() != envoyOver {
		t.Fatalf("4th hit: overall %v, want OVER_LIMIT", resp.GetOverallCode())
	}
	wantEnvoyLimited(t, "4th hit", resp.GetStatuses()[0], envoyLimited{envoyOver, 3, envoyMinute, 0, minuteReset})
	wantEnvoyHeaders(t, "4th hit", resp, "3", "0", "30")
	// Every value of the key has its own counter.
	resp, _ = e.call(t, "edge", 0, envoyDesc("remote_address", "5.6.7.8"))
	wantEnvoyLimited(t, "another address", resp.GetStatuses()[0], envoyLimited{envoyOK, 3, envoyMinute, 2, minuteReset})

	// An unlimited value: OK without a limit and without a raft write.
	resp, writes := e.call(t, "edge", 0, envoyDesc("remote_address", "10.0.0.9"))
	wantEnvoyUnlimited(t, "unlimited", resp.GetStatuses()[0], math.MaxUint32)
	wantEnvoyHeaders(t, "unlimited", resp, "", "", "")
	if writes != 0 {
		t.Fatalf("unlimited: %d writes", writes)
	}

	// Nested descriptors: the parent alone is not limited; parent and child are.
	resp, _ = e.call(t, "edge", 0, envoyDesc("message_type", "marketing"))
	wantEnvoyUnlimited(t, "parent alone", resp.GetStatuses()[0], 0)
	for i, w := range []envoyLimited{{envoyOK, 2, envoyDay, 1, dayReset}, {envoyOK, 2, envoyDay, 0, dayReset}, {envoyOver, 2, envoyDay, 0, dayReset}} {
		resp, _ = e.call(t, "edge", 0, envoyDesc("message_type", "marketing", "to_number", "2061111111"))
		wantEnvoyLimited(t, "nested", resp.GetStatuses()[0], w)
		if i == 2 && resp.GetOverallCode() != envoyOver {
			t.Fatalf("nested: overall %v, want OVER_LIMIT", resp.GetOverallCode())
		}
	}
	resp, _ = e.call(t, "edge", 0, envoyDesc("message_type", "transactional", "to_number", "2061111111"))
	wantEnvoyUnlimited(t, "other parent value", resp.GetStatuses()[0], 0)

	// Shadow mode: over the limit is reported but never OVER_LIMIT.
	resp, _ = e.call(t, "edge", 0, envoyDesc("plan", "free"))
	wantEnvoyLimited(t, "shadow 1st", resp.GetStatuses()[0], envoyLimited{envoyOK, 1, envoySecond, 0, 750 * time.Millisecond})
	resp, _ = e.call(t, "edge", 0, envoyDesc("plan", "free"))
	wantEnvoyLimited(t, "shadow 2nd", resp.GetStatuses()[0], envoyLimited{envoyOK, 1, envoySecond, 0, 750 * time.Millisecond})
	if resp.GetOverallCode() != envoyOK {
		t.Fatalf("shadow: overall %v, want OK", resp.GetOverallCode())
	}
	wantEnvoyHeaders(t, "shadow", resp, "1", "0", "1")

	// hits_addend: the request's, a descriptor's own (which wins), and 0 (check only).
	steps := []struct {
		what string
		hits uint32
		d    *envoycommon.RateLimitDescriptor
		want envoyLimited
		// writes is the raft entries the call makes.
		writes int64
	}{
		{"request hits_addend 4", 4, envoyDesc("api_key", "k1"), envoyLimited{envoyOK, 10, envoyHour, 6, hourReset}, 1},
		{"descriptor hits_addend 5 wins", 4, envoyWithHits(envoyDesc("api_key", "k1"), 5), envoyLimited{envoyOK, 10, envoyHour, 1, hourReset}, 1},
		{"2 more do not fit and consume nothing", 2, envoyDesc("api_key", "k1"), envoyLimited{envoyOver, 10, envoyHour, 1, hourReset}, 1},
		{"hits_addend 0 checks only", 7, envoyWithHits(envoyDesc("api_key", "k1"), 0), envoyLimited{envoyOK, 10, envoyHour, 1, hourReset}, 0},
		{"the last one", 0, envoyDesc("api_key", "k1"), envoyLimited{envoyOK, 10, envoyHour, 0, hourReset}, 1},
		{"hits_addend 0 when none remain", 0, envoyWithHits(envoyDesc("api_key", "k1"), 0), envoyLimited{envoyOver, 10, envoyHour, 0, hourReset}, 0},
	}
	for _, s := range steps {
		resp, writes := e.call(t, "edge", s.hits, s.d)
		wantEnvoyLimited(t, s.what, resp.GetStatuses()[0], s.want)
		if writes != s.writes || resp.GetOverallCode() != s.want.code {
			t.Fatalf("%s: overall %v with %d writes, want %v with %d", s.what, resp.GetOverallCode(), writes, s.want.code, s.writes)
		}
	}

	// Several descriptors: one raft entry, a status each, the headers of the most restrictive.
	resp, writes = e.call(t, "edge", 0, envoyDesc("remote_address", "8.8.8.8"), envoyDesc("message_type", "marketing", "to_number", "2062222222"),
		envoyDesc("unknown", "x"))
	if writes != 1 || resp.GetOverallCode() != envoyOK {
		t.Fatalf("three descriptors: overall %v with %d writes, want OK with 1", resp.GetOverallCode(), writes)
	}
	wantEnvoyLimited(t, "three descriptors [0]", resp.GetStatuses()[0], envoyLimited{envoyOK, 3, envoyMinute, 2, minuteReset})
	wantEnvoyLimited(t, "three descriptors [1]", resp.GetStatuses()[1], envoyLimited{envoyOK, 2, envoyDay, 1, dayReset})
	wantEnvoyUnlimited(t, "three descriptors [2]", resp.GetStatuses()[2], 0)
	wantEnvoyHeaders(t, "three descriptors", resp, "2", "1", "86370")
	// An over-limit descriptor decides the headers and the overall code.
	resp, _ = e.call(t, "edge", 0, envoyDesc("remote_address", "8.8.8.8"), envoyDesc("api_key", "k1"))
	if resp.GetOverallCode() != envoyOver {
		t.Fatalf("one over: overall %v, want OVER_LIMIT", resp.GetOverallCode())
	}
	wantEnvoyLimited(t, "one over [0]", resp.GetStatuses()[0], envoyLimited{envoyOK, 3, envoyMinute, 1, minuteReset})
	wantEnvoyHeaders(t, "one over", resp, "10", "0", "3570")

	// A descriptor's own limit override is decided under that limit.
	override := envoyDesc("remote_address", "9.9.9.9")
	override.Limit = &envoycommon.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_HOUR}
	resp, _ = e.call(t, "edge", 0, override)
	wantEnvoyLimited(t, "override", resp.GetStatuses()[0], envoyLimited{envoyOK, 1, envoyHour, 0, hourReset})
	resp, _ = e.call(t, "edge", 0, override)
	wantEnvoyLimited(t, "override again", resp.GetStatuses()[0], envoyLimited{envoyOver, 1, envoyHour, 0, hourReset})

	// A domain without configuration limits nothing and writes nothing.
	resp, writes = e.call(t, "elsewhere", 0, envoyDesc("remote_address", "1.2.3.4"))
	if resp.GetOverallCode() != envoyOK || writes != 0 {
		t.Fatalf("unknown domain: overall %v with %d writes", resp.GetOverallCode(), writes)
	}
	wantEnvoyUnlimited(t, "unknown domain", resp.GetStatuses()[0], 0)

	// The next window starts afresh.
	e.node.advance(30 * time.Second)
	resp, _ = e.call(t, "edge", 0, envoyDesc("remote_address", "1.2.3.4"))
	wantEnvoyLimited(t, "next minute", resp.GetStatuses()[0], envoyLimited{envoyOK, 3, envoyMinute, 2, 59750 * time.Millisecond})
}

func TestEnvoy_ImportReplaces(t *testing.T) {
	e := newEnvoyTest(t)
	e.importYAML(t, envoyEdgeConfig, false)
	e.call(t, "edge", 0, envoyDesc("api_key", "k1"))

	const next = `
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: remote_address
    value: 10.0.0.9
    rate_limit: {unlimited: true}
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 2}
`
	ops := func(changes []envoyrl.Change) map[string]envoyrl.Op {
		out := map[string]envoyrl.Op{}
		for _, c := range changes {
			out[c.Policy.GetName()] = c.Op
		}
		return out
	}
	want := map[string]envoyrl.Op{
		"envoy/edge/remote_address":                   envoyrl.OpUpdate,
		"envoy/edge/remote_address=10.0.0.9":          envoyrl.OpKeep,
		"envoy/edge/message_type=marketing/to_number": envoyrl.OpKeep,
		"envoy/edge/plan=free":                        envoyrl.OpDelete,
		"envoy/edge/api_key":                          envoyrl.OpDelete,
	}
	for _, dryRun := range []bool{true, false} {
		got := ops(e.importYAML(t, next, dryRun))
		if len(got) != len(want) {
			t.Fatalf("dry run %v: changes %v, want %v", dryRun, got, want)
		}
		for name, op := range want {
			if got[name] != op {
				t.Fatalf("dry run %v: changes %v, want %v", dryRun, got, want)
			}
		}
		// The dry run changed nothing; the import did.
		resp, _ := e.call(t, "edge", 0, envoyDesc("api_key", "k1"))
		if limitedNow := resp.GetStatuses()[0].GetCurrentLimit() != nil; limitedNow != dryRun {
			t.Fatalf("dry run %v: api_key limited = %v", dryRun, limitedNow)
		}
	}
	resp, _ := e.call(t, "edge", 0, envoyDesc("remote_address", "1.2.3.4"))
	wantEnvoyLimited(t, "updated limit", resp.GetStatuses()[0], envoyLimited{envoyOK, 5, envoyMinute, 4, 29750 * time.Millisecond})
	if got := ops(e.importYAML(t, next, false)); len(got) != 3 || got["envoy/edge/remote_address"] != envoyrl.OpKeep {
		t.Fatalf("importing again: %v, want every policy kept", got)
	}
}

// A policy deleted between the mapping's read and the Check's apply makes the request
// map again instead of failing.
func TestEnvoy_PolicyDeletedAfterRead(t *testing.T) {
	e := newEnvoyTest(t)
	e.importYAML(t, envoyEdgeConfig, false)
	e.node.hookMu.Lock()
	e.node.afterRead = func() {
		del := &fsmv1.Command{Op: &fsmv1.Command_PolicyDelete{PolicyDelete: &conclavev1.DeletePolicyRequest{Name: "envoy/edge/remote_address"}}}
		if res, err := e.node.Apply(context.Background(), del); err != nil || res.GetError() != nil {
			t.Errorf("delete: %v %v", err, res.GetError())
		}
	}
	e.node.hookMu.Unlock()
	resp, writes := e.call(t, "edge", 0, envoyDesc("remote_address", "1.2.3.4"), envoyDesc("api_key", "k1"))
	if writes != 3 { // the delete, the Check that found its policy gone, the Check again
		t.Fatalf("%d writes, want 3", writes)
	}
	wantEnvoyUnlimited(t, "deleted policy", resp.GetStatuses()[0], 0)
	wantEnvoyLimited(t, "other descriptor", resp.GetStatuses()[1], envoyLimited{envoyOK, 10, envoyHour, 9, 59*time.Minute + 29750*time.Millisecond})
}

func TestEnvoy_BadInput(t *testing.T) {
	e := newEnvoyTest(t)
	e.importYAML(t, envoyEdgeConfig, false)
	override := func(rpu uint32, unit typev3.RateLimitUnit, mult *wrapperspb.UInt32Value) *envoycommon.RateLimitDescriptor {
		d := envoyDesc("a", "b")
		d.Limit = &envoycommon.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: unit, UnitMultiplier: mult}
		return d
	}
	negative := envoyDesc("a", "b")
	negative.IsNegativeHits = true
	many := make([]*envoycommon.RateLimitDescriptor, MaxRateLimitKeys+1)
	for i := range many {
		many[i] = envoyDesc("a", "b")
	}
	long := make([]byte, MaxKeyBytes)
	tests := []struct {
		name  string
		req   *rlsv3.RateLimitRequest
		field string
	}{
		{"no domain", &rlsv3.RateLimitRequest{Descriptors: many[:1]}, "domain"},
		{"no descriptors", &rlsv3.RateLimitRequest{Domain: "edge"}, "descriptors"},
		{"too many descriptors", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: many}, "descriptors"},
		{"hits_addend too large", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: many[:1], HitsAddend: MaxRateLimitCost + 1}, "hits_addend"},
		{"no entries", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{{}}}, "descriptors[0].entries"},
		{"empty key", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{envoyDesc("a", "b", "", "c")}}, "descriptors[0].entries[1].key"},
		{"key too long", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{envoyDesc("a", string(long))}}, "descriptors[0].entries"},
		{"descriptor hits_addend too large", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{envoyDesc("a", "b"), envoyWithHits(envoyDesc("a", "b"), MaxRateLimitCost+1)}}, "descriptors[1].hits_addend"},
		{"negative hits", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{negative}}, "descriptors[0].is_negative_hits"},
		{"override unit", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{override(1, typev3.RateLimitUnit_UNKNOWN, nil)}}, "descriptors[0].limit.unit"},
		{"override zero", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{override(0, typev3.RateLimitUnit_SECOND, nil)}}, "descriptors[0].limit.requests_per_unit"},
		{"override multiplier", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{override(1, typev3.RateLimitUnit_YEAR, wrapperspb.UInt32(math.MaxUint32))}}, "descriptors[0].limit.unit_multiplier"},
		{"merged hits too large", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{
			envoyWithHits(envoyDesc("api_key", "z"), MaxRateLimitCost), envoyWithHits(envoyDesc("api_key", "z"), 1)}}, "descriptors[1].hits_addend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.node.applies.Load()
			_, err := e.envoy.ShouldRateLimit(testContext(t), tt.req)
			wantField(t, err, tt.field)
			if e.node.applies.Load() != before {
				t.Fatal("bad input reached the log")
			}
		})
	}
}

// envoyrl cannot import this package; its copies of the limits must agree.
func TestEnvoy_LimitsAgree(t *testing.T) {
	if envoyrl.Unlimited != MaxRateLimit || envoyrl.MaxNameBytes != MaxPolicyNameBytes {
		t.Fatalf("envoyrl.Unlimited %d, MaxNameBytes %d; server MaxRateLimit %d, MaxPolicyNameBytes %d",
			envoyrl.Unlimited, envoyrl.MaxNameBytes, uint64(MaxRateLimit), MaxPolicyNameBytes)
	}
}
