package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

func inline(p *conclavev1.RateLimitPolicy) *conclavev1.RateLimitKey_Inline {
	return &conclavev1.RateLimitKey_Inline{Inline: p}
}

func TestRateLimit_BadInput(t *testing.T) {
	ts := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc := conclavev1grpc.NewRateLimitServiceClient(ts.conn)
	gcra := &conclavev1.RateLimitPolicy{Limit: 5, PeriodMs: 60_000}
	key := func(k *conclavev1.RateLimitKey) *conclavev1.CheckRequest {
		return &conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{k}}
	}
	for _, tt := range []struct {
		name  string
		req   *conclavev1.CheckRequest
		field string
	}{
		{"no keys", &conclavev1.CheckRequest{}, "keys"},
		{"empty key", key(&conclavev1.RateLimitKey{Limit: inline(gcra)}), "keys[0].key"},
		{"no policy", key(&conclavev1.RateLimitKey{Key: "k"}), "keys[0].limit"},
		{"cost too high", key(&conclavev1.RateLimitKey{Key: "k", Cost: MaxRateLimitCost + 1, Limit: inline(gcra)}), "keys[0].cost"},
		{"zero limit", key(&conclavev1.RateLimitKey{Key: "k", Limit: inline(&conclavev1.RateLimitPolicy{PeriodMs: 1})}), "keys[0].inline.limit"},
		{"zero period", key(&conclavev1.RateLimitKey{Key: "k", Limit: inline(&conclavev1.RateLimitPolicy{Limit: 1})}), "keys[0].inline.period_ms"},
		{"bad algorithm", key(&conclavev1.RateLimitKey{Key: "k", Limit: inline(&conclavev1.RateLimitPolicy{Limit: 1, PeriodMs: 1, Algorithm: 9})}), "keys[0].inline.algorithm"},
		{"burst on a window", key(&conclavev1.RateLimitKey{Key: "k", Limit: inline(&conclavev1.RateLimitPolicy{Limit: 1, PeriodMs: 1, Burst: 2,
			Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW})}), "keys[0].inline.burst"},
		{"sliding window too large", key(&conclavev1.RateLimitKey{Key: "k", Limit: inline(&conclavev1.RateLimitPolicy{Limit: MaxSlidingLimit + 1, PeriodMs: 1,
			Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_SLIDING_WINDOW})}), "keys[0].inline.limit"},
		{"concurrency limit too large", key(&conclavev1.RateLimitKey{Key: "k", Limit: inline(&conclavev1.RateLimitPolicy{Limit: 70_000, PeriodMs: 1,
			Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY})}), "keys[0].inline"},
		{"slots on a check", key(&conclavev1.RateLimitKey{Key: "k", Slots: []uint64{1}, Limit: inline(gcra)}), "keys[0].slots"},
		{"empty policy name", key(&conclavev1.RateLimitKey{Key: "k", Limit: &conclavev1.RateLimitKey_Policy{}}), "keys[0].policy"},
		{"key twice", &conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{{Key: "k", Limit: inline(gcra)}, {Key: "k", Limit: inline(gcra)}}}, "keys[1].key"},
		{"request id too long", &conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{{Key: "k", Limit: inline(gcra)}}, RequestId: strings.Repeat("r", MaxRequestIDBytes+1)}, "request_id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rc.Check(ctx, tt.req)
			wantField(t, err, tt.field)
		})
	}
	_, err := rc.PutPolicy(ctx, &conclavev1.PutPolicyRequest{Policy: &conclavev1.RateLimitPolicy{Limit: 1, PeriodMs: 1}})
	wantField(t, err, "policy.name")
	_, err = rc.PutPolicy(ctx, &conclavev1.PutPolicyRequest{})
	wantField(t, err, "policy")
	_, err = rc.DeletePolicy(ctx, &conclavev1.DeletePolicyRequest{})
	wantField(t, err, "name")
	if ts.node.applies.Load() != 0 {
		t.Fatalf("bad input reached the node: %d applies", ts.node.applies.Load())
	}
}

func TestRateLimit_CheckPeekRefundAndPolicies(t *testing.T) {
	ts := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc := conclavev1grpc.NewRateLimitServiceClient(ts.conn)
	fixed := &conclavev1.RateLimitPolicy{Name: "api/free", Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW, Limit: 3, PeriodMs: 3_600_000}
	if _, err := rc.PutPolicy(ctx, &conclavev1.PutPolicyRequest{Policy: fixed}); err != nil {
		t.Fatal(err)
	}
	named := []*conclavev1.RateLimitKey{{Key: "user:1", Limit: &conclavev1.RateLimitKey_Policy{Policy: "api/free"}}}
	for i := range 3 {
		resp, err := rc.Check(ctx, &conclavev1.CheckRequest{Keys: named})
		if err != nil || !resp.GetAllowed() || resp.GetVerdicts()[0].GetRemaining() != uint64(2-i) || resp.GetHeader().GetRevision() == 0 {
			t.Fatalf("check %d: %v, %v", i, resp, err)
		}
	}
	denied, err := rc.Check(ctx, &conclavev1.CheckRequest{Keys: named})
	if err != nil || denied.GetAllowed() || denied.GetVerdicts()[0].GetRetryAfterMs() <= 0 {
		t.Fatalf("fourth check: %v, %v: want denied with a retry_after", denied, err)
	}
	peek, err := rc.Peek(ctx, &conclavev1.PeekRequest{Keys: named})
	if err != nil || peek.GetAllowed() || peek.GetVerdicts()[0].GetRemaining() != 0 {
		t.Fatalf("peek: %v, %v", peek, err)
	}
	if _, err := rc.Refund(ctx, &conclavev1.RefundRequest{Keys: named}); err != nil {
		t.Fatal(err)
	}
	peek, err = rc.Peek(ctx, &conclavev1.PeekRequest{Keys: named})
	if err != nil || !peek.GetAllowed() || peek.GetVerdicts()[0].GetRemaining() != 0 { // remaining after the peeked hit
		t.Fatalf("peek after a refund: %v, %v", peek, err)
	}
	// Peek consumed nothing: the refunded hit is still there to take.
	if resp, err := rc.Check(ctx, &conclavev1.CheckRequest{Keys: named}); err != nil || !resp.GetAllowed() {
		t.Fatalf("check after a refund: %v, %v", resp, err)
	}

	_, err = rc.Check(ctx, &conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{{Key: "k", Limit: &conclavev1.RateLimitKey_Policy{Policy: "nope"}}}})
	wantCode(t, err, codes.NotFound, "NOT_FOUND")

	for _, name := range []string{"api/pro", "api/team", "web/free"} {
		p := &conclavev1.RateLimitPolicy{Name: name, Limit: 10, PeriodMs: 1000}
		if _, err := rc.PutPolicy(ctx, &conclavev1.PutPolicyRequest{Policy: p}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for token := ""; ; {
		page, err := rc.ListPolicies(ctx, &conclavev1.ListPoliciesRequest{Prefix: "api/", PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.GetPolicies() {
			names = append(names, p.GetName())
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if strings.Join(names, ",") != "api/free,api/pro,api/team" {
		t.Fatalf("listed %v", names)
	}
	got, err := rc.GetPolicy(ctx, &conclavev1.GetPolicyRequest{Name: "api/free"})
	if err != nil || got.GetPolicy().GetLimit() != 3 {
		t.Fatalf("get: %v, %v", got, err)
	}
	del, err := rc.DeletePolicy(ctx, &conclavev1.DeletePolicyRequest{Name: "api/free"})
	if err != nil || !del.GetDeleted() {
		t.Fatalf("delete: %v, %v", del, err)
	}
	_, err = rc.GetPolicy(ctx, &conclavev1.GetPolicyRequest{Name: "api/free"})
	wantCode(t, err, codes.NotFound, "NOT_FOUND")
}
