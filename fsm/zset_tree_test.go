package fsm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"
	"unsafe"
)

// zsetSeed is random_test.go's testSeed for this internal test package: the default seed
// unless SEED is set, logged so that a failure can be replayed.
func zsetSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(20260417)
	if v := os.Getenv("SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("SEED=%d (set SEED to replay)", seed)
	return seed
}

// zsetModel is the naive reference: a sorted slice and a member lookup.
type zsetModel struct {
	sorted []zsetEntry
	byName map[string]zsetEntry // lookups only; never iterated
}

func newZsetModel() *zsetModel { return &zsetModel{byName: map[string]zsetEntry{}} }

func (m *zsetModel) clone() *zsetModel {
	c := &zsetModel{sorted: slices.Clone(m.sorted), byName: make(map[string]zsetEntry, len(m.byName))}
	for _, e := range m.sorted {
		c.byName[e.member] = e
	}
	return c
}

// seek is the rank of the first entry >= e.
func (m *zsetModel) seek(e zsetEntry) int {
	return sort.Search(len(m.sorted), func(i int) bool { return zsetCompare(m.sorted[i], e) >= 0 })
}

// distinct is the number of distinct scores among the entries of rank < r.
func (m *zsetModel) distinct(r int) int {
	d := 0
	for i := range r {
		if i == 0 || m.sorted[i-1].score != m.sorted[i].score {
			d++
		}
	}
	return d
}

// denseRank is the number of distinct scores lower than member's.
func (m *zsetModel) denseRank(member string) (int, bool) {
	e, ok := m.byName[member]
	if !ok {
		return 0, false
	}
	return m.distinct(m.seek(zsetEntry{score: e.score})), true
}

func (m *zsetModel) add(member string, score float64, tie uint64) (float64, bool) {
	if score == 0 {
		score = 0
	}
	prev, ok := m.byName[member]
	if ok && prev.score == score {
		return prev.score, true
	}
	if ok {
		i := m.seek(prev)
		m.sorted = slices.Delete(m.sorted, i, i+1)
	}
	e := zsetEntry{score, tie, member}
	i := m.seek(e)
	m.sorted = slices.Insert(m.sorted, i, e)
	m.byName[member] = e
	return prev.score, ok
}

func (m *zsetModel) remove(member string) (float64, bool) {
	prev, ok := m.byName[member]
	if !ok {
		return 0, false
	}
	i := m.seek(prev)
	m.sorted = slices.Delete(m.sorted, i, i+1)
	delete(m.byName, member)
	return prev.score, true
}

// checkZsetTree verifies the tree's invariants: order, fill, counts, first flags,
// dcounts and length.
func checkZsetTree(t *testing.T, tr *zsetTree) {
	t.Helper()
	if tr.root == nil {
		if tr.length != 0 {
			t.Fatalf("empty tree with length %d", tr.length)
		}
		return
	}
	var prev zsetEntry
	hasPrev := false
	var walk func(n *zsetNode, depth int, isRoot bool) (count, firsts, height int)
	walk = func(n *zsetNode, depth int, isRoot bool) (int, int, int) {
		if n.n > zsetMaxItems || (!isRoot && n.n < zsetMinItems) || n.n == 0 {
			t.Fatalf("node with %d entries at depth %d", n.n, depth)
		}
		for i := n.n; i < zsetMaxItems; i++ {
			if e := n.entry(i); e != (zsetEntry{}) || math.Signbit(e.score) {
				t.Fatalf("unused slot %d holds %v", i, e)
			}
		}
		if n.first>>uint(n.n) != 0 {
			t.Fatalf("flags %b set beyond %d entries", n.first, n.n)
		}
		firsts := 0
		visit := func(i int) {
			e := n.entry(i)
			if math.IsNaN(e.score) || math.Signbit(e.score) && e.score == 0 {
				t.Fatalf("stored score %v", e.score)
			}
			if hasPrev && zsetCompare(prev, e) >= 0 {
				t.Fatalf("out of order: %v then %v", prev, e)
			}
			want := !hasPrev || prev.score != e.score
			if got := n.first>>uint(i)&1 == 1; got != want {
				t.Fatalf("first flag of %v is %v; want %v (previous %v)", e, got, want, prev)
			}
			if want {
				firsts++
			}
			prev, hasPrev = e, true
		}
		if n.kids == nil {
			for i := range n.n {
				visit(i)
			}
			return n.n, firsts, 1
		}
		count, height := n.n, -1
		for k := 0; k <= n.n; k++ {
			c, d, h := walk(n.kids.children[k], depth+1, false)
			if c != n.kids.counts[k] {
				t.Fatalf("counts[%d] = %d, subtree holds %d", k, n.kids.counts[k], c)
			}
			if d != n.kids.dcounts[k] {
				t.Fatalf("dcounts[%d] = %d, subtree holds %d first entries", k, n.kids.dcounts[k], d)
			}
			if height >= 0 && h != height {
				t.Fatalf("uneven heights %d and %d", height, h)
			}
			height = h
			count += c
			firsts += d
			if k < n.n {
				visit(k)
			}
		}
		for k := n.n + 1; k <= zsetMaxItems; k++ {
			if n.kids.children[k] != nil || n.kids.counts[k] != 0 || n.kids.dcounts[k] != 0 {
				t.Fatalf("unused child slot %d is set", k)
			}
		}
		return count, firsts, height + 1
	}
	if c, _, _ := walk(tr.root, 0, true); c != tr.length {
		t.Fatalf("length %d, tree holds %d", tr.length, c)
	}
}

// checkZsetIndex verifies a member index's invariants: order by (hash, member), stored
// hashes, fill, even height and length.
func checkZsetIndex(t *testing.T, ix *zsetIndex) {
	t.Helper()
	if ix.root == nil {
		if ix.length != 0 {
			t.Fatalf("empty index with length %d", ix.length)
		}
		return
	}
	var prev zsetEntry
	var prevHash uint64
	hasPrev := false
	var walk func(n *zsetIndexNode, depth int, isRoot bool) (count, height int)
	walk = func(n *zsetIndexNode, depth int, isRoot bool) (int, int) {
		if n.n > zsetIndexMax || (!isRoot && n.n < zsetIndexMin) || n.n == 0 {
			t.Fatalf("index node with %d entries at depth %d", n.n, depth)
		}
		for i := n.n; i < zsetIndexMax; i++ {
			if n.items[i] != (zsetEntry{}) || n.hashes[i] != 0 {
				t.Fatalf("unused index slot %d holds %v, %x", i, n.items[i], n.hashes[i])
			}
		}
		visit := func(i int) {
			e, h := n.items[i], n.hashes[i]
			if h != zsetHash(e.member) {
				t.Fatalf("stored hash %x of %q; want %x", h, e.member, zsetHash(e.member))
			}
			if hasPrev && (prevHash > h || prevHash == h && prev.member >= e.member) {
				t.Fatalf("index out of order: %v then %v", prev, e)
			}
			prev, prevHash, hasPrev = e, h, true
		}
		if n.kids == nil {
			for i := range n.n {
				visit(i)
			}
			return n.n, 1
		}
		count, height := n.n, -1
		for k := 0; k <= n.n; k++ {
			c, h := walk(n.kids[k], depth+1, false)
			if height >= 0 && h != height {
				t.Fatalf("uneven index heights %d and %d", height, h)
			}
			height = h
			count += c
			if k < n.n {
				visit(k)
			}
		}
		for k := n.n + 1; k <= zsetIndexMax; k++ {
			if n.kids[k] != nil {
				t.Fatalf("unused index child slot %d is set", k)
			}
		}
		return count, height + 1
	}
	if c, _ := walk(ix.root, 0, true); c != ix.length {
		t.Fatalf("index length %d, holds %d", ix.length, c)
	}
}

// checkZsetSame compares a zset in full with its model.
func checkZsetSame(t *testing.T, z *zset, m *zsetModel) {
	t.Helper()
	checkZsetTree(t, z.byRank)
	checkZsetIndex(t, z.byMember)
	if z.Len() != len(m.sorted) || z.byMember.len() != len(m.sorted) {
		t.Fatalf("Len %d, by member %d, model %d", z.Len(), z.byMember.len(), len(m.sorted))
	}
	var got []zsetEntry
	z.byRank.ascend(0, func(e zsetEntry) bool { got = append(got, e); return true })
	if !slices.Equal(got, m.sorted) {
		t.Fatalf("ascend differs from the model:\n got %v\nwant %v", got, m.sorted)
	}
	got = got[:0]
	z.byRank.descend(z.Len()-1, func(e zsetEntry) bool { got = append(got, e); return true })
	slices.Reverse(got)
	if !slices.Equal(got, m.sorted) {
		t.Fatalf("descend differs from the model")
	}
	seen := 0
	z.byMember.ascend(func(e zsetEntry) bool {
		if want := m.byName[e.member]; e != want {
			t.Fatalf("by member %v, model %v", e, want)
		}
		seen++
		return true
	})
	if seen != len(m.sorted) {
		t.Fatalf("index holds %d entries, model %d", seen, len(m.sorted))
	}
	// distinct at every rank (at a few hundred in big sets), against a running count.
	step := max(1, len(m.sorted)/300)
	d := 0
	for r := 0; r <= len(m.sorted); r++ {
		if r%step == 0 || r == len(m.sorted) {
			if got := z.byRank.distinct(r); got != d {
				t.Fatalf("distinct(%d) = %d; want %d", r, got, d)
			}
		}
		if r < len(m.sorted) && (r == 0 || m.sorted[r-1].score != m.sorted[r].score) {
			d++
		}
	}
	if got := z.DistinctScores(); got != d {
		t.Fatalf("DistinctScores = %d; want %d", got, d)
	}
}

// zsetScores are drawn from to force ties, signed zeros and infinities.
var zsetScores = []float64{math.Inf(-1), -1e300, -2.5, -1, math.Copysign(0, -1), 0, 5e-324, 1, 1.5, 2, 1e300, math.Inf(1)}

func randZsetScore(r *rand.Rand) float64 {
	if r.IntN(3) == 0 {
		return float64(r.IntN(2000)-1000) / 8
	}
	return zsetScores[r.IntN(len(zsetScores))]
}

func randZsetEntry(r *rand.Rand, members int) zsetEntry {
	return zsetEntry{randZsetScore(r), uint64(r.IntN(3)), "m" + strconv.Itoa(r.IntN(members))}
}

// TestZsetTree_AgainstModel drives sorted sets and their clones with seeded random
// operations and checks every answer against a sorted slice. Clones are written too,
// so independence is checked both ways.
func TestZsetTree_AgainstModel(t *testing.T) {
	steps := 60000
	if testing.Short() {
		steps = 15000
	}
	runZsetModel(t, zsetSeed(t), steps)
}

// TestZsetIndex_HashCollisions runs the model test with a member hash of two bits, so
// that long runs of equal hashes fill and span index nodes and every lookup, insert,
// split, delete and merge must order colliding members by name.
func TestZsetIndex_HashCollisions(t *testing.T) {
	defer func(mask uint64) { zsetHashMask = mask }(zsetHashMask)
	zsetHashMask = 3
	steps := 30000
	if testing.Short() {
		steps = 10000
	}
	runZsetModel(t, zsetSeed(t), steps)
}

// zsetPhases are the phases of runZsetModel, each a twelfth of the steps: the number of
// member names drawn from; whether scores come from three values only (so that runs of
// ties span nodes and most entries are not first of their score); and whether each step
// also adds a member (fill, so that trees reach three levels) or removes one, with now
// and then a run of ranks (drain, so that nodes merge and borrow at every level and the
// tree shrinks).
var zsetPhases = []struct {
	members          int
	few, fill, drain bool
}{
	{3000, false, false, false}, {3000, true, false, false}, {8000, false, true, false},
	{8000, true, true, false}, {8000, true, false, true}, {200, false, false, false},
	{6000, false, true, false}, {6000, true, false, false}, {6000, false, false, true},
	{50, true, false, false}, {5000, true, true, false}, {5000, false, false, true},
}

// runZsetModel is the body of the model tests: steps seeded random operations on sorted
// sets and their clones, each checked against a zsetModel, over zsetPhases.
func runZsetModel(t *testing.T, seed uint64, steps int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0x2d5e7))
	type world struct {
		z *zset
		m *zsetModel
	}
	worlds := []world{{newZset(), newZsetModel()}}
	phaseLen := max(steps/len(zsetPhases), 1)
	members, few, fill, drain := 0, false, false, false
	randScore := func() float64 {
		if few {
			return zsetScores[3+r.IntN(4)] // -1, -0, 0, 5e-324
		}
		return randZsetScore(r)
	}
	remove := func(step int, z *zset, m *zsetModel, member string) {
		t.Helper()
		old, ok := z.Remove(member)
		wantOld, wantOk := m.remove(member)
		if ok != wantOk || old != wantOld {
			t.Fatalf("step %d: Remove(%q) = %v, %v; want %v, %v", step, member, old, ok, wantOld, wantOk)
		}
	}
	for step := 0; step < steps; step++ {
		if step%phaseLen == 0 {
			p := zsetPhases[step/phaseLen%len(zsetPhases)]
			members, few, fill, drain = p.members, p.few, p.fill, p.drain
		}
		w := worlds[len(worlds)-1]
		if r.IntN(8) == 0 {
			w = worlds[r.IntN(len(worlds))]
		}
		z, m := w.z, w.m
		if fill {
			member, score := "m"+strconv.Itoa(r.IntN(members)), randScore()
			z.Add(member, score, 0)
			m.add(member, score, 0)
		}
		if drain && len(m.sorted) > 0 {
			remove(step, z, m, m.sorted[r.IntN(len(m.sorted))].member)
			if r.IntN(100) == 0 && len(m.sorted) > 0 { // a run of ranks, as ZREMRANGEBYRANK does
				from := r.IntN(len(m.sorted))
				for _, e := range slices.Clone(m.sorted[from:min(from+r.IntN(100), len(m.sorted))]) {
					remove(step, z, m, e.member)
				}
			}
		}
		n := len(m.sorted)
		member := "m" + strconv.Itoa(r.IntN(members))
		switch op := r.IntN(100); {
		case op < 40: // add or change a score
			score, tie := randScore(), uint64(r.IntN(3))
			old, existed := z.Add(member, score, tie)
			wantOld, wantExisted := m.add(member, score, tie)
			if existed != wantExisted || existed && old != wantOld {
				t.Fatalf("step %d: Add(%q, %v) = %v, %v; want %v, %v", step, member, score, old, existed, wantOld, wantExisted)
			}
		case op < 55 || op < 75 && members < 1000: // remove (more often in small phases)
			if n > 0 && r.IntN(2) == 0 {
				member = m.sorted[r.IntN(n)].member // a present one, so sets shrink
			}
			remove(step, z, m, member)
		case op < 62: // score and rank by member
			e, ok := m.byName[member]
			if s, got := z.Score(member); got != ok || s != e.score {
				t.Fatalf("step %d: Score(%q) = %v, %v; want %v, %v", step, member, s, got, e.score, ok)
			}
			rank, got := z.Rank(member)
			if got != ok || ok && rank != m.seek(e) {
				t.Fatalf("step %d: Rank(%q) = %d, %v; want %d, %v", step, member, rank, got, m.seek(e), ok)
			}
			dense, got := z.DenseRank(member)
			if want, _ := m.denseRank(member); got != ok || dense != want {
				t.Fatalf("step %d: DenseRank(%q) = %d, %v; want %d, %v", step, member, dense, got, want, ok)
			}
		case op < 68: // entry at rank, including out of range
			i := r.IntN(n+2) - 1
			e, ok := z.byRank.at(i)
			if wantOk := i >= 0 && i < n; ok != wantOk || ok && e != m.sorted[i] {
				t.Fatalf("step %d: at(%d) = %v, %v", step, i, e, ok)
			}
			i = r.IntN(n + 1)
			if got, want := z.byRank.distinct(i), m.distinct(i); got != want {
				t.Fatalf("step %d: distinct(%d) = %d; want %d", step, i, got, want)
			}
		case op < 76: // seek and count between bounds
			lo, hi := randZsetEntry(r, members), randZsetEntry(r, members)
			if lo.score == 0 {
				lo.score = 0 // bounds come from callers that normalise too
			}
			got, found := z.byRank.seek(lo)
			want := m.seek(lo)
			wantFound := want < n && m.sorted[want] == lo
			if got != want || found != wantFound {
				t.Fatalf("step %d: seek(%v) = %d, %v; want %d, %v", step, lo, got, found, want, wantFound)
			}
			if c, want := z.byRank.countBetween(lo, hi), max(m.seek(hi)-m.seek(lo), 0); c != want {
				t.Fatalf("step %d: countBetween(%v, %v) = %d; want %d", step, lo, hi, c, want)
			}
		case op < 82: // score bounds
			s, excl := randZsetScore(r), r.IntN(2) == 0
			want := sort.Search(n, func(i int) bool {
				if excl {
					return m.sorted[i].score > s
				}
				return m.sorted[i].score >= s
			})
			if got := z.byRank.scoreRank(s, excl); got != want {
				t.Fatalf("step %d: scoreRank(%v, %v) = %d; want %d", step, s, excl, got, want)
			}
		case op < 90: // iteration both ways from a rank, with a limit
			from, limit := r.IntN(n+2)-1, r.IntN(40)
			var got []zsetEntry
			z.byRank.ascend(from, func(e zsetEntry) bool { got = append(got, e); return len(got) < limit })
			want := m.sorted[min(max(from, 0), n):]
			want = want[:min(len(want), max(limit, 1))]
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: ascend(%d) limit %d = %v; want %v", step, from, limit, got, want)
			}
			got = got[:0]
			z.byRank.descend(from, func(e zsetEntry) bool { got = append(got, e); return len(got) < limit })
			want = slices.Clone(m.sorted[:max(min(from+1, n), 0)])
			slices.Reverse(want)
			want = want[:min(len(want), max(limit, 1))]
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: descend(%d) limit %d = %v; want %v", step, from, limit, got, want)
			}
		case op < 93: // the tree refuses duplicates and absent deletes
			if n > 0 {
				e := m.sorted[r.IntN(n)]
				if prev, replaced := z.byRank.set(e); !replaced || prev != e {
					t.Fatalf("step %d: set of present %v = %v, %v", step, e, prev, replaced)
				}
			}
			if e := randZsetEntry(r, members); m.byName[e.member] != e && z.byRank.delete(e) {
				t.Fatalf("step %d: delete of absent %v succeeded", step, e)
			}
		case op < 96: // clone this world; keep a few
			worlds = append(worlds, world{z.Clone(), m.clone()})
			if len(worlds) > 5 {
				worlds = worlds[1:]
			}
		default:
			checkZsetSame(t, z, m)
		}
		if step%2500 == 0 {
			for _, w := range worlds {
				checkZsetSame(t, w.z, w.m)
			}
		}
	}
	for _, w := range worlds {
		checkZsetSame(t, w.z, w.m)
	}
}

// TestZsetTree_Sequential fills and drains in order, the shapes random tests rarely
// make: appends at the end, deletes from the front, and a clone taken midway.
func TestZsetTree_Sequential(t *testing.T) {
	z, m := newZset(), newZsetModel()
	var snap *zset
	var snapModel *zsetModel
	for i := range 20000 {
		name := fmt.Sprintf("p%05d", i)
		z.Add(name, float64(i), 0)
		m.add(name, float64(i), 0)
		if i == 10000 {
			snap, snapModel = z.Clone(), m.clone()
		}
	}
	checkZsetSame(t, z, m)
	for i := range 19990 {
		name := fmt.Sprintf("p%05d", i)
		z.Remove(name)
		m.remove(name)
	}
	checkZsetSame(t, z, m)
	checkZsetSame(t, snap, snapModel)
}

// TestZsetTree_Deep builds a tree four levels deep (appends leave nodes 3/4 full), then
// deletes 95% of it in random order, so deletes reach interior nodes of every level and
// nodes merge and borrow all the way up; it checks against the model at checkpoints and
// against a clone taken before the deletes.
func TestZsetTree_Deep(t *testing.T) {
	seed := zsetSeed(t)
	r := rand.New(rand.NewPCG(seed, 0xdee9))
	n := 200_000
	if testing.Short() {
		n = 60_000
	}
	z, m := newZset(), newZsetModel()
	for i := range n {
		e := zsetEntry{float64(i / 3), uint64(i % 3), "d" + strconv.Itoa(i)}
		z.Add(e.member, e.score, e.tie)
		m.sorted = append(m.sorted, e) // appended in order
		m.byName[e.member] = e
	}
	if h := zsetHeight(z.byRank); h < 3 {
		t.Fatalf("height %d; want at least 3", h)
	}
	checkZsetSame(t, z, m)
	snap, snapModel := z.Clone(), m.clone()
	gone := make([]bool, n)
	order := r.Perm(n)[:n*95/100]
	for i, k := range order {
		e := m.sorted[k]
		rank, ok := z.Rank(e.member)
		if at, _ := z.byRank.at(rank); !ok || at != e {
			t.Fatalf("Rank(%q) = %d, %v; at that rank is %v", e.member, rank, ok, at)
		}
		if _, ok := z.Remove(e.member); !ok {
			t.Fatalf("Remove(%q) found nothing", e.member)
		}
		gone[k] = true
		if i%(len(order)/4) == 0 || i == len(order)-1 {
			want := newZsetModel()
			for j, e := range m.sorted {
				if !gone[j] {
					want.sorted = append(want.sorted, e)
					want.byName[e.member] = e
				}
			}
			checkZsetSame(t, z, want)
		}
	}
	checkZsetSame(t, snap, snapModel)
}

// TestZsetTree_TiesDrain checks first flags and dcounts through every kind of rebalance.
// It builds sets three levels deep whose scores come from few values, in random order, in
// rising order (appends leave nodes 3/4 full) and rising then filled at random (which
// leaves some nodes full, so that an underfull node borrows rather than merges); moves a
// tenth of the members to new scores; then drains them at random, from the top (the
// last child borrows from its left sibling) or from the bottom, checking the invariants
// and distinct at a random rank every few deletes. Halfway it clones and drains the clone
// too, each from its own side.
func TestZsetTree_TiesDrain(t *testing.T) {
	seed := zsetSeed(t)
	r := rand.New(rand.NewPCG(seed, 0x7135))
	n := 5000
	if testing.Short() {
		n = 3500
	}
	for _, scores := range []int{1, 3, 40, n} {
		for _, build := range []string{"random", "rising", "rising+random"} {
			for _, drain := range []string{"random", "top", "bottom"} {
				what := fmt.Sprintf("%d scores, %s build, %s drain", scores, build, drain)
				z, m := newZset(), newZsetModel()
				for i := range n {
					score := float64(r.IntN(scores))
					if build == "rising" || build == "rising+random" && i < n*3/4 {
						score = float64(i * scores / n)
					}
					member, tie := "t"+strconv.Itoa(i), uint64(r.IntN(2))
					z.Add(member, score, tie)
					m.add(member, score, tie)
				}
				if h := zsetHeight(z.byRank); h < 3 {
					t.Fatalf("%s: height %d; want 3", what, h)
				}
				checkZsetSame(t, z, m)
				for range n / 10 {
					member, score := m.sorted[r.IntN(n)].member, float64(r.IntN(scores))
					z.Add(member, score, 0)
					m.add(member, score, 0)
				}
				checkZsetSame(t, z, m)
				remove := func(i int, z *zset, m *zsetModel) {
					k := r.IntN(len(m.sorted))
					switch drain {
					case "top":
						k = len(m.sorted) - 1
					case "bottom":
						k = 0
					}
					member := m.sorted[k].member
					z.Remove(member)
					m.remove(member)
					if i%16 == 0 {
						checkZsetTree(t, z.byRank)
						k = r.IntN(len(m.sorted) + 1)
						if got, want := z.byRank.distinct(k), m.distinct(k); got != want {
							t.Fatalf("%s: distinct(%d) = %d; want %d", what, k, got, want)
						}
					}
				}
				var zc *zset
				var mc *zsetModel
				for i := 0; len(m.sorted) > 0; i++ {
					if zc == nil && len(m.sorted) == n/2 {
						zc, mc = z.Clone(), m.clone()
					}
					remove(i, z, m)
					if zc != nil && len(mc.sorted) > 0 {
						remove(i, zc, mc)
					}
				}
				checkZsetSame(t, z, m)
				checkZsetSame(t, zc, mc)
			}
		}
	}
}

// TestZsetTree_NodeSizes pins the allocation classes the node sizes were chosen for.
// The runtime puts an 8-byte header before a large object that holds pointers, so a
// node must leave 8 bytes of its class free: a leaf of 2,048 bytes would cost 2,304.
func TestZsetTree_NodeSizes(t *testing.T) {
	const header = 8
	if size := unsafe.Sizeof(zsetNode{}) + header; size > 2048 {
		t.Errorf("zsetNode takes %d bytes; want at most 2048", size)
	}
	// An interior node and its kids fill a 4 KiB object, which is one page.
	if size := unsafe.Sizeof(zsetInner{}) + header; size <= 3456 || size > 4096 {
		t.Errorf("zsetInner takes %d bytes; want 3457 to 4096", size)
	}
	if size := unsafe.Sizeof(zsetIndexNode{}) + header; size > 4096 {
		t.Errorf("zsetIndexNode takes %d bytes; want at most 4096", size)
	}
	if zsetMaxItems > 64 {
		t.Errorf("zsetMaxItems %d: first flags need a bit each in a uint64", zsetMaxItems)
	}
}

func zsetHeight(tr *zsetTree) int {
	h := 0
	for n := tr.root; n != nil; h++ {
		if n.kids == nil {
			return h + 1
		}
		n = n.kids.children[0]
	}
	return h
}

// TestZset_SignedZeroAndTies pins the small rules: -0 is stored as +0, an unchanged score
// keeps the old tie, and ties order by tie then member.
func TestZset_SignedZeroAndTies(t *testing.T) {
	z := newZset()
	z.Add("b", math.Copysign(0, -1), 0)
	if s, _ := z.Score("b"); math.Signbit(s) {
		t.Fatalf("Score = %v; want +0", s)
	}
	z.Add("a", 0, 0)
	if r, _ := z.Rank("a"); r != 0 {
		t.Fatalf("Rank(a) = %d; want 0 (lexicographic tie)", r)
	}
	z.Add("c", 7, 1)
	z.Add("d", 7, 2)
	if old, existed := z.Add("c", 7, 3); !existed || old != 7 {
		t.Fatalf("Add same score = %v, %v", old, existed)
	}
	if e, _ := z.Entry("c"); e.tie != 1 {
		t.Fatalf("tie = %d; want the first arrival, 1", e.tie)
	}
	if r, _ := z.Rank("c"); r != 2 {
		t.Fatalf("Rank(c) = %d; want 2", r)
	}
}
