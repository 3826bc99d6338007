package fsm_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// naiveZset is the model: members with score and arrival number, sorted afresh on every
// read into a slice.
type naiveZset struct {
	tie    conclavev1.TieBreak
	seq    uint64
	score  map[string]float64
	arrive map[string]uint64
}

type naiveEntry struct {
	member string
	score  float64
	seq    uint64
}

func (z *naiveZset) set(member string, score float64) {
	if old, ok := z.score[member]; ok && old == score {
		return
	}
	z.seq++
	z.score[member], z.arrive[member] = score, z.seq
}

func (z *naiveZset) remove(member string) { delete(z.score, member); delete(z.arrive, member) }

// sorted is the set in ascending order: score, then the tie-break.
func (z *naiveZset) sorted() []naiveEntry {
	out := make([]naiveEntry, 0, len(z.score))
	for m, s := range z.score {
		out = append(out, naiveEntry{m, s, z.arrive[m]})
	}
	slices.SortFunc(out, func(a, b naiveEntry) int {
		if c := cmp.Compare(a.score, b.score); c != 0 {
			return c
		}
		switch z.tie {
		case conclavev1.TieBreak_TIE_BREAK_ARRIVAL:
			return cmp.Compare(b.seq, a.seq) // the first to arrive is last ascending, first from the top
		case conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING:
			return cmp.Compare(a.seq, b.seq)
		}
		return strings.Compare(a.member, b.member)
	})
	return out
}

// rank is the naive rank of sorted[i]: count what is ahead of it.
func naiveRank(s []naiveEntry, i int, reverse bool, mode conclavev1.RankMode) int64 {
	x := s[i].score
	switch mode {
	case conclavev1.RankMode_RANK_MODE_DENSE:
		ahead := map[float64]bool{}
		for _, e := range s {
			if !reverse && e.score < x || reverse && e.score > x {
				ahead[e.score] = true
			}
		}
		return int64(len(ahead))
	case conclavev1.RankMode_RANK_MODE_COMPETITION:
		n := 0
		for _, e := range s {
			if !reverse && e.score < x || reverse && e.score > x {
				n++
			}
		}
		return int64(n)
	}
	if reverse {
		return int64(len(s) - 1 - i)
	}
	return int64(i)
}

func inScore(x float64, iv *conclavev1.ScoreInterval) bool {
	if b := iv.GetMin(); b != nil && (x < b.GetScore() || b.GetExclusive() && x == b.GetScore()) {
		return false
	}
	if b := iv.GetMax(); b != nil && (x > b.GetScore() || b.GetExclusive() && x == b.GetScore()) {
		return false
	}
	return true
}

// naiveRange lists the indexes of sorted in an interval, in the direction asked.
func naiveRange(s []naiveEntry, rank *conclavev1.RankInterval, score *conclavev1.ScoreInterval, reverse bool) []int {
	var idx []int
	n := int64(len(s))
	for i := range s {
		switch {
		case rank != nil:
			start, stop := rank.GetStart(), rank.GetStop()
			if start < 0 {
				start += n
			}
			if stop < 0 {
				stop += n
			}
			pos := int64(i)
			if reverse {
				pos = n - 1 - int64(i)
			}
			if pos >= max(start, 0) && pos <= stop {
				idx = append(idx, i)
			}
		case score != nil:
			if inScore(s[i].score, score) {
				idx = append(idx, i)
			}
		default:
			idx = append(idx, i)
		}
	}
	if reverse {
		slices.Reverse(idx)
	}
	return idx
}

// TestZset_AgainstNaiveModel applies thousands of seeded sorted-set commands to the
// machine and to a naive model, comparing results, ranks in every mode, ranges (paged
// with tokens) and counts after every step.
func TestZset_AgainstNaiveModel(t *testing.T) {
	seed := testSeed(t)
	for _, tie := range []conclavev1.TieBreak{conclavev1.TieBreak_TIE_BREAK_LEX, conclavev1.TieBreak_TIE_BREAK_ARRIVAL, conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING} {
		t.Run(tie.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, uint64(tie)))
			m := fsm.New()
			model := &naiveZset{tie: tie, score: map[string]float64{}, arrive: map[string]uint64{}}
			key := []byte("z")
			member := func() string { return fmt.Sprintf("m%02d", r.IntN(40)) }
			score := func() float64 { return float64(r.IntN(10)) - 3 }
			steps := 3000
			if testing.Short() {
				steps = 600
			}
			for i := range steps {
				index := uint64(i + 1)
				var op proto.Message
				var popped []string
				s := model.sorted()
				switch w := r.IntN(100); {
				case w < 45:
					req := &conclavev1.AddRequest{Key: key, TieBreak: tie}
					switch r.IntN(6) {
					case 0:
						req.IfAbsent = true
					case 1:
						req.IfPresent = true
					case 2:
						req.OnlyGreater = true
					case 3:
						req.OnlyLess = true
					}
					for range 1 + r.IntN(4) {
						req.Members = append(req.Members, &conclavev1.ScoredMember{Member: member(), Score: score()})
					}
					for _, sm := range req.GetMembers() {
						cur, ok := model.score[sm.GetMember()]
						switch {
						case ok && req.IfAbsent, !ok && req.IfPresent, ok && req.OnlyGreater && sm.GetScore() <= cur, ok && req.OnlyLess && sm.GetScore() >= cur:
						default:
							model.set(sm.GetMember(), sm.GetScore())
						}
					}
					op = req
				case w < 60:
					mem, d := member(), score()
					model.set(mem, model.score[mem]+d)
					op = &conclavev1.IncrementScoreRequest{Key: key, Member: mem, Delta: d, TieBreak: tie}
				case w < 70:
					req := &conclavev1.SortedSetServiceRemoveRequest{Key: key, Members: []string{member(), member()}}
					for _, mem := range req.GetMembers() {
						model.remove(mem)
					}
					op = req
				case w < 80:
					req := &conclavev1.RemoveRangeRequest{Key: key}
					var gone []int
					if r.IntN(2) == 0 {
						iv := &conclavev1.RankInterval{Start: r.Int64N(int64(len(s))+5) - 3, Stop: r.Int64N(int64(len(s))+5) - 3}
						req.Interval, gone = &conclavev1.RemoveRangeRequest_Rank{Rank: iv}, naiveRange(s, iv, nil, false)
					} else {
						iv := &conclavev1.ScoreInterval{Min: randBound(r), Max: randBound(r)}
						req.Interval, gone = &conclavev1.RemoveRangeRequest_Score{Score: iv}, naiveRange(s, nil, iv, false)
					}
					if len(gone) > 5 && r.IntN(3) != 0 {
						continue // keep the set from emptying too often
					}
					for _, j := range gone {
						model.remove(s[j].member)
					}
					op = req
				default:
					req := &fsmv1.ZsetPop{Key: key, Count: r.Int64N(4), Max: r.IntN(2) == 0}
					k := min(max(int(req.Count), 1), len(s))
					for j := range k {
						e := s[j]
						if req.Max {
							e = s[len(s)-1-j]
						}
						model.remove(e.member)
						popped = append(popped, fmt.Sprintf("%s:%v", e.member, e.score))
					}
					op = req
				}
				res := m.ApplyCommand(index, cmd(t0, op))
				if res.GetError() != nil {
					t.Fatalf("step %d %v: %v", i, op, res.GetError())
				}
				if got := members(res.GetZsetPop().GetMembers()); got != strings.Join(popped, " ") {
					t.Fatalf("step %d: popped %s, model %v", i, got, popped)
				}
				checkAgainstNaive(t, m, model, r, i)
			}
		})
	}
}

func checkAgainstNaive(t *testing.T, m *fsm.Machine, model *naiveZset, r *rand.Rand, step int) {
	t.Helper()
	s := model.sorted()
	key := []byte("z")
	modes := []conclavev1.RankMode{conclavev1.RankMode_RANK_MODE_ORDINAL, conclavev1.RankMode_RANK_MODE_DENSE, conclavev1.RankMode_RANK_MODE_COMPETITION}
	m.Read(t0, func(v *fsm.View) {
		if n, _ := v.ZsetCard(key); n != int64(len(s)) {
			t.Fatalf("step %d: card %d, model %d", step, n, len(s))
		}
		// Ranks of a few members in every mode and direction.
		for range 3 {
			if len(s) == 0 {
				break
			}
			i := r.IntN(len(s))
			for _, mode := range modes {
				for _, reverse := range []bool{false, true} {
					got, err := v.ZsetRank(&conclavev1.RankRequest{Key: key, Member: s[i].member, Reverse: reverse, Mode: mode})
					if want := naiveRank(s, i, reverse, mode); err != nil || !got.GetFound() || got.GetRank() != want || got.GetScore() != s[i].score {
						t.Fatalf("step %d: rank of %s (%v, reverse %v) = %v %v, model %d\nmodel %v", step, s[i].member, mode, reverse, got, err, want, s)
					}
				}
			}
		}
		// A range by rank or score, paged with tokens.
		var rank *conclavev1.RankInterval
		var score *conclavev1.ScoreInterval
		req := &conclavev1.RangeRequest{Key: key, Reverse: r.IntN(2) == 0, Limit: 1 + r.Int64N(7), RankMode: modes[r.IntN(3)]}
		switch r.IntN(3) {
		case 0:
			rank = &conclavev1.RankInterval{Start: r.Int64N(int64(len(s))+5) - 3, Stop: r.Int64N(int64(len(s))+5) - 3}
			req.Interval = &conclavev1.RangeRequest_Rank{Rank: rank}
		case 1:
			score = &conclavev1.ScoreInterval{Min: randBound(r), Max: randBound(r)}
			req.Interval = &conclavev1.RangeRequest_Score{Score: score}
			if c, _ := v.ZsetCount(&conclavev1.CountRequest{Key: key, Interval: &conclavev1.CountRequest_Score{Score: score}}); c != int64(len(naiveRange(s, nil, score, false))) {
				t.Fatalf("step %d: count %v = %d, model %d", step, score, c, len(naiveRange(s, nil, score, false)))
			}
		}
		var want, got []string
		for _, j := range naiveRange(s, rank, score, req.Reverse) {
			want = append(want, fmt.Sprintf("%s:%v@%d", s[j].member, s[j].score, naiveRank(s, j, req.Reverse, req.RankMode)))
		}
		for pages := 0; ; pages++ {
			resp, err := v.ZsetRange(req)
			if err != nil || pages > len(s)+1 {
				t.Fatalf("step %d: range %v: %v (page %d)", step, req, err, pages)
			}
			for _, rm := range resp.GetMembers() {
				got = append(got, fmt.Sprintf("%s:%v@%d", rm.GetMember(), rm.GetScore(), rm.GetRank()))
			}
			if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("step %d: range %v\n got %v\nwant %v", step, req, got, want)
		}
	})
}

func randBound(r *rand.Rand) *conclavev1.ScoreBound {
	if r.IntN(5) == 0 {
		return nil
	}
	return &conclavev1.ScoreBound{Score: float64(r.IntN(12)) - 4, Exclusive: r.IntN(2) == 0}
}

// TestZset_AroundTopOffsetAgainstRange checks Around, Top and Range's offset and limit
// (and whether a token is returned) against a full Range of random small sets, in every
// tie-break, rank mode and direction.
func TestZset_AroundTopOffsetAgainstRange(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 0xa20))
	for iter := 0; iter < 300; iter++ {
		m := fsm.New()
		tie := conclavev1.TieBreak(1 + r.IntN(3))
		n := 1 + r.IntN(40)
		idx := uint64(1)
		for i := 0; i < n; i++ {
			req := zadd("z", fmt.Sprintf("m%02d", r.IntN(60)), r.IntN(6))
			req.TieBreak = tie
			apply(t, m, idx, req)
			idx++
		}
		mode := conclavev1.RankMode(r.IntN(4))
		for _, rev := range []bool{false, true} {
			full := zrange(t, m, &conclavev1.RangeRequest{Key: []byte("z"), Reverse: rev, RankMode: mode}).GetMembers()
			for i, fm := range full {
				c := r.IntN(4)
				var a *conclavev1.AroundResponse
				m.Read(t0, func(v *fsm.View) {
					a, _ = v.ZsetAround(&conclavev1.AroundRequest{Key: []byte("z"), Member: fm.GetMember(), Count: int64(c), Reverse: rev, RankMode: mode})
				})
				lo, hi := max(i-c, 0), min(i+c+1, len(full))
				if got, want := members(a.GetMembers()), members(full[lo:hi]); got != want {
					t.Fatalf("iter %d around %s c=%d rev=%v mode=%v:\n got %s\nwant %s", iter, fm.GetMember(), c, rev, mode, got, want)
				}
			}
			cnt := 1 + r.IntN(len(full)+2)
			var top *conclavev1.TopResponse
			m.Read(t0, func(v *fsm.View) {
				top, _ = v.ZsetTop(&conclavev1.TopRequest{Key: []byte("z"), Count: int64(cnt), Lowest: !rev, RankMode: mode})
			})
			if got, want := members(top.GetMembers()), members(full[:min(cnt, len(full))]); got != want {
				t.Fatalf("top: got %s want %s", got, want)
			}
			// offset on a score interval
			iv := &conclavev1.ScoreInterval{Min: &conclavev1.ScoreBound{Score: float64(r.IntN(6)), Exclusive: r.IntN(2) == 0}, Max: &conclavev1.ScoreBound{Score: float64(r.IntN(6)), Exclusive: r.IntN(2) == 0}}
			sub := zrange(t, m, &conclavev1.RangeRequest{Key: []byte("z"), Reverse: rev, RankMode: mode, Interval: &conclavev1.RangeRequest_Score{Score: iv}}).GetMembers()
			off, lim := r.IntN(len(sub)+2), 1+r.IntN(5)
			got := zrange(t, m, &conclavev1.RangeRequest{Key: []byte("z"), Reverse: rev, RankMode: mode, Interval: &conclavev1.RangeRequest_Score{Score: iv}, Offset: int64(off), Limit: int64(lim)})
			want := sub[min(off, len(sub)):min(off+lim, len(sub))]
			if members(got.GetMembers()) != members(want) {
				t.Fatalf("offset %d limit %d rev %v: got %s want %s (sub %s)", off, lim, rev, members(got.GetMembers()), members(want), members(sub))
			}
			if (got.GetNextPageToken() != "") != (off+lim < len(sub)) {
				t.Fatalf("token presence wrong: off %d lim %d len %d", off, lim, len(sub))
			}
		}
	}
}

// TestZset_PagingWhileScoresChange: paging with tokens while other members' scores
// change lists every member whose score did not change exactly once.
func TestZset_PagingWhileScoresChange(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 0xa9e))
	for iter := 0; iter < 300; iter++ {
		m := fsm.New()
		tie := conclavev1.TieBreak(1 + r.IntN(3))
		idx := uint64(1)
		for i := 0; i < 30; i++ {
			req := zadd("z", fmt.Sprintf("m%02d", i), r.IntN(8))
			req.TieBreak = tie
			apply(t, m, idx, req)
			idx++
		}
		rev := r.IntN(2) == 0
		moved := map[string]bool{}
		seen := map[string]int{}
		req := &conclavev1.RangeRequest{Key: []byte("z"), Reverse: rev, Limit: int64(1 + r.IntN(4))}
		for {
			resp := zrange(t, m, req)
			for _, x := range resp.GetMembers() {
				seen[x.GetMember()]++
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
			for k := 0; k < 2; k++ {
				mem := fmt.Sprintf("m%02d", r.IntN(30))
				moved[mem] = true
				apply(t, m, idx, zadd("z", mem, r.IntN(8)))
				idx++
			}
		}
		for i := 0; i < 30; i++ {
			mem := fmt.Sprintf("m%02d", i)
			if !moved[mem] && seen[mem] != 1 {
				t.Fatalf("iter %d rev %v tie %v: unmoved %s seen %d times", iter, rev, tie, mem, seen[mem])
			}
		}
	}
}

// TestZset_LexAgainstNaive checks lex Range (both directions) and Count against a naive
// filter of the members with the set's lowest score, on sets of one or two scores.
func TestZset_LexAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 0x1e8))
	for iter := 0; iter < 500; iter++ {
		m := fsm.New()
		sc := map[string]float64{}
		for i := 0; i < 1+r.IntN(15); i++ {
			mem := string(rune('a' + r.IntN(10)))
			s := float64(r.IntN(2))
			apply(t, m, uint64(i+1), zadd("z", mem, s))
			sc[mem] = s
		}
		lowest := 99.0
		for _, s := range sc {
			lowest = min(lowest, s)
		}
		bound := func() *conclavev1.LexBound {
			if r.IntN(4) == 0 {
				return nil
			}
			return &conclavev1.LexBound{Member: string(rune('a' + r.IntN(11))), Exclusive: r.IntN(2) == 0}
		}
		lo, hi := bound(), bound()
		var want []string
		for mem, s := range sc {
			if s != lowest {
				continue
			}
			if lo != nil && (mem < lo.Member || lo.Exclusive && mem == lo.Member) {
				continue
			}
			if hi != nil && (mem > hi.Member || hi.Exclusive && mem == hi.Member) {
				continue
			}
			want = append(want, mem)
		}
		slices.Sort(want)
		rev := r.IntN(2) == 0
		if rev {
			slices.Reverse(want)
		}
		got := zrange(t, m, &conclavev1.RangeRequest{Key: []byte("z"), Reverse: rev, Interval: &conclavev1.RangeRequest_Lex{Lex: &conclavev1.LexInterval{Min: lo, Max: hi}}})
		var g []string
		for _, x := range got.GetMembers() {
			g = append(g, x.GetMember())
		}
		if strings.Join(g, ",") != strings.Join(want, ",") {
			t.Fatalf("iter %d lo %v hi %v rev %v: got %v want %v (%v)", iter, lo, hi, rev, g, want, sc)
		}
		var n int64
		m.Read(t0, func(v *fsm.View) {
			n, _ = v.ZsetCount(&conclavev1.CountRequest{Key: []byte("z"), Interval: &conclavev1.CountRequest_Lex{Lex: &conclavev1.LexInterval{Min: lo, Max: hi}}})
		})
		if n != int64(len(want)) {
			t.Fatalf("count %d want %d", n, len(want))
		}
	}
}
