package server

import (
	"context"
	"math"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fuzzZset fuzzes one SortedSetService method, given as a method expression.
func fuzzZset[T any, Req interface {
	*T
	proto.Message
}, Resp response](f *testing.F, kind rpcKind, method func(conclavev1grpc.SortedSetServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
	validate func(Req) error, seeds ...Req) {
	f.Helper()
	call := func(ts *testServer, ctx context.Context, req Req) (Resp, error) {
		return method(conclavev1grpc.NewSortedSetServiceClient(ts.conn), ctx, req)
	}
	fuzzRPC(f, kind, call, validate, nil, seeds)
}

func FuzzZsetAdd(f *testing.F) {
	fuzzZset(f, writeRPC, conclavev1grpc.SortedSetServiceClient.Add, validateZsetAdd,
		&conclavev1.AddRequest{Key: []byte("lb"), Members: []*conclavev1.ScoredMember{{Member: "erin", Score: 5}, {Member: "bob", Score: 1}}, OnlyGreater: true},
		&conclavev1.AddRequest{Key: []byte("lb"), Members: []*conclavev1.ScoredMember{{Member: "dave", Score: math.Inf(-1)}}, Increment: true},
		&conclavev1.AddRequest{Key: []byte("a"), Members: []*conclavev1.ScoredMember{{Member: "x", Score: 1}}},
		&conclavev1.AddRequest{Key: []byte("lb"), Members: []*conclavev1.ScoredMember{{Member: "x", Score: math.NaN()}}},
		&conclavev1.AddRequest{Key: []byte("new"), Members: []*conclavev1.ScoredMember{{Member: "x"}}, TieBreak: conclavev1.TieBreak_TIE_BREAK_ARRIVAL, TtlMs: 1000, RequestId: "r1"},
	)
}

func FuzzZsetRange(f *testing.F) {
	fuzzZset(f, readRPC, conclavev1grpc.SortedSetServiceClient.Range, validateZsetRange,
		&conclavev1.RangeRequest{Key: []byte("lb"), Reverse: true, Limit: 2, RankMode: conclavev1.RankMode_RANK_MODE_DENSE},
		&conclavev1.RangeRequest{Key: []byte("lb"), Interval: &conclavev1.RangeRequest_Score{Score: &conclavev1.ScoreInterval{Min: &conclavev1.ScoreBound{Score: 10, Exclusive: true}}}, Offset: 1},
		&conclavev1.RangeRequest{Key: []byte("lb"), Interval: &conclavev1.RangeRequest_Lex{Lex: &conclavev1.LexInterval{Max: &conclavev1.LexBound{Member: "b"}}}},
		&conclavev1.RangeRequest{Key: []byte("lb"), Interval: &conclavev1.RangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: -2, Stop: -1}}, PageToken: "AUAkAAAAAAAAAAAAAAAAAABib2I"},
		&conclavev1.RangeRequest{Key: []byte("a")},
	)
}

func FuzzZsetRemoveRange(f *testing.F) {
	fuzzZset(f, writeRPC, conclavev1grpc.SortedSetServiceClient.RemoveRange, validateZsetRemoveRange,
		&conclavev1.RemoveRangeRequest{Key: []byte("lb"), Interval: &conclavev1.RemoveRangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: 0, Stop: 1}}},
		&conclavev1.RemoveRangeRequest{Key: []byte("lb"), Interval: &conclavev1.RemoveRangeRequest_Score{Score: &conclavev1.ScoreInterval{Max: &conclavev1.ScoreBound{Score: 20}}}},
		&conclavev1.RemoveRangeRequest{Key: []byte("lb")},
	)
}

func FuzzZsetUnionStore(f *testing.F) {
	validate := func(r *conclavev1.UnionStoreRequest) error {
		return validateZsetStore(r.GetDestination(), r.GetKeys(), r.GetWeights(), r.GetAggregate(), r.GetTieBreak(), r.GetRequestId())
	}
	fuzzZset(f, writeRPC, conclavev1grpc.SortedSetServiceClient.UnionStore, validate,
		&conclavev1.UnionStoreRequest{Destination: []byte("out"), Keys: [][]byte{[]byte("lb"), []byte("missing")}, Weights: []float64{2, 0}, Aggregate: conclavev1.Aggregate_AGGREGATE_MAX},
		&conclavev1.UnionStoreRequest{Destination: []byte("lb"), Keys: [][]byte{[]byte("a")}},
		&conclavev1.UnionStoreRequest{Destination: []byte("out"), Keys: [][]byte{[]byte("lb")}, Weights: []float64{math.NaN()}},
	)
}
