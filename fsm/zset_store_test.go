package fsm_test

import (
	"math"
	"strings"
	"testing"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func TestZset_Stores(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0, op: zadd("s1", "a", 1, "b", 2, "c", 3)},
		step{index: 2, now: t0, op: zadd("s2", "b", 10, "c", 20, "d", 30)},
		step{index: 3, now: t0, op: zadd("inf", "a", math.Inf(1), "b", math.Inf(-1))},
		step{index: 4, now: t0, op: set("str", "v")},
		step{index: 5, now: t0, op: setTTL("dst", "old", 5000)},
	)
	store := func(op fsmv1.ZsetStoreOp, agg conclavev1.Aggregate, weights []float64, keys ...string) *fsmv1.ZsetStore {
		req := &fsmv1.ZsetStore{Op: op, Destination: []byte("dst"), Aggregate: agg, Weights: weights}
		for _, k := range keys {
			req.Keys = append(req.Keys, []byte(k))
		}
		return req
	}
	const (
		union = fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION
		inter = fsmv1.ZsetStoreOp_ZSET_STORE_OP_INTERSECT
		diff  = fsmv1.ZsetStoreOp_ZSET_STORE_OP_DIFF
		sum   = conclavev1.Aggregate_AGGREGATE_SUM
		mn    = conclavev1.Aggregate_AGGREGATE_MIN
		mx    = conclavev1.Aggregate_AGGREGATE_MAX
	)
	tests := []struct {
		name string
		req  *fsmv1.ZsetStore
		want string
	}{
		{"union sum replaces a string with a TTL", store(union, 0, nil, "s1", "s2"), "a:1@0 b:12@1 c:23@2 d:30@3"},
		{"union weighted", store(union, sum, []float64{2, 0.5}, "s1", "s2"), "a:2@0 b:9@1 d:15@2 c:16@3"},
		{"union min", store(union, mn, nil, "s1", "s2"), "a:1@0 b:2@1 c:3@2 d:30@3"},
		{"union max", store(union, mx, nil, "s1", "s2", "missing"), "a:1@0 b:10@1 c:20@2 d:30@3"},
		{"inter sum", store(inter, 0, nil, "s1", "s2"), "b:12@0 c:23@1"},
		{"inter with a missing key is empty", store(inter, 0, nil, "s1", "missing"), ""},
		{"diff", store(diff, 0, nil, "s1", "s2"), "a:1@0"},
		{"diff weighted", store(diff, 0, []float64{-1, 7}, "s1", "missing"), "c:-3@0 b:-2@1 a:-1@2"},
		{"inf times 0 is 0", store(union, 0, []float64{0}, "inf"), "a:0@0 b:0@1"},
		{"inf minus inf is 0", store(union, sum, []float64{1, -1}, "inf", "inf"), "a:0@0 b:0@1"},
		{"destination as a source", store(union, 0, []float64{1, 1}, "s1", "s1"), "a:2@0 b:4@1 c:6@2"},
	}
	index := uint64(5)
	for _, tc := range tests {
		index++
		res := run(t, m, step{index: index, now: t0, op: tc.req})
		got := ""
		if kv := get(m, t0, "dst"); kv != nil {
			got = all(t, m, "dst")
			if kv.GetTtlMs() != 0 || kv.GetType() != conclavev1.KeyType_KEY_TYPE_SORTED_SET {
				t.Errorf("%s: destination %v", tc.name, kv)
			}
		}
		if got != tc.want || res.GetZsetStore().GetCount() != int64(strings.Count(tc.want, "@")) {
			t.Errorf("%s: %s (count %d), want %s", tc.name, got, res.GetZsetStore().GetCount(), tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		req  *fsmv1.ZsetStore
		err  error
	}{
		{"a string source", store(union, 0, nil, "s1", "str"), fsm.ErrWrongType},
		{"weights not one per key", store(union, 0, []float64{1}, "s1", "s2"), fsm.ErrInvalidArgument},
		{"NaN weight", store(union, 0, []float64{math.NaN()}, "s1"), fsm.ErrInvalidArgument},
		{"no keys", store(union, 0, nil), fsm.ErrInvalidArgument},
	} {
		index++
		t.Run(tc.name, func(t *testing.T) { run(t, m, step{index: index, now: t0, op: tc.req, err: tc.err}) })
	}
}

// TestZset_StoreKeepsArrivalOrder: a store into a set ranked by arrival keeps the order
// of members tied in its source, whichever way the destination is read.
func TestZset_StoreKeepsArrivalOrder(t *testing.T) {
	m := fsm.New()
	arrival := conclavev1.TieBreak_TIE_BREAK_ARRIVAL
	ascending := conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING
	run(t, m,
		step{index: 1, now: t0, op: with(zadd("hi", "bob", 2900, "ann", 3000), func(r *conclavev1.AddRequest) { r.TieBreak = arrival })},
		step{index: 2, now: t0, op: zadd("hi", "cat", 2900)},
		step{index: 3, now: t0, op: with(zadd("lo", "bob", 61, "ann", 60), func(r *conclavev1.AddRequest) { r.TieBreak = ascending })},
		step{index: 4, now: t0, op: zadd("lo", "cat", 61)},
		step{index: 5, now: t0, op: &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION, Destination: []byte("hi2"), Keys: [][]byte{[]byte("hi")}, TieBreak: arrival}},
		step{index: 6, now: t0, op: &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_DIFF, Destination: []byte("lo2"), Keys: [][]byte{[]byte("lo")}, TieBreak: ascending}},
	)
	top := func(key string, lowest bool) string {
		var r *conclavev1.TopResponse
		m.Read(t0, func(v *fsm.View) { r, _ = v.ZsetTop(&conclavev1.TopRequest{Key: []byte(key), Lowest: lowest}) })
		return members(r.GetMembers())
	}
	for _, tc := range []struct {
		src, dst string
		lowest   bool
	}{{"hi", "hi2", false}, {"lo", "lo2", true}} {
		if a, b := top(tc.src, tc.lowest), top(tc.dst, tc.lowest); a != b {
			t.Errorf("%s reads %s; its copy %s reads %s", tc.src, a, tc.dst, b)
		}
	}
}
