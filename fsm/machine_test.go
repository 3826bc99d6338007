package fsm_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func TestMachine_ClockNeverGoesBackwards(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0 + 10*s, op: nil},
		step{index: 2, now: t0, op: setTTL("k", "v", 1000)}, // earlier now: the clock wins
	)
	if got := m.Clock(); got != t0+10*s {
		t.Fatalf("Clock = %d, want %d", got, t0+10*s)
	}
	// The deadline counts from the machine's clock, not from the command's now.
	wantKV(t, m, t0+10*s, "k", kv("k", "v", 2, 2, 1, 1000))
	// A read asking for an earlier time reads at the clock.
	wantKV(t, m, t0, "k", kv("k", "v", 2, 2, 1, 1000))
	m.Read(t0, func(v *fsm.View) {
		if ttl, _ := v.TTL([]byte("k")); ttl != 1000 {
			t.Errorf("TTL read before the clock = %d, want 1000", ttl)
		}
	})

	// Writes judge expiry by the clock: at t0+11s the key has expired even though the
	// command says t0.
	run(t, m,
		step{index: 3, now: t0 + 11*s, op: nil},
		step{index: 4, now: t0, op: &conclavev1.SetRequest{Key: []byte("k"), Value: []byte("w"), IfAbsent: true}},
	)
	wantKV(t, m, 0, "k", kv("k", "w", 4, 4, 1, 0))
	if got := m.Clock(); got != t0+11*s {
		t.Fatalf("Clock = %d, want %d", got, t0+11*s)
	}
	// A read of a past time never resurrects an expired key.
	run(t, m, step{index: 5, now: t0 + 11*s, op: setTTL("gone", "v", 1)})
	run(t, m, step{index: 6, now: t0 + 12*s, op: nil})
	wantKV(t, m, t0+11*s, "gone", nil)
}

func TestMachine_Dedup(t *testing.T) {
	t.Run("a retry returns the first result and changes nothing", func(t *testing.T) {
		m := fsm.New()
		first := run(t, m, step{index: 1, now: t0, op: incr("n", 1), id: "r1"})
		run(t, m, step{index: 2, now: t0, op: set("other", "v")})
		before := dump(m, t0+s)
		// The same id with the same op, and with a different op: both are retries.
		for i, op := range []proto.Message{incr("n", 1), set("n", "x")} {
			index := uint64(3 + i)
			again := run(t, m, step{index: index, now: t0 + s, op: op, id: "r1"})
			if !proto.Equal(again, first) {
				t.Errorf("retry result = %v, want the first %v", again, first)
			}
			if again.GetIndex() != 1 {
				t.Errorf("retry Result.Index = %d, want 1", again.GetIndex())
			}
			if got := m.AppliedIndex(); got != index {
				t.Errorf("AppliedIndex = %d, want %d", got, index)
			}
		}
		if after := dump(m, t0+s); after != before {
			t.Errorf("retry changed state\nbefore:\n%s\nafter:\n%s", before, after)
		}
		wantKV(t, m, t0+s, "n", kv("n", "1", 1, 1, 1, 0))
	})

	t.Run("errors are remembered too", func(t *testing.T) {
		m := fsm.New()
		run(t, m, step{index: 1, now: t0, op: set("a", "1")})
		first := run(t, m, step{index: 2, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("2"), IfAbsent: true}, id: "r2", err: fsm.ErrConditionFailed})
		run(t, m, step{index: 3, now: t0, op: del("a")})
		// Now the condition would hold, but the retry must report the first outcome.
		again := run(t, m, step{index: 4, now: t0, op: &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("2"), IfAbsent: true}, id: "r2", err: fsm.ErrConditionFailed})
		if !proto.Equal(again, first) || again.GetIndex() != 2 {
			t.Errorf("retry result = %v, want the first %v", again, first)
		}
		wantKV(t, m, t0, "a", nil)
	})

	t.Run("ids are forgotten after DedupWindow", func(t *testing.T) {
		m := fsm.New()
		run(t, m, step{index: 1, now: t0, op: incr("n", 1), id: "r3"})
		again := run(t, m, step{index: 2, now: t0 + fsm.DedupWindow - 1, op: incr("n", 1), id: "r3"})
		if again.GetIndex() != 1 {
			t.Fatalf("retry inside the window applied again: %v", again)
		}
		late := run(t, m, step{index: 3, now: t0 + fsm.DedupWindow, op: incr("n", 1), id: "r3"})
		if late.GetIndex() != 3 || late.GetIncrement().GetValue() != 2 {
			t.Fatalf("retry after the window = %v, want a fresh apply at index 3 giving 2", late)
		}
		// And the new result is remembered in its turn.
		again = run(t, m, step{index: 4, now: t0 + fsm.DedupWindow, op: incr("n", 1), id: "r3"})
		if again.GetIndex() != 3 {
			t.Fatalf("retry of the re-applied id = %v, want index 3", again)
		}
	})

	t.Run("the table survives snapshot and restore", func(t *testing.T) {
		m := fsm.New()
		first := run(t, m, step{index: 1, now: t0, op: incr("n", 1), id: "r4"})
		r := restored(t, m)
		again := run(t, r, step{index: 2, now: t0, op: incr("n", 1), id: "r4"})
		if !proto.Equal(again, first) {
			t.Errorf("retry after restore = %v, want %v", again, first)
		}
		wantKV(t, r, t0, "n", kv("n", "1", 1, 1, 1, 0))
	})

	t.Run("the id is the command's, not the request's", func(t *testing.T) {
		m := fsm.New()
		run(t, m, step{index: 1, now: t0, op: &conclavev1.IncrementRequest{Key: []byte("n"), Delta: 1, RequestId: "inner"}})
		run(t, m, step{index: 2, now: t0, op: &conclavev1.IncrementRequest{Key: []byte("n"), Delta: 1, RequestId: "inner"}})
		wantKV(t, m, t0, "n", kv("n", "2", 1, 2, 2, 0))
	})
}

func TestMachine_Members(t *testing.T) {
	m := fsm.New()
	member := func(id, addr string) *fsmv1.Member {
		return &fsmv1.Member{Id: id, RaftAddress: addr + ":7000", GrpcAddress: addr + ":8000"}
	}
	members := func() string {
		var out []string
		m.Read(0, func(v *fsm.View) {
			for _, mem := range v.Members() {
				out = append(out, mem.GetId()+"@"+mem.GetGrpcAddress())
			}
		})
		return strings.Join(out, " ")
	}
	check := func(wantTerm uint64, want string) {
		t.Helper()
		if got := m.LeaderStartTerm(); got != wantTerm {
			t.Errorf("LeaderStartTerm = %d, want %d", got, wantTerm)
		}
		if got := members(); got != want {
			t.Errorf("Members = %q, want %q", got, want)
		}
	}

	check(0, "")
	run(t, m, step{index: 1, now: t0, op: &fsmv1.LeaderStart{Term: 3, Member: member("n2", "h2")}})
	check(3, "n2@h2:8000")
	run(t, m, step{index: 2, now: t0, op: &fsmv1.LeaderStart{Term: 2}}) // an older term never lowers it
	check(3, "n2@h2:8000")
	run(t, m, step{index: 3, now: t0, op: &fsmv1.LeaderStart{Term: 4, Member: &fsmv1.Member{}}}) // no id: no member
	check(4, "n2@h2:8000")
	run(t, m,
		step{index: 4, now: t0, op: &fsmv1.MemberPut{Member: member("n3", "h3")}},
		step{index: 5, now: t0, op: &fsmv1.MemberPut{Member: member("n1", "h1")}},
	)
	check(4, "n1@h1:8000 n2@h2:8000 n3@h3:8000")
	run(t, m, step{index: 6, now: t0, op: &fsmv1.MemberPut{Member: member("n1", "h9")}})
	check(4, "n1@h9:8000 n2@h2:8000 n3@h3:8000")
	run(t, m, step{index: 7, now: t0, op: &fsmv1.LeaderStart{Term: 5, Member: member("n3", "h7")}})
	check(5, "n1@h9:8000 n2@h2:8000 n3@h7:8000")
	run(t, m,
		step{index: 8, now: t0, op: &fsmv1.MemberRemove{Id: "n2"}},
		step{index: 9, now: t0, op: &fsmv1.MemberRemove{Id: "nobody"}},
		step{index: 10, now: t0, op: &fsmv1.MemberPut{Member: &fsmv1.Member{GrpcAddress: "x"}}, err: fsm.ErrInvalidArgument},
		step{index: 11, now: t0, op: &fsmv1.MemberPut{}, err: fsm.ErrInvalidArgument},
	)
	check(5, "n1@h9:8000 n3@h7:8000")

	// The table and term survive a snapshot.
	r := restored(t, m)
	if r.LeaderStartTerm() != 5 || dump(r, t0) != dump(m, t0) {
		t.Errorf("restored machine differs:\n%s\nwant:\n%s", dump(r, t0), dump(m, t0))
	}

	// A member passed in a command is copied, not kept.
	in := member("n4", "h4")
	run(t, m, step{index: 12, now: t0, op: &fsmv1.MemberPut{Member: in}})
	in.GrpcAddress = "mutated"
	check(5, "n1@h9:8000 n3@h7:8000 n4@h4:8000")
}

func TestMachine_AppliedIndex(t *testing.T) {
	m := fsm.New()
	if m.AppliedIndex() != 0 {
		t.Fatalf("new machine AppliedIndex = %d", m.AppliedIndex())
	}
	run(t, m, step{index: 3, now: t0, op: set("a", "1")})
	before := dump(m, t0)
	m.Advance(7) // a configuration entry
	if got := m.AppliedIndex(); got != 7 {
		t.Fatalf("after Advance(7) AppliedIndex = %d, want 7", got)
	}
	m.Read(t0, func(v *fsm.View) {
		if v.Revision() != 7 {
			t.Errorf("View.Revision = %d, want 7", v.Revision())
		}
	})
	if after := dump(m, t0); after != before {
		t.Errorf("Advance changed state\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// A failed command is applied too.
	run(t, m, step{index: 8, now: t0, op: set("", "x"), err: fsm.ErrInvalidArgument})
	// Apply decodes and records the index.
	data, err := proto.Marshal(cmd(t0, set("b", "2")))
	if err != nil {
		t.Fatal(err)
	}
	if res := m.Apply(9, data); res.GetError() != nil || res.GetIndex() != 9 || m.AppliedIndex() != 9 {
		t.Fatalf("Apply(9) = %v, AppliedIndex %d", res, m.AppliedIndex())
	}
	wantKV(t, m, t0, "b", kv("b", "2", 9, 9, 1, 0))
	if s := m.Snapshot(); s.AppliedIndex() != 9 {
		t.Errorf("Snapshot.AppliedIndex = %d, want 9", s.AppliedIndex())
	}
}

func TestMachine_ApplyPanicsOnUndecodableEntry(t *testing.T) {
	m := fsm.New()
	defer func() {
		if recover() == nil {
			t.Fatal("Apply of garbage did not panic")
		}
	}()
	m.Apply(1, []byte{0xff, 0xff, 0xff})
}

func TestError_Classification(t *testing.T) {
	sentinels := map[fsmv1.ErrorCode]error{
		fsmv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT: fsm.ErrInvalidArgument,
		fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND:        fsm.ErrNotFound,
		fsmv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:   fsm.ErrAlreadyExists,
		fsmv1.ErrorCode_ERROR_CODE_CONDITION_FAILED: fsm.ErrConditionFailed,
		fsmv1.ErrorCode_ERROR_CODE_WRONG_TYPE:       fsm.ErrWrongType,
		fsmv1.ErrorCode_ERROR_CODE_OUT_OF_RANGE:     fsm.ErrOutOfRange,
	}
	all := []error{fsm.ErrInvalidArgument, fsm.ErrNotFound, fsm.ErrAlreadyExists, fsm.ErrConditionFailed, fsm.ErrWrongType, fsm.ErrOutOfRange}
	for code, want := range sentinels {
		err := fsm.ErrorFromProto(&fsmv1.Error{Code: code, Key: []byte("k"), Message: "rule"})
		for _, s := range all {
			if errors.Is(err, s) != (s == want) {
				t.Errorf("%v: errors.Is(%v) = %v", code, s, errors.Is(err, s))
			}
		}
		var fe *fsm.Error
		if !errors.As(err, &fe) || string(fe.Key) != "k" || !proto.Equal(fe.Proto(), &fsmv1.Error{Code: code, Key: []byte("k"), Message: "rule"}) {
			t.Errorf("%v: round trip gave %#v", code, fe)
		}
		if !strings.Contains(err.Error(), `"k"`) || !strings.Contains(err.Error(), "rule") {
			t.Errorf("%v: message %q does not name the key and the rule", code, err.Error())
		}
	}
	if fsm.ErrorFromProto(nil) != nil {
		t.Error("ErrorFromProto(nil) != nil")
	}

	// A real failure names its key.
	m := fsm.New()
	res := run(t, m, step{index: 1, now: t0, op: &conclavev1.ExpireRequest{Key: []byte("missing"), TtlMs: 1}, err: fsm.ErrNotFound})
	if string(res.GetError().GetKey()) != "missing" {
		t.Errorf("error key = %q, want \"missing\"", res.GetError().GetKey())
	}
}

// TestSnapshot_PersistWhileApplying persists a snapshot while the machine goes on applying
// and reading (run with -race): the bytes must be those of the state at the snapshot.
func TestSnapshot_PersistWhileApplying(t *testing.T) {
	m, ref := fsm.New(), fsm.New()
	var index uint64
	apply := func(target *fsm.Machine, i uint64) {
		now := t0 + int64(i)*ms
		k := string(rune('a' + i%7))
		var c *fsmv1.Command
		switch i % 5 {
		case 4: // sorted sets: the persist reads a set the applies take over and write
			c = cmd(now, zincr("z"+string(rune('0'+i%2)), k, float64(i%3)))
		case 0:
			c = cmd(now, setTTL(k, "v", int64(i%5)*100))
		case 1:
			c = cmd(now, incr("n"+k, 1))
		case 2:
			c = cmd(now, del(k))
		case 3:
			c = cmd(now, &fsmv1.ExpireDue{Limit: 3})
		}
		c.RequestId = "r" + k
		target.ApplyCommand(i, c)
	}
	for range 500 {
		index++
		apply(m, index)
		apply(ref, index)
	}
	snap := m.Snapshot()

	var wg sync.WaitGroup
	wg.Go(func() {
		for i := index + 1; i <= index+2000; i++ {
			apply(m, i)
		}
	})
	wg.Go(func() {
		for range 200 {
			m.Read(0, func(v *fsm.View) { v.Scan(nil, nil, -1, false) })
		}
	})
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	if want := snapshotBytes(t, ref); !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("snapshot persisted during applies differs from the state at the snapshot (%d vs %d bytes)", buf.Len(), len(want))
	}
	// Persisting the same snapshot again gives the same bytes.
	var again bytes.Buffer
	if _, err := snap.WriteTo(&again); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Fatalf("second WriteTo differs (err %v)", err)
	}
}
