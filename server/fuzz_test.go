package server

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// Request fuzz targets: one per public RPC that takes input. Each feeds arbitrary bytes,
// decoded as the RPC's request, through the real server to a localNode; fuzzRPC (in
// fuzz_harness_test.go) states what must hold. The seeds below aim at the base state
// fuzzBaseCommands builds and at every validation boundary; testdata/fuzz/ keeps more.

var (
	seedKey1025   = []byte(maxKey + "k")
	seedID128     = strings.Repeat("i", MaxRequestIDBytes)
	seedID129     = seedID128 + "i"
	seedMember129 = strings.Repeat("m", MaxMemberIDBytes+1)
	badEnum       = conclavev1.Consistency(99)
)

// bs is shorthand for []byte(s) in the seeds.
func bs(s string) []byte { return []byte(s) }

func FuzzGet(f *testing.F) {
	fuzzKV(f, readRPC, conclavev1grpc.KVServiceClient.Get, validateGet, checkGetResp,
		&conclavev1.GetRequest{Key: bs("a")},
		&conclavev1.GetRequest{Key: bs("old"), Consistency: conclavev1.Consistency_CONSISTENCY_STALE},
		&conclavev1.GetRequest{Key: bs("missing"), Consistency: conclavev1.Consistency_CONSISTENCY_LINEARIZABLE},
		&conclavev1.GetRequest{Key: bs(maxKey)},
		&conclavev1.GetRequest{Key: seedKey1025},
		&conclavev1.GetRequest{Key: bs("a"), Consistency: badEnum},
		&conclavev1.GetRequest{},
	)
}

func FuzzMultiGet(f *testing.F) {
	fuzzKV(f, readRPC, conclavev1grpc.KVServiceClient.MultiGet, validateMultiGet, checkMultiGetResp,
		&conclavev1.MultiGetRequest{Keys: [][]byte{bs("a"), bs("missing"), bs("old"), bs("b"), bs("a")}},
		&conclavev1.MultiGetRequest{Keys: keys(MaxMultiGetKeys)},
		&conclavev1.MultiGetRequest{Keys: keys(MaxMultiGetKeys + 1)},
		&conclavev1.MultiGetRequest{Keys: [][]byte{bs("a"), {}}},
		&conclavev1.MultiGetRequest{Keys: [][]byte{bs(maxKey), seedKey1025}},
		&conclavev1.MultiGetRequest{Keys: [][]byte{bs("a")}, Consistency: badEnum},
		&conclavev1.MultiGetRequest{},
	)
}

func FuzzSet(f *testing.F) {
	validate := func(r *conclavev1.SetRequest) error { return validateSet("", r) }
	fuzzKV(f, writeRPC, conclavev1grpc.KVServiceClient.Set, validate, checkSetResp,
		&conclavev1.SetRequest{Key: bs("a"), Value: bs("2"), ReturnPrevious: true},
		&conclavev1.SetRequest{Key: bs("new"), Value: bs("v"), TtlMs: MaxTTLMs, RequestId: seedID128},
		&conclavev1.SetRequest{Key: bs("new"), TtlMs: MaxTTLMs + 1},
		&conclavev1.SetRequest{Key: bs("new"), TtlMs: -1},
		&conclavev1.SetRequest{Key: bs("new"), RequestId: seedID129},
		&conclavev1.SetRequest{Key: bs("a"), IfAbsent: true, IfPresent: true},
		&conclavev1.SetRequest{Key: bs("b"), KeepTtl: true, TtlMs: 5},
		&conclavev1.SetRequest{Key: bs("b"), Value: bs("x"), KeepTtl: true, IfPresent: true},
		&conclavev1.SetRequest{Key: bs("old"), IfAbsent: true},
		&conclavev1.SetRequest{Key: bs("a"), IfRevision: proto.Uint64(1)},
		&conclavev1.SetRequest{Key: bs("a"), IfRevision: proto.Uint64(2)},
		&conclavev1.SetRequest{Key: bs(maxKey), Value: bs("v")},
		&conclavev1.SetRequest{Key: seedKey1025},
		&conclavev1.SetRequest{Key: bs("a"), RequestId: "r1"},
		&conclavev1.SetRequest{Key: bs("a"), IfAbsent: true, RequestId: "r2"},
		&conclavev1.SetRequest{},
	)
}

func FuzzMultiSet(f *testing.F) {
	fuzzKV(f, writeRPC, conclavev1grpc.KVServiceClient.MultiSet, validateMultiSet, nil,
		&conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{{Key: bs("a"), Value: bs("2")}, {Key: bs("x"), TtlMs: 10}}},
		&conclavev1.MultiSetRequest{Entries: entries(MaxMultiSetEntries), RequestId: seedID128},
		&conclavev1.MultiSetRequest{Entries: entries(MaxMultiSetEntries + 1)},
		&conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{{Key: bs("a")}, {Key: bs("a"), Value: bs("again")}}},
		&conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{{Key: bs("a")}, {}}},
		&conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{{Key: bs("a"), TtlMs: -1}}},
		&conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{{Key: seedKey1025}}},
		&conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{{Key: bs("a")}}, RequestId: seedID129},
		&conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{{Key: bs("a")}}, RequestId: "r1"},
		&conclavev1.MultiSetRequest{},
	)
}

func FuzzDelete(f *testing.F) {
	validate := func(r *conclavev1.DeleteRequest) error { return validateDelete("", r) }
	fuzzKV(f, writeRPC, conclavev1grpc.KVServiceClient.Delete, validate, nil,
		&conclavev1.DeleteRequest{Keys: [][]byte{bs("a"), bs("old"), bs("missing"), bs("a")}, ReturnPrevious: true},
		&conclavev1.DeleteRequest{Keys: [][]byte{bs("a")}, IfRevision: proto.Uint64(1)},
		&conclavev1.DeleteRequest{Keys: [][]byte{bs("a")}, IfRevision: proto.Uint64(9)},
		&conclavev1.DeleteRequest{Keys: [][]byte{bs("missing")}, IfRevision: proto.Uint64(0)},
		&conclavev1.DeleteRequest{Keys: [][]byte{bs("a"), bs("b")}, IfRevision: proto.Uint64(1)},
		&conclavev1.DeleteRequest{Keys: keys(MaxDeleteKeys), RequestId: seedID128},
		&conclavev1.DeleteRequest{Keys: keys(MaxDeleteKeys + 1)},
		&conclavev1.DeleteRequest{Keys: [][]byte{bs("a"), {}}},
		&conclavev1.DeleteRequest{Keys: [][]byte{seedKey1025}},
		&conclavev1.DeleteRequest{Keys: [][]byte{bs("a")}, RequestId: "r1"},
		&conclavev1.DeleteRequest{},
	)
}

func FuzzIncrement(f *testing.F) {
	validate := func(r *conclavev1.IncrementRequest) error { return validateIncrement("", r) }
	fuzzKV(f, writeRPC, conclavev1grpc.KVServiceClient.Increment, validate, checkIncrementResp,
		&conclavev1.IncrementRequest{Key: bs("n"), Delta: 1},
		&conclavev1.IncrementRequest{Key: bs("new"), Delta: -5, TtlMs: 1000},
		&conclavev1.IncrementRequest{Key: bs("big"), Delta: 1},
		&conclavev1.IncrementRequest{Key: bs("n"), Delta: math.MinInt64},
		&conclavev1.IncrementRequest{Key: bs("b"), Delta: 1},
		&conclavev1.IncrementRequest{Key: bs("old"), Delta: 1, TtlMs: MaxTTLMs},
		&conclavev1.IncrementRequest{Key: bs("n"), TtlMs: -1},
		&conclavev1.IncrementRequest{Key: bs("ctr"), Delta: 1, RequestId: "r1"},
		&conclavev1.IncrementRequest{Key: bs("ctr"), Delta: 1, RequestId: seedID129},
		&conclavev1.IncrementRequest{Key: seedKey1025},
		&conclavev1.IncrementRequest{},
	)
}

func FuzzExpire(f *testing.F) {
	cond := func(c conclavev1.ExpireCondition, ttlMs int64) *conclavev1.ExpireRequest {
		return &conclavev1.ExpireRequest{Key: bs("b"), TtlMs: ttlMs, Condition: c}
	}
	fuzzKV(f, writeRPC, conclavev1grpc.KVServiceClient.Expire, validateExpire, nil,
		&conclavev1.ExpireRequest{Key: bs("a"), TtlMs: 1000},
		&conclavev1.ExpireRequest{Key: bs("b"), Persist: true},
		&conclavev1.ExpireRequest{Key: bs("b"), Persist: true, TtlMs: 5},
		&conclavev1.ExpireRequest{Key: bs("b"), Persist: true, Condition: conclavev1.ExpireCondition_EXPIRE_CONDITION_NX},
		&conclavev1.ExpireRequest{Key: bs("old"), TtlMs: 1000},
		&conclavev1.ExpireRequest{Key: bs("a"), TtlMs: 0},
		&conclavev1.ExpireRequest{Key: bs("a"), TtlMs: MaxTTLMs + 1},
		cond(conclavev1.ExpireCondition_EXPIRE_CONDITION_NX, 10),
		cond(conclavev1.ExpireCondition_EXPIRE_CONDITION_XX, MaxTTLMs),
		cond(conclavev1.ExpireCondition_EXPIRE_CONDITION_GT, 120_000),
		cond(conclavev1.ExpireCondition_EXPIRE_CONDITION_LT, 10),
		cond(conclavev1.ExpireCondition(99), 10),
		&conclavev1.ExpireRequest{Key: bs("a"), TtlMs: 10, RequestId: seedID129},
		&conclavev1.ExpireRequest{Key: seedKey1025, TtlMs: 10},
		&conclavev1.ExpireRequest{},
	)
}

func FuzzTTL(f *testing.F) {
	fuzzKV(f, readRPC, conclavev1grpc.KVServiceClient.TTL, validateTTL, checkTTLResp,
		&conclavev1.TTLRequest{Key: bs("b")},
		&conclavev1.TTLRequest{Key: bs("a"), Consistency: conclavev1.Consistency_CONSISTENCY_STALE},
		&conclavev1.TTLRequest{Key: bs("old")},
		&conclavev1.TTLRequest{Key: seedKey1025},
		&conclavev1.TTLRequest{Key: bs("a"), Consistency: badEnum},
		&conclavev1.TTLRequest{},
	)
}

func FuzzScan(f *testing.F) {
	validate := func(r *conclavev1.ScanRequest) error { _, err := validateScan(r); return err }
	fuzzKV(f, readRPC, conclavev1grpc.KVServiceClient.Scan, validate, checkScanResp,
		&conclavev1.ScanRequest{},
		&conclavev1.ScanRequest{Prefix: bs("p/"), PageSize: 1, KeysOnly: true},
		&conclavev1.ScanRequest{Prefix: bs("p/"), PageSize: 1, PageToken: encodePageToken(bs("p/1"))},
		&conclavev1.ScanRequest{Prefix: bs("p/"), PageToken: encodePageToken(bs("a"))},
		&conclavev1.ScanRequest{PageToken: "not base64!"},
		&conclavev1.ScanRequest{PageToken: encodePageToken(seedKey1025)},
		&conclavev1.ScanRequest{PageSize: MaxPageSize, Consistency: conclavev1.Consistency_CONSISTENCY_STALE},
		&conclavev1.ScanRequest{PageSize: MaxPageSize + 1},
		&conclavev1.ScanRequest{PageSize: math.MaxUint32},
		&conclavev1.ScanRequest{Prefix: bs(maxKey)},
		&conclavev1.ScanRequest{Prefix: seedKey1025},
		&conclavev1.ScanRequest{Consistency: badEnum},
	)
}

func FuzzTxn(f *testing.F) {
	eq, gt := conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL, conclavev1.CompareOperator_COMPARE_OPERATOR_GREATER
	setOp := func(r *conclavev1.SetRequest) *conclavev1.TxnOp {
		return &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Set{Set: r}}
	}
	delOp := func(r *conclavev1.DeleteRequest) *conclavev1.TxnOp {
		return &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Delete{Delete: r}}
	}
	incOp := func(r *conclavev1.IncrementRequest) *conclavev1.TxnOp {
		return &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Increment{Increment: r}}
	}
	fuzzKV(f, writeRPC, conclavev1grpc.KVServiceClient.Txn, validateTxn, checkTxnResp,
		&conclavev1.TxnRequest{
			Compares: []*conclavev1.Compare{
				{Key: bs("a"), Operator: eq, Target: &conclavev1.Compare_Value{Value: bs("1")}},
				{Key: bs("old"), Operator: eq, Target: &conclavev1.Compare_Exists{Exists: false}},
				{Key: bs("n"), Operator: gt, Target: &conclavev1.Compare_ModRevision{ModRevision: 1}},
			},
			Success:   []*conclavev1.TxnOp{setOp(&conclavev1.SetRequest{Key: bs("x"), Value: bs("1")}), incOp(&conclavev1.IncrementRequest{Key: bs("n"), Delta: 1})},
			Failure:   []*conclavev1.TxnOp{delOp(&conclavev1.DeleteRequest{Keys: [][]byte{bs("a"), bs("b")}, ReturnPrevious: true})},
			RequestId: seedID128,
		},
		// The second operation fails (b is not an integer), so the first must not stick.
		&conclavev1.TxnRequest{Success: []*conclavev1.TxnOp{setOp(&conclavev1.SetRequest{Key: bs("x")}), incOp(&conclavev1.IncrementRequest{Key: bs("b"), Delta: 1})}},
		&conclavev1.TxnRequest{Success: []*conclavev1.TxnOp{setOp(&conclavev1.SetRequest{Key: bs("a"), IfRevision: proto.Uint64(1)}), delOp(&conclavev1.DeleteRequest{Keys: [][]byte{bs("a")}, IfRevision: proto.Uint64(1)})}},
		&conclavev1.TxnRequest{Success: []*conclavev1.TxnOp{setOp(&conclavev1.SetRequest{Key: bs("x"), RequestId: "inner"})}},
		&conclavev1.TxnRequest{Failure: []*conclavev1.TxnOp{incOp(&conclavev1.IncrementRequest{Key: bs("n"), RequestId: "r1"})}},
		&conclavev1.TxnRequest{Success: []*conclavev1.TxnOp{{}}},
		&conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: bs("a"), Operator: gt, Target: &conclavev1.Compare_Exists{Exists: true}}}},
		&conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: bs("a"), Operator: eq}}},
		&conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: bs("a"), Target: &conclavev1.Compare_Version{Version: 1}}}},
		&conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: seedKey1025, Operator: eq, Target: &conclavev1.Compare_Version{}}}},
		&conclavev1.TxnRequest{Compares: compares(MaxTxnCompares), Success: setOps(MaxTxnOps)},
		&conclavev1.TxnRequest{Compares: compares(MaxTxnCompares + 1)},
		&conclavev1.TxnRequest{Failure: setOps(MaxTxnOps + 1)},
		&conclavev1.TxnRequest{RequestId: seedID129},
		&conclavev1.TxnRequest{RequestId: "r1"},
		&conclavev1.TxnRequest{},
	)
}

func FuzzJoin(f *testing.F) {
	fuzzCluster(f, conclavev1grpc.ClusterServiceClient.Join, validateJoin, checkJoinResp,
		&conclavev1.JoinRequest{Id: "n2", RaftAddress: "10.0.0.2:7000", GrpcAddress: "10.0.0.2:8000"},
		&conclavev1.JoinRequest{Id: "local", RaftAddress: "127.0.0.1:7000", GrpcAddress: "127.0.0.1:8000"},
		&conclavev1.JoinRequest{Id: strings.Repeat("m", MaxMemberIDBytes), RaftAddress: "[::1]:7000", GrpcAddress: "host:8000"},
		&conclavev1.JoinRequest{Id: seedMember129, RaftAddress: "h:1", GrpcAddress: "h:2"},
		&conclavev1.JoinRequest{Id: "n2", RaftAddress: "no-port", GrpcAddress: "h:2"},
		&conclavev1.JoinRequest{Id: "n2", RaftAddress: ":", GrpcAddress: "h:2"},
		&conclavev1.JoinRequest{RaftAddress: "h:1", GrpcAddress: "h:2"},
		&conclavev1.JoinRequest{},
	)
}

func FuzzRemove(f *testing.F) {
	validate := func(r *conclavev1.RemoveRequest) error { return checkMemberID("id", r.GetId(), true) }
	fuzzCluster(f, conclavev1grpc.ClusterServiceClient.Remove, validate, checkRemoveResp,
		&conclavev1.RemoveRequest{Id: "local"},
		&conclavev1.RemoveRequest{Id: "nope"},
		&conclavev1.RemoveRequest{Id: seedMember129},
		&conclavev1.RemoveRequest{},
	)
}

func FuzzTransferLeadership(f *testing.F) {
	validate := func(r *conclavev1.TransferLeadershipRequest) error { return checkMemberID("to_id", r.GetToId(), false) }
	fuzzCluster(f, conclavev1grpc.ClusterServiceClient.TransferLeadership, validate, checkTransferResp,
		&conclavev1.TransferLeadershipRequest{ToId: "n2"},
		&conclavev1.TransferLeadershipRequest{ToId: "local"},
		&conclavev1.TransferLeadershipRequest{ToId: seedMember129},
		&conclavev1.TransferLeadershipRequest{},
	)
}

// Checks of OK responses, beyond what fuzzRPC checks for every RPC.

func checkGetResp(t *testing.T, req *conclavev1.GetRequest, resp *conclavev1.GetResponse) {
	if resp.GetFound() != (resp.GetKv() != nil) || (resp.GetFound() && !bytes.Equal(resp.GetKv().GetKey(), req.GetKey())) {
		t.Fatalf("Get(%q) = %v", req.GetKey(), resp)
	}
}

func checkMultiGetResp(t *testing.T, req *conclavev1.MultiGetRequest, resp *conclavev1.MultiGetResponse) {
	if len(resp.GetResults()) != len(req.GetKeys()) {
		t.Fatalf("MultiGet of %d keys returned %d results", len(req.GetKeys()), len(resp.GetResults()))
	}
	for i, r := range resp.GetResults() {
		if !bytes.Equal(r.GetKey(), req.GetKeys()[i]) || r.GetFound() != (r.GetKv() != nil) {
			t.Fatalf("MultiGet result %d for %q = %v", i, req.GetKeys()[i], r)
		}
	}
}

func checkTTLResp(t *testing.T, req *conclavev1.TTLRequest, resp *conclavev1.TTLResponse) {
	ttl := resp.GetTtlMs()
	if (!resp.GetFound() && ttl != -2) || (resp.GetFound() && ttl != -1 && (ttl < 1 || ttl > MaxTTLMs)) {
		t.Fatalf("TTL(%q) = %v", req.GetKey(), resp)
	}
}

func checkScanResp(t *testing.T, req *conclavev1.ScanRequest, resp *conclavev1.ScanResponse) {
	after, _ := decodePageToken(req.GetPageToken())
	limit := int(req.GetPageSize())
	if limit == 0 {
		limit = DefaultPageSize
	}
	kvs := resp.GetKvs()
	if len(kvs) > limit {
		t.Fatalf("Scan returned %d entries, page size %d", len(kvs), limit)
	}
	for i, kv := range kvs {
		k := kv.GetKey()
		if !bytes.HasPrefix(k, req.GetPrefix()) || bytes.Compare(k, after) <= 0 ||
			(i > 0 && bytes.Compare(kvs[i-1].GetKey(), k) >= 0) || (req.GetKeysOnly() && len(kv.GetValue()) > 0) {
			t.Fatalf("Scan entry %d out of place: %v", i, kv)
		}
	}
	if tok := resp.GetNextPageToken(); tok != "" {
		last, err := decodePageToken(tok)
		if err != nil || len(kvs) != limit || !bytes.Equal(last, kvs[len(kvs)-1].GetKey()) {
			t.Fatalf("next page token %q after %d entries", tok, len(kvs))
		}
	}
}

func checkSetResp(t *testing.T, req *conclavev1.SetRequest, resp *conclavev1.SetResponse) {
	kv := resp.GetKv()
	if !bytes.Equal(kv.GetKey(), req.GetKey()) || kv.GetModRevision() != resp.GetHeader().GetRevision() || len(kv.GetValue()) > 0 {
		t.Fatalf("Set(%q) = %v", req.GetKey(), resp)
	}
}

// checkIncrementResp: a retried request id (r1) answers the first request's result,
// whatever key the retry names.
func checkIncrementResp(t *testing.T, req *conclavev1.IncrementRequest, resp *conclavev1.IncrementResponse) {
	kv := resp.GetKv()
	if (req.GetRequestId() != "r1" && !bytes.Equal(kv.GetKey(), req.GetKey())) || string(kv.GetValue()) != strconv.FormatInt(resp.GetValue(), 10) {
		t.Fatalf("Increment(%q) = %v", req.GetKey(), resp)
	}
}

func checkTxnResp(t *testing.T, req *conclavev1.TxnRequest, resp *conclavev1.TxnResponse) {
	branch := req.GetFailure()
	if resp.GetSucceeded() {
		branch = req.GetSuccess()
	}
	if len(resp.GetResults()) != len(branch) {
		t.Fatalf("Txn ran %d operations, branch has %d", len(resp.GetResults()), len(branch))
	}
}

func hasMember(ms []*conclavev1.Member, id string) bool {
	return slices.ContainsFunc(ms, func(m *conclavev1.Member) bool { return m.GetId() == id })
}

func checkJoinResp(t *testing.T, req *conclavev1.JoinRequest, resp *conclavev1.JoinResponse) {
	if !hasMember(resp.GetMembers(), req.GetId()) {
		t.Fatalf("Join(%q) answered members %v", req.GetId(), resp.GetMembers())
	}
}

func checkRemoveResp(t *testing.T, req *conclavev1.RemoveRequest, resp *conclavev1.RemoveResponse) {
	if hasMember(resp.GetMembers(), req.GetId()) {
		t.Fatalf("Remove(%q) answered members %v", req.GetId(), resp.GetMembers())
	}
}

func checkTransferResp(t *testing.T, req *conclavev1.TransferLeadershipRequest, resp *conclavev1.TransferLeadershipResponse) {
	if resp.GetLeaderId() == "" || (req.GetToId() != "" && resp.GetLeaderId() != req.GetToId()) {
		t.Fatalf("TransferLeadership(%q) = %v", req.GetToId(), resp)
	}
}
