package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeLimits is a RateLimitService over a plain counter per key: a Check of cost c is
// allowed while used+c ≤ limit, denied with retry_after_ms retryMs (-1 when c > limit)
// otherwise. CONCURRENCY Checks get slot ids counting up from 1, released by Refund.
// Verdicts in script are answered first, in order. The first unavailable calls (of any
// method) fail with Unavailable, the next ones with fail when it is not OK. It records
// the requests it receives.
type fakeLimits struct {
	conclavev1grpc.UnimplementedRateLimitServiceServer

	mu          sync.Mutex
	used        map[string]uint64
	policies    map[string]*conclavev1.RateLimitPolicy
	retryMs     int64
	script      []*conclavev1.KeyVerdict
	unavailable int
	fail        codes.Code
	onCheck     func() // called on each Check, before it is decided
	slot        uint64
	checks      []*conclavev1.CheckRequest
	peeks       []*conclavev1.PeekRequest
	refunds     []*conclavev1.RefundRequest
	calls       map[string]int // per method
}

func newFakeLimits() *fakeLimits {
	return &fakeLimits{
		used:     map[string]uint64{},
		policies: map[string]*conclavev1.RateLimitPolicy{},
		retryMs:  1,
		calls:    map[string]int{},
	}
}

// enter records a call of method and returns the error it is set to fail with.
func (f *fakeLimits) enter(method string) error {
	f.calls[method]++
	if f.unavailable > 0 {
		f.unavailable--
		return status.Error(codes.Unavailable, "fake: no leader")
	}
	if f.fail != codes.OK {
		return status.Errorf(f.fail, "fake: failing with %s", f.fail)
	}
	return nil
}

func (f *fakeLimits) policy(k *conclavev1.RateLimitKey) (*conclavev1.RateLimitPolicy, error) {
	if p := k.GetInline(); p != nil {
		return p, nil
	}
	p, ok := f.policies[k.GetPolicy()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "policy %q not found", k.GetPolicy())
	}
	return p, nil
}

// decide returns k's verdict, consuming when consume and allowed.
func (f *fakeLimits) decide(k *conclavev1.RateLimitKey, consume bool) (*conclavev1.KeyVerdict, error) {
	if len(f.script) > 0 {
		v := proto.CloneOf(f.script[0])
		f.script = f.script[1:]
		v.Key = k.GetKey()
		return v, nil
	}
	p, err := f.policy(k)
	if err != nil {
		return nil, err
	}
	cost := max(k.GetCost(), 1)
	used := f.used[k.GetKey()]
	v := &conclavev1.KeyVerdict{Key: k.GetKey(), Limit: p.GetLimit(), ResetAfterMs: p.GetPeriodMs()}
	switch {
	case cost > p.GetLimit():
		v.RetryAfterMs = -1
	case used+cost > p.GetLimit():
		v.RetryAfterMs = f.retryMs
	default:
		v.Allowed = true
		if consume {
			used += cost
			f.used[k.GetKey()] = used
			if p.GetAlgorithm() == conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY {
				for range cost {
					f.slot++
					v.Slots = append(v.Slots, f.slot)
				}
			}
		}
	}
	v.Remaining = p.GetLimit() - min(used, p.GetLimit())
	if p.GetShadowMode() {
		v.Shadow, v.WouldAllow, v.Allowed = true, v.Allowed, true
	}
	return v, nil
}

func (f *fakeLimits) Check(_ context.Context, r *conclavev1.CheckRequest) (*conclavev1.CheckResponse, error) {
	f.mu.Lock()
	hook := f.onCheck
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks = append(f.checks, proto.CloneOf(r))
	if err := f.enter("Check"); err != nil {
		return nil, err
	}
	resp := &conclavev1.CheckResponse{Allowed: true}
	for _, k := range r.GetKeys() {
		v, err := f.decide(k, true)
		if err != nil {
			return nil, err
		}
		resp.Allowed = resp.Allowed && v.GetAllowed()
		resp.Verdicts = append(resp.Verdicts, v)
	}
	return resp, nil
}

func (f *fakeLimits) Peek(_ context.Context, r *conclavev1.PeekRequest) (*conclavev1.PeekResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peeks = append(f.peeks, proto.CloneOf(r))
	if err := f.enter("Peek"); err != nil {
		return nil, err
	}
	resp := &conclavev1.PeekResponse{Allowed: true}
	for _, k := range r.GetKeys() {
		v, err := f.decide(k, false)
		if err != nil {
			return nil, err
		}
		resp.Allowed = resp.Allowed && v.GetAllowed()
		resp.Verdicts = append(resp.Verdicts, v)
	}
	return resp, nil
}

func (f *fakeLimits) Refund(_ context.Context, r *conclavev1.RefundRequest) (*conclavev1.RefundResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refunds = append(f.refunds, proto.CloneOf(r))
	if err := f.enter("Refund"); err != nil {
		return nil, err
	}
	resp := &conclavev1.RefundResponse{}
	for _, k := range r.GetKeys() {
		give := max(k.GetCost(), 1)
		if n := uint64(len(k.GetSlots())); n > 0 {
			give = n
		}
		f.used[k.GetKey()] -= min(give, f.used[k.GetKey()])
		resp.Verdicts = append(resp.Verdicts, &conclavev1.KeyVerdict{Key: k.GetKey(), Allowed: true})
	}
	return resp, nil
}

func (f *fakeLimits) PutPolicy(_ context.Context, r *conclavev1.PutPolicyRequest) (*conclavev1.PutPolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("PutPolicy"); err != nil {
		return nil, err
	}
	f.policies[r.GetPolicy().GetName()] = proto.CloneOf(r.GetPolicy())
	return &conclavev1.PutPolicyResponse{}, nil
}

func (f *fakeLimits) GetPolicy(_ context.Context, r *conclavev1.GetPolicyRequest) (*conclavev1.GetPolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetPolicy"); err != nil {
		return nil, err
	}
	p, ok := f.policies[r.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "policy %q not found", r.GetName())
	}
	return &conclavev1.GetPolicyResponse{Policy: p}, nil
}

func (f *fakeLimits) ListPolicies(context.Context, *conclavev1.ListPoliciesRequest) (*conclavev1.ListPoliciesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ListPolicies"); err != nil {
		return nil, err
	}
	return &conclavev1.ListPoliciesResponse{}, nil
}

func (f *fakeLimits) set(fn func(f *fakeLimits)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeLimits) checkRequests() []*conclavev1.CheckRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*conclavev1.CheckRequest(nil), f.checks...)
}

func (f *fakeLimits) refundRequests() []*conclavev1.RefundRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*conclavev1.RefundRequest(nil), f.refunds...)
}

func (f *fakeLimits) callCount(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// newLimitsTestClient serves one fakeLimits on n in-process endpoints and returns a
// Client over them whose first endpoint is rl0.
func newLimitsTestClient(t *testing.T, n int) (*Client, *fakeLimits) {
	t.Helper()
	f := newFakeLimits()
	lis := map[string]*bufconn.Listener{}
	cfg := DefaultConfig()
	cfg.Endpoints = nil
	for i := range n {
		name := fmt.Sprintf("rl%d", i)
		l := bufconn.Listen(1 << 16)
		lis[name] = l
		srv := grpc.NewServer()
		conclavev1grpc.RegisterRateLimitServiceServer(srv, f)
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(srv.Stop)
		cfg.Endpoints = append(cfg.Endpoints, name)
	}
	cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return lis[addr].DialContext(ctx)
	})}
	cfg.RequestTimeout = 5 * time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.conn.current.Store(0)
	t.Cleanup(func() { _ = c.Close() })
	return c, f
}

// perMinute returns an inline GCRA policy of limit per minute.
func perMinute(limit uint64) *conclavev1.RateLimitPolicy {
	return &conclavev1.RateLimitPolicy{Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA, Limit: limit, PeriodMs: 60_000}
}

func TestLimiter_AllowInline(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	p := perMinute(2)
	l := c.NewLimiter(p)
	p.Limit = 100 // the Limiter keeps its own copy
	ctx := context.Background()
	for i, want := range []Verdict{
		{Key: "ip:1", Cost: 1, Allowed: true, Limit: 2, Remaining: 1, ResetAfter: time.Minute},
		{Key: "ip:1", Cost: 1, Allowed: true, Limit: 2, Remaining: 0, ResetAfter: time.Minute},
		{Key: "ip:1", Cost: 1, Allowed: false, Limit: 2, Remaining: 0, ResetAfter: time.Minute, RetryAfter: time.Millisecond},
	} {
		v, err := l.Allow(ctx, "ip:1")
		if err != nil {
			t.Fatalf("Allow #%d: %v", i, err)
		}
		if fmt.Sprint(v) != fmt.Sprint(want) {
			t.Fatalf("Allow #%d = %+v, want %+v", i, v, want)
		}
	}
	reqs := f.checkRequests()
	seen := map[string]bool{}
	for _, r := range reqs {
		k := r.GetKeys()[0]
		if len(r.GetKeys()) != 1 || k.GetKey() != "ip:1" || k.GetCost() != 1 || k.GetInline().GetLimit() != 2 ||
			k.GetInline().GetPeriodMs() != 60_000 || r.GetRequestId() == "" || seen[r.GetRequestId()] {
			t.Fatalf("check request = %v: want key ip:1, cost 1, the inline policy and a fresh request id", r)
		}
		seen[r.GetRequestId()] = true
	}
}

func TestLimiter_NamedAllowNAndPeek(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	ctx := context.Background()
	if _, err := c.RateLimits().PutPolicy(ctx, &conclavev1.PutPolicyRequest{Policy: &conclavev1.RateLimitPolicy{
		Name: "api", Limit: 5, PeriodMs: 1000}}); err != nil {
		t.Fatal(err)
	}
	l := c.NewNamedLimiter("api")
	if v, err := l.Peek(ctx, "user:7", 5); err != nil || !v.Allowed || v.Remaining != 5 || v.Cost != 5 {
		t.Fatalf("Peek = %+v, %v; want allowed with 5 remaining", v, err)
	}
	if v, err := l.AllowN(ctx, "user:7", 3); err != nil || !v.Allowed || v.Remaining != 2 {
		t.Fatalf("AllowN(3) = %+v, %v; want allowed with 2 remaining", v, err)
	}
	if v, err := l.AllowN(ctx, "user:7", 3); err != nil || v.Allowed || v.Remaining != 2 {
		t.Fatalf("AllowN(3) again = %+v, %v; want denied, nothing consumed", v, err)
	}
	if k := f.checkRequests()[0].GetKeys()[0]; k.GetPolicy() != "api" || k.GetInline() != nil || k.GetCost() != 3 {
		t.Fatalf("check key = %v: want policy api, cost 3", k)
	}
	_, err := c.NewNamedLimiter("missing").Allow(ctx, "user:7")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Allow under a missing policy = %v, want ErrNotFound", err)
	}
}

func TestLimiter_WaitHonoursRetryAfter(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	f.set(func(f *fakeLimits) {
		denied := &conclavev1.KeyVerdict{Limit: 1, RetryAfterMs: 1}
		f.script = []*conclavev1.KeyVerdict{denied, denied}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.NewLimiter(perMinute(1)).Wait(ctx, "k")
	if err != nil || !v.Allowed {
		t.Fatalf("Wait = %+v, %v; want allowed", v, err)
	}
	if n := f.callCount("Check"); n != 3 {
		t.Fatalf("%d Checks, want 3 (two denied, then allowed)", n)
	}
}

func TestLimiter_WaitNeverAllowed(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	v, err := c.NewLimiter(perMinute(2)).WaitN(context.Background(), "k", 3)
	if !errors.Is(err, ErrNeverAllowed) || v.RetryAfter != RetryNever || v.Allowed {
		t.Fatalf("WaitN(3) over a limit of 2 = %+v, %v; want ErrNeverAllowed", v, err)
	}
	if n := f.callCount("Check"); n != 1 {
		t.Fatalf("%d Checks, want 1", n)
	}
}

func TestLimiter_WaitEndsWithContext(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.set(func(f *fakeLimits) {
		f.retryMs = time.Hour.Milliseconds()
		f.used["k"] = 1
		f.onCheck = cancel // the context ends during the first Check or the wait after it
	})
	_, err := c.NewLimiter(perMinute(1)).Wait(ctx, "k")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want an error wrapping context.Canceled", err)
	}
	if n := f.callCount("Check"); n > 1 {
		t.Fatalf("%d Checks after the context ended, want at most 1", n)
	}
}

func TestLimiter_MaxWaitStep(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	f.set(func(f *fakeLimits) {
		f.script = []*conclavev1.KeyVerdict{{Limit: 1, RetryAfterMs: time.Hour.Milliseconds()}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The hour is capped to a millisecond: the second Check comes at once and is allowed.
	if v, err := c.NewLimiter(perMinute(1), MaxWaitStep(time.Millisecond)).Wait(ctx, "k"); err != nil || !v.Allowed {
		t.Fatalf("Wait = %+v, %v; want allowed", v, err)
	}
}

func TestLimiter_Refund(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	ctx := context.Background()
	l := c.NewLimiter(perMinute(1))

	v, err := l.Allow(ctx, "k")
	if err != nil || !v.Allowed {
		t.Fatalf("Allow = %+v, %v", v, err)
	}
	denied, err := l.Allow(ctx, "k")
	if err != nil || denied.Allowed {
		t.Fatalf("second Allow = %+v, %v; want denied", denied, err)
	}
	if err := l.Refund(ctx, denied); err != nil {
		t.Fatal(err)
	}
	if n := len(f.refundRequests()); n != 0 {
		t.Fatalf("a denied verdict was refunded (%d Refunds): nothing was consumed", n)
	}
	if err := l.Refund(ctx, v); err != nil {
		t.Fatal(err)
	}
	r := f.refundRequests()[0]
	if k := r.GetKeys()[0]; k.GetKey() != "k" || k.GetCost() != 1 || k.GetInline().GetLimit() != 1 || r.GetRequestId() == "" {
		t.Fatalf("refund request = %v: want key k, cost 1, the policy and a request id", r)
	}
	if v, err := l.Allow(ctx, "k"); err != nil || !v.Allowed {
		t.Fatalf("Allow after the refund = %+v, %v; want allowed", v, err)
	}

	// Shadow mode: a verdict allowed only by shadow mode consumed nothing.
	shadow := perMinute(1)
	shadow.ShadowMode = true
	ls := c.NewLimiter(shadow)
	_, _ = ls.Allow(ctx, "s")
	sv, err := ls.Allow(ctx, "s")
	if err != nil || !sv.Allowed || !sv.Shadow || sv.WouldAllow {
		t.Fatalf("shadow Allow = %+v, %v; want allowed in shadow, would deny", sv, err)
	}
	if err := ls.Refund(ctx, sv); err != nil || len(f.refundRequests()) != 1 {
		t.Fatalf("Refund of a shadow-only admission = %v, %d Refunds; want none sent", err, len(f.refundRequests()))
	}
}

func TestLimiter_ConcurrencySlotsReleased(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	ctx := context.Background()
	l := c.NewLimiter(&conclavev1.RateLimitPolicy{Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY,
		Limit: 2, PeriodMs: 30_000})
	v, err := l.AllowN(ctx, "jobs", 2)
	if err != nil || !v.Allowed || len(v.Slots) != 2 {
		t.Fatalf("AllowN(2) = %+v, %v; want two slots", v, err)
	}
	if err := l.Refund(ctx, v); err != nil {
		t.Fatal(err)
	}
	if k := f.refundRequests()[0].GetKeys()[0]; fmt.Sprint(k.GetSlots()) != fmt.Sprint(v.Slots) {
		t.Fatalf("refund released slots %v, want %v", k.GetSlots(), v.Slots)
	}
}

func TestLimiter_CheckRetriedWithSameRequestID(t *testing.T) {
	c, f := newLimitsTestClient(t, 2)
	f.set(func(f *fakeLimits) { f.unavailable = 1 })
	v, err := c.NewLimiter(perMinute(5)).Allow(context.Background(), "k")
	if err != nil || !v.Allowed {
		t.Fatalf("Allow = %+v, %v; want allowed on the second endpoint", v, err)
	}
	reqs := f.checkRequests()
	if len(reqs) != 2 || reqs[0].GetRequestId() == "" || reqs[0].GetRequestId() != reqs[1].GetRequestId() {
		t.Fatalf("checks = %v: want two attempts with one request id", reqs)
	}
	if c.Endpoint() != "rl1" {
		t.Fatalf("endpoint = %s, want rl1", c.Endpoint())
	}
}

func TestClient_RateLimitRetryPolicy(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(*Client) error
	}{
		{"peek", func(c *Client) error {
			_, err := c.RateLimits().Peek(ctx, &conclavev1.PeekRequest{Keys: []*conclavev1.RateLimitKey{{Key: "k",
				Limit: &conclavev1.RateLimitKey_Inline{Inline: perMinute(1)}}}})
			return err
		}},
		{"get policy", func(c *Client) error {
			_, err := c.RateLimits().GetPolicy(ctx, &conclavev1.GetPolicyRequest{Name: "p"})
			return err
		}},
		{"list policies", func(c *Client) error {
			_, err := c.RateLimits().ListPolicies(ctx, &conclavev1.ListPoliciesRequest{})
			return err
		}},
		{"refund (request id)", func(c *Client) error {
			_, err := c.RateLimits().Refund(ctx, &conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{{Key: "k",
				Limit: &conclavev1.RateLimitKey_Inline{Inline: perMinute(1)}}}})
			return err
		}},
		{"put policy (request id)", func(c *Client) error {
			_, err := c.RateLimits().PutPolicy(ctx, &conclavev1.PutPolicyRequest{Policy: &conclavev1.RateLimitPolicy{Name: "q"}})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newLimitsTestClient(t, 2)
			f.set(func(f *fakeLimits) { f.unavailable, f.policies["p"] = 1, perMinute(1) })
			if err := tt.call(c); err != nil {
				t.Fatalf("call after one Unavailable = %v, want it retried on the next endpoint", err)
			}
		})
	}
	for _, m := range []string{
		conclavev1grpc.RateLimitService_Check_FullMethodName,
		conclavev1grpc.RateLimitService_Refund_FullMethodName,
		conclavev1grpc.RateLimitService_PutPolicy_FullMethodName,
		conclavev1grpc.RateLimitService_DeletePolicy_FullMethodName,
	} {
		if safeToRepeat[m] {
			t.Errorf("%s is in safeToRepeat: a write is safe only with its request id", m)
		}
	}
	for _, req := range []proto.Message{
		&conclavev1.CheckRequest{}, &conclavev1.RefundRequest{},
		&conclavev1.PutPolicyRequest{}, &conclavev1.DeletePolicyRequest{},
	} {
		if requestID(withRequestID(req)) == "" {
			t.Errorf("%T: withRequestID filled no request_id", req)
		}
	}
}
