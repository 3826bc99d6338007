package fsm_test

import (
	"math"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// kvCase applies steps to a fresh machine, then reads each key of want at readAt (0: the
// last step's now) and runs check on the last result.
type kvCase struct {
	name   string
	steps  []step
	readAt int64
	want   map[string]*conclavev1.KeyValue
	check  func(t *testing.T, res *fsmv1.Result)
}

func runKVCases(t *testing.T, cases []kvCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := fsm.New()
			res := run(t, m, tc.steps...)
			at := tc.readAt
			if at == 0 {
				at = tc.steps[len(tc.steps)-1].now
			}
			for k, want := range tc.want {
				wantKV(t, m, at, k, want)
			}
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
}

func wantProto(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantNoPrev(t *testing.T, res *fsmv1.Result) {
	t.Helper()
	if prev := res.GetSet().GetPrev(); prev != nil {
		t.Errorf("Set.Prev = %v, want none", prev)
	}
}

// meta is a KeyValue as write responses carry it: without the value.
func meta(key string, create, mod uint64, version, ttlMs int64) *conclavev1.KeyValue {
	return &conclavev1.KeyValue{Key: []byte(key), CreateRevision: create, ModRevision: mod, Version: version, TtlMs: ttlMs}
}

func TestKV_Set(t *testing.T) {
	ifRev := proto.Uint64
	cond := fsm.ErrConditionFailed
	runKVCases(t, []kvCase{
		{
			name:  "plain create",
			steps: []step{{index: 1, now: t0, op: set("a", "v1")}},
			want:  map[string]*conclavev1.KeyValue{"a": kv("a", "v1", 1, 1, 1, 0)},
			check: func(t *testing.T, res *fsmv1.Result) {
				wantProto(t, "Set.Kv", res.GetSet().GetKv(), meta("a", 1, 1, 1, 0))
				wantNoPrev(t, res)
				if res.GetIndex() != 1 {
					t.Errorf("Result.Index = %d, want 1", res.GetIndex())
				}
			},
		},
		{
			name: "overwrite keeps create_revision and counts versions",
			steps: []step{
				{index: 1, now: t0, op: set("a", "v1")},
				{index: 2, now: t0 + s, op: set("a", "v2")},
				{index: 5, now: t0 + 2*s, op: set("a", "v3")},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v3", 1, 5, 3, 0)},
		},
		{
			name:   "ttl",
			steps:  []step{{index: 3, now: t0, op: setTTL("a", "v", 1500)}},
			readAt: t0 + 500*ms,
			want:   map[string]*conclavev1.KeyValue{"a": kv("a", "v", 3, 3, 1, 1000)},
			check: func(t *testing.T, res *fsmv1.Result) {
				wantProto(t, "Set.Kv", res.GetSet().GetKv(), meta("a", 3, 3, 1, 1500))
			},
		},
		{
			name:   "ttl: absent at the deadline",
			steps:  []step{{index: 3, now: t0, op: setTTL("a", "v", 1500)}},
			readAt: t0 + 1500*ms,
			want:   map[string]*conclavev1.KeyValue{"a": nil},
		},
		{
			name: "plain overwrite clears the ttl",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 1000)},
				{index: 2, now: t0 + 500*ms, op: set("a", "v2")},
			},
			readAt: t0 + 5*s,
			want:   map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 1, 2, 2, 0)},
		},
		{
			name: "ttl overwrite replaces the ttl",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 1000)},
				{index: 2, now: t0 + 500*ms, op: setTTL("a", "v2", 3000)},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 1, 2, 2, 3000)},
		},
		{
			name: "keep_ttl keeps the deadline",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 1000)},
				{index: 2, now: t0 + 400*ms, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), KeepTtl: true}},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 1, 2, 2, 600)},
		},
		{
			name: "keep_ttl with ttl_ms sets the new ttl",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 1000)},
				{index: 2, now: t0 + 400*ms, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), KeepTtl: true, TtlMs: 5000}},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 1, 2, 2, 5000)},
		},
		{
			name: "keep_ttl on a key without ttl keeps none",
			steps: []step{
				{index: 1, now: t0, op: set("a", "v1")},
				{index: 2, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), KeepTtl: true}},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 1, 2, 2, 0)},
		},
		{
			name: "keep_ttl on an expired key starts fresh without ttl",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 100)},
				{index: 2, now: t0 + s, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), KeepTtl: true}},
			},
			readAt: t0 + 10*s,
			want:   map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 2, 2, 1, 0)},
		},
		{
			name: "reset after expiry: create_revision and version start again",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 100)},
				{index: 2, now: t0 + 50*ms, op: setTTL("a", "v2", 100)},
				{index: 7, now: t0 + 2*s, op: set("a", "v3")},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v3", 7, 7, 1, 0)},
		},
		{
			name:  "if_absent on a missing key",
			steps: []step{{index: 4, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v"), IfAbsent: true}}},
			want:  map[string]*conclavev1.KeyValue{"a": kv("a", "v", 4, 4, 1, 0)},
		},
		{
			name: "if_absent on an existing key fails",
			steps: []step{
				{index: 1, now: t0, op: set("a", "v1")},
				{index: 2, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfAbsent: true}, err: cond},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v1", 1, 1, 1, 0)},
		},
		{
			name: "if_absent on an expired key succeeds",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 100)},
				{index: 2, now: t0 + 100*ms, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfAbsent: true}},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 2, 2, 1, 0)},
		},
		{
			name:  "if_present on a missing key fails",
			steps: []step{{index: 1, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), IfPresent: true}, err: cond}},
			want:  map[string]*conclavev1.KeyValue{"a": nil},
		},
		{
			name: "if_present on an existing key",
			steps: []step{
				{index: 1, now: t0, op: set("a", "v1")},
				{index: 2, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfPresent: true}},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 1, 2, 2, 0)},
		},
		{
			name: "if_present on an expired key fails",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 100)},
				{index: 2, now: t0 + s, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfPresent: true}, err: cond},
			},
			want: map[string]*conclavev1.KeyValue{"a": nil},
		},
		{
			name: "if_revision matches",
			steps: []step{
				{index: 3, now: t0, op: set("a", "v1")},
				{index: 4, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfRevision: ifRev(3)}},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 3, 4, 2, 0)},
		},
		{
			name: "if_revision mismatch fails",
			steps: []step{
				{index: 3, now: t0, op: set("a", "v1")},
				{index: 4, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfRevision: ifRev(2)}, err: cond},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v1", 3, 3, 1, 0)},
		},
		{
			name:  "if_revision 0 on a missing key",
			steps: []step{{index: 4, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v"), IfRevision: ifRev(0)}}},
			want:  map[string]*conclavev1.KeyValue{"a": kv("a", "v", 4, 4, 1, 0)},
		},
		{
			name: "if_revision 0 on an existing key fails",
			steps: []step{
				{index: 3, now: t0, op: set("a", "v1")},
				{index: 4, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfRevision: ifRev(0)}, err: cond},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v1", 3, 3, 1, 0)},
		},
		{
			name: "if_revision 0 on an expired key",
			steps: []step{
				{index: 3, now: t0, op: setTTL("a", "v1", 100)},
				{index: 4, now: t0 + s, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfRevision: ifRev(0)}},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "v2", 4, 4, 1, 0)},
		},
		{
			name: "if_revision of an expired key's revision fails",
			steps: []step{
				{index: 3, now: t0, op: setTTL("a", "v1", 100)},
				{index: 4, now: t0 + s, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), IfRevision: ifRev(3)}, err: cond},
			},
			want: map[string]*conclavev1.KeyValue{"a": nil},
		},
		{
			name: "return_previous returns the replaced entry with its value",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 2000)},
				{index: 2, now: t0 + 500*ms, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), ReturnPrevious: true}},
			},
			check: func(t *testing.T, res *fsmv1.Result) {
				wantProto(t, "Set.Prev", res.GetSet().GetPrev(), kv("a", "v1", 1, 1, 1, 1500))
				wantProto(t, "Set.Kv", res.GetSet().GetKv(), meta("a", 1, 2, 2, 0))
			},
		},
		{
			name:  "return_previous on a missing key",
			steps: []step{{index: 1, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v"), ReturnPrevious: true}}},
			check: func(t *testing.T, res *fsmv1.Result) { wantNoPrev(t, res) },
		},
		{
			name: "return_previous on an expired key",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "v1", 100)},
				{index: 2, now: t0 + s, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("v2"), ReturnPrevious: true}},
			},
			check: func(t *testing.T, res *fsmv1.Result) { wantNoPrev(t, res) },
		},
		{
			name: "prev is omitted unless asked",
			steps: []step{
				{index: 1, now: t0, op: set("a", "v1")},
				{index: 2, now: t0, op: set("a", "v2")},
			},
			check: func(t *testing.T, res *fsmv1.Result) { wantNoPrev(t, res) },
		},
		{
			name:  "empty key is invalid",
			steps: []step{{index: 1, now: t0, op: set("", "v"), err: fsm.ErrInvalidArgument}},
		},
		{
			name:  "negative ttl is invalid",
			steps: []step{{index: 1, now: t0, op: setTTL("a", "v", -1), err: fsm.ErrInvalidArgument}},
			want:  map[string]*conclavev1.KeyValue{"a": nil},
		},
	})
}

func TestKV_MultiSet(t *testing.T) {
	entry := func(key, value string, ttlMs int64) *conclavev1.KeyValueInput {
		return &conclavev1.KeyValueInput{Key: []byte(key), Value: []byte(value), TtlMs: ttlMs}
	}
	multi := func(es ...*conclavev1.KeyValueInput) *conclavev1.MultiSetRequest {
		return &conclavev1.MultiSetRequest{Entries: es}
	}
	runKVCases(t, []kvCase{
		{
			name:  "writes every entry at one revision",
			steps: []step{{index: 3, now: t0, op: multi(entry("a", "1", 0), entry("b", "2", 1000))}},
			want: map[string]*conclavev1.KeyValue{
				"a": kv("a", "1", 3, 3, 1, 0),
				"b": kv("b", "2", 3, 3, 1, 1000),
			},
			check: func(t *testing.T, res *fsmv1.Result) {
				if res.GetMultiSet() == nil {
					t.Errorf("Result = %v, want a MultiSet response", res)
				}
			},
		},
		{
			name: "keeps the history of live keys",
			steps: []step{
				{index: 1, now: t0, op: set("a", "0")},
				{index: 2, now: t0, op: multi(entry("a", "1", 0), entry("b", "2", 0))},
			},
			want: map[string]*conclavev1.KeyValue{
				"a": kv("a", "1", 1, 2, 2, 0),
				"b": kv("b", "2", 2, 2, 1, 0),
			},
		},
		{
			name: "an empty key changes nothing",
			steps: []step{
				{index: 1, now: t0, op: set("a", "0")},
				{index: 2, now: t0, op: multi(entry("a", "1", 0), entry("b", "2", 0), entry("", "3", 0)), err: fsm.ErrInvalidArgument},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "0", 1, 1, 1, 0), "b": nil},
		},
		{
			name: "a negative ttl changes nothing",
			steps: []step{
				{index: 1, now: t0, op: set("a", "0")},
				{index: 2, now: t0, op: multi(entry("a", "1", 0), entry("b", "2", -5)), err: fsm.ErrInvalidArgument},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "0", 1, 1, 1, 0), "b": nil},
		},
		{
			name:  "no entries",
			steps: []step{{index: 1, now: t0, op: multi()}},
		},
	})
	t.Run("the last write of a repeated key wins", func(t *testing.T) {
		m := fsm.New()
		run(t, m, step{index: 1, now: t0, op: multi(entry("a", "1", 0), entry("a", "2", 1000))})
		got := get(m, t0, "a")
		if string(got.GetValue()) != "2" || got.GetModRevision() != 1 || got.GetTtlMs() != 1000 {
			t.Errorf("Get(a) = %v, want value 2 at revision 1 with ttl 1000", got)
		}
	})
}

func TestKV_Delete(t *testing.T) {
	ifRev := proto.Uint64
	deleted := func(n int64, prev ...*conclavev1.KeyValue) func(*testing.T, *fsmv1.Result) {
		return func(t *testing.T, res *fsmv1.Result) {
			want := &conclavev1.DeleteResponse{Deleted: n, Prev: prev}
			wantProto(t, "Delete", res.GetDelete(), want)
		}
	}
	runKVCases(t, []kvCase{
		{
			name: "deletes many keys and counts the existing ones",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 2, now: t0, op: set("b", "2")},
				{index: 3, now: t0, op: set("c", "3")},
				{index: 4, now: t0, op: del("a", "b", "x")},
			},
			want:  map[string]*conclavev1.KeyValue{"a": nil, "b": nil, "c": kv("c", "3", 3, 3, 1, 0)},
			check: deleted(2),
		},
		{
			name: "a repeated key counts once",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 2, now: t0, op: del("a", "a")},
			},
			check: deleted(1),
		},
		{
			name: "return_previous in request order",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "1", 5000)},
				{index: 2, now: t0, op: set("b", "2")},
				{index: 3, now: t0 + s, op: &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("b"), []byte("x"), []byte("a")}, ReturnPrevious: true}},
			},
			check: deleted(2, kv("b", "2", 2, 2, 1, 0), kv("a", "1", 1, 1, 1, 4000)),
		},
		{
			name: "if_revision matches",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 2, now: t0, op: set("a", "2")},
				{index: 3, now: t0, op: &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a")}, IfRevision: ifRev(2)}},
			},
			want:  map[string]*conclavev1.KeyValue{"a": nil},
			check: deleted(1),
		},
		{
			name: "if_revision mismatch fails",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 2, now: t0, op: set("a", "2")},
				{index: 3, now: t0, op: &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a")}, IfRevision: ifRev(1)}, err: fsm.ErrConditionFailed},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "2", 1, 2, 2, 0)},
		},
		{
			name:  "if_revision 0 on a missing key",
			steps: []step{{index: 1, now: t0, op: &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a")}, IfRevision: ifRev(0)}}},
			check: deleted(0),
		},
		{
			name: "if_revision 0 on an existing key fails",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 2, now: t0, op: &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a")}, IfRevision: ifRev(0)}, err: fsm.ErrConditionFailed},
			},
		},
		{
			name: "if_revision needs exactly one key",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 2, now: t0, op: &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a"), []byte("b")}, IfRevision: ifRev(1)}, err: fsm.ErrInvalidArgument},
			},
		},
		{
			name: "an expired key counts as not deleted",
			steps: []step{
				{index: 1, now: t0, op: setTTL("a", "1", 100)},
				{index: 2, now: t0 + s, op: &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a")}, ReturnPrevious: true}},
			},
			want:  map[string]*conclavev1.KeyValue{"a": nil},
			check: deleted(0),
		},
		{
			name:  "no keys",
			steps: []step{{index: 1, now: t0, op: del()}},
			check: deleted(0),
		},
		{
			name: "a key written again after delete starts fresh",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 2, now: t0, op: set("a", "2")},
				{index: 3, now: t0, op: del("a")},
				{index: 4, now: t0, op: set("a", "3")},
			},
			want: map[string]*conclavev1.KeyValue{"a": kv("a", "3", 4, 4, 1, 0)},
		},
	})
}

func TestKV_Increment(t *testing.T) {
	i64 := func(n int64) string { return strconv.FormatInt(n, 10) }
	value := func(n int64) func(*testing.T, *fsmv1.Result) {
		return func(t *testing.T, res *fsmv1.Result) {
			if got := res.GetIncrement().GetValue(); got != n {
				t.Errorf("Increment.Value = %d, want %d", got, n)
			}
			if got := string(res.GetIncrement().GetKv().GetValue()); got != i64(n) {
				t.Errorf("Increment.Kv.Value = %q, want %q", got, i64(n))
			}
		}
	}
	incrTTL := func(key string, delta, ttlMs int64) *conclavev1.IncrementRequest {
		return &conclavev1.IncrementRequest{Key: []byte(key), Delta: delta, TtlMs: ttlMs}
	}
	oor, wrong := fsm.ErrOutOfRange, fsm.ErrWrongType
	runKVCases(t, []kvCase{
		{
			name:  "creates at 0",
			steps: []step{{index: 1, now: t0, op: incr("n", 5)}},
			want:  map[string]*conclavev1.KeyValue{"n": kv("n", "5", 1, 1, 1, 0)},
			check: func(t *testing.T, res *fsmv1.Result) {
				wantProto(t, "Increment.Kv", res.GetIncrement().GetKv(), kv("n", "5", 1, 1, 1, 0))
			},
		},
		{name: "creates with a negative delta", steps: []step{{index: 1, now: t0, op: incr("n", -3)}}, check: value(-3)},
		{name: "creates with delta 0", steps: []step{{index: 1, now: t0, op: incr("n", 0)}}, check: value(0)},
		{name: "creates with delta MinInt64", steps: []step{{index: 1, now: t0, op: incr("n", math.MinInt64)}}, check: value(math.MinInt64)},
		{
			name: "adds to an integer",
			steps: []step{
				{index: 1, now: t0, op: set("n", "10")},
				{index: 2, now: t0, op: incr("n", 5)},
			},
			want:  map[string]*conclavev1.KeyValue{"n": kv("n", "15", 1, 2, 2, 0)},
			check: value(15),
		},
		{
			name: "adds to a negative integer",
			steps: []step{
				{index: 1, now: t0, op: set("n", "-10")},
				{index: 2, now: t0, op: incr("n", 3)},
			},
			check: value(-7),
		},
		{
			name:  "ttl on create",
			steps: []step{{index: 1, now: t0, op: incrTTL("n", 1, 1000)}},
			want:  map[string]*conclavev1.KeyValue{"n": kv("n", "1", 1, 1, 1, 1000)},
		},
		{
			name: "ttl is ignored for an existing key without ttl",
			steps: []step{
				{index: 1, now: t0, op: set("n", "1")},
				{index: 2, now: t0, op: incrTTL("n", 1, 1000)},
			},
			want: map[string]*conclavev1.KeyValue{"n": kv("n", "2", 1, 2, 2, 0)},
		},
		{
			name: "an existing ttl is kept",
			steps: []step{
				{index: 1, now: t0, op: setTTL("n", "1", 1000)},
				{index: 2, now: t0 + 400*ms, op: incrTTL("n", 1, 5000)},
			},
			want: map[string]*conclavev1.KeyValue{"n": kv("n", "2", 1, 2, 2, 600)},
		},
		{
			name: "an expired key is created again with the ttl",
			steps: []step{
				{index: 1, now: t0, op: setTTL("n", "7", 100)},
				{index: 2, now: t0 + s, op: incrTTL("n", 1, 1000)},
			},
			want: map[string]*conclavev1.KeyValue{"n": kv("n", "1", 2, 2, 1, 1000)},
		},
		{
			name: "a non-integer is the wrong type",
			steps: []step{
				{index: 1, now: t0, op: set("n", "abc")},
				{index: 2, now: t0, op: incr("n", 1), err: wrong},
			},
			want: map[string]*conclavev1.KeyValue{"n": kv("n", "abc", 1, 1, 1, 0)},
		},
		{
			name:  "an empty value is the wrong type",
			steps: []step{{index: 1, now: t0, op: set("n", "")}, {index: 2, now: t0, op: incr("n", 1), err: wrong}},
		},
		{
			name:  "a float is the wrong type",
			steps: []step{{index: 1, now: t0, op: set("n", "1.5")}, {index: 2, now: t0, op: incr("n", 1), err: wrong}},
		},
		{
			name:  "a value beyond int64 is the wrong type",
			steps: []step{{index: 1, now: t0, op: set("n", "9223372036854775808")}, {index: 2, now: t0, op: incr("n", 1), err: wrong}},
		},
		{
			name:  "overflow upwards",
			steps: []step{{index: 1, now: t0, op: set("n", i64(math.MaxInt64))}, {index: 2, now: t0, op: incr("n", 1), err: oor}},
			want:  map[string]*conclavev1.KeyValue{"n": kv("n", i64(math.MaxInt64), 1, 1, 1, 0)},
		},
		{
			name:  "overflow downwards",
			steps: []step{{index: 1, now: t0, op: set("n", i64(math.MinInt64))}, {index: 2, now: t0, op: incr("n", -1), err: oor}},
			want:  map[string]*conclavev1.KeyValue{"n": kv("n", i64(math.MinInt64), 1, 1, 1, 0)},
		},
		{
			name:  "overflow upwards by a large delta",
			steps: []step{{index: 1, now: t0, op: set("n", "1")}, {index: 2, now: t0, op: incr("n", math.MaxInt64), err: oor}},
		},
		{
			name:  "overflow downwards by a large delta",
			steps: []step{{index: 1, now: t0, op: set("n", "-2")}, {index: 2, now: t0, op: incr("n", math.MinInt64), err: oor}},
		},
		{
			name:  "reaches MaxInt64",
			steps: []step{{index: 1, now: t0, op: set("n", i64(math.MaxInt64-1))}, {index: 2, now: t0, op: incr("n", 1)}},
			check: value(math.MaxInt64),
		},
		{
			name:  "reaches MinInt64",
			steps: []step{{index: 1, now: t0, op: set("n", i64(math.MinInt64+1))}, {index: 2, now: t0, op: incr("n", -1)}},
			check: value(math.MinInt64),
		},
		{name: "empty key is invalid", steps: []step{{index: 1, now: t0, op: incr("", 1), err: fsm.ErrInvalidArgument}}},
		{
			name:  "negative ttl is invalid",
			steps: []step{{index: 1, now: t0, op: incrTTL("n", 1, -1), err: fsm.ErrInvalidArgument}},
			want:  map[string]*conclavev1.KeyValue{"n": nil},
		},
	})
}
