package server

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func TestKV_SetGet(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	set, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("1"), TtlMs: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	if set.GetHeader().GetRevision() == 0 || set.GetHeader().GetNodeId() != "local" {
		t.Fatalf("Set header = %v", set.GetHeader())
	}
	if kv := set.GetKv(); kv.GetModRevision() != set.GetHeader().GetRevision() || kv.GetVersion() != 1 || kv.GetTtlMs() <= 0 {
		t.Fatalf("Set kv = %v", kv)
	}
	get, err := ts.kv.Get(ctx, &conclavev1.GetRequest{Key: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	if !get.GetFound() || string(get.GetKv().GetValue()) != "1" || get.GetHeader().GetRevision() < set.GetHeader().GetRevision() {
		t.Fatalf("Get = %v", get)
	}
	prev, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("2"), KeepTtl: true, ReturnPrevious: true})
	if err != nil {
		t.Fatal(err)
	}
	if string(prev.GetPrev().GetValue()) != "1" || prev.GetKv().GetVersion() != 2 || prev.GetKv().GetTtlMs() <= 0 {
		t.Fatalf("Set with return_previous = %v", prev)
	}
	missing, err := ts.kv.Get(ctx, &conclavev1.GetRequest{Key: []byte("nope"), Consistency: conclavev1.Consistency_CONSISTENCY_STALE})
	if err != nil {
		t.Fatal(err)
	}
	if missing.GetFound() || missing.GetKv() != nil || missing.GetHeader() == nil {
		t.Fatalf("Get missing = %v", missing)
	}
}

func TestKV_MultiSetMultiGet(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	ms, err := ts.kv.MultiSet(ctx, &conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{
		{Key: []byte("x"), Value: []byte("1")},
		{Key: []byte("y"), Value: []byte("2")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if ms.GetHeader().GetRevision() == 0 {
		t.Fatalf("MultiSet header = %v", ms.GetHeader())
	}
	mg, err := ts.kv.MultiGet(ctx, &conclavev1.MultiGetRequest{Keys: [][]byte{[]byte("y"), []byte("z"), []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	r := mg.GetResults()
	if len(r) != 3 || string(r[0].GetKv().GetValue()) != "2" || r[1].GetFound() || string(r[1].GetKey()) != "z" || string(r[2].GetKv().GetValue()) != "1" {
		t.Fatalf("MultiGet = %v", mg)
	}
}

func TestKV_Delete(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	set, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	rev := set.GetKv().GetModRevision()
	_, err = ts.kv.Delete(ctx, &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a")}, IfRevision: proto.Uint64(rev + 1)})
	wantCode(t, err, codes.FailedPrecondition, "CONDITION_FAILED")
	del, err := ts.kv.Delete(ctx, &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a")}, IfRevision: proto.Uint64(rev), ReturnPrevious: true})
	if err != nil {
		t.Fatal(err)
	}
	if del.GetDeleted() != 1 || len(del.GetPrev()) != 1 || string(del.GetPrev()[0].GetValue()) != "1" || del.GetHeader().GetRevision() == 0 {
		t.Fatalf("Delete = %v", del)
	}
	again, err := ts.kv.Delete(ctx, &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a"), []byte("b")}})
	if err != nil || again.GetDeleted() != 0 {
		t.Fatalf("Delete again = %v, %v", again, err)
	}
}

func TestKV_Increment(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	for i, want := range []int64{5, 3} {
		delta := []int64{5, -2}[i]
		inc, err := ts.kv.Increment(ctx, &conclavev1.IncrementRequest{Key: []byte("n"), Delta: delta})
		if err != nil {
			t.Fatal(err)
		}
		if inc.GetValue() != want || string(inc.GetKv().GetValue()) != fmt.Sprint(want) || inc.GetHeader().GetRevision() == 0 {
			t.Fatalf("Increment #%d = %v", i, inc)
		}
	}
}

func TestKV_ExpireTTL(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	ttl, err := ts.kv.TTL(ctx, &conclavev1.TTLRequest{Key: []byte("a")})
	if err != nil || !ttl.GetFound() || ttl.GetTtlMs() != -1 {
		t.Fatalf("TTL without expiry = %v, %v", ttl, err)
	}
	exp, err := ts.kv.Expire(ctx, &conclavev1.ExpireRequest{Key: []byte("a"), TtlMs: 60_000, Condition: conclavev1.ExpireCondition_EXPIRE_CONDITION_NX})
	if err != nil || exp.GetKv().GetTtlMs() <= 0 || exp.GetHeader().GetRevision() == 0 {
		t.Fatalf("Expire = %v, %v", exp, err)
	}
	ttl, err = ts.kv.TTL(ctx, &conclavev1.TTLRequest{Key: []byte("a")})
	if err != nil || !ttl.GetFound() || ttl.GetTtlMs() <= 0 || ttl.GetTtlMs() > 60_000 {
		t.Fatalf("TTL = %v, %v", ttl, err)
	}
	_, err = ts.kv.Expire(ctx, &conclavev1.ExpireRequest{Key: []byte("a"), TtlMs: 1000, Condition: conclavev1.ExpireCondition_EXPIRE_CONDITION_NX})
	wantCode(t, err, codes.FailedPrecondition, "CONDITION_FAILED")
	if _, err := ts.kv.Expire(ctx, &conclavev1.ExpireRequest{Key: []byte("a"), Persist: true}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.kv.Expire(ctx, &conclavev1.ExpireRequest{Key: []byte("missing"), TtlMs: 1000})
	wantCode(t, err, codes.NotFound, "NOT_FOUND")
	ttl, err = ts.kv.TTL(ctx, &conclavev1.TTLRequest{Key: []byte("missing")})
	if err != nil || ttl.GetFound() || ttl.GetTtlMs() != -2 {
		t.Fatalf("TTL missing = %v, %v", ttl, err)
	}
}

func TestKV_Txn(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	txn := func(exists bool) *conclavev1.TxnResponse {
		t.Helper()
		resp, err := ts.kv.Txn(ctx, &conclavev1.TxnRequest{
			Compares: []*conclavev1.Compare{{
				Key:      []byte("lock"),
				Operator: conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL,
				Target:   &conclavev1.Compare_Exists{Exists: exists},
			}},
			Success: []*conclavev1.TxnOp{{Op: &conclavev1.TxnOp_Set{Set: &conclavev1.SetRequest{Key: []byte("lock"), Value: []byte("me")}}}},
			Failure: []*conclavev1.TxnOp{{Op: &conclavev1.TxnOp_Increment{Increment: &conclavev1.IncrementRequest{Key: []byte("misses"), Delta: 1}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := txn(false); !r.GetSucceeded() || r.GetResults()[0].GetSet().GetKv().GetVersion() != 1 || r.GetHeader().GetRevision() == 0 {
		t.Fatalf("first Txn = %v", r)
	}
	if r := txn(false); r.GetSucceeded() || r.GetResults()[0].GetIncrement().GetValue() != 1 {
		t.Fatalf("second Txn = %v", r)
	}
}

func TestKV_ScanPages(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	var entries []*conclavev1.KeyValueInput
	for i := range 25 {
		entries = append(entries, &conclavev1.KeyValueInput{Key: fmt.Appendf(nil, "p/%02d", i), Value: []byte("v")})
	}
	entries = append(entries, &conclavev1.KeyValueInput{Key: []byte("q/other"), Value: []byte("v")})
	if _, err := ts.kv.MultiSet(ctx, &conclavev1.MultiSetRequest{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	token, pages := "", 0
	for {
		resp, err := ts.kv.Scan(ctx, &conclavev1.ScanRequest{Prefix: []byte("p/"), PageSize: 10, PageToken: token, KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, kv := range resp.GetKvs() {
			if kv.GetValue() != nil {
				t.Fatalf("keys_only scan returned a value for %q", kv.GetKey())
			}
			keys = append(keys, string(kv.GetKey()))
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("scan does not end")
		}
	}
	if pages != 3 || len(keys) != 25 || keys[0] != "p/00" || keys[24] != "p/24" {
		t.Fatalf("scan: %d pages, keys %v", pages, keys)
	}
	all, err := ts.kv.Scan(ctx, &conclavev1.ScanRequest{})
	if err != nil || len(all.GetKvs()) != 26 || all.GetNextPageToken() != "" || string(all.GetKvs()[0].GetValue()) != "v" {
		t.Fatalf("scan with default page size = %d kvs, token %q, %v", len(all.GetKvs()), all.GetNextPageToken(), err)
	}
}

// TestKV_ErrorMapping checks that domain failures reach the client with their code,
// ErrorInfo reason and key.
func TestKV_ErrorMapping(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("taken"), Value: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	_, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("taken"), Value: []byte("x"), IfAbsent: true})
	wantCode(t, err, codes.FailedPrecondition, "CONDITION_FAILED")
	if k := errorInfo(err).GetMetadata()["key"]; k != "taken" {
		t.Fatalf("ErrorInfo key = %q", k)
	}
	_, err = ts.kv.Increment(ctx, &conclavev1.IncrementRequest{Key: []byte("taken"), Delta: 1})
	wantCode(t, err, codes.FailedPrecondition, "WRONG_TYPE")
	if k := errorInfo(err).GetMetadata()["key"]; k != "taken" {
		t.Fatalf("ErrorInfo key = %q", k)
	}
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("big"), Value: []byte("9223372036854775807")}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.kv.Increment(ctx, &conclavev1.IncrementRequest{Key: []byte("big"), Delta: 1})
	wantCode(t, err, codes.OutOfRange, "OUT_OF_RANGE")
}

// TestKV_RequestID checks that a retried request gets the first result (with an intact
// header each time) and that reusing an id for another kind of request is refused.
func TestKV_RequestID(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	req := &conclavev1.IncrementRequest{Key: []byte("n"), Delta: 1, RequestId: "req-1"}
	first, err := ts.kv.Increment(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := ts.kv.Increment(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if again.GetValue() != 1 || again.GetHeader().GetRevision() != first.GetHeader().GetRevision() {
			t.Fatalf("retry = %v, first = %v", again, first)
		}
	}
	_, err = ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("n"), Value: []byte("x"), RequestId: "req-1"})
	wantCode(t, err, codes.FailedPrecondition, "REQUEST_ID_REUSED")
}
