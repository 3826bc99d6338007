package fsm_test

import (
	"math"
	"testing"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// TestKV_Expire is the NX/XX/GT/LT truth table. The key is written at index 1 either
// without a TTL or with 10s; Expire runs at index 2 at the same now, so "greater" and
// "less" compare the new TTL with 10s (and a key without TTL lives forever).
func TestKV_Expire(t *testing.T) {
	const (
		none = conclavev1.ExpireCondition_EXPIRE_CONDITION_UNSPECIFIED
		nx   = conclavev1.ExpireCondition_EXPIRE_CONDITION_NX
		xx   = conclavev1.ExpireCondition_EXPIRE_CONDITION_XX
		gt   = conclavev1.ExpireCondition_EXPIRE_CONDITION_GT
		lt   = conclavev1.ExpireCondition_EXPIRE_CONDITION_LT
	)
	cond := fsm.ErrConditionFailed
	tests := []struct {
		name    string
		hasTTL  bool
		cond    conclavev1.ExpireCondition
		ttlMs   int64
		persist bool
		err     error
		wantTTL int64 // View.TTL after: -1 none
	}{
		{name: "set on a key without ttl", cond: none, ttlMs: 5000, wantTTL: 5000},
		{name: "raise", hasTTL: true, cond: none, ttlMs: 20000, wantTTL: 20000},
		{name: "lower", hasTTL: true, cond: none, ttlMs: 5000, wantTTL: 5000},
		{name: "NX without ttl", cond: nx, ttlMs: 5000, wantTTL: 5000},
		{name: "NX with ttl fails", hasTTL: true, cond: nx, ttlMs: 5000, err: cond, wantTTL: 10000},
		{name: "XX without ttl fails", cond: xx, ttlMs: 5000, err: cond, wantTTL: -1},
		{name: "XX with ttl", hasTTL: true, cond: xx, ttlMs: 5000, wantTTL: 5000},
		{name: "GT without ttl fails (no ttl is infinite)", cond: gt, ttlMs: 5000, err: cond, wantTTL: -1},
		{name: "GT greater", hasTTL: true, cond: gt, ttlMs: 20000, wantTTL: 20000},
		{name: "GT equal fails", hasTTL: true, cond: gt, ttlMs: 10000, err: cond, wantTTL: 10000},
		{name: "GT less fails", hasTTL: true, cond: gt, ttlMs: 5000, err: cond, wantTTL: 10000},
		{name: "LT without ttl (no ttl is infinite)", cond: lt, ttlMs: 5000, wantTTL: 5000},
		{name: "LT less", hasTTL: true, cond: lt, ttlMs: 5000, wantTTL: 5000},
		{name: "LT equal fails", hasTTL: true, cond: lt, ttlMs: 10000, err: cond, wantTTL: 10000},
		{name: "LT greater fails", hasTTL: true, cond: lt, ttlMs: 20000, err: cond, wantTTL: 10000},
		{name: "persist clears the ttl", hasTTL: true, persist: true, wantTTL: -1},
		{name: "persist without ttl", persist: true, wantTTL: -1},
		{name: "persist with XX without ttl fails", cond: xx, persist: true, err: cond, wantTTL: -1},
		{name: "ttl 0 is invalid", hasTTL: true, ttlMs: 0, err: fsm.ErrInvalidArgument, wantTTL: 10000},
		{name: "negative ttl is invalid", ttlMs: -5, err: fsm.ErrInvalidArgument, wantTTL: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := fsm.New()
			var ttl int64
			if tc.hasTTL {
				ttl = 10000
			}
			req := &conclavev1.ExpireRequest{Key: []byte("k"), TtlMs: tc.ttlMs, Persist: tc.persist, Condition: tc.cond}
			res := run(t, m,
				step{index: 1, now: t0, op: setTTL("k", "v", ttl)},
				step{index: 2, now: t0, op: req, err: tc.err},
			)
			m.Read(t0, func(v *fsm.View) {
				if got, found := v.TTL([]byte("k")); !found || got != tc.wantTTL {
					t.Errorf("TTL = %d, %v; want %d, true", got, found, tc.wantTTL)
				}
			})
			if tc.err != nil {
				wantKV(t, m, t0, "k", kv("k", "v", 1, 1, 1, ttl))
				return
			}
			wantTTLField := max(tc.wantTTL, 0)
			wantProto(t, "Expire.Kv", res.GetExpire().GetKv(), meta("k", 1, 2, 2, wantTTLField))
			wantKV(t, m, t0, "k", kv("k", "v", 1, 2, 2, wantTTLField))
		})
	}

	runKVCases(t, []kvCase{
		{
			name:  "missing key is NotFound",
			steps: []step{{index: 1, now: t0, op: &conclavev1.ExpireRequest{Key: []byte("k"), TtlMs: 1000}, err: fsm.ErrNotFound}},
		},
		{
			name: "expired key is NotFound",
			steps: []step{
				{index: 1, now: t0, op: setTTL("k", "v", 100)},
				{index: 2, now: t0 + s, op: &conclavev1.ExpireRequest{Key: []byte("k"), TtlMs: 1000}, err: fsm.ErrNotFound},
			},
		},
		{
			name: "the new ttl counts from the command's now",
			steps: []step{
				{index: 1, now: t0, op: set("k", "v")},
				{index: 2, now: t0 + 3*s, op: &conclavev1.ExpireRequest{Key: []byte("k"), TtlMs: 1000}},
			},
			readAt: t0 + 3*s + 999*ms,
			want:   map[string]*conclavev1.KeyValue{"k": kv("k", "v", 1, 2, 2, 1)},
		},
		{
			name: "the key is gone at the new deadline",
			steps: []step{
				{index: 1, now: t0, op: setTTL("k", "v", 100_000)},
				{index: 2, now: t0, op: &conclavev1.ExpireRequest{Key: []byte("k"), TtlMs: 1000}},
			},
			readAt: t0 + s,
			want:   map[string]*conclavev1.KeyValue{"k": nil},
		},
		{
			name: "a huge ttl saturates instead of overflowing",
			steps: []step{
				{index: 1, now: t0, op: set("k", "v")},
				{index: 2, now: t0, op: &conclavev1.ExpireRequest{Key: []byte("k"), TtlMs: math.MaxInt64}},
			},
			check: func(t *testing.T, res *fsmv1.Result) {
				if got := res.GetExpire().GetKv().GetTtlMs(); got <= 0 {
					t.Errorf("Expire.Kv.TtlMs = %d, want > 0", got)
				}
			},
			readAt: t0 + 100*365*24*3600*s,
			want:   map[string]*conclavev1.KeyValue{"k": kv("k", "v", 1, 2, 2, (math.MaxInt64-(t0+100*365*24*3600*s)+999_999)/ms)},
		},
	})
}

// TestKV_ExpireDue checks that ExpireDue deletes only due keys, oldest deadline first,
// at most limit of them, and that reads hide expired keys before it runs.
func TestKV_ExpireDue(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0, op: setTTL("k1", "v", 300)},
		step{index: 2, now: t0, op: setTTL("k2", "v", 100)},
		step{index: 3, now: t0, op: setTTL("k3", "v", 200)},
		step{index: 4, now: t0, op: setTTL("k4", "v", 10_000)},
		step{index: 5, now: t0, op: set("k5", "v")},
		step{index: 6, now: t0, op: setTTL("k6", "v", 500)}, // due exactly at the read time below
	)
	at := t0 + 500*ms
	stored := func() int {
		var n int
		m.Read(at, func(v *fsm.View) { n = v.KeyCount() })
		return n
	}
	live := func() []string {
		var keys []string
		m.Read(at, func(v *fsm.View) {
			kvs, _ := v.Scan(nil, nil, -1, true)
			for _, e := range kvs {
				keys = append(keys, string(e.GetKey()))
			}
		})
		return keys
	}
	wantKeys := func(what string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s = %q, want %q", what, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s = %q, want %q", what, got, want)
			}
		}
	}

	// Before any ExpireDue, reads already hide the four due keys.
	wantKeys("live keys", live(), "k4", "k5")
	for _, k := range []string{"k1", "k2", "k3", "k6"} {
		wantKV(t, m, at, k, nil)
	}
	if n := stored(); n != 6 {
		t.Fatalf("KeyCount = %d, want 6", n)
	}
	m.Read(at, func(v *fsm.View) {
		if n := v.DueCount(10); n != 4 {
			t.Errorf("DueCount(10) = %d, want 4", n)
		}
		if n := v.DueCount(3); n != 3 {
			t.Errorf("DueCount(3) = %d, want 3", n)
		}
	})

	// Nothing is due before the first deadline; limit 0 does nothing.
	run(t, m, step{index: 7, now: t0 + 99*ms, op: &fsmv1.ExpireDue{Limit: 10}})
	run(t, m, step{index: 8, now: at, op: &fsmv1.ExpireDue{Limit: 0}})
	if n := stored(); n != 6 {
		t.Fatalf("after ExpireDue before any deadline and with limit 0: KeyCount = %d, want 6", n)
	}

	// Limit 2 takes the two oldest deadlines: k2 (100ms), k3 (200ms).
	run(t, m, step{index: 9, now: at, op: &fsmv1.ExpireDue{Limit: 2}})
	if n := stored(); n != 4 {
		t.Fatalf("after ExpireDue(2): KeyCount = %d, want 4", n)
	}
	m.Read(at, func(v *fsm.View) {
		if d, ok := v.NextDeadline(); !ok || d != t0+300*ms {
			t.Errorf("NextDeadline = %d, %v; want k1's deadline %d", d, ok, t0+300*ms)
		}
	})

	// The rest that is due (k1, and k6 whose deadline is exactly now) goes; k4 stays.
	run(t, m, step{index: 10, now: at, op: &fsmv1.ExpireDue{Limit: 10}})
	if n := stored(); n != 2 {
		t.Fatalf("after ExpireDue(10): KeyCount = %d, want 2", n)
	}
	wantKeys("live keys", live(), "k4", "k5")
	wantKV(t, m, at, "k4", kv("k4", "v", 4, 4, 1, 9500))
	m.Read(at, func(v *fsm.View) {
		if d, ok := v.NextDeadline(); !ok || d != t0+10*s {
			t.Errorf("NextDeadline = %d, %v; want k4's deadline", d, ok)
		}
	})
}

// TestKV_ExpireDueFollowsTTLChanges checks that the deadline index tracks TTL changes: a
// persisted or overwritten key is not deleted at its old deadline, and an earlier now than
// the machine's clock still expires by the clock.
func TestKV_ExpireDueFollowsTTLChanges(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0, op: setTTL("persisted", "v", 100)},
		step{index: 2, now: t0, op: setTTL("extended", "v", 100)},
		step{index: 3, now: t0, op: setTTL("overwritten", "v", 100)},
		step{index: 4, now: t0, op: setTTL("due", "v", 100)},
		step{index: 5, now: t0, op: &conclavev1.ExpireRequest{Key: []byte("persisted"), Persist: true}},
		step{index: 6, now: t0, op: &conclavev1.ExpireRequest{Key: []byte("extended"), TtlMs: 5000}},
		step{index: 7, now: t0, op: set("overwritten", "w")},
		step{index: 8, now: t0 + s, op: nil}, // advances the clock only
		step{index: 9, now: t0, op: &fsmv1.ExpireDue{Limit: 100}},
	)
	if got := m.Clock(); got != t0+s {
		t.Fatalf("Clock = %d, want %d", got, t0+s)
	}
	var stored int
	m.Read(0, func(v *fsm.View) { stored = v.KeyCount() })
	if stored != 3 {
		t.Fatalf("KeyCount = %d, want 3 (only \"due\" deleted)\n%s", stored, dump(m, t0+s))
	}
	wantKV(t, m, t0+s, "due", nil)
	wantKV(t, m, t0+s, "persisted", kv("persisted", "v", 1, 5, 2, 0))
	wantKV(t, m, t0+s, "extended", kv("extended", "v", 2, 6, 2, 4000))
	wantKV(t, m, t0+s, "overwritten", kv("overwritten", "w", 3, 7, 2, 0))
}
