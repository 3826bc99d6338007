package fsm_test

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func TestZset_Keyspace(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0, op: with(zadd("z", "a", 1), func(r *conclavev1.AddRequest) { r.TtlMs = 1000 })},
		step{index: 2, now: t0 + 100*ms, op: zadd("z", "b", 2)}, // keeps its TTL
		step{index: 3, now: t0, op: set("s", "v")},
	)
	wantKV(t, m, t0+100*ms, "z", &conclavev1.KeyValue{Key: []byte("z"), CreateRevision: 1, ModRevision: 2, Version: 2, TtlMs: 900, Type: conclavev1.KeyType_KEY_TYPE_SORTED_SET})
	for _, tc := range []struct {
		name string
		op   proto.Message
		err  error
	}{
		{"ZADD on a string", zadd("s", "a", 1), fsm.ErrWrongType},
		{"ZINCRBY on a string", zincr("s", "a", 1), fsm.ErrWrongType},
		{"ZREM on a string", &conclavev1.SortedSetServiceRemoveRequest{Key: []byte("s"), Members: []string{"a"}}, fsm.ErrWrongType},
		{"ZPOPMIN on a string", &fsmv1.ZsetPop{Key: []byte("s")}, fsm.ErrWrongType},
		{"INCR on a sorted set", incr("z", 1), fsm.ErrWrongType},
		{"value compare on a sorted set", &conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: []byte("z"), Operator: conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL, Target: &conclavev1.Compare_Value{Value: nil}}}}, fsm.ErrWrongType},
	} {
		t.Run(tc.name, func(t *testing.T) { run(t, m, step{index: 4, now: t0 + 100*ms, op: tc.op, err: tc.err}) })
	}
	m.Read(t0+100*ms, func(v *fsm.View) {
		if _, err := v.ZsetRange(&conclavev1.RangeRequest{Key: []byte("s")}); !isCode(err, fsm.ErrWrongType) {
			t.Errorf("range of a string: %v", err)
		}
		kvs, _ := v.Scan(nil, nil, 10, false)
		if len(kvs) != 2 || kvs[1].GetType() != conclavev1.KeyType_KEY_TYPE_SORTED_SET || kvs[1].GetValue() != nil {
			t.Errorf("scan: %v", kvs)
		}
	})
	// A revision compare works on a sorted set: optimistic updates of a leaderboard.
	res := run(t, m, step{index: 5, now: t0 + 100*ms, op: &conclavev1.TxnRequest{
		Compares: []*conclavev1.Compare{{Key: []byte("z"), Operator: conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL, Target: &conclavev1.Compare_ModRevision{ModRevision: 2}}},
		Success:  []*conclavev1.TxnOp{{Op: &conclavev1.TxnOp_Delete{Delete: del("s")}}},
	}})
	if !res.GetTxn().GetSucceeded() {
		t.Errorf("txn on the sorted set's revision: %v", res)
	}
	// SET replaces a sorted set (as Redis); the TTL deletes one.
	run(t, m,
		step{index: 6, now: t0 + 100*ms, op: zadd("y", "a", 1)},
		step{index: 7, now: t0 + 100*ms, op: set("y", "str")},
		step{index: 8, now: t0 + 100*ms, op: zadd("y2", "a", 1)},
		step{index: 9, now: t0 + 100*ms, op: del("y2")},
	)
	wantKV(t, m, t0+100*ms, "y", kv("y", "str", 6, 7, 2, 0))
	wantKV(t, m, t0+100*ms, "y2", nil)
	wantKV(t, m, t0+1000*ms, "z", nil) // expired: absent before the delete
	m.Read(t0+1000*ms, func(v *fsm.View) {
		if n, err := v.ZsetCard([]byte("z")); n != 0 || err != nil {
			t.Errorf("card of an expired set: %d %v", n, err)
		}
	})
	run(t, m, step{index: 10, now: t0 + 1000*ms, op: &fsmv1.ExpireDue{Limit: 10}})
	m.Read(t0+1000*ms, func(v *fsm.View) {
		if v.KeyCount() != 1 {
			t.Errorf("after expiry %d keys stored", v.KeyCount())
		}
	})
	// A set at a key expired but not yet deleted starts afresh, without the old TTL.
	run(t, m,
		step{index: 11, now: t0 + 1000*ms, op: with(zadd("e", "a", 1), func(r *conclavev1.AddRequest) { r.TtlMs = 10 })},
		step{index: 12, now: t0 + 1010*ms, op: zadd("e", "b", 1)},
	)
	wantKV(t, m, t0+1010*ms, "e", &conclavev1.KeyValue{Key: []byte("e"), CreateRevision: 12, ModRevision: 12, Version: 1, Type: conclavev1.KeyType_KEY_TYPE_SORTED_SET})
	if got := all(t, m, "e"); got != "b:1@0" {
		t.Errorf("fresh set at an expired key: %s", got)
	}
}

// TestZset_Snapshot round-trips a set of 100,000 members, checks a snapshot taken before
// later writes still persists the old contents (copy-on-write), and that both replicas
// write identical bytes.
func TestZset_Snapshot(t *testing.T) {
	m := fsm.New()
	const n = 100_000
	index := uint64(0)
	for i := 0; i < n; i += 1000 {
		req := &conclavev1.AddRequest{Key: []byte("big"), TieBreak: conclavev1.TieBreak_TIE_BREAK_ARRIVAL}
		for j := i; j < i+1000; j++ {
			req.Members = append(req.Members, &conclavev1.ScoredMember{Member: fmt.Sprintf("player-%06d", j), Score: float64(j % 977)})
		}
		index++
		apply(t, m, index, req)
	}
	snap := m.Snapshot()
	before := snapshotBytes(t, m)
	for i := range 500 {
		index++
		apply(t, m, index, zincr("big", fmt.Sprintf("player-%06d", i*7), 1000))
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), before) {
		t.Fatal("a snapshot taken before later writes persisted them (copy-on-write broken)")
	}
	r := restored(t, m)
	if !bytes.Equal(snapshotBytes(t, r), snapshotBytes(t, m)) {
		t.Fatal("Snapshot→Restore→Snapshot is not the identity")
	}
	var card int64
	r.Read(t0, func(v *fsm.View) { card, _ = v.ZsetCard([]byte("big")) })
	if card != n {
		t.Fatalf("restored set has %d members", card)
	}
	for _, q := range []*conclavev1.RangeRequest{
		{Key: []byte("big"), Reverse: true, Limit: 50, RankMode: conclavev1.RankMode_RANK_MODE_DENSE},
		{Key: []byte("big"), Interval: &conclavev1.RangeRequest_Score{Score: scoreIv(incl(500), excl(502))}, Limit: 500, RankMode: conclavev1.RankMode_RANK_MODE_COMPETITION},
	} {
		if a, b := zrange(t, m, q), zrange(t, r, q); !proto.Equal(a, b) {
			t.Fatalf("range %v differs after restore:\n%v\n%v", q, a, b)
		}
	}
	// The restored machine goes on like the original.
	for _, x := range []*fsm.Machine{m, r} {
		apply(t, x, index+1, zincr("big", "player-000001", 1))
	}
	if !bytes.Equal(snapshotBytes(t, r), snapshotBytes(t, m)) {
		t.Fatal("restored machine diverged after one more write")
	}
}

// apply applies op at t0 without run's before-and-after dumps (for big states).
func apply(t *testing.T, m *fsm.Machine, index uint64, op proto.Message) *fsmv1.Result {
	t.Helper()
	res := m.ApplyCommand(index, cmd(t0, op))
	if res.GetError() != nil {
		t.Fatalf("index %d: %v", index, res.GetError())
	}
	return res
}

// TestZset_UnknownEnumsRefused: values the machine does not know never reach its state
// (a snapshot could not hold them).
func TestZset_UnknownEnumsRefused(t *testing.T) {
	m := fsm.New()
	run(t, m, step{index: 1, now: t0, op: zadd("z", "a", 1)})
	for i, op := range []proto.Message{
		with(zadd("new", "a", 1), func(r *conclavev1.AddRequest) { r.TieBreak = 7 }),
		&conclavev1.IncrementScoreRequest{Key: []byte("new"), Member: "a", Delta: 1, TieBreak: -1},
		&fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION, Destination: []byte("d"), Keys: [][]byte{[]byte("z")}, TieBreak: 9},
		&fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION, Destination: []byte("d"), Keys: [][]byte{[]byte("z")}, Aggregate: 4},
		&fsmv1.ZsetStore{Op: 4, Destination: []byte("d"), Keys: [][]byte{[]byte("z")}},
		&conclavev1.RemoveRangeRequest{Key: []byte("z"), Interval: &conclavev1.RemoveRangeRequest_Score{Score: scoreIv(incl(math.NaN()), nil)}},
	} {
		run(t, m, step{index: uint64(2 + i), now: t0, op: op, err: fsm.ErrInvalidArgument})
	}
	if !bytes.Equal(snapshotBytes(t, restored(t, m)), snapshotBytes(t, m)) {
		t.Fatal("snapshot does not round-trip")
	}
}
