package client

import (
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// safeToRepeat are the methods that may be sent again to any node without a request_id:
// reads, which change nothing, and KeepAlive, which is idempotent (renewing twice leaves
// the session as renewing once, a little later). Mutations are safe when they carry a
// request_id, whatever their service; the session writes (CreateSession, RevokeSession,
// RevokeByOwner, UpdateAttributes), the lock writes (Acquire, Release), the election
// writes (Campaign, Proclaim, Resign), the rate-limit writes (Check, Refund, PutPolicy,
// DeletePolicy) and the sorted-set writes (Add, IncrementScore, Remove, RemoveRange,
// PopMin, PopMax, the stores) have one and are filled by withRequestID. A repeated Acquire
// answers with the first one's result; a repeated Check with the first verdict, consuming
// once; a repeated IncrementScore or PopMin with the first score or members.
var safeToRepeat = map[string]bool{
	conclavev1grpc.KVService_Get_FullMethodName:                 true,
	conclavev1grpc.KVService_MultiGet_FullMethodName:            true,
	conclavev1grpc.KVService_TTL_FullMethodName:                 true,
	conclavev1grpc.KVService_Scan_FullMethodName:                true,
	conclavev1grpc.ClusterService_Status_FullMethodName:         true,
	conclavev1grpc.SessionService_GetSession_FullMethodName:     true,
	conclavev1grpc.SessionService_ListSessions_FullMethodName:   true,
	conclavev1grpc.SessionService_KeepAlive_FullMethodName:      true,
	conclavev1grpc.LockService_Inspect_FullMethodName:           true,
	conclavev1grpc.ElectionService_Leader_FullMethodName:        true,
	conclavev1grpc.RateLimitService_Peek_FullMethodName:         true,
	conclavev1grpc.RateLimitService_GetPolicy_FullMethodName:    true,
	conclavev1grpc.RateLimitService_ListPolicies_FullMethodName: true,
	conclavev1grpc.SortedSetService_Score_FullMethodName:        true,
	conclavev1grpc.SortedSetService_MultiScore_FullMethodName:   true,
	conclavev1grpc.SortedSetService_Cardinality_FullMethodName:  true,
	conclavev1grpc.SortedSetService_Count_FullMethodName:        true,
	conclavev1grpc.SortedSetService_Rank_FullMethodName:         true,
	conclavev1grpc.SortedSetService_Range_FullMethodName:        true,
	conclavev1grpc.SortedSetService_Around_FullMethodName:       true,
	conclavev1grpc.SortedSetService_Top_FullMethodName:          true,
}

// requestIDField is the field every mutating request of the public API may carry.
const requestIDField protoreflect.Name = "request_id"

// retryable reports whether a call of method with request args may be sent again after
// it failed with Unavailable: a read or KeepAlive, or a request with a non-empty request_id (the
// server answers a repeated id with the first result and changes nothing).
func retryable(method string, args any) bool {
	if safeToRepeat[method] {
		return true
	}
	return requestID(args) != ""
}

// requestID returns the request_id of args, or "" when it has none.
func requestID(args any) string {
	m, ok := args.(proto.Message)
	if !ok {
		return ""
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName(requestIDField)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	return r.Get(fd).String()
}

// withRequestID returns args itself, or, when args is a request with an empty
// request_id field, a clone of it with a fresh id. The caller's message is never changed,
// and the same returned message is sent on every attempt, so retries share the id.
func withRequestID(args any) any {
	m, ok := args.(proto.Message)
	if !ok {
		return args
	}
	fd := m.ProtoReflect().Descriptor().Fields().ByName(requestIDField)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return args
	}
	if m.ProtoReflect().Get(fd).String() != "" {
		return args
	}
	c := proto.Clone(m)
	c.ProtoReflect().Set(fd, protoreflect.ValueOfString(NewRequestID()))
	return c
}

// NewRequestID returns 16 random bytes from crypto/rand, hex encoded (32 characters).
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}
