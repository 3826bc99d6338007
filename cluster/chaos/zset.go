package chaos

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Sorted-set (leaderboard) operations (OpZset* in history.go) work on one key created
// with TIE_BREAK_LEX. Input.Key is the set's key and Input.Value the member;
// OpZsetIncrement adds Input.Delta (an integer, so that sums are exact in float64) and
// OpZsetTop asks for Input.Limit members (0 means 10, as the server reads it). Output:
// OpZsetIncrement's Counter is the new score; OpZsetScore's Found and Counter;
// OpZsetRemove's Found is removed > 0; OpZsetTop's Value is ZsetTopOutput's encoding of
// the members listed.

// ZsetEntry is one member of a Top answer with its (integer) score.
type ZsetEntry struct {
	Member string `json:"member"`
	Score  int64  `json:"score"`
}

// ZsetTopOutput is the recorded Output of a Top that listed entries, in the order given.
func ZsetTopOutput(entries []ZsetEntry) Output {
	b, _ := json.Marshal(entries) // cannot fail: strings and integers
	return Output{Value: string(b)}
}

// zsetTopEntries decodes a Top's Output.Value; ok is false when it is not an encoding
// ZsetTopOutput made.
func zsetTopEntries(out Output) (entries []ZsetEntry, ok bool) {
	return entries, json.Unmarshal([]byte(out.Value), &entries) == nil
}

// zsetTopCount is the number of members a Top of in asks for.
func zsetTopCount(in Input) int {
	if in.Limit == 0 {
		return 10
	}
	return int(min(in.Limit, 1<<20))
}

// zsetBefore reports whether a lists before b in a Top: a higher score, or an equal one
// and a greater member.
func zsetBefore(a, b ZsetEntry) bool {
	return a.Score > b.Score || a.Score == b.Score && a.Member > b.Member
}

// zsetOption is one possibility for one member: whether it is in the set and its score,
// and the deltas of the increments with unknown outcomes (ascending) that have not
// taken effect in this possibility but may still, each at any later time, or never.
type zsetOption struct {
	Present bool
	Score   int64 // 0 when absent
	Pending []int64
}

func (o zsetOption) String() string {
	s := "absent"
	if o.Present {
		s = fmt.Sprint(o.Score)
	}
	if len(o.Pending) > 0 {
		s += fmt.Sprintf(", may yet add %v", o.Pending)
	}
	return s
}

// zsetMember is the possibilities for one member: it is in one of them.
type zsetMember struct {
	Member  string
	Options []zsetOption
}

// ZsetState is the sorted-set model's state of one key: for each member it has seen
// (ascending), the possibilities for that member. A member not listed is absent with
// nothing pending. With TIE_BREAK_LEX a set's order is a function of its scores and
// every operation constrains or changes members one by one, so the possible sets are
// exactly every combination of the members' possibilities: the state keeps their sum,
// not their product.
type ZsetState struct {
	Members []zsetMember
}

func (s ZsetState) String() string {
	if len(s.Members) == 0 {
		return "empty"
	}
	var parts []string
	for _, m := range s.Members {
		var opts []string
		for _, o := range m.Options {
			opts = append(opts, o.String())
		}
		if len(opts) == 1 {
			parts = append(parts, fmt.Sprintf("%s: %s", m.Member, opts[0]))
		} else {
			parts = append(parts, fmt.Sprintf("%s: one of {%s}", m.Member, strings.Join(opts, "; ")))
		}
	}
	return strings.Join(parts, ", ")
}

func (s ZsetState) equal(o ZsetState) bool {
	return slices.EqualFunc(s.Members, o.Members, func(a, b zsetMember) bool {
		return a.Member == b.Member && slices.EqualFunc(a.Options, b.Options, func(x, y zsetOption) bool {
			return x.Present == y.Present && x.Score == y.Score && slices.Equal(x.Pending, y.Pending)
		})
	})
}

// options returns member's possibilities.
func (s ZsetState) options(member string) []zsetOption {
	if i, ok := slices.BinarySearchFunc(s.Members, member, func(m zsetMember, k string) int { return cmp.Compare(m.Member, k) }); ok {
		return s.Members[i].Options
	}
	return []zsetOption{{}}
}

// with returns s with member's possibilities replaced by opts (normalised); s is not
// changed.
func (s ZsetState) with(member string, opts []zsetOption) ZsetState {
	opts = normalizeZsetOptions(opts)
	i, found := slices.BinarySearchFunc(s.Members, member, func(m zsetMember, k string) int { return cmp.Compare(m.Member, k) })
	trivial := len(opts) == 1 && !opts[0].Present && len(opts[0].Pending) == 0
	members := slices.Clone(s.Members)
	switch {
	case found && trivial:
		members = slices.Delete(members, i, i+1)
	case found:
		members[i] = zsetMember{Member: member, Options: opts}
	case !trivial:
		members = slices.Insert(members, i, zsetMember{Member: member, Options: opts})
	}
	return ZsetState{Members: members}
}

func compareZsetOptions(a, b zsetOption) int {
	if a.Present != b.Present {
		if a.Present {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.Score, b.Score), cmp.Compare(len(a.Pending), len(b.Pending)), slices.Compare(a.Pending, b.Pending))
}

// normalizeZsetOptions sorts opts and drops repeats and the possibilities another one
// covers: one with the same presence and score and, pending, a sub-multiset of the
// other's. Every future the smaller one allows the larger allows too (its extra pending
// increments never taking effect), so dropping it changes no verdict.
func normalizeZsetOptions(opts []zsetOption) []zsetOption {
	opts = slices.Clone(opts)
	slices.SortFunc(opts, compareZsetOptions)
	opts = slices.CompactFunc(opts, func(a, b zsetOption) bool { return compareZsetOptions(a, b) == 0 })
	out := opts[:0:0]
	for i, o := range opts {
		covered := false
		for j := i + 1; j < len(opts) && !covered; j++ { // only later ones can be larger
			p := opts[j]
			covered = p.Present == o.Present && p.Score == o.Score && subMultiset(o.Pending, p.Pending)
		}
		if !covered {
			out = append(out, o)
		}
	}
	return out
}

// subMultiset reports whether ascending a is a sub-multiset of ascending b.
func subMultiset(a, b []int64) bool {
	j := 0
	for _, v := range a {
		for j < len(b) && b[j] < v {
			j++
		}
		if j == len(b) || b[j] != v {
			return false
		}
		j++
	}
	return true
}

// zsetApplied calls fn once for each distinct sub-multiset of o's pending deltas that
// may have taken effect by now, with the member's presence and score after them and the
// deltas left pending. With exact, only those giving the score bound are tried; with
// upTo, only those giving at most bound (pruned early when every pending delta is
// positive; fn must still check).
func zsetApplied(o zsetOption, bound int64, exact, upTo bool, fn func(present bool, score int64, rest []int64)) {
	base := o.Score
	positive := len(o.Pending) == 0 || o.Pending[0] > 0
	var walk func(i int, sum int64, applied int, rest []int64)
	walk = func(i int, sum int64, applied int, rest []int64) {
		if (exact || upTo) && positive && base+sum > bound {
			if upTo && applied == 0 { // only taking none of them can still do
				fn(o.Present, base, append(slices.Clone(rest), o.Pending[i:]...))
			}
			return // the rest only adds
		}
		if i == len(o.Pending) {
			if !exact || base+sum == bound {
				fn(o.Present || applied > 0, base+sum, rest)
			}
			return
		}
		v, n := o.Pending[i], 1
		for i+n < len(o.Pending) && o.Pending[i+n] == v {
			n++
		}
		for k := 0; k <= n; k++ { // k of the n deltas v take effect
			walk(i+n, sum+int64(k)*v, applied+k, append(slices.Clone(rest), o.Pending[i+k:i+n]...))
		}
	}
	walk(0, 0, 0, nil)
}

// zsetRead returns the possibilities of a member that a read saw present with score
// (present) or absent: the pending increments taken effect before the read are no
// longer pending.
func zsetRead(opts []zsetOption, present bool, score int64) []zsetOption {
	var next []zsetOption
	for _, o := range opts {
		if !present {
			if !o.Present {
				next = append(next, o) // nothing pending took effect: it would be present
			}
			continue
		}
		zsetApplied(o, score, true, false, func(p bool, sc int64, rest []int64) {
			if p {
				next = append(next, zsetOption{Present: true, Score: sc, Pending: rest})
			}
		})
	}
	return next
}

// zsetRemoved returns the possibilities after a Remove that removed the member.
func zsetRemoved(opts []zsetOption) []zsetOption {
	var next []zsetOption
	for _, o := range opts {
		if o.Present {
			next = append(next, zsetOption{Pending: o.Pending})
			continue
		}
		// Absent: some pending increment took effect first; leaving one out of the
		// pending deltas covers every larger choice (normalizeZsetOptions).
		for i, v := range o.Pending {
			if i == 0 || o.Pending[i-1] != v {
				next = append(next, zsetOption{Pending: slices.Delete(slices.Clone(o.Pending), i, i+1)})
			}
		}
	}
	return next
}

// zsetBelow returns the possibilities of a member a full Top did not list: absent, or
// present and listed after last.
func zsetBelow(opts []zsetOption, member string, last ZsetEntry) []zsetOption {
	var next []zsetOption
	for _, o := range opts {
		bound := last.Score
		if member > last.Member {
			bound-- // an equal score would list it before last
		}
		zsetApplied(o, bound, false, true, func(p bool, sc int64, rest []int64) {
			switch {
			case !p:
				next = append(next, o)
			case zsetBefore(last, ZsetEntry{Member: member, Score: sc}):
				next = append(next, zsetOption{Present: true, Score: sc, Pending: rest})
			}
		})
	}
	return next
}

// zsetStep returns the state after op in with output out, and false when the output is
// impossible in every possibility. An unknown IncrementScore adds its delta to every
// possibility's pending ones (ZsetModel pins its linearization to its call); a known one,
// a read or a Remove first lets some pending increments of its member take effect, in
// every way that gives what it saw.
func zsetStep(s ZsetState, in Input, out Output) (ZsetState, bool) {
	member := in.Value
	opts := s.options(member)
	var next []zsetOption
	switch in.Op {
	case OpZsetIncrement:
		for _, o := range opts {
			if out.Unknown {
				i, _ := slices.BinarySearch(o.Pending, in.Delta)
				next = append(next, zsetOption{Present: o.Present, Score: o.Score, Pending: slices.Insert(slices.Clone(o.Pending), i, in.Delta)})
				continue
			}
			// Present with score counter−delta before it, or absent and counter = delta.
			zsetApplied(o, out.Counter-in.Delta, true, false, func(_ bool, _ int64, rest []int64) {
				next = append(next, zsetOption{Present: true, Score: out.Counter, Pending: rest})
			})
		}
	case OpZsetScore:
		if out.Unknown {
			return s, true
		}
		next = zsetRead(opts, out.Found, out.Counter)
	case OpZsetRemove:
		switch {
		case out.Unknown: // took effect, or not
			next = append(slices.Clone(opts), zsetRemoved(opts)...)
		case out.Found:
			next = zsetRemoved(opts)
		default:
			next = zsetRead(opts, false, 0)
		}
	case OpZsetTop:
		if out.Unknown {
			return s, true
		}
		return zsetTop(s, zsetTopCount(in), out)
	default:
		return s, false
	}
	if len(next) == 0 {
		return s, false
	}
	return s.with(member, next), true
}

// zsetTop is zsetStep for a known Top of count members: the listing must be in order,
// each listed member present with its score, and each other member absent — or, when
// count were listed, present and listed after the last.
func zsetTop(s ZsetState, count int, out Output) (ZsetState, bool) {
	listed, ok := zsetTopEntries(out)
	if !ok || len(listed) > count {
		return s, false
	}
	seen := map[string]bool{}
	for i, e := range listed {
		if seen[e.Member] || i > 0 && !zsetBefore(listed[i-1], e) {
			return s, false
		}
		seen[e.Member] = true
	}
	for _, e := range listed {
		next := zsetRead(s.options(e.Member), true, e.Score)
		if len(next) == 0 {
			return s, false
		}
		s = s.with(e.Member, next)
	}
	for _, m := range slices.Clone(s.Members) {
		if seen[m.Member] {
			continue
		}
		var next []zsetOption
		if len(listed) < count {
			next = zsetRead(m.Options, false, 0)
		} else {
			next = zsetBelow(m.Options, m.Member, listed[len(listed)-1])
		}
		if len(next) == 0 {
			return s, false
		}
		s = s.with(m.Member, next)
	}
	return s, true
}

func hashZsetState(state any) uint64 {
	s := state.(ZsetState)
	h := fnv.New64a()
	var b [8]byte
	put := func(v int64) {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	for _, m := range s.Members {
		h.Write([]byte(m.Member))
		put(int64(len(m.Options)))
		for _, o := range m.Options {
			if o.Present {
				put(1)
			}
			put(o.Score)
			put(int64(len(o.Pending)))
			for _, v := range o.Pending {
				put(v)
			}
		}
	}
	return h.Sum64()
}

// isZsetOp reports whether op is one of the sorted-set model's.
func isZsetOp(op Op) bool { return op >= OpZsetIncrement && op <= OpZsetRemove }

// SplitZsets splits a history into sorted-set operations (for ZsetModel) and the rest
// (for SplitLimits, SplitLocks and the KV models).
func SplitZsets(ops []porcupine.Operation) (rest, zsets []porcupine.Operation) {
	return splitBy(ops, isZsetOp)
}

// partitionZsets splits a sorted-set history by key, leaves out reads whose outcome is
// unknown (they constrain nothing), and pins each IncrementScore whose outcome is
// unknown to its call (its return time becomes its call time): the model carries its
// delta as pending, to take effect at any later point or never, which is the same as
// linearizing it anywhere after its call — without the checker trying every place.
// A Remove with an unknown outcome is left to the checker to place.
func partitionZsets(history []porcupine.Operation) [][]porcupine.Operation {
	var kept []porcupine.Operation
	for _, op := range history {
		in, out := op.Input.(Input), op.Output.(Output)
		switch {
		case out.Unknown && (in.Op == OpZsetScore || in.Op == OpZsetTop):
			continue
		case out.Unknown && in.Op == OpZsetIncrement:
			op.Return = op.Call
		}
		kept = append(kept, op)
	}
	return partitionByKey(kept)
}

// describeZsetOperation renders a sorted-set operation for the visualisation, e.g.
// `zset-incr("zset/0", "amy", +3) -> 12` or `zset-top("zset/0", 2) -> [bob 12, amy 12]`.
func describeZsetOperation(in Input, out Output) string {
	var call string
	switch in.Op {
	case OpZsetIncrement:
		call = fmt.Sprintf("zset-incr(%q, %q, %+d)", in.Key, in.Value, in.Delta)
	case OpZsetScore:
		call = fmt.Sprintf("zset-score(%q, %q)", in.Key, in.Value)
	case OpZsetTop:
		call = fmt.Sprintf("zset-top(%q, %d)", in.Key, zsetTopCount(in))
	case OpZsetRemove:
		call = fmt.Sprintf("zset-remove(%q, %q)", in.Key, in.Value)
	}
	if out.Unknown {
		return call + " -> ? (may take effect at any later time)"
	}
	switch in.Op {
	case OpZsetIncrement:
		return fmt.Sprintf("%s -> %d", call, out.Counter)
	case OpZsetScore:
		if !out.Found {
			return call + " -> absent"
		}
		return fmt.Sprintf("%s -> %d", call, out.Counter)
	case OpZsetTop:
		entries, ok := zsetTopEntries(out)
		if !ok {
			return fmt.Sprintf("%s -> malformed %q", call, out.Value)
		}
		var parts []string
		for _, e := range entries {
			parts = append(parts, fmt.Sprintf("%s %d", e.Member, e.Score))
		}
		return fmt.Sprintf("%s -> [%s]", call, strings.Join(parts, ", "))
	}
	if out.Found {
		return call + " -> removed"
	}
	return call + " -> absent"
}

// ZsetModel is the per-key specification of a sorted set used as a leaderboard with
// TIE_BREAK_LEX and integer scores, partitioned by key: IncrementScore(member, delta)
// answers the member's score (0 when absent) plus delta and makes it present; Score
// answers whether the member is present and its score; Top(count) lists the first count
// members, highest score first and equal scores by member descending, each with its
// score; Remove answers whether the member was present and makes it absent. So it
// catches a lost or repeated increment, a stale or invented score, a Top in the wrong
// order, with a wrong score, or missing or adding a member, and a Remove that did not
// (or did) happen. An IncrementScore whose outcome is unknown may take effect at any
// time after its call, or never: the partition function pins it to its call and the
// state keeps its delta pending (ZsetState), so histories with many unknown outcomes
// stay quick to check. A Remove with an unknown outcome is placed by the checker. Any
// other op makes the history illegal.
var ZsetModel = porcupine.Model{
	Partition: partitionZsets,
	Init:      func() any { return ZsetState{} },
	Step: func(state, input, output any) (bool, any) {
		next, ok := zsetStep(state.(ZsetState), input.(Input), output.(Output))
		return ok, next
	},
	Equal:             func(a, b any) bool { return a.(ZsetState).equal(b.(ZsetState)) },
	Hash:              hashZsetState,
	DescribeOperation: DescribeOperation,
	DescribeState:     func(state any) string { return state.(ZsetState).String() },
}
