package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func keys(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "k%d", i)
	}
	return out
}

func entries(n int) []*conclavev1.KeyValueInput {
	out := make([]*conclavev1.KeyValueInput, n)
	for i, k := range keys(n) {
		out[i] = &conclavev1.KeyValueInput{Key: k, Value: []byte("v")}
	}
	return out
}

func setOps(n int) []*conclavev1.TxnOp {
	out := make([]*conclavev1.TxnOp, n)
	for i, k := range keys(n) {
		out[i] = &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Set{Set: &conclavev1.SetRequest{Key: k}}}
	}
	return out
}

func compares(n int) []*conclavev1.Compare {
	out := make([]*conclavev1.Compare, n)
	for i, k := range keys(n) {
		out[i] = &conclavev1.Compare{Key: k, Operator: conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL, Target: &conclavev1.Compare_Version{Version: 0}}
	}
	return out
}

var (
	key1025  = bytes.Repeat([]byte("k"), 1025)
	tenYears = MaxTTLMs
)

// TestValidate_Rejects sends each kind of bad request and checks it is refused with
// InvalidArgument naming the field and the rule, and that it never reached the node.
func TestValidate_Rejects(t *testing.T) {
	ts := newTestServer(t)
	kv, cl := ts.kv, ts.cluster
	k := []byte("k")
	set := func(r *conclavev1.SetRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := kv.Set(ctx, r); return err }
	}
	txn := func(r *conclavev1.TxnRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := kv.Txn(ctx, r); return err }
	}
	txnSet := func(r *conclavev1.SetRequest) []*conclavev1.TxnOp {
		return []*conclavev1.TxnOp{{Op: &conclavev1.TxnOp_Set{Set: r}}}
	}
	tests := []struct {
		name  string
		call  func(ctx context.Context) error
		field string // the BadRequest field violation
		rule  string // a substring of the message
	}{
		{"set empty key", set(&conclavev1.SetRequest{}), "key", "1 to 1024 bytes, got 0"},
		{"set key 1025 bytes", set(&conclavev1.SetRequest{Key: key1025}), "key", "1024"},
		{"set value over 1 MiB", set(&conclavev1.SetRequest{Key: k, Value: make([]byte, MaxValueBytes+1)}), "value", "at most 1048576 bytes"},
		{"set negative ttl", set(&conclavev1.SetRequest{Key: k, TtlMs: -1}), "ttl_ms", "got -1"},
		{"set ttl over 10 years", set(&conclavev1.SetRequest{Key: k, TtlMs: tenYears + 1}), "ttl_ms", "10 years"},
		{"set request id 129 bytes", set(&conclavev1.SetRequest{Key: k, RequestId: strings.Repeat("r", 129)}), "request_id", "at most 128 bytes"},
		{"set if_absent and if_present", set(&conclavev1.SetRequest{Key: k, IfAbsent: true, IfPresent: true}), "if_present", "cannot be combined with if_absent"},
		{"set keep_ttl with ttl", set(&conclavev1.SetRequest{Key: k, KeepTtl: true, TtlMs: 5}), "keep_ttl", "ttl_ms > 0"},
		{"multiset no entries", func(ctx context.Context) error {
			_, err := kv.MultiSet(ctx, &conclavev1.MultiSetRequest{})
			return err
		}, "entries", "1 to 128 entries, got 0"},
		{"multiset 129 entries", func(ctx context.Context) error {
			_, err := kv.MultiSet(ctx, &conclavev1.MultiSetRequest{Entries: entries(129)})
			return err
		}, "entries", "1 to 128 entries, got 129"},
		{"multiset bad entry key", func(ctx context.Context) error {
			e := entries(3)
			e[2].Key = nil
			_, err := kv.MultiSet(ctx, &conclavev1.MultiSetRequest{Entries: e})
			return err
		}, "entries[2].key", "1024"},
		{"multiset bad entry ttl", func(ctx context.Context) error {
			e := entries(2)
			e[1].TtlMs = -5
			_, err := kv.MultiSet(ctx, &conclavev1.MultiSetRequest{Entries: e})
			return err
		}, "entries[1].ttl_ms", "got -5"},
		{"delete no keys", func(ctx context.Context) error {
			_, err := kv.Delete(ctx, &conclavev1.DeleteRequest{})
			return err
		}, "keys", "1 to 128 keys, got 0"},
		{"delete 129 keys", func(ctx context.Context) error {
			_, err := kv.Delete(ctx, &conclavev1.DeleteRequest{Keys: keys(129)})
			return err
		}, "keys", "got 129"},
		{"delete if_revision with two keys", func(ctx context.Context) error {
			_, err := kv.Delete(ctx, &conclavev1.DeleteRequest{Keys: keys(2), IfRevision: proto.Uint64(3)})
			return err
		}, "if_revision", "exactly one key, got 2"},
		{"delete empty key", func(ctx context.Context) error {
			_, err := kv.Delete(ctx, &conclavev1.DeleteRequest{Keys: [][]byte{k, nil}})
			return err
		}, "keys[1]", "1024"},
		{"increment empty key", func(ctx context.Context) error {
			_, err := kv.Increment(ctx, &conclavev1.IncrementRequest{Delta: 1})
			return err
		}, "key", "1024"},
		{"increment negative ttl", func(ctx context.Context) error {
			_, err := kv.Increment(ctx, &conclavev1.IncrementRequest{Key: k, TtlMs: -1})
			return err
		}, "ttl_ms", "got -1"},
		{"expire persist with ttl", func(ctx context.Context) error {
			_, err := kv.Expire(ctx, &conclavev1.ExpireRequest{Key: k, Persist: true, TtlMs: 10})
			return err
		}, "ttl_ms", "must be 0 with persist"},
		{"expire persist with condition", func(ctx context.Context) error {
			_, err := kv.Expire(ctx, &conclavev1.ExpireRequest{Key: k, Persist: true, Condition: conclavev1.ExpireCondition_EXPIRE_CONDITION_GT})
			return err
		}, "condition", "cannot be combined with persist"},
		{"expire zero ttl", func(ctx context.Context) error {
			_, err := kv.Expire(ctx, &conclavev1.ExpireRequest{Key: k})
			return err
		}, "ttl_ms", "unless persist, got 0"},
		{"expire ttl over 10 years", func(ctx context.Context) error {
			_, err := kv.Expire(ctx, &conclavev1.ExpireRequest{Key: k, TtlMs: tenYears + 1})
			return err
		}, "ttl_ms", "10 years"},
		{"expire unknown condition", func(ctx context.Context) error {
			_, err := kv.Expire(ctx, &conclavev1.ExpireRequest{Key: k, TtlMs: 10, Condition: 99})
			return err
		}, "condition", "unknown value 99"},
		{"get empty key", func(ctx context.Context) error {
			_, err := kv.Get(ctx, &conclavev1.GetRequest{})
			return err
		}, "key", "1024"},
		{"get unknown consistency", func(ctx context.Context) error {
			_, err := kv.Get(ctx, &conclavev1.GetRequest{Key: k, Consistency: 7})
			return err
		}, "consistency", "unknown value 7"},
		{"ttl key 1025 bytes", func(ctx context.Context) error {
			_, err := kv.TTL(ctx, &conclavev1.TTLRequest{Key: key1025})
			return err
		}, "key", "1024"},
		{"multiget no keys", func(ctx context.Context) error {
			_, err := kv.MultiGet(ctx, &conclavev1.MultiGetRequest{})
			return err
		}, "keys", "1 to 1000 keys, got 0"},
		{"multiget 1001 keys", func(ctx context.Context) error {
			_, err := kv.MultiGet(ctx, &conclavev1.MultiGetRequest{Keys: keys(1001)})
			return err
		}, "keys", "got 1001"},
		{"scan page size 1001", func(ctx context.Context) error {
			_, err := kv.Scan(ctx, &conclavev1.ScanRequest{PageSize: 1001})
			return err
		}, "page_size", "at most 1000"},
		{"scan bad page token", func(ctx context.Context) error {
			_, err := kv.Scan(ctx, &conclavev1.ScanRequest{PageToken: "!!not base64!!"})
			return err
		}, "page_token", "not a token"},
		{"scan token of another prefix", func(ctx context.Context) error {
			_, err := kv.Scan(ctx, &conclavev1.ScanRequest{Prefix: []byte("a/"), PageToken: encodePageToken([]byte("b/1"))})
			return err
		}, "page_token", "this prefix"},
		{"scan unknown consistency", func(ctx context.Context) error {
			_, err := kv.Scan(ctx, &conclavev1.ScanRequest{Consistency: 3})
			return err
		}, "consistency", "unknown value 3"},
		{"txn 129 compares", txn(&conclavev1.TxnRequest{Compares: compares(129)}), "compares", "at most 128 compares, got 129"},
		{"txn 129 success ops", txn(&conclavev1.TxnRequest{Success: setOps(129)}), "success", "at most 128 operations, got 129"},
		{"txn 129 failure ops", txn(&conclavev1.TxnRequest{Failure: setOps(129)}), "failure", "at most 128 operations, got 129"},
		{"txn op with request id", txn(&conclavev1.TxnRequest{Success: txnSet(&conclavev1.SetRequest{Key: k, RequestId: "r"})}), "success[0].set.request_id", "must be empty inside a txn"},
		{"txn op validated like Set", txn(&conclavev1.TxnRequest{Failure: txnSet(&conclavev1.SetRequest{Key: key1025})}), "failure[0].set.key", "1024"},
		{"txn delete op validated like Delete", txn(&conclavev1.TxnRequest{Success: []*conclavev1.TxnOp{{Op: &conclavev1.TxnOp_Delete{Delete: &conclavev1.DeleteRequest{}}}}}), "success[0].delete.keys", "got 0"},
		{"txn empty op", txn(&conclavev1.TxnRequest{Success: []*conclavev1.TxnOp{{}}}), "success[0]", "set, delete or increment"},
		{"txn compare without operator", txn(&conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: k, Target: &conclavev1.Compare_Version{}}}}), "compares[0].operator", "EQUAL, NOT_EQUAL, GREATER or LESS"},
		{"txn compare without target", txn(&conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: k, Operator: conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL}}}), "compares[0].target", "must be one of"},
		{"txn exists with GREATER", txn(&conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: k, Operator: conclavev1.CompareOperator_COMPARE_OPERATOR_GREATER, Target: &conclavev1.Compare_Exists{Exists: true}}}}), "compares[0].operator", "exists compares only with EQUAL or NOT_EQUAL"},
		{"txn compare empty key", txn(&conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Operator: conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL, Target: &conclavev1.Compare_Version{}}}}), "compares[0].key", "1024"},
		{"join without id", func(ctx context.Context) error {
			_, err := cl.Join(ctx, &conclavev1.JoinRequest{RaftAddress: "h:1", GrpcAddress: "h:2"})
			return err
		}, "id", "got 0"},
		{"join bad raft address", func(ctx context.Context) error {
			_, err := cl.Join(ctx, &conclavev1.JoinRequest{Id: "n2", RaftAddress: "nowhere", GrpcAddress: "h:2"})
			return err
		}, "raft_address", "host:port"},
		{"join without grpc address", func(ctx context.Context) error {
			_, err := cl.Join(ctx, &conclavev1.JoinRequest{Id: "n2", RaftAddress: "h:1"})
			return err
		}, "grpc_address", "host:port"},
		{"remove without id", func(ctx context.Context) error {
			_, err := cl.Remove(ctx, &conclavev1.RemoveRequest{})
			return err
		}, "id", "got 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.node.applies.Load()
			err := tt.call(testContext(t))
			wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
			msg := status.Convert(err).Message()
			if !strings.HasPrefix(msg, tt.field+": ") || !strings.Contains(msg, tt.rule) {
				t.Fatalf("message %q, want field %q and rule %q", msg, tt.field, tt.rule)
			}
			br := badRequest(err)
			if br == nil || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != tt.field {
				t.Fatalf("BadRequest = %v, want field %q", br, tt.field)
			}
			if n := ts.node.applies.Load(); n != before {
				t.Fatalf("invalid request reached node.Apply")
			}
		})
	}
	assertEmpty(t, ts)
}

// assertEmpty fails the test if the store holds any key or anything was applied.
func assertEmpty(t *testing.T, ts *testServer) {
	t.Helper()
	resp, err := ts.kv.Scan(testContext(t), &conclavev1.ScanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetKvs()) != 0 || ts.node.m.AppliedIndex() != 0 {
		t.Fatalf("state changed: %d keys, applied index %d", len(resp.GetKvs()), ts.node.m.AppliedIndex())
	}
}

// TestValidate_Limits accepts requests exactly at each limit.
func TestValidate_Limits(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	key1024 := bytes.Repeat([]byte("k"), MaxKeyBytes)
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: key1024, Value: make([]byte, MaxValueBytes), TtlMs: MaxTTLMs, RequestId: strings.Repeat("r", MaxRequestIDBytes)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.kv.MultiSet(ctx, &conclavev1.MultiSetRequest{Entries: entries(MaxMultiSetEntries)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.kv.MultiGet(ctx, &conclavev1.MultiGetRequest{Keys: keys(MaxMultiGetKeys)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.kv.Txn(ctx, &conclavev1.TxnRequest{Compares: compares(MaxTxnCompares), Success: setOps(MaxTxnOps), Failure: setOps(MaxTxnOps)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.kv.Delete(ctx, &conclavev1.DeleteRequest{Keys: keys(MaxDeleteKeys)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.kv.Scan(ctx, &conclavev1.ScanRequest{PageSize: MaxPageSize}); err != nil {
		t.Fatal(err)
	}
}

// TestValidate_RequestSize checks the 4 MiB request limit: just over it the interceptor
// answers InvalidArgument; far over it gRPC's receive limit refuses the message.
func TestValidate_RequestSize(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	value := make([]byte, MaxValueBytes)
	justOver := &conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{
		{Key: []byte("a"), Value: value}, {Key: []byte("b"), Value: value},
		{Key: []byte("c"), Value: value}, {Key: []byte("d"), Value: value},
	}}
	n := proto.Size(justOver)
	if n <= MaxRequestBytes || n > maxRecvMsgBytes {
		t.Fatalf("test request is %d bytes", n)
	}
	_, err := ts.kv.MultiSet(ctx, justOver)
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	if want := fmt.Sprintf("request is %d bytes; the limit is 4194304", n); status.Convert(err).Message() != want {
		t.Fatalf("message %q, want %q", status.Convert(err).Message(), want)
	}

	fiveMiB := &conclavev1.SetRequest{Key: []byte("big"), Value: make([]byte, 5<<20)}
	_, err = ts.kv.Set(ctx, fiveMiB)
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	if ts.node.applies.Load() != 0 {
		t.Fatal("oversized request reached node.Apply")
	}
	assertEmpty(t, ts)
}

func TestValidate_JoinAddresses(t *testing.T) {
	for _, addr := range []string{":", "h:", ":7000", "h:notaport", "h:99999", "h:0", "h:-1", " :\t", strings.Repeat("h", 300) + ":1"} {
		err := validateJoin(&conclavev1.JoinRequest{Id: "n2", RaftAddress: addr, GrpcAddress: "127.0.0.1:7002"})
		if !errors.Is(err, fsm.ErrInvalidArgument) {
			t.Errorf("raft_address %q: %v, want invalid", addr, err)
		}
	}
	if err := validateJoin(&conclavev1.JoinRequest{Id: "n2", RaftAddress: "127.0.0.1:7102", GrpcAddress: "localhost:7002"}); err != nil {
		t.Errorf("valid addresses refused: %v", err)
	}
}
