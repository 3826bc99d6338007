package server

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fuzzRateLimit fuzzes one RateLimitService method, given as a method expression.
func fuzzRateLimit[T any, Req interface {
	*T
	proto.Message
}, Resp response](f *testing.F, kind rpcKind, method func(conclavev1grpc.RateLimitServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
	validate func(Req) error, seeds ...Req) {
	f.Helper()
	call := func(ts *testServer, ctx context.Context, req Req) (Resp, error) {
		return method(conclavev1grpc.NewRateLimitServiceClient(ts.conn), ctx, req)
	}
	fuzzRPC(f, kind, call, validate, nil, seeds)
}

var (
	seedFree  = &conclavev1.RateLimitKey_Policy{Policy: "free"}
	seedGCRA  = &conclavev1.RateLimitKey_Inline{Inline: &conclavev1.RateLimitPolicy{Limit: 5, PeriodMs: 1000, Burst: 2}}
	seedSlots = &conclavev1.RateLimitKey_Inline{Inline: &conclavev1.RateLimitPolicy{Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY, Limit: 2, PeriodMs: 1000}}
)

func FuzzRateLimitCheck(f *testing.F) {
	validate := func(r *conclavev1.CheckRequest) error {
		return firstErr(checkRateLimitKeys(r.GetKeys(), false), checkRequestID("request_id", r.GetRequestId()))
	}
	fuzzRateLimit(f, writeRPC, conclavev1grpc.RateLimitServiceClient.Check, validate,
		&conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{{Key: "ip:1", Limit: seedFree}}},
		&conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{{Key: "ip:1", Cost: 9, Limit: seedGCRA}, {Key: "all", Limit: seedSlots}}, Partial: true},
		&conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{{Key: "ip:1", Limit: &conclavev1.RateLimitKey_Policy{Policy: "missing"}}}},
		&conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{{Key: "ip:1", Limit: seedFree}, {Key: "ip:1", Limit: seedFree}}},
		&conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{{Key: "ip:1"}}},
		&conclavev1.CheckRequest{},
	)
}

func FuzzRateLimitPeek(f *testing.F) {
	validate := func(r *conclavev1.PeekRequest) error {
		return firstErr(checkRateLimitKeys(r.GetKeys(), false), checkConsistency(r.GetConsistency()))
	}
	fuzzRateLimit(f, readRPC, conclavev1grpc.RateLimitServiceClient.Peek, validate,
		&conclavev1.PeekRequest{Keys: []*conclavev1.RateLimitKey{{Key: "ip:1", Limit: seedFree}}},
		&conclavev1.PeekRequest{Keys: []*conclavev1.RateLimitKey{{Key: "ip:1", Limit: seedGCRA}}, Consistency: badEnum},
	)
}

func FuzzRateLimitRefund(f *testing.F) {
	validate := func(r *conclavev1.RefundRequest) error {
		return firstErr(checkRateLimitKeys(r.GetKeys(), true), checkRequestID("request_id", r.GetRequestId()))
	}
	fuzzRateLimit(f, writeRPC, conclavev1grpc.RateLimitServiceClient.Refund, validate,
		&conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{{Key: "ip:1", Limit: seedFree}}},
		&conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{{Key: "all", Slots: []uint64{1 << 16}, Limit: seedSlots}}},
	)
}

func FuzzPutPolicy(f *testing.F) {
	validate := func(r *conclavev1.PutPolicyRequest) error {
		return firstErr(checkPolicy("policy", r.GetPolicy(), true), checkRequestID("request_id", r.GetRequestId()))
	}
	fuzzRateLimit(f, writeRPC, conclavev1grpc.RateLimitServiceClient.PutPolicy, validate,
		&conclavev1.PutPolicyRequest{Policy: &conclavev1.RateLimitPolicy{Name: "pro", Limit: 100, PeriodMs: 60_000, Burst: 10}},
		&conclavev1.PutPolicyRequest{Policy: &conclavev1.RateLimitPolicy{Name: "w", Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_SLIDING_WINDOW, Limit: MaxSlidingLimit + 1, PeriodMs: 1}},
		&conclavev1.PutPolicyRequest{Policy: &conclavev1.RateLimitPolicy{Name: "g", Limit: 1 << 40, PeriodMs: 1}},
		&conclavev1.PutPolicyRequest{},
	)
}
