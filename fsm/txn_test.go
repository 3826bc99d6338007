package fsm_test

import (
	"testing"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

const (
	opEQ  = conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL
	opNE  = conclavev1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL
	opGT  = conclavev1.CompareOperator_COMPARE_OPERATOR_GREATER
	opLT  = conclavev1.CompareOperator_COMPARE_OPERATOR_LESS
	opNil = conclavev1.CompareOperator_COMPARE_OPERATOR_UNSPECIFIED
)

func cmpValue(key string, op conclavev1.CompareOperator, v string) *conclavev1.Compare {
	return &conclavev1.Compare{Key: []byte(key), Operator: op, Target: &conclavev1.Compare_Value{Value: []byte(v)}}
}

func cmpMod(key string, op conclavev1.CompareOperator, rev uint64) *conclavev1.Compare {
	return &conclavev1.Compare{Key: []byte(key), Operator: op, Target: &conclavev1.Compare_ModRevision{ModRevision: rev}}
}

func cmpCreate(key string, op conclavev1.CompareOperator, rev uint64) *conclavev1.Compare {
	return &conclavev1.Compare{Key: []byte(key), Operator: op, Target: &conclavev1.Compare_CreateRevision{CreateRevision: rev}}
}

func cmpVersion(key string, op conclavev1.CompareOperator, v int64) *conclavev1.Compare {
	return &conclavev1.Compare{Key: []byte(key), Operator: op, Target: &conclavev1.Compare_Version{Version: v}}
}

func cmpExists(key string, op conclavev1.CompareOperator, exists bool) *conclavev1.Compare {
	return &conclavev1.Compare{Key: []byte(key), Operator: op, Target: &conclavev1.Compare_Exists{Exists: exists}}
}

func txnSet(r *conclavev1.SetRequest) *conclavev1.TxnOp {
	return &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Set{Set: r}}
}

func txnDel(r *conclavev1.DeleteRequest) *conclavev1.TxnOp {
	return &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Delete{Delete: r}}
}

func txnIncr(r *conclavev1.IncrementRequest) *conclavev1.TxnOp {
	return &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Increment{Increment: r}}
}

// txnSetup writes a = "7" (create 1, mod 2, version 2), b = "x" (3) and an expiring key
// e (4, expired by t0+1s); z never exists.
func txnSetup(t *testing.T) *fsm.Machine {
	t.Helper()
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0, op: set("a", "5")},
		step{index: 2, now: t0, op: set("a", "7")},
		step{index: 3, now: t0, op: set("b", "x")},
		step{index: 4, now: t0, op: setTTL("e", "v", 100)},
	)
	return m
}

// TestTxn_Compare runs each compare alone in a txn whose success branch writes "s" and
// whose failure branch writes "f", at index 10, one second after setup.
func TestTxn_Compare(t *testing.T) {
	tests := []struct {
		name string
		c    *conclavev1.Compare
		want bool
	}{
		{"value = ", cmpValue("a", opEQ, "7"), true},
		{"value = other", cmpValue("a", opEQ, "5"), false},
		{"value != other", cmpValue("a", opNE, "5"), true},
		{"value != same", cmpValue("a", opNE, "7"), false},
		{"value > smaller", cmpValue("a", opGT, "6"), true},
		{"value > larger", cmpValue("a", opGT, "8"), false},
		{"value > longer prefix", cmpValue("a", opGT, "70"), false},
		{"value < larger", cmpValue("a", opLT, "8"), true},
		{"value < same", cmpValue("a", opLT, "7"), false},
		{"missing value = empty", cmpValue("z", opEQ, ""), false},
		{"missing value != anything", cmpValue("z", opNE, "x"), true},
		{"missing value > empty", cmpValue("z", opGT, ""), false},
		{"missing value < anything", cmpValue("z", opLT, "x"), false},
		{"expired value is missing", cmpValue("e", opEQ, "v"), false},
		{"mod_revision =", cmpMod("a", opEQ, 2), true},
		{"mod_revision = create", cmpMod("a", opEQ, 1), false},
		{"mod_revision != ", cmpMod("a", opNE, 2), false},
		{"mod_revision >", cmpMod("a", opGT, 1), true},
		{"mod_revision > same", cmpMod("a", opGT, 2), false},
		{"mod_revision <", cmpMod("a", opLT, 3), true},
		{"mod_revision < same", cmpMod("a", opLT, 2), false},
		{"missing mod_revision = 0", cmpMod("z", opEQ, 0), true},
		{"expired mod_revision = 0", cmpMod("e", opEQ, 0), true},
		{"create_revision =", cmpCreate("a", opEQ, 1), true},
		{"create_revision != ", cmpCreate("a", opNE, 1), false},
		{"create_revision > 0", cmpCreate("a", opGT, 0), true},
		{"create_revision < same", cmpCreate("a", opLT, 1), false},
		{"create_revision <", cmpCreate("a", opLT, 2), true},
		{"missing create_revision = 0", cmpCreate("z", opEQ, 0), true},
		{"version =", cmpVersion("a", opEQ, 2), true},
		{"version != other", cmpVersion("a", opNE, 1), true},
		{"version > same", cmpVersion("a", opGT, 2), false},
		{"version >", cmpVersion("a", opGT, 1), true},
		{"version <", cmpVersion("a", opLT, 3), true},
		{"version < same", cmpVersion("a", opLT, 2), false},
		{"missing version = 0", cmpVersion("z", opEQ, 0), true},
		{"missing version > 0", cmpVersion("z", opGT, 0), false},
		{"exists = true", cmpExists("a", opEQ, true), true},
		{"exists = false", cmpExists("a", opEQ, false), false},
		{"exists != true", cmpExists("a", opNE, true), false},
		{"exists != false", cmpExists("a", opNE, false), true},
		{"missing exists = false", cmpExists("z", opEQ, false), true},
		{"missing exists = true", cmpExists("z", opEQ, true), false},
		{"missing exists != false", cmpExists("z", opNE, false), false},
		{"expired exists = false", cmpExists("e", opEQ, false), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := txnSetup(t)
			res := run(t, m, step{index: 10, now: t0 + s, op: &conclavev1.TxnRequest{
				Compares: []*conclavev1.Compare{tc.c},
				Success:  []*conclavev1.TxnOp{txnSet(set("s", "1"))},
				Failure:  []*conclavev1.TxnOp{txnSet(set("f", "1"))},
			}})
			if got := res.GetTxn().GetSucceeded(); got != tc.want {
				t.Errorf("Succeeded = %v, want %v", got, tc.want)
			}
			ran, skipped := "s", "f"
			if !tc.want {
				ran, skipped = "f", "s"
			}
			wantKV(t, m, t0+s, ran, kv(ran, "1", 10, 10, 1, 0))
			wantKV(t, m, t0+s, skipped, nil)
			if n := len(res.GetTxn().GetResults()); n != 1 {
				t.Errorf("len(Results) = %d, want 1", n)
			}
		})
	}
}

func TestTxn_InvalidCompare(t *testing.T) {
	tests := []struct {
		name string
		c    *conclavev1.Compare
	}{
		{"exists with >", cmpExists("a", opGT, true)},
		{"exists with <", cmpExists("z", opLT, false)},
		{"exists without operator", cmpExists("a", opNil, true)},
		{"no target", &conclavev1.Compare{Key: []byte("a"), Operator: opEQ}},
		{"value without operator", cmpValue("a", opNil, "7")},
		{"value without operator on a missing key", cmpValue("z", opNil, "7")},
		{"value with unknown operator on a missing key", cmpValue("z", conclavev1.CompareOperator(99), "7")},
		{"mod_revision without operator", cmpMod("z", opNil, 0)},
		{"unknown operator", cmpVersion("a", conclavev1.CompareOperator(99), 2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := txnSetup(t)
			run(t, m, step{index: 10, now: t0 + s, err: fsm.ErrInvalidArgument, op: &conclavev1.TxnRequest{
				Compares: []*conclavev1.Compare{cmpExists("a", opEQ, true), tc.c},
				Success:  []*conclavev1.TxnOp{txnSet(set("s", "1"))},
				Failure:  []*conclavev1.TxnOp{txnSet(set("f", "1"))},
			}})
		})
	}
}

func TestTxn_Branches(t *testing.T) {
	always := []*conclavev1.Compare{cmpExists("a", opEQ, true)}
	never := []*conclavev1.Compare{cmpExists("a", opEQ, false)}
	runTxn := func(t *testing.T, err error, req *conclavev1.TxnRequest) (*fsm.Machine, *fsmv1.Result) {
		t.Helper()
		m := txnSetup(t)
		return m, run(t, m, step{index: 10, now: t0 + s, op: req, err: err})
	}

	t.Run("every compare must hold", func(t *testing.T) {
		_, res := runTxn(t, nil, &conclavev1.TxnRequest{
			Compares: []*conclavev1.Compare{cmpExists("a", opEQ, true), cmpValue("a", opEQ, "nope")},
		})
		if res.GetTxn().GetSucceeded() {
			t.Error("Succeeded with a failing compare")
		}
	})
	t.Run("no compares succeed", func(t *testing.T) {
		_, res := runTxn(t, nil, &conclavev1.TxnRequest{})
		if !res.GetTxn().GetSucceeded() {
			t.Error("empty txn did not succeed")
		}
	})
	t.Run("every op of the branch runs at one revision, in order", func(t *testing.T) {
		m, res := runTxn(t, nil, &conclavev1.TxnRequest{
			Compares: always,
			Success: []*conclavev1.TxnOp{
				txnSet(set("x", "1")),
				txnSet(set("a", "8")),
				txnDel(&conclavev1.DeleteRequest{Keys: [][]byte{[]byte("b")}, ReturnPrevious: true}),
				txnIncr(incr("c", 5)),
				txnIncr(incr("c", 1)), // sees the earlier op of the same branch
			},
		})
		wantKV(t, m, t0+s, "x", kv("x", "1", 10, 10, 1, 0))
		wantKV(t, m, t0+s, "a", kv("a", "8", 1, 10, 3, 0))
		wantKV(t, m, t0+s, "b", nil)
		wantKV(t, m, t0+s, "c", kv("c", "6", 10, 10, 2, 0))
		want := &conclavev1.TxnResponse{Succeeded: true, Results: []*conclavev1.TxnOpResult{
			{Result: &conclavev1.TxnOpResult_Set{Set: &conclavev1.SetResponse{Kv: meta("x", 10, 10, 1, 0)}}},
			{Result: &conclavev1.TxnOpResult_Set{Set: &conclavev1.SetResponse{Kv: meta("a", 1, 10, 3, 0)}}},
			{Result: &conclavev1.TxnOpResult_Delete{Delete: &conclavev1.DeleteResponse{Deleted: 1, Prev: []*conclavev1.KeyValue{kv("b", "x", 3, 3, 1, 0)}}}},
			{Result: &conclavev1.TxnOpResult_Increment{Increment: &conclavev1.IncrementResponse{Value: 5, Kv: kv("c", "5", 10, 10, 1, 0)}}},
			{Result: &conclavev1.TxnOpResult_Increment{Increment: &conclavev1.IncrementResponse{Value: 6, Kv: kv("c", "6", 10, 10, 2, 0)}}},
		}}
		wantProto(t, "Txn", res.GetTxn(), want)
	})
	t.Run("failure branch", func(t *testing.T) {
		m, res := runTxn(t, nil, &conclavev1.TxnRequest{
			Compares: never,
			Success:  []*conclavev1.TxnOp{txnSet(set("s", "1"))},
			Failure:  []*conclavev1.TxnOp{txnSet(set("f", "1")), txnDel(del("a"))},
		})
		if res.GetTxn().GetSucceeded() || len(res.GetTxn().GetResults()) != 2 {
			t.Errorf("Txn = %v, want the two failure results", res.GetTxn())
		}
		wantKV(t, m, t0+s, "f", kv("f", "1", 10, 10, 1, 0))
		wantKV(t, m, t0+s, "a", nil)
		wantKV(t, m, t0+s, "s", nil)
	})
	t.Run("an empty branch changes nothing", func(t *testing.T) {
		m, res := runTxn(t, nil, &conclavev1.TxnRequest{Compares: never, Success: []*conclavev1.TxnOp{txnSet(set("s", "1"))}})
		if res.GetTxn().GetSucceeded() || len(res.GetTxn().GetResults()) != 0 {
			t.Errorf("Txn = %v, want not succeeded without results", res.GetTxn())
		}
		wantKV(t, m, t0+s, "s", nil)
	})

	// A failing op rolls the whole branch back; run checks the state is unchanged.
	rollbacks := []struct {
		name string
		err  error
		req  *conclavev1.TxnRequest
	}{
		{"increment of a non-integer in success", fsm.ErrWrongType, &conclavev1.TxnRequest{
			Compares: always,
			Success:  []*conclavev1.TxnOp{txnSet(set("x", "1")), txnDel(del("a")), txnIncr(incr("b", 1))},
		}},
		{"increment of a non-integer in failure", fsm.ErrWrongType, &conclavev1.TxnRequest{
			Compares: never,
			Failure:  []*conclavev1.TxnOp{txnSet(set("x", "1")), txnIncr(incr("a", 1)), txnIncr(incr("b", 1))},
		}},
		{"a failed set condition", fsm.ErrConditionFailed, &conclavev1.TxnRequest{
			Failure: []*conclavev1.TxnOp{},
			Success: []*conclavev1.TxnOp{txnSet(set("x", "1")), txnSet(&conclavev1.SetRequest{Key: []byte("a"), IfAbsent: true})},
		}},
		{"a condition broken by an earlier op", fsm.ErrConditionFailed, &conclavev1.TxnRequest{
			Success: []*conclavev1.TxnOp{txnSet(set("a", "9")), txnSet(&conclavev1.SetRequest{Key: []byte("a"), IfRevision: uint64p(2)})},
		}},
		{"a failed delete condition", fsm.ErrConditionFailed, &conclavev1.TxnRequest{
			Success: []*conclavev1.TxnOp{txnDel(del("a")), txnDel(&conclavev1.DeleteRequest{Keys: [][]byte{[]byte("b")}, IfRevision: uint64p(99)})},
		}},
		{"an overflow", fsm.ErrOutOfRange, &conclavev1.TxnRequest{
			Success: []*conclavev1.TxnOp{txnIncr(incr("c", 1)), txnIncr(incr("c", 1<<62)), txnIncr(incr("c", 1<<62))},
		}},
		{"an op without operation", fsm.ErrInvalidArgument, &conclavev1.TxnRequest{
			Success: []*conclavev1.TxnOp{txnSet(set("x", "1")), {}},
		}},
		{"an invalid set", fsm.ErrInvalidArgument, &conclavev1.TxnRequest{
			Success: []*conclavev1.TxnOp{txnDel(del("a")), txnSet(set("", "1"))},
		}},
	}
	for _, tc := range rollbacks {
		t.Run("rollback: "+tc.name, func(t *testing.T) {
			m, _ := runTxn(t, tc.err, tc.req)
			wantKV(t, m, t0+s, "a", kv("a", "7", 1, 2, 2, 0))
			wantKV(t, m, t0+s, "x", nil)
			// The machine goes on normally after a rolled-back txn.
			run(t, m, step{index: 11, now: t0 + s, op: set("x", "2")})
			wantKV(t, m, t0+s, "x", kv("x", "2", 11, 11, 1, 0))
		})
	}
}

func uint64p(v uint64) *uint64 { return &v }
