package chaos

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// KeyState is the model's state of one key. Revisions are raft indexes, so every write
// to the key has a revision strictly greater than every earlier write's or delete's.
//
// When Exact, the key exists and its mod_revision is Rev. Otherwise Rev is a strict lower
// bound: the key's mod_revision if it exists, and the revision of the next write, are
// greater than Rev (a write whose outcome was unknown, or a delete, leaves the exact
// revision unknown until a read or a conditional write reveals it).
type KeyState struct {
	Exists bool
	Value  string
	Rev    uint64
	Exact  bool
}

func (s KeyState) String() string {
	switch {
	case !s.Exists:
		return fmt.Sprintf("absent (next rev > %d)", s.Rev)
	case s.Exact:
		return fmt.Sprintf("%q @%d", s.Value, s.Rev)
	default:
		return fmt.Sprintf("%q @>%d", s.Value, s.Rev)
	}
}

// written is s after a write of value with revision rev (0 = unknown); ok is false when a
// known revision does not exceed every earlier one.
func (s KeyState) written(value string, rev uint64) (KeyState, bool) {
	if rev == 0 {
		return KeyState{Exists: true, Value: value, Rev: s.Rev}, true
	}
	if rev <= s.Rev {
		return s, false
	}
	return KeyState{Exists: true, Value: value, Rev: rev, Exact: true}, true
}

// deleted is s after a delete at revision rev (0 = unknown).
func (s KeyState) deleted(rev uint64) (KeyState, bool) {
	if rev == 0 {
		return KeyState{Rev: s.Rev}, true
	}
	if rev <= s.Rev {
		return s, false
	}
	return KeyState{Rev: rev}, true
}

// read checks a known Get output against s and returns s with the revision learnt.
func (s KeyState) read(out Output) (KeyState, bool) {
	if out.Found != s.Exists {
		return s, false
	}
	if !s.Exists {
		return s, true
	}
	if out.Value != s.Value {
		return s, false
	}
	if s.Exact {
		return s, out.Revision == s.Rev
	}
	if out.Revision <= s.Rev {
		return s, false
	}
	s.Rev, s.Exact = out.Revision, true
	return s, true
}

// casCan reports whether a CAS expecting mod_revision expect could hold, and could fail,
// in s.
func (s KeyState) casCan(expect uint64) (hold, fail bool) {
	switch {
	case !s.Exists:
		return expect == 0, expect != 0
	case s.Exact:
		return s.Rev == expect, s.Rev != expect
	default:
		return expect > s.Rev, true
	}
}

// counter is s's value as a counter: 0 when absent; ok is false when the value is not a
// base-10 int64 (an Increment would fail).
func (s KeyState) counter() (n int64, ok bool) {
	if !s.Exists {
		return 0, true
	}
	n, err := strconv.ParseInt(s.Value, 10, 64)
	return n, err == nil
}

// step returns every state s can move to by op in with output out; none means the
// output is impossible. An unknown output yields both "took effect" and "did not".
func step(s KeyState, in Input, out Output) []KeyState {
	one := func(n KeyState, ok bool) []KeyState {
		if !ok {
			return nil
		}
		return []KeyState{n}
	}
	switch in.Op {
	case OpGet:
		if out.Unknown {
			return []KeyState{s}
		}
		return one(s.read(out))
	case OpSet:
		if out.Unknown {
			n, _ := s.written(in.Value, 0)
			return []KeyState{s, n}
		}
		return one(s.written(in.Value, out.Revision))
	case OpCAS:
		hold, fail := s.casCan(in.ExpectRevision)
		switch {
		case out.Unknown:
			var next []KeyState
			if fail {
				next = append(next, s)
			}
			if hold {
				n, _ := s.written(in.Value, 0)
				next = append(next, n)
			}
			return next
		case out.OK:
			if !hold {
				return nil
			}
			return one(s.written(in.Value, out.Revision))
		default:
			return one(s, fail)
		}
	case OpDelete:
		if out.Unknown {
			n, _ := s.deleted(0)
			return []KeyState{s, n}
		}
		if out.Found != s.Exists {
			return nil
		}
		return one(s.deleted(out.Revision))
	case OpIncrement:
		cur, ok := s.counter()
		if !ok {
			// A successful Increment of a non-integer is impossible; a failed one
			// changes nothing and should have been discarded.
			if out.Unknown {
				return []KeyState{s}
			}
			return nil
		}
		next := cur + in.Delta
		value := strconv.FormatInt(next, 10)
		if out.Unknown {
			n, _ := s.written(value, 0)
			return []KeyState{s, n}
		}
		if out.Counter != next {
			return nil
		}
		return one(s.written(value, out.Revision))
	}
	return nil
}

func hashKeyState(state any) uint64 {
	s := state.(KeyState)
	var b [10]byte
	binary.LittleEndian.PutUint64(b[:8], s.Rev)
	if s.Exists {
		b[8] = 1
	}
	if s.Exact {
		b[9] = 1
	}
	h := fnv.New64a()
	h.Write(b[:])
	h.Write([]byte(s.Value))
	return h.Sum64()
}

// partitionByKey splits a history into one sub-history per Input.Key, in first-seen order.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	index := make(map[string]int)
	var parts [][]porcupine.Operation
	for _, op := range history {
		key := op.Input.(Input).Key
		i, ok := index[key]
		if !ok {
			i = len(parts)
			index[key] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

// DescribeOperation renders one operation for the visualisation, e.g.
// `cas("k", "v", if @7) -> ok @9` or `acquire("l", session 3) -> granted @12`.
func DescribeOperation(input, output any) string {
	in, out := input.(Input), output.(Output)
	if isLockOp(in.Op) {
		return describeLockOperation(in, out)
	}
	if isLimitOp(in.Op) {
		return describeLimitOperation(in, out)
	}
	if isZsetOp(in.Op) {
		return describeZsetOperation(in, out)
	}
	var call string
	switch in.Op {
	case OpGet:
		call = fmt.Sprintf("get(%q)", in.Key)
		if in.Stale {
			call = "stale " + call
		}
	case OpSet:
		call = fmt.Sprintf("set(%q, %q)", in.Key, in.Value)
	case OpCAS:
		call = fmt.Sprintf("cas(%q, %q, if @%d)", in.Key, in.Value, in.ExpectRevision)
	case OpDelete:
		call = fmt.Sprintf("delete(%q)", in.Key)
	case OpIncrement:
		call = fmt.Sprintf("increment(%q, %d)", in.Key, in.Delta)
	default:
		call = fmt.Sprintf("%v(%q)", in.Op, in.Key)
	}
	if out.Unknown {
		return call + " -> ?"
	}
	var res string
	switch in.Op {
	case OpGet:
		res = "absent"
		if out.Found {
			res = fmt.Sprintf("%q @%d", out.Value, out.Revision)
		}
	case OpSet:
		res = fmt.Sprintf("@%d", out.Revision)
	case OpCAS:
		res = "failed"
		if out.OK {
			res = fmt.Sprintf("ok @%d", out.Revision)
		}
	case OpDelete:
		res = "absent"
		if out.Found {
			res = "deleted"
		}
		if out.Revision != 0 {
			res += fmt.Sprintf(" @%d", out.Revision)
		}
	case OpIncrement:
		res = fmt.Sprintf("%d @%d", out.Counter, out.Revision)
	}
	return call + " -> " + res
}

// newKeyModel builds a per-key model accepting only the given ops; any other op makes
// the history illegal.
func newKeyModel(ops ...Op) porcupine.Model {
	allowed := make(map[Op]bool, len(ops))
	for _, op := range ops {
		allowed[op] = true
	}
	nm := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []any { return []any{KeyState{}} },
		Step: func(state, input, output any) []any {
			in := input.(Input)
			if !allowed[in.Op] {
				return nil
			}
			next := step(state.(KeyState), in, output.(Output))
			states := make([]any, len(next))
			for i, n := range next {
				states[i] = n
			}
			return states
		},
		Equal:             func(a, b any) bool { return a.(KeyState) == b.(KeyState) },
		Hash:              hashKeyState,
		DescribeOperation: DescribeOperation,
		DescribeState:     func(state any) string { return state.(KeyState).String() },
	}
	return nm.ToModel()
}

// RegisterModel is the per-key specification of Get, Set, CAS (Set with if_revision)
// and Delete, partitioned by key: reads see the last write with its mod_revision, every
// write's revision exceeds every earlier one, a CAS holds exactly when the key's
// mod_revision equals the expected one (0 = absent), and an operation with an unknown
// outcome may or may not have taken effect. Histories must use Input and Output; any
// other op (Increment) makes the history illegal, so split counters out first
// (SplitCounters). Stale Gets must not be checked with it (Check leaves them out).
var RegisterModel = newKeyModel(OpGet, OpSet, OpCAS, OpDelete)

// CounterModel is the per-key specification of Increment, Get and Delete, partitioned
// by key: Increment returns the previous value (0 when absent) plus its delta, Get
// returns the base-10 value, revisions strictly increase, and an operation with an
// unknown outcome may or may not have taken effect. Any other op makes the history
// illegal.
var CounterModel = newKeyModel(OpIncrement, OpGet, OpDelete)
