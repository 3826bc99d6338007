package chaos

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/anishathalye/porcupine"
)

// LimiterState is the rate-limit model's state of one FIXED_WINDOW limiter key within
// one window. Admitted is the hits admitted so far; a correct limiter never admits more
// than its limit. Pending lists, in ascending order, the costs of the Checks called so
// far whose outcome is unknown and that may still be admitted: each at any later point
// (if it fits then), or never. A cost that can no longer fit is dropped from it.
type LimiterState struct {
	Admitted uint64
	Pending  []uint64
}

func (s LimiterState) String() string {
	if len(s.Pending) == 0 {
		return fmt.Sprintf("%d admitted", s.Admitted)
	}
	return fmt.Sprintf("%d admitted, unknown checks that may yet be of cost %v", s.Admitted, s.Pending)
}

func (s LimiterState) equal(o LimiterState) bool {
	return s.Admitted == o.Admitted && slices.Equal(s.Pending, o.Pending)
}

// limitDecide is a FIXED_WINDOW verdict on cost hits for a limiter of limit that has
// admitted n in the window: allowed exactly when the cost fits, and the remaining the
// server reports — after the cost when allowed, as it is when denied.
func limitDecide(n, limit, cost uint64) (allowed bool, remaining uint64) {
	if cost <= limit && n <= limit-cost {
		return true, limit - n - cost
	}
	return false, limit - min(n, limit)
}

// admittedBefore is how many hits a limiter of limit must have admitted for a verdict on
// cost to be allowed with remaining (allowed) or denied with remaining; ok is false when
// no count gives that verdict.
func admittedBefore(limit, cost uint64, allowed bool, remaining uint64) (n uint64, ok bool) {
	if allowed {
		return limit - cost - remaining, cost <= limit && remaining <= limit-cost
	}
	return limit - remaining, remaining <= limit && cost > remaining
}

// fitting is pending without the costs that cannot fit in room any more, and with at
// most room/c costs of c: no later admissions can use more.
func fitting(pending []uint64, room uint64) []uint64 {
	var out []uint64
	for i, c := range pending {
		if c > room || (i >= int(room/c) && pending[i-int(room/c)] == c) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// drains returns what is left of pending (ascending) after admitting some of its costs
// totalling exactly sum, once for each distinct choice.
func drains(pending []uint64, sum uint64) [][]uint64 {
	if sum == 0 {
		return [][]uint64{pending}
	}
	if len(pending) == 0 {
		return nil
	}
	c, n := pending[0], 1
	for n < len(pending) && pending[n] == c {
		n++
	}
	var out [][]uint64
	for k := 0; k <= n && uint64(k)*c <= sum; k++ { // admit k of the n costs c
		for _, rest := range drains(pending[n:], sum-uint64(k)*c) {
			out = append(out, append(slices.Clone(pending[k:n]), rest...))
		}
	}
	return out
}

// limitStep returns every state s can move to by op in with output out; none means the
// output is impossible. An unknown Check adds its cost to Pending (RateLimitModel pins
// its linearization to its call); a known Check or Peek first admits some pending costs —
// as many as its verdict says were admitted before it — in every way possible.
func limitStep(s LimiterState, in Input, out Output) []LimiterState {
	cost, limit := max(in.Cost, 1), in.Limit
	if in.Op != OpLimitCheck && in.Op != OpLimitPeek {
		return nil
	}
	if out.Unknown {
		if in.Op == OpLimitCheck && s.Admitted <= limit && cost <= limit-s.Admitted {
			i, _ := slices.BinarySearch(s.Pending, cost)
			s.Pending = slices.Insert(slices.Clone(s.Pending), i, cost)
			s.Pending = fitting(s.Pending, limit-s.Admitted)
		}
		return []LimiterState{s}
	}
	before, ok := admittedBefore(limit, cost, out.OK, out.Remaining)
	if !ok || before < s.Admitted {
		return nil
	}
	after := before
	if out.OK && in.Op == OpLimitCheck {
		after += cost
	}
	var next []LimiterState
	for _, rest := range drains(s.Pending, before-s.Admitted) {
		next = append(next, LimiterState{Admitted: after, Pending: fitting(rest, limit-after)})
	}
	return next
}

func hashLimiterState(state any) uint64 {
	s := state.(LimiterState)
	var b [8]byte
	h := fnv.New64a()
	for _, v := range append([]uint64{s.Admitted}, s.Pending...) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	return h.Sum64()
}

// partitionLimits splits a rate-limit history by key and pins each unknown Check to its
// call (its return time becomes its call time): the model carries its effect in
// LimiterState.Pending, to take place at any later point or never, which is the same
// as linearizing it anywhere after its call — without the checker trying every place.
func partitionLimits(history []porcupine.Operation) [][]porcupine.Operation {
	parts := partitionByKey(history)
	for _, part := range parts {
		for i, op := range part {
			if op.Input.(Input).Op == OpLimitCheck && op.Output.(Output).Unknown {
				part[i].Return = op.Call
			}
		}
	}
	return parts
}

// describeLimitOperation renders a rate-limit operation for the visualisation, e.g.
// `limit-check("rl/0", 1 of 100) -> allowed, 41 left`.
func describeLimitOperation(in Input, out Output) string {
	call := fmt.Sprintf("%v(%q, %d of %d)", in.Op, in.Key, max(in.Cost, 1), in.Limit)
	switch {
	case out.Unknown:
		return call + " -> ? (may take effect at any later time)"
	case out.OK:
		return fmt.Sprintf("%s -> allowed, %d left", call, out.Remaining)
	}
	return fmt.Sprintf("%s -> denied, %d left", call, out.Remaining)
}

// isLimitOp reports whether op is one of the rate-limit model's.
func isLimitOp(op Op) bool { return op == OpLimitCheck || op == OpLimitPeek }

// SplitLimits splits a history into rate-limit operations (for RateLimitModel) and the
// rest (for SplitLocks and the KV models).
func SplitLimits(ops []porcupine.Operation) (rest, limits []porcupine.Operation) {
	return splitBy(ops, isLimitOp)
}

// RateLimitModel is the per-key specification of rate-limit Check and linearizable Peek
// on a FIXED_WINDOW limiter with limit Input.Limit, within one window (the history must
// not cross a window boundary: the model never forgets), partitioned by key. The state is
// the hits admitted so far, n. A Check of cost c is allowed exactly when n + c ≤ limit,
// with remaining limit − n − c, and then admits c; otherwise it is denied with remaining
// limit − n and consumes nothing. A Peek gives the verdict a Check would, consuming
// nothing. So it catches an admission past the limit, a denial below it, a remaining
// that does not match the admissions (a hit lost or counted twice, a retry with the same
// request id consuming again), and a Peek that disagrees with the Checks before it. A
// Check whose outcome is unknown may have been admitted (when it fit) at any time after
// its call, or never; the partition function pins it to its call and the state keeps its
// cost pending (LimiterState), so histories with many unknown outcomes stay quick to
// check, also when they are not linearizable. Any other op makes the history illegal.
var RateLimitModel = newRateLimitModel()

func newRateLimitModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionLimits,
		Init:      func() []any { return []any{LimiterState{}} },
		Step: func(state, input, output any) []any {
			next := limitStep(state.(LimiterState), input.(Input), output.(Output))
			states := make([]any, len(next))
			for i, n := range next {
				states[i] = n
			}
			return states
		},
		Equal:             func(a, b any) bool { return a.(LimiterState).equal(b.(LimiterState)) },
		Hash:              hashLimiterState,
		DescribeOperation: DescribeOperation,
		DescribeState:     func(state any) string { return state.(LimiterState).String() },
	}
	return nm.ToModel()
}
