package fsm_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// fuzzIndex is the raft index the fuzzed command is applied at.
const fuzzIndex = 100

// fuzzBase is the machine every fuzzed command is applied to: a leader term, members,
// live keys with and without TTL, an integer, MaxInt64, an expired key not yet deleted,
// two remembered request ids ("r1" succeeded, "r2" failed), session 11 of owner "u1"
// with the key "s" attached, the rate-limit policy "api" (GCRA 5/s) and a limiter of
// each algorithm: "g" (by "api"), "sw", "fw" and "cc" (one slot, id 14<<16), made at
// index 14, and the sorted sets "z" (a 1, b 2, c 2, d +inf) and "za" (by arrival, TTL 500 ms).
func fuzzBase() *fsm.Machine {
	m := fsm.New()
	cmds := []*fsmv1.Command{
		cmd(t0, &fsmv1.LeaderStart{Term: 2, Member: &fsmv1.Member{Id: "n1", RaftAddress: "h1:7000", GrpcAddress: "h1:8000"}}),
		cmd(t0, &fsmv1.MemberPut{Member: &fsmv1.Member{Id: "n2", RaftAddress: "h2:7000", GrpcAddress: "h2:8000"}}),
		cmd(t0, set("a", "1")),
		cmd(t0, setTTL("b", "hello", 60_000)),
		cmd(t0, set("n", "41")),
		cmd(t0, set("big", "9223372036854775807")),
		cmd(t0, setTTL("old", "x", 1)),
		cmd(t0, incr("ctr", 1)),
		cmd(t0, &conclavev1.SetRequest{Key: []byte("a"), IfAbsent: true}),
		cmd(t0+s, nil),
		cmd(t0+s, &fsmv1.SessionCreate{Owner: "u1", TtlMs: 10_000, Attributes: []*fsmv1.Attribute{{Name: "app", Value: []byte("web")}}}),
		cmd(t0+s, &conclavev1.SetRequest{Key: []byte("s"), Value: []byte("1"), SessionId: 11}),
		cmd(t0+s, putPolicy(named(gcra(5, 1000, 0), "api"))),
		cmd(t0+s, check(byName("g", 2, "api"), inline("sw", 1, policy(algSliding, 3, 1000)),
			inline("fw", 1, policy(algFixed, 3, 1000)), inline("cc", 1, policy(algConcurrency, 2, 1000)))),
		cmd(t0+s, zadd("z", "a", 1, "b", 2, "c", 2, "d", math.Inf(1))),
		cmd(t0+s, with(zadd("za", "a", 1, "b", 1), func(r *conclavev1.AddRequest) { r.TieBreak = conclavev1.TieBreak_TIE_BREAK_ARRIVAL; r.TtlMs = 500 })),
	}
	cmds[7].RequestId = "r1"
	cmds[8].RequestId = "r2"
	for i, c := range cmds {
		m.ApplyCommand(uint64(i+1), c)
	}
	return m
}

// fuzzSeeds are commands worth starting from: every op kind, options aimed at the base
// machine's keys, retries of its request ids, and extreme times.
func fuzzSeeds() []*fsmv1.Command {
	withID := func(c *fsmv1.Command, id string) *fsmv1.Command { c.RequestId = id; return c }
	ifRev := proto.Uint64
	return []*fsmv1.Command{
		cmd(t0+2*s, nil),
		cmd(0, set("a", "2")),
		cmd(math.MaxInt64, set("a", "2")),
		cmd(t0+2*s, &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("2"), IfRevision: ifRev(3), ReturnPrevious: true}),
		cmd(t0+2*s, &conclavev1.SetRequest{Key: []byte("b"), Value: []byte("2"), KeepTtl: true, IfPresent: true}),
		cmd(t0+2*s, &conclavev1.SetRequest{Key: []byte("old"), IfAbsent: true, TtlMs: math.MaxInt64}),
		cmd(t0+2*s, &conclavev1.MultiSetRequest{Entries: []*conclavev1.KeyValueInput{{Key: []byte("a")}, {Key: []byte("")}}}),
		cmd(t0+2*s, &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a"), []byte("old"), []byte("zz")}, ReturnPrevious: true}),
		cmd(t0+2*s, &conclavev1.DeleteRequest{Keys: [][]byte{[]byte("a")}, IfRevision: ifRev(2)}),
		cmd(t0+2*s, incr("big", 1)),
		cmd(t0+2*s, incr("b", 1)),
		cmd(t0+2*s, &conclavev1.IncrementRequest{Key: []byte("n"), Delta: math.MinInt64, TtlMs: 5}),
		cmd(t0+2*s, &conclavev1.ExpireRequest{Key: []byte("b"), TtlMs: 10, Condition: conclavev1.ExpireCondition_EXPIRE_CONDITION_LT}),
		cmd(t0+2*s, &conclavev1.ExpireRequest{Key: []byte("a"), Persist: true, Condition: conclavev1.ExpireCondition_EXPIRE_CONDITION_GT}),
		cmd(t0+2*s, &conclavev1.ExpireRequest{Key: []byte("old"), TtlMs: 10}),
		cmd(t0+2*s, &conclavev1.ExpireRequest{Key: []byte("a"), TtlMs: 0}),
		cmd(t0+2*s, &conclavev1.TxnRequest{
			Compares: []*conclavev1.Compare{cmpValue("a", opEQ, "1"), cmpMod("n", opLT, 9), cmpExists("old", opEQ, false)},
			Success:  []*conclavev1.TxnOp{txnSet(set("x", "1")), txnIncr(incr("b", 1))},
			Failure:  []*conclavev1.TxnOp{txnDel(del("a", "b")), {}},
		}),
		cmd(t0+2*s, &conclavev1.TxnRequest{Compares: []*conclavev1.Compare{cmpExists("a", opGT, true)}}),
		cmd(t0+2*s, &conclavev1.TxnRequest{Compares: []*conclavev1.Compare{{Key: []byte("a"), Operator: opEQ}}}),
		cmd(t0+70*s, &fsmv1.ExpireDue{Limit: math.MaxUint32}),
		cmd(t0+2*s, &fsmv1.LeaderStart{Term: 9, Member: &fsmv1.Member{Id: "n3"}}),
		cmd(t0+2*s, &fsmv1.MemberPut{Member: &fsmv1.Member{GrpcAddress: "x"}}),
		cmd(t0+2*s, &fsmv1.MemberRemove{Id: "n1"}),
		withID(cmd(t0+2*s, incr("ctr", 1)), "r1"),
		withID(cmd(t0+2*s, set("a", "3")), "r2"),
		withID(cmd(t0+fsm.DedupWindow+s, incr("ctr", 1)), "r1"),
		withID(cmd(t0+2*s, set("", "3")), "r3"),
		cmd(t0+2*s, &fsmv1.SessionCreate{Owner: "u2", TtlMs: 1000, Attributes: []*fsmv1.Attribute{{Name: "a"}, {Name: "a"}}}),
		cmd(t0+2*s, &fsmv1.SessionRevoke{Id: 11}),
		cmd(t0+2*s, &fsmv1.SessionRevokeByOwner{Owner: "u1"}),
		cmd(t0+2*s, &fsmv1.SessionSetAttributes{Id: 11, Set: []*fsmv1.Attribute{{Name: "x"}}, Delete: []string{"app"}}),
		cmd(t0+2*s, &fsmv1.SessionExpire{Ids: []uint64{11, 12, 11}}),
		cmd(t0+2*s, &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("2"), SessionId: 11}),
		cmd(t0+2*s, incr("s", 1)),
		cmd(t0+s+10*ms, check(byName("g", 3, "api"), byName("new", 1, "api"))),
		cmd(t0+s+10*ms, check(byName("g", 4, "api"), inline("sw", 1, policy(algSliding, 3, 1000)))),
		cmd(t0+s+10*ms, &conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{byName("g", 4, "api"), inline("fw", 2, policy(algFixed, 3, 1000))}, Partial: true}),
		cmd(t0+s+10*ms, check(inline("cc", 2, policy(algConcurrency, 2, 1000)), inline("sw", 1, shadowed(policy(algSliding, 1, 1000))))),
		cmd(t0+s+10*ms, check(byName("x", 1, "missing"))),
		cmd(t0+s+10*ms, check(inline("g", math.MaxUint64, gcra(1, 1, 0)), inline("g", 1, gcra(1, 1, 0)))),
		cmd(math.MaxInt64, check(byName("g", 1, "api"), inline("sw", 1, policy(algSliding, 3, 1000)),
			inline("fw", 1, policy(algFixed, 3, fsm.MaxPolicyPeriodMs)), inline("cc", 1, policy(algConcurrency, 2, 1000)))),
		cmd(t0+s+10*ms, &conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{
			{Key: "cc", Limit: &conclavev1.RateLimitKey_Inline{Inline: policy(algConcurrency, 2, 1000)}, Slots: []uint64{14 << 16, 7}},
			byName("g", math.MaxUint64, "api"), inline("sw", 1, policy(algSliding, 3, 1000))}}),
		cmd(t0+s+10*ms, putPolicy(named(policy(algSliding, 1, 10), "api"))),
		cmd(t0+s+10*ms, putPolicy(named(gcra(math.MaxUint64, 1, 0), "bad"))),
		cmd(t0+s+10*ms, &conclavev1.DeletePolicyRequest{Name: "api"}),
		cmd(t0+5*s, &fsmv1.ExpireDue{Limit: 2}),
		cmd(t0+2*s, with(zadd("z", "a", 5, "e", 0), func(r *conclavev1.AddRequest) { r.OnlyGreater = true })),
		cmd(t0+2*s, with(zadd("z", "d", math.Inf(-1)), func(r *conclavev1.AddRequest) { r.Increment = true })),
		cmd(t0+2*s, zadd("a", "x", 1)),
		cmd(t0+2*s, zincr("za", "b", 1)),
		cmd(t0+2*s, &conclavev1.SortedSetServiceRemoveRequest{Key: []byte("z"), Members: []string{"a", "zz"}}),
		cmd(t0+2*s, &conclavev1.RemoveRangeRequest{Key: []byte("z"), Interval: &conclavev1.RemoveRangeRequest_Lex{Lex: lexIv(lexExcl("a"), nil)}}),
		cmd(t0+2*s, &conclavev1.RemoveRangeRequest{Key: []byte("z"), Interval: &conclavev1.RemoveRangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: -2, Stop: -1}}}),
		cmd(t0+2*s, &fsmv1.ZsetPop{Key: []byte("z"), Count: 3, Max: true}),
		cmd(t0+2*s, &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION, Destination: []byte("a"), Keys: [][]byte{[]byte("z"), []byte("za"), []byte("none")}, Weights: []float64{0, 2, 1}}),
		cmd(t0+2*s, &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_INTERSECT, Destination: []byte("z"), Keys: [][]byte{[]byte("z"), []byte("b")}}),
		cmd(t0+2*s, with(zadd("n7", "a", 1), func(r *conclavev1.AddRequest) { r.TieBreak = 7 })),
		cmd(t0+2*s, &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION, Destination: []byte("d"), Keys: [][]byte{[]byte("z")}, Aggregate: 9, TieBreak: -2}),
	}
}

// FuzzApply applies an arbitrary Command to the base machine. It must not panic (no
// unknown op is reachable from valid protobuf); two machines must agree on the result and
// the snapshot; Snapshot→Restore→Snapshot must be the identity; a failed or retried
// command must leave the visible state as it was; and what is stored stays well formed.
func FuzzApply(f *testing.F) {
	for _, c := range fuzzSeeds() {
		data, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	base := snapshotBytes(f, fuzzBase())
	load := func(t *testing.T) *fsm.Machine {
		m := fsm.New()
		if err := m.Restore(bytes.NewReader(base)); err != nil {
			t.Fatal(err)
		}
		return m
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		c := &fsmv1.Command{}
		if proto.Unmarshal(data, c) != nil {
			return // not a command; Apply panics on it by design
		}
		m, twin, before := load(t), load(t), load(t)

		res := m.Apply(fuzzIndex, data)
		if res == nil {
			t.Fatal("Apply returned nil")
		}
		if m.AppliedIndex() != fuzzIndex {
			t.Fatalf("AppliedIndex = %d, want %d", m.AppliedIndex(), fuzzIndex)
		}
		retried := res.GetIndex() != fuzzIndex
		if retried && c.GetRequestId() != "r1" && c.GetRequestId() != "r2" {
			t.Fatalf("Result.Index = %d for a new request id %q", res.GetIndex(), c.GetRequestId())
		}
		if res.GetError() != nil {
			if res.GetValue() != nil {
				t.Fatalf("failed result carries a value: %v", res)
			}
			err := fsm.ErrorFromProto(res.GetError())
			if res.GetError().GetCode() == fsmv1.ErrorCode_ERROR_CODE_UNSPECIFIED || !errors.Is(err, sentinelOf(err)) {
				t.Fatalf("error %v has no sentinel", err)
			}
		}

		// Determinism: the decoded command on another machine gives the same result and bytes.
		if res2 := twin.ApplyCommand(fuzzIndex, c); !proto.Equal(res, res2) {
			t.Fatalf("replicas returned\n%v\nand\n%v", res, res2)
		}
		snap := snapshotBytes(t, m)
		if !bytes.Equal(snap, snapshotBytes(t, twin)) {
			t.Fatal("replicas' snapshots differ")
		}
		if again := snapshotBytes(t, restored(t, m)); !bytes.Equal(again, snap) {
			t.Fatal("Snapshot→Restore→Snapshot is not the identity")
		}

		at := m.Clock()
		if retried || res.GetError() != nil {
			if got, want := dump(m, at), dump(before, at); got != want {
				t.Fatalf("failed or retried command (%v) changed state\nbefore:\n%s\nafter:\n%s", res, want, got)
			}
		}
		m.Read(at, func(v *fsm.View) {
			kvs, _ := v.Scan(nil, nil, -1, false)
			for _, e := range kvs {
				if len(e.GetKey()) == 0 || e.GetCreateRevision() == 0 || e.GetCreateRevision() > e.GetModRevision() ||
					e.GetModRevision() > fuzzIndex || e.GetVersion() < 1 || e.GetTtlMs() < 0 {
					t.Fatalf("malformed entry %v", e)
				}
				if ttl, found := v.TTL(e.GetKey()); !found || ttl == 0 || ttl < -1 {
					t.Fatalf("TTL(%q) = %d, %v for a live key", e.GetKey(), ttl, found)
				}
			}
			limiters, more := v.Limiters("", "", -1)
			if more || len(limiters) > v.LimiterCount() {
				t.Fatalf("Limiters lists %d (more %v), LimiterCount = %d", len(limiters), more, v.LimiterCount())
			}
			for _, l := range limiters {
				p := l.GetPolicy()
				if l.GetKey() == "" || l.GetExpiresAtUnixNano() <= at || fsm.ValidatePolicy(p) != nil {
					t.Fatalf("malformed limiter %v", l)
				}
				// A Peek of the limiter under its own policy reads its state.
				peek, err := v.PeekRateLimit(&conclavev1.PeekRequest{Keys: []*conclavev1.RateLimitKey{inline(l.GetKey(), 1, p)}})
				if err != nil || peek.GetVerdicts()[0].GetLimit() != p.GetLimit() || peek.GetVerdicts()[0].GetResetAfterMs() <= 0 {
					t.Fatalf("Peek of limiter %v: %v, %v", l, peek, err)
				}
			}
			sessions, more := v.SessionsByOwner("", 0, -1)
			if more || len(sessions) != v.SessionCount() {
				t.Fatalf("SessionsByOwner lists %d sessions (more %v), SessionCount = %d", len(sessions), more, v.SessionCount())
			}
			for _, ss := range sessions {
				if ss.GetTtlMs() <= 0 || ss.GetMaxLifetimeMs() < 0 || ss.GetAttributesRevision() < ss.GetId() {
					t.Fatalf("malformed session %v", ss)
				}
				for i, a := range ss.GetAttributes() {
					if a.GetName() == "" || (i > 0 && ss.GetAttributes()[i-1].GetName() >= a.GetName()) {
						t.Fatalf("session %d attributes not sorted, distinct and named: %v", ss.GetId(), ss.GetAttributes())
					}
				}
			}
		})
	})
}

func sentinelOf(err error) error {
	for _, s := range []error{fsm.ErrInvalidArgument, fsm.ErrNotFound, fsm.ErrAlreadyExists, fsm.ErrConditionFailed, fsm.ErrWrongType, fsm.ErrOutOfRange, fsm.ErrAborted, fsm.ErrLockHeld} {
		if errors.Is(err, s) {
			return s
		}
	}
	return errors.New("none")
}

// FuzzRestore hands arbitrary bytes to Restore: it must not panic; a rejected snapshot
// is ErrBadSnapshot and leaves the machine as it was; an accepted one leaves a machine
// that snapshots, restores and applies normally.
func FuzzRestore(f *testing.F) {
	base := fuzzBase()
	good := snapshotBytes(f, base)
	f.Add(good)
	f.Add(snapshotBytes(f, fsm.New()))
	f.Add([]byte("CNCLSNAP"))
	f.Add(good[:len(good)/2])

	f.Fuzz(func(t *testing.T, data []byte) {
		m := fsm.New()
		if err := m.Restore(bytes.NewReader(good)); err != nil {
			t.Fatal(err)
		}
		if err := m.Restore(bytes.NewReader(data)); err != nil {
			if !errors.Is(err, fsm.ErrBadSnapshot) {
				t.Fatalf("Restore error %v is not ErrBadSnapshot", err)
			}
			if !bytes.Equal(snapshotBytes(t, m), good) {
				t.Fatal("failed Restore changed the machine")
			}
			return
		}
		snap := snapshotBytes(t, m)
		if again := snapshotBytes(t, restored(t, m)); !bytes.Equal(again, snap) {
			t.Fatal("Snapshot→Restore→Snapshot is not the identity after an accepted Restore")
		}
		next := m.AppliedIndex() + 1
		for i, c := range fuzzSeeds() {
			m.ApplyCommand(next+uint64(i), c)
		}
		snapshotBytes(t, m)
	})
}
