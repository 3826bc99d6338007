package chaos

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"
)

// LockState is the lock model's state of one EXCLUSIVE lock. Fencing tokens are the raft
// indexes of the entries that granted them, so every grant's token is greater than every
// earlier grant's.
//
// When Held, session Session holds the lock; its token is Token when Exact, and otherwise
// unknown but greater than Max (an acquire whose outcome was unknown took effect). Max is
// the largest token known to have been granted: the next grant's token must exceed it.
// A free lock has Held false and Session, Token and Exact zero.
type LockState struct {
	Held    bool
	Session uint64
	Token   uint64
	Exact   bool
	Max     uint64
}

func (s LockState) String() string {
	switch {
	case !s.Held:
		return fmt.Sprintf("free (next token > %d)", s.Max)
	case s.Exact:
		return fmt.Sprintf("held by session %d @%d", s.Session, s.Token)
	default:
		return fmt.Sprintf("held by session %d @>%d", s.Session, s.Max)
	}
}

// granted is s after a known grant of token to session; ok is false when the grant is
// impossible: the lock is held by another session, or the token does not exceed every
// earlier one. A session that already holds the lock is granted its own hold again
// (the server answers a repeated Acquire with the same token).
func (s LockState) granted(session, token uint64) (LockState, bool) {
	switch {
	case s.Held && s.Session != session:
		return s, false
	case s.Held && s.Exact:
		return s, token == s.Token
	case token <= s.Max:
		return s, false
	}
	return LockState{Held: true, Session: session, Token: token, Exact: true, Max: token}, true
}

// releaseCan reports whether a release of token could succeed, and could be refused as
// stale, in s.
func (s LockState) releaseCan(token uint64) (ok, stale bool) {
	switch {
	case !s.Held || token == 0:
		return false, true
	case s.Exact:
		return s.Token == token, s.Token != token
	default:
		return token > s.Max, true
	}
}

// released is s after a successful release of token.
func (s LockState) released(token uint64) LockState {
	return LockState{Max: max(s.Max, token)}
}

// inspected checks a known Inspect output against s and returns s with the holder's
// token learnt.
func (s LockState) inspected(out Output) (LockState, bool) {
	if !s.Held {
		return s, out.Holders == 0
	}
	if out.Holders != 1 || out.Session != s.Session {
		return s, false
	}
	if s.Exact {
		return s, out.Token == s.Token
	}
	if out.Token <= s.Max {
		return s, false
	}
	s.Token, s.Exact, s.Max = out.Token, true, out.Token
	return s, true
}

// lockStep returns every state s can move to by op in with output out; none means the
// output is impossible. An unknown output yields both "took effect" and "did not".
func lockStep(s LockState, in Input, out Output) []LockState {
	one := func(n LockState, ok bool) []LockState {
		if !ok {
			return nil
		}
		return []LockState{n}
	}
	switch in.Op {
	case OpAcquire:
		switch {
		case out.Unknown:
			if s.Held {
				return []LockState{s} // refused, or the holder's own hold again
			}
			return []LockState{s, {Held: true, Session: in.Session, Max: s.Max}}
		case out.OK:
			return one(s.granted(in.Session, out.Token))
		default:
			return one(s, s.Held && s.Session != in.Session)
		}
	case OpRelease:
		ok, stale := s.releaseCan(in.Token)
		switch {
		case out.Unknown:
			var next []LockState
			if stale {
				next = append(next, s)
			}
			if ok {
				next = append(next, s.released(in.Token))
			}
			return next
		case out.OK:
			return one(s.released(in.Token), ok)
		default:
			return one(s, stale)
		}
	case OpInspect:
		if out.Unknown {
			return []LockState{s}
		}
		return one(s.inspected(out))
	}
	return nil
}

func hashLockState(state any) uint64 {
	s := state.(LockState)
	var b [26]byte
	binary.LittleEndian.PutUint64(b[0:8], s.Session)
	binary.LittleEndian.PutUint64(b[8:16], s.Token)
	binary.LittleEndian.PutUint64(b[16:24], s.Max)
	if s.Held {
		b[24] = 1
	}
	if s.Exact {
		b[25] = 1
	}
	h := fnv.New64a()
	h.Write(b[:])
	return h.Sum64()
}

// describeLockOperation renders a lock operation for the visualisation, e.g.
// `acquire("l", session 3) -> granted @12`.
func describeLockOperation(in Input, out Output) string {
	var call string
	switch in.Op {
	case OpAcquire:
		call = fmt.Sprintf("acquire(%q, session %d)", in.Key, in.Session)
	case OpRelease:
		call = fmt.Sprintf("release(%q, @%d)", in.Key, in.Token)
	default:
		call = fmt.Sprintf("inspect(%q)", in.Key)
	}
	if out.Unknown {
		return call + " -> ?"
	}
	var res string
	switch in.Op {
	case OpAcquire:
		res = "held"
		if out.OK {
			res = fmt.Sprintf("granted @%d", out.Token)
		}
	case OpRelease:
		res = "stale"
		if out.OK {
			res = "ok"
		}
	default:
		switch out.Holders {
		case 0:
			res = "free"
		case 1:
			res = fmt.Sprintf("session %d @%d", out.Session, out.Token)
		default:
			res = fmt.Sprintf("%d holders, first session %d @%d", out.Holders, out.Session, out.Token)
		}
	}
	return call + " -> " + res
}

// isLockOp reports whether op is one of the lock model's.
func isLockOp(op Op) bool { return op == OpAcquire || op == OpRelease || op == OpInspect }

// SplitLocks splits a history into KV operations (for SplitCounters, RegisterModel and
// CounterModel) and lock operations (for LockModel).
func SplitLocks(ops []porcupine.Operation) (kv, locks []porcupine.Operation) {
	return splitBy(ops, isLockOp)
}

// WithoutKeys returns the operations of ops whose Input.Key is not in drop: a key (or
// lock) whose history cannot be judged is left out whole, never in part.
func WithoutKeys(ops []porcupine.Operation, drop map[string]bool) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if !drop[op.Input.(Input).Key] {
			out = append(out, op)
		}
	}
	return out
}

// LockModel is the per-lock specification of try-once EXCLUSIVE Acquire, Release and
// Inspect, partitioned by lock name (Input.Key): a grant needs the lock free (or already
// held by the same session, which gets its own token back) and a token greater than
// every earlier grant's; LOCK_HELD needs another session to hold it; a Release succeeds
// exactly when the lock is held with its token and is refused as stale otherwise; an
// Inspect returns the one holder's session and token, or no holder when free. An
// operation with an unknown outcome may or may not have taken effect, at any time after
// its call. Any other op makes the history illegal.
//
// Session expiry releases locks without an operation in the history: leave out (with
// WithoutKeys) every lock a lost session may have held.
var LockModel = newLockModel()

func newLockModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []any { return []any{LockState{}} },
		Step: func(state, input, output any) []any {
			next := lockStep(state.(LockState), input.(Input), output.(Output))
			states := make([]any, len(next))
			for i, n := range next {
				states[i] = n
			}
			return states
		},
		Equal:             func(a, b any) bool { return a.(LockState) == b.(LockState) },
		Hash:              hashLockState,
		DescribeOperation: DescribeOperation,
		DescribeState:     func(state any) string { return state.(LockState).String() },
	}
	return nm.ToModel()
}
