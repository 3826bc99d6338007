package fsm_test

import (
	"bytes"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// attrs builds attributes from name, value pairs, in the order given.
func attrs(pairs ...string) []*fsmv1.Attribute {
	var out []*fsmv1.Attribute
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &fsmv1.Attribute{Name: pairs[i], Value: []byte(pairs[i+1])})
	}
	return out
}

func create(owner string, ttlMs int64, pairs ...string) *fsmv1.SessionCreate {
	return &fsmv1.SessionCreate{Owner: owner, TtlMs: ttlMs, Attributes: attrs(pairs...)}
}

func revoke(id uint64) *fsmv1.SessionRevoke { return &fsmv1.SessionRevoke{Id: id} }

func setIn(key, value string, session uint64) *conclavev1.SetRequest {
	return &conclavev1.SetRequest{Key: []byte(key), Value: []byte(value), SessionId: session}
}

// sessionOf reads session id; ok is false when it does not exist.
func sessionOf(m *fsm.Machine, id uint64) (rec *fsmv1.SessionRecord, keys []string, ok bool) {
	m.Read(m.Clock(), func(v *fsm.View) {
		rec, keys, ok = v.Session(id)
		rec = proto.CloneOf(rec)
	})
	return rec, keys, ok
}

func wantKeys(t *testing.T, m *fsm.Machine, id uint64, want ...string) {
	t.Helper()
	_, got, ok := sessionOf(m, id)
	if !ok {
		t.Fatalf("session %d does not exist", id)
	}
	if !slices.Equal(got, want) {
		t.Errorf("session %d keys = %q, want %q", id, got, want)
	}
}

func wantNoSession(t *testing.T, m *fsm.Machine, id uint64) {
	t.Helper()
	if rec, keys, ok := sessionOf(m, id); ok {
		t.Errorf("session %d still exists: %v keys %q", id, rec, keys)
	}
}

func wantSessionResult(t *testing.T, res *fsmv1.Result, want *fsmv1.SessionResult) {
	t.Helper()
	wantProto(t, "SessionResult", res.GetSession(), want)
}

// sessCase applies steps to a fresh machine (checking that failing steps change nothing),
// then checks the machine and the last result.
type sessCase struct {
	name  string
	steps []step
	check func(t *testing.T, m *fsm.Machine, res *fsmv1.Result)
}

func runSessCases(t *testing.T, cases []sessCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := fsm.New()
			res := run(t, m, tc.steps...)
			if tc.check != nil {
				tc.check(t, m, res)
			}
		})
	}
}

func TestSession_Create(t *testing.T) {
	inv := fsm.ErrInvalidArgument
	runSessCases(t, []sessCase{
		{
			name: "id is the raft index and the record is stored",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 7, now: t0 + s, op: &fsmv1.SessionCreate{Owner: "u1", TtlMs: 10_000, MaxLifetimeMs: 60_000,
					Attributes: attrs("zone", "eu", "app", "web", "b", "")}},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{Id: 7})
				rec, keys, ok := sessionOf(m, 7)
				if !ok {
					t.Fatal("session 7 missing")
				}
				wantProto(t, "Session(7)", rec, &fsmv1.SessionRecord{Id: 7, Owner: "u1", TtlMs: 10_000,
					CreatedAtUnixNano: t0 + s, MaxLifetimeMs: 60_000,
					Attributes: attrs("app", "web", "b", "", "zone", "eu"), AttributesRevision: 7})
				if len(keys) != 0 {
					t.Errorf("keys = %q, want none", keys)
				}
				m.Read(m.Clock(), func(v *fsm.View) {
					if n := v.SessionCount(); n != 1 {
						t.Errorf("SessionCount = %d, want 1", n)
					}
				})
			},
		},
		{
			name: "an earlier command time uses the machine clock",
			steps: []step{
				{index: 1, now: t0 + 5*s, op: nil},
				{index: 2, now: t0, op: create("u1", 1000)},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				rec, _, _ := sessionOf(m, 2)
				if got := rec.GetCreatedAtUnixNano(); got != t0+5*s {
					t.Errorf("created_at = %d, want %d", got, t0+5*s)
				}
			},
		},
		{
			name: "invalid creates change nothing",
			steps: []step{
				{index: 1, now: t0, op: create("u1", 1000, "a", "1")},
				{index: 2, now: t0, op: create("u1", 0), err: inv},
				{index: 3, now: t0, op: create("u1", -5), err: inv},
				{index: 4, now: t0, op: create("u1", math.MinInt64), err: inv},
				{index: 5, now: t0, op: &fsmv1.SessionCreate{Owner: "u1", TtlMs: 1000, MaxLifetimeMs: -1}, err: inv},
				{index: 6, now: t0, op: create("u1", 1000, "a", "1", "a", "2"), err: inv},
				{index: 7, now: t0, op: create("u1", 1000, "", "x"), err: inv},
				{index: 8, now: t0, op: &fsmv1.SessionCreate{Owner: "u1", TtlMs: 1000, Attributes: []*fsmv1.Attribute{nil}}, err: inv},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				m.Read(m.Clock(), func(v *fsm.View) {
					if n := v.SessionCount(); n != 1 {
						t.Errorf("SessionCount = %d, want 1", n)
					}
				})
				for id := uint64(2); id <= 8; id++ {
					wantNoSession(t, m, id)
				}
			},
		},
	})
}

func TestSession_SetAttached(t *testing.T) {
	runSessCases(t, []sessCase{
		{
			name: "missing session is NotFound",
			steps: []step{
				{index: 1, now: t0, op: set("a", "1")},
				{index: 2, now: t0, op: create("u1", 1000)},
				{index: 3, now: t0, op: setIn("a", "2", 99), err: fsm.ErrNotFound},
				{index: 4, now: t0, op: setIn("b", "2", 1), err: fsm.ErrNotFound}, // index of a Set, not a session
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantKV(t, m, t0, "a", kv("a", "1", 1, 1, 1, 0))
				wantKeys(t, m, 2)
			},
		},
		{
			name: "set with a live session attaches",
			steps: []step{
				{index: 1, now: t0, op: create("u1", 1000)},
				{index: 2, now: t0, op: setIn("b", "1", 1)},
				{index: 3, now: t0, op: setIn("a", "1", 1)},
				{index: 4, now: t0, op: set("c", "1")},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantKeys(t, m, 1, "a", "b")
				wantKV(t, m, t0, "a", kv("a", "1", 3, 3, 1, 0))
			},
		},
		{
			name: "a plain set detaches",
			steps: []step{
				{index: 1, now: t0, op: create("u1", 1000)},
				{index: 2, now: t0, op: setIn("a", "1", 1)},
				{index: 3, now: t0, op: set("a", "2")},
				{index: 4, now: t0, op: revoke(1)},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{Id: 1, Ended: 1})
				wantKV(t, m, t0, "a", kv("a", "2", 2, 3, 2, 0))
			},
		},
		{
			name: "set with another session moves the key",
			steps: []step{
				{index: 1, now: t0, op: create("u1", 1000)},
				{index: 2, now: t0, op: create("u2", 1000)},
				{index: 3, now: t0, op: setIn("a", "1", 1)},
				{index: 4, now: t0, op: setIn("a", "2", 2)},
				{index: 5, now: t0, op: revoke(1)},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{Id: 1, Ended: 1})
				wantKV(t, m, t0, "a", kv("a", "2", 3, 4, 2, 0))
				wantKeys(t, m, 2, "a")
				if r := run(t, m, step{index: 6, now: t0, op: revoke(2)}); r.GetSession().GetKeysDeleted() != 1 {
					t.Errorf("revoke(2) = %v, want 1 key deleted", r)
				}
				wantKV(t, m, t0, "a", nil)
			},
		},
		{
			name: "increment and expire keep the attachment",
			steps: []step{
				{index: 1, now: t0, op: create("u1", 1000)},
				{index: 2, now: t0, op: setIn("n", "1", 1)},
				{index: 3, now: t0, op: incr("n", 2)},
				{index: 4, now: t0, op: setIn("e", "x", 1)},
				{index: 5, now: t0, op: &conclavev1.ExpireRequest{Key: []byte("e"), TtlMs: 60_000}},
				{index: 6, now: t0, op: &conclavev1.ExpireRequest{Key: []byte("e"), Persist: true}},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantKeys(t, m, 1, "e", "n")
				wantKV(t, m, t0, "n", kv("n", "3", 2, 3, 2, 0))
				r := run(t, m, step{index: 7, now: t0, op: revoke(1)})
				wantSessionResult(t, r, &fsmv1.SessionResult{Id: 1, Ended: 1, KeysDeleted: 2})
				wantKV(t, m, t0, "n", nil)
				wantKV(t, m, t0, "e", nil)
			},
		},
		{
			name: "a txn set attaches; a failing txn attaches nothing",
			steps: []step{
				{index: 1, now: t0, op: create("u1", 1000)},
				{index: 2, now: t0, op: &conclavev1.TxnRequest{Success: []*conclavev1.TxnOp{txnSet(setIn("t", "1", 1))}}},
				{index: 3, now: t0, op: &conclavev1.TxnRequest{Success: []*conclavev1.TxnOp{
					txnSet(setIn("u", "1", 1)), txnSet(setIn("w", "1", 42))}}, err: fsm.ErrNotFound},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantKeys(t, m, 1, "t")
			},
		},
		{
			name: "an expired attached key rewritten without a session is detached",
			steps: []step{
				{index: 1, now: t0, op: create("u1", 1000)},
				{index: 2, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("1"), TtlMs: 10, SessionId: 1}},
				{index: 3, now: t0 + s, op: incr("a", 5)},
			},
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantKeys(t, m, 1)
				wantKV(t, m, t0+s, "a", kv("a", "5", 3, 3, 1, 0))
			},
		},
	})
}

func TestSession_Revoke(t *testing.T) {
	base := []step{
		{index: 1, now: t0, op: create("u1", 1000)},
		{index: 2, now: t0, op: create("u1", 1000)},
		{index: 3, now: t0, op: setIn("a", "1", 1)},
		{index: 4, now: t0, op: setIn("b", "1", 1)},
		{index: 5, now: t0, op: &conclavev1.SetRequest{Key: []byte("gone"), Value: []byte("x"), TtlMs: 10, SessionId: 1}},
		{index: 6, now: t0, op: setIn("c", "1", 2)},
		{index: 7, now: t0, op: set("d", "1")},
	}
	with := func(more ...step) []step { return append(slices.Clone(base), more...) }
	runSessCases(t, []sessCase{
		{
			name:  "deletes attached keys, counting live ones",
			steps: with(step{index: 8, now: t0 + s, op: revoke(1)}),
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{Id: 1, Ended: 1, KeysDeleted: 2})
				wantNoSession(t, m, 1)
				for _, k := range []string{"a", "b", "gone"} {
					wantKV(t, m, t0+s, k, nil)
				}
				wantKV(t, m, t0+s, "c", kv("c", "1", 6, 6, 1, 0))
				wantKV(t, m, t0+s, "d", kv("d", "1", 7, 7, 1, 0))
				wantKeys(t, m, 2, "c")
				m.Read(t0+s, func(v *fsm.View) {
					if n := v.KeyCount(); n != 2 {
						t.Errorf("KeyCount = %d, want 2 (the expired attached key is deleted too)", n)
					}
					if _, ok := v.NextDeadline(); ok {
						t.Error("a deadline of a deleted key remains")
					}
				})
			},
		},
		{
			name:  "missing session is NotFound",
			steps: with(step{index: 8, now: t0, op: revoke(99), err: fsm.ErrNotFound}),
		},
		{
			name: "revoking twice",
			steps: with(
				step{index: 8, now: t0, op: revoke(2)},
				step{index: 9, now: t0, op: revoke(2), err: fsm.ErrNotFound},
			),
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantKV(t, m, t0, "c", nil)
				wantKeys(t, m, 1, "a", "b", "gone")
			},
		},
	})
}

func TestSession_RevokeByOwner(t *testing.T) {
	base := []step{
		{index: 1, now: t0, op: create("u1", 1000)},
		{index: 2, now: t0, op: create("u", 1000)},
		{index: 3, now: t0, op: create("u1", 1000)},
		{index: 4, now: t0, op: create("u10", 1000)},
		{index: 5, now: t0, op: setIn("a", "1", 1)},
		{index: 6, now: t0, op: setIn("b", "1", 3)},
		{index: 7, now: t0, op: setIn("c", "1", 3)},
		{index: 8, now: t0, op: setIn("d", "1", 2)},
		{index: 9, now: t0, op: setIn("e", "1", 4)},
	}
	with := func(more ...step) []step { return append(slices.Clone(base), more...) }
	runSessCases(t, []sessCase{
		{
			name:  "ends only that owner's sessions",
			steps: with(step{index: 10, now: t0, op: &fsmv1.SessionRevokeByOwner{Owner: "u1"}}),
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{Ended: 2, KeysDeleted: 3})
				wantNoSession(t, m, 1)
				wantNoSession(t, m, 3)
				wantKeys(t, m, 2, "d")
				wantKeys(t, m, 4, "e")
				for _, k := range []string{"a", "b", "c"} {
					wantKV(t, m, t0, k, nil)
				}
				wantKV(t, m, t0, "d", kv("d", "1", 8, 8, 1, 0))
			},
		},
		{
			name:  "an owner without sessions ends nothing",
			steps: with(step{index: 10, now: t0, op: &fsmv1.SessionRevokeByOwner{Owner: "u2"}}),
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{})
				m.Read(t0, func(v *fsm.View) {
					if n := v.SessionCount(); n != 4 {
						t.Errorf("SessionCount = %d, want 4", n)
					}
				})
			},
		},
	})
}

func TestSession_Expire(t *testing.T) {
	base := []step{
		{index: 1, now: t0, op: create("u1", 1000)},
		{index: 2, now: t0, op: create("u2", 1000)},
		{index: 3, now: t0, op: create("u3", 1000)},
		{index: 4, now: t0, op: setIn("a", "1", 1)},
		{index: 5, now: t0, op: setIn("b", "1", 2)},
		{index: 6, now: t0, op: setIn("c", "1", 3)},
		{index: 7, now: t0, op: setIn("d", "1", 3)},
	}
	with := func(more ...step) []step { return append(slices.Clone(base), more...) }
	runSessCases(t, []sessCase{
		{
			name:  "ends listed sessions, skips missing ones",
			steps: with(step{index: 8, now: t0, op: &fsmv1.SessionExpire{Ids: []uint64{3, 99, 1, 3, 4}}}),
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{Ended: 2, KeysDeleted: 3})
				wantNoSession(t, m, 1)
				wantNoSession(t, m, 3)
				wantKeys(t, m, 2, "b")
				for _, k := range []string{"a", "c", "d"} {
					wantKV(t, m, t0, k, nil)
				}
			},
		},
		{
			name:  "no ids",
			steps: with(step{index: 8, now: t0, op: &fsmv1.SessionExpire{}}),
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{})
				wantKeys(t, m, 1, "a")
			},
		},
	})
}

func TestSession_SetAttributes(t *testing.T) {
	inv := fsm.ErrInvalidArgument
	base := []step{{index: 1, now: t0, op: create("u1", 1000, "b", "2", "a", "1", "d", "4")}}
	with := func(more ...step) []step { return append(slices.Clone(base), more...) }
	wantAttrs := func(want []*fsmv1.Attribute, rev uint64) func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
		return func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
			rec, _, _ := sessionOf(m, 1)
			wantProto(t, "attributes", &fsmv1.SessionRecord{Attributes: rec.GetAttributes()}, &fsmv1.SessionRecord{Attributes: want})
			if rec.GetAttributesRevision() != rev {
				t.Errorf("attributes_revision = %d, want %d", rec.GetAttributesRevision(), rev)
			}
		}
	}
	runSessCases(t, []sessCase{
		{
			name: "set and delete atomically",
			steps: with(step{index: 5, now: t0, op: &fsmv1.SessionSetAttributes{Id: 1,
				Set: attrs("c", "3", "a", "new"), Delete: []string{"b", "zz"}}}),
			check: func(t *testing.T, m *fsm.Machine, res *fsmv1.Result) {
				wantSessionResult(t, res, &fsmv1.SessionResult{Id: 1})
				wantAttrs(attrs("a", "new", "c", "3", "d", "4"), 5)(t, m, res)
				rec, _, _ := sessionOf(m, 1)
				if rec.GetOwner() != "u1" || rec.GetTtlMs() != 1000 || rec.GetCreatedAtUnixNano() != t0 {
					t.Errorf("SetAttributes changed the rest of the record: %v", rec)
				}
			},
		},
		{
			name:  "set and delete of the same name is rejected",
			steps: with(step{index: 5, now: t0, op: &fsmv1.SessionSetAttributes{Id: 1, Set: attrs("c", "3", "a", "x"), Delete: []string{"a"}}, err: inv}),
			check: wantAttrs(attrs("a", "1", "b", "2", "d", "4"), 1),
		},
		{
			name:  "duplicate or empty names are rejected",
			steps: with(step{index: 5, now: t0, op: &fsmv1.SessionSetAttributes{Id: 1, Set: attrs("c", "3", "c", "4")}, err: inv}, step{index: 6, now: t0, op: &fsmv1.SessionSetAttributes{Id: 1, Set: attrs("", "3")}, err: inv}),
			check: wantAttrs(attrs("a", "1", "b", "2", "d", "4"), 1),
		},
		{
			name:  "missing session is NotFound",
			steps: with(step{index: 5, now: t0, op: &fsmv1.SessionSetAttributes{Id: 2, Set: attrs("c", "3")}, err: fsm.ErrNotFound}),
		},
		{
			name:  "an empty change still bumps the revision",
			steps: with(step{index: 5, now: t0, op: &fsmv1.SessionSetAttributes{Id: 1}}),
			check: wantAttrs(attrs("a", "1", "b", "2", "d", "4"), 5),
		},
	})
}

func TestSession_SessionsByOwner(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 2, now: t0, op: create("u1", 1000)},
		step{index: 3, now: t0, op: create("u2", 1000)},
		step{index: 5, now: t0, op: create("u1", 1000)},
		step{index: 7, now: t0, op: create("u2", 1000)},
		step{index: 9, now: t0, op: create("u1", 1000)},
		step{index: 10, now: t0, op: create("u10", 1000)},
	)
	cases := []struct {
		owner string
		after uint64
		limit int
		want  []uint64
		more  bool
	}{
		{"u1", 0, 2, []uint64{2, 5}, true},
		{"u1", 5, 2, []uint64{9}, false},
		{"u1", 0, 3, []uint64{2, 5, 9}, false},
		{"u1", 9, 2, nil, false},
		{"u1", 3, -1, []uint64{5, 9}, false},
		{"u2", 0, -1, []uint64{3, 7}, false},
		{"u10", 0, 1, []uint64{10}, false},
		{"zz", 0, 10, nil, false},
		{"", 0, 3, []uint64{2, 3, 5}, true},
		{"", 5, 3, []uint64{7, 9, 10}, false},
		{"", 4, 1, []uint64{5}, true},
		{"", 10, 3, nil, false},
		{"", 0, 0, nil, true},
	}
	for _, tc := range cases {
		var got []uint64
		var more bool
		m.Read(t0, func(v *fsm.View) {
			recs, mo := v.SessionsByOwner(tc.owner, tc.after, tc.limit)
			for _, r := range recs {
				if tc.owner != "" && r.GetOwner() != tc.owner {
					t.Errorf("SessionsByOwner(%q) returned session %d of %q", tc.owner, r.GetId(), r.GetOwner())
				}
				got = append(got, r.GetId())
			}
			more = mo
		})
		if !slices.Equal(got, tc.want) || more != tc.more {
			t.Errorf("SessionsByOwner(%q, %d, %d) = %v, %v; want %v, %v", tc.owner, tc.after, tc.limit, got, more, tc.want, tc.more)
		}
	}
}

// TestSession_SessionsByOwnerAfterMax pages past the largest id: nothing may come back.
func TestSession_SessionsByOwnerAfterMax(t *testing.T) {
	m := fsm.New()
	run(t, m, step{index: 2, now: t0, op: create("u1", 1000)})
	for _, owner := range []string{"", "u1"} {
		m.Read(t0, func(v *fsm.View) {
			if recs, more := v.SessionsByOwner(owner, math.MaxUint64, 10); len(recs) != 0 || more {
				t.Errorf("SessionsByOwner(%q, MaxUint64, 10) = %v, %v; want none", owner, recs, more)
			}
		})
	}
}

// TestSession_SnapshotRestore: sessions, their attributes and attached keys survive
// Snapshot→Restore byte for byte, and the restored machine's derived indexes work:
// revoking a session deletes its keys and RevokeByOwner finds its sessions.
func TestSession_SnapshotRestore(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0, op: create("u1", 1000, "b", "2", "a", "1")},
		step{index: 2, now: t0, op: &fsmv1.SessionCreate{Owner: "u2", TtlMs: 5000, MaxLifetimeMs: 9000}},
		step{index: 3, now: t0, op: create("u1", 2000)},
		step{index: 4, now: t0, op: setIn("a", "1", 1)},
		step{index: 5, now: t0, op: &conclavev1.SetRequest{Key: []byte("b"), Value: []byte("2"), TtlMs: 60_000, SessionId: 1}},
		step{index: 6, now: t0, op: setIn("c", "3", 2)},
		step{index: 7, now: t0, op: setIn("d", "4", 3)},
		step{index: 8, now: t0, op: set("plain", "p")},
		step{index: 9, now: t0, op: &fsmv1.SessionSetAttributes{Id: 2, Set: attrs("x", "y")}},
	)
	snap := snapshotBytes(t, m)
	r := restored(t, m)
	if again := snapshotBytes(t, r); !bytes.Equal(again, snap) {
		t.Fatal("Snapshot→Restore→Snapshot is not the identity")
	}
	if got, want := dump(r, m.Clock()), dump(m, m.Clock()); got != want {
		t.Fatalf("restored machine reads\n%s\nwant\n%s", got, want)
	}
	for _, mm := range []*fsm.Machine{m, r} {
		res := run(t, mm, step{index: 10, now: t0 + s, op: revoke(1)})
		wantSessionResult(t, res, &fsmv1.SessionResult{Id: 1, Ended: 1, KeysDeleted: 2})
		res = run(t, mm, step{index: 11, now: t0 + s, op: &fsmv1.SessionRevokeByOwner{Owner: "u1"}})
		wantSessionResult(t, res, &fsmv1.SessionResult{Ended: 1, KeysDeleted: 1})
		for _, k := range []string{"a", "b", "d"} {
			wantKV(t, mm, t0+s, k, nil)
		}
		wantKeys(t, mm, 2, "c")
		wantKV(t, mm, t0+s, "plain", kv("plain", "p", 8, 8, 1, 0))
	}
	if !bytes.Equal(snapshotBytes(t, m), snapshotBytes(t, r)) {
		t.Fatal("original and restored machines diverged after the same revokes")
	}
}
