package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Times used by the tests: a realistic wall-clock origin and a millisecond.
const (
	t0 int64 = 1_700_000_000_000_000_000
	ms int64 = 1_000_000
	s  int64 = 1000 * ms
)

// cmd wraps one operation in a Command stamped with now. op is a request message from
// conclave.v1 or conclave.fsm.v1; nil gives an empty command.
func cmd(now int64, op proto.Message) *fsmv1.Command {
	c := &fsmv1.Command{NowUnixNano: now}
	switch o := op.(type) {
	case nil:
	case *conclavev1.SetRequest:
		c.Op = &fsmv1.Command_Set{Set: o}
	case *conclavev1.MultiSetRequest:
		c.Op = &fsmv1.Command_MultiSet{MultiSet: o}
	case *conclavev1.DeleteRequest:
		c.Op = &fsmv1.Command_Delete{Delete: o}
	case *conclavev1.IncrementRequest:
		c.Op = &fsmv1.Command_Increment{Increment: o}
	case *conclavev1.ExpireRequest:
		c.Op = &fsmv1.Command_Expire{Expire: o}
	case *conclavev1.TxnRequest:
		c.Op = &fsmv1.Command_Txn{Txn: o}
	case *fsmv1.ExpireDue:
		c.Op = &fsmv1.Command_ExpireDue{ExpireDue: o}
	case *fsmv1.LeaderStart:
		c.Op = &fsmv1.Command_LeaderStart{LeaderStart: o}
	case *fsmv1.MemberPut:
		c.Op = &fsmv1.Command_MemberPut{MemberPut: o}
	case *fsmv1.MemberRemove:
		c.Op = &fsmv1.Command_MemberRemove{MemberRemove: o}
	case *fsmv1.SessionCreate:
		c.Op = &fsmv1.Command_SessionCreate{SessionCreate: o}
	case *fsmv1.SessionRevoke:
		c.Op = &fsmv1.Command_SessionRevoke{SessionRevoke: o}
	case *fsmv1.SessionRevokeByOwner:
		c.Op = &fsmv1.Command_SessionRevokeByOwner{SessionRevokeByOwner: o}
	case *fsmv1.SessionSetAttributes:
		c.Op = &fsmv1.Command_SessionSetAttributes{SessionSetAttributes: o}
	case *fsmv1.SessionExpire:
		c.Op = &fsmv1.Command_SessionExpire{SessionExpire: o}
	case *fsmv1.LockAcquire:
		c.Op = &fsmv1.Command_LockAcquire{LockAcquire: o}
	case *fsmv1.LockRelease:
		c.Op = &fsmv1.Command_LockRelease{LockRelease: o}
	case *fsmv1.LockCancel:
		c.Op = &fsmv1.Command_LockCancel{LockCancel: o}
	case *fsmv1.LockProclaim:
		c.Op = &fsmv1.Command_LockProclaim{LockProclaim: o}
	case *conclavev1.CheckRequest:
		c.Op = &fsmv1.Command_RateLimitCheck{RateLimitCheck: o}
	case *conclavev1.RefundRequest:
		c.Op = &fsmv1.Command_RateLimitRefund{RateLimitRefund: o}
	case *conclavev1.PutPolicyRequest:
		c.Op = &fsmv1.Command_PolicyPut{PolicyPut: o}
	case *conclavev1.DeletePolicyRequest:
		c.Op = &fsmv1.Command_PolicyDelete{PolicyDelete: o}
	case *conclavev1.AddRequest:
		c.Op = &fsmv1.Command_ZsetAdd{ZsetAdd: o}
	case *conclavev1.IncrementScoreRequest:
		c.Op = &fsmv1.Command_ZsetIncrement{ZsetIncrement: o}
	case *conclavev1.SortedSetServiceRemoveRequest:
		c.Op = &fsmv1.Command_ZsetRemove{ZsetRemove: o}
	case *conclavev1.RemoveRangeRequest:
		c.Op = &fsmv1.Command_ZsetRemoveRange{ZsetRemoveRange: o}
	case *fsmv1.ZsetPop:
		c.Op = &fsmv1.Command_ZsetPop{ZsetPop: o}
	case *fsmv1.ZsetStore:
		c.Op = &fsmv1.Command_ZsetStore{ZsetStore: o}
	default:
		panic(fmt.Sprintf("cmd: unsupported op %T", op))
	}
	return c
}

func set(key, value string) *conclavev1.SetRequest {
	return &conclavev1.SetRequest{Key: []byte(key), Value: []byte(value)}
}

func setTTL(key, value string, ttlMs int64) *conclavev1.SetRequest {
	return &conclavev1.SetRequest{Key: []byte(key), Value: []byte(value), TtlMs: ttlMs}
}

func del(keys ...string) *conclavev1.DeleteRequest {
	r := &conclavev1.DeleteRequest{}
	for _, k := range keys {
		r.Keys = append(r.Keys, []byte(k))
	}
	return r
}

func incr(key string, delta int64) *conclavev1.IncrementRequest {
	return &conclavev1.IncrementRequest{Key: []byte(key), Delta: delta}
}

// kv builds the KeyValue a read is expected to return.
func kv(key, value string, create, mod uint64, version, ttlMs int64) *conclavev1.KeyValue {
	return &conclavev1.KeyValue{Key: []byte(key), Value: []byte(value), CreateRevision: create,
		ModRevision: mod, Version: version, TtlMs: ttlMs}
}

// step is one command applied at an explicit raft index and time; err is the sentinel
// the result must carry (nil: success).
type step struct {
	index uint64
	now   int64
	op    proto.Message
	id    string
	err   error
}

// run applies the steps in order and returns the last result. A step expected to fail
// must leave the visible state exactly as it was.
func run(t *testing.T, m *fsm.Machine, steps ...step) *fsmv1.Result {
	t.Helper()
	var res *fsmv1.Result
	for i, st := range steps {
		c := cmd(st.now, st.op)
		c.RequestId = st.id
		at := max(st.now, m.Clock())
		before := dump(m, at)
		res = m.ApplyCommand(st.index, c)
		if got := m.AppliedIndex(); got != st.index {
			t.Fatalf("step %d: AppliedIndex = %d, want %d", i, got, st.index)
		}
		err := fsm.ErrorFromProto(res.GetError())
		switch {
		case st.err == nil && err != nil:
			t.Fatalf("step %d (%T): unexpected error %v", i, st.op, err)
		case st.err != nil && !errors.Is(err, st.err):
			t.Fatalf("step %d (%T): error = %v, want %v", i, st.op, err, st.err)
		}
		if st.err != nil {
			if res.GetValue() != nil {
				t.Errorf("step %d: failed result carries a value: %v", i, res)
			}
			if after := dump(m, at); after != before {
				t.Fatalf("step %d: failed command changed state\nbefore:\n%s\nafter:\n%s", i, before, after)
			}
		}
	}
	return res
}

// get reads key at now; nil when absent.
func get(m *fsm.Machine, now int64, key string) *conclavev1.KeyValue {
	var out *conclavev1.KeyValue
	m.Read(now, func(v *fsm.View) {
		if kv, ok := v.Get([]byte(key)); ok {
			out = proto.CloneOf(kv)
		}
	})
	return out
}

// wantKV fails unless the key read at now equals want (nil: absent).
func wantKV(t *testing.T, m *fsm.Machine, now int64, key string, want *conclavev1.KeyValue) {
	t.Helper()
	got := get(m, now, key)
	if !proto.Equal(got, want) {
		t.Errorf("Get(%q) at %+dms = %v, want %v", key, (now-t0)/ms, got, want)
	}
}

// dump renders everything a reader can observe at time at, plus the stored key count
// and the next deadline (which include expired keys not yet deleted), every session
// with its attributes and attached keys, the rate-limit policies, and the limiters not
// back to full with the stored limiter count (which includes idle ones not yet deleted).
func dump(m *fsm.Machine, at int64) string {
	var b strings.Builder
	m.Read(at, func(v *fsm.View) {
		kvs, _ := v.Scan(nil, nil, -1, false)
		for _, e := range kvs {
			fmt.Fprintf(&b, "%q=%q create=%d mod=%d version=%d ttl=%d\n",
				e.GetKey(), e.GetValue(), e.GetCreateRevision(), e.GetModRevision(), e.GetVersion(), e.GetTtlMs())
			if e.GetType() == conclavev1.KeyType_KEY_TYPE_SORTED_SET {
				for page := ""; ; {
					r, err := v.ZsetRange(&conclavev1.RangeRequest{Key: e.GetKey(), PageToken: page})
					if err != nil {
						panic(err)
					}
					for _, m := range r.GetMembers() {
						fmt.Fprintf(&b, "  %q %v\n", m.GetMember(), m.GetScore())
					}
					if page = r.GetNextPageToken(); page == "" {
						break
					}
				}
			}
		}
		fmt.Fprintf(&b, "stored=%d\n", v.KeyCount())
		d, ok := v.NextDeadline()
		fmt.Fprintf(&b, "next-deadline=%d,%v\n", d, ok)
		for _, mem := range v.Members() {
			fmt.Fprintf(&b, "member %q %q %q\n", mem.GetId(), mem.GetRaftAddress(), mem.GetGrpcAddress())
		}
		sessions, _ := v.SessionsByOwner("", 0, -1)
		fmt.Fprintf(&b, "sessions=%d\n", v.SessionCount())
		for _, ss := range sessions {
			_, keys, _ := v.Session(ss.GetId())
			fmt.Fprintf(&b, "session %d owner=%q ttl=%d created=%d max=%d attrs-rev=%d keys=%q\n", ss.GetId(), ss.GetOwner(),
				ss.GetTtlMs(), ss.GetCreatedAtUnixNano(), ss.GetMaxLifetimeMs(), ss.GetAttributesRevision(), keys)
			for _, a := range ss.GetAttributes() {
				fmt.Fprintf(&b, "  attr %q=%q\n", a.GetName(), a.GetValue())
			}
		}
		policies, _ := v.Policies("", "", -1)
		for _, p := range policies {
			fmt.Fprintf(&b, "policy %v\n", text(p))
		}
		limiters, _ := v.Limiters("", "", -1)
		fmt.Fprintf(&b, "limiters=%d\n", v.LimiterCount())
		for _, l := range limiters {
			fmt.Fprintf(&b, "limiter %v\n", text(l))
		}
	})
	fmt.Fprintf(&b, "leader-start-term=%d\n", m.LeaderStartTerm())
	return b.String()
}

// text renders msg on one line (stable within one test binary, which is all dump needs).
func text(msg proto.Message) string { return prototext.Format(msg) }

// snapshotBytes persists a snapshot of m.
func snapshotBytes(t testing.TB, m *fsm.Machine) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := m.Snapshot().WriteTo(&buf); err != nil {
		t.Fatalf("Snapshot.WriteTo: %v", err)
	}
	return buf.Bytes()
}

// restored returns a fresh machine restored from m's snapshot.
func restored(t testing.TB, m *fsm.Machine) *fsm.Machine {
	t.Helper()
	c := fsm.New()
	if err := c.Restore(bytes.NewReader(snapshotBytes(t, m))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return c
}
