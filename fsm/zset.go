package fsm

// zset is the state of one sorted set: the entries in rank order (byRank) and the same
// entries by member (byMember), so that a member's score and rank are found in O(log n).
// byMember is a zsetIndex, a B-tree ordered by a fixed hash of the member, rather than a
// Go map (which cannot be cloned in O(1) for snapshots, and whose iteration order must
// never reach a result) or a tidwall B-tree (which cost 68 bytes per member: its nodes
// grow slices by appending and split appends in half).
//
// Invariant: byRank and byMember hold exactly the same entries. Scores are never NaN
// (callers reject it) and never -0 (Add stores +0). A zset is written only by the apply
// goroutine; a clone may be read elsewhere.
type zset struct {
	byRank   *zsetTree
	byMember *zsetIndex
}

func newZset() *zset {
	return &zset{
		byRank:   newZsetTree(),
		byMember: newZsetIndex(),
	}
}

// Clone returns an independent copy in O(1).
func (z *zset) Clone() *zset {
	return &zset{byRank: z.byRank.clone(), byMember: z.byMember.clone()}
}

// Len is the number of members.
func (z *zset) Len() int { return z.byRank.len() }

// Add sets member's score. tie breaks ties between equal scores (0 to order them by
// member; an arrival sequence to rank the first to reach a score first). If the member
// already has exactly this score nothing changes, not even its tie, so a member that
// keeps its score keeps its place. Add returns the previous score and whether the member
// existed. score must not be NaN.
func (z *zset) Add(member string, score float64, tie uint64) (old float64, existed bool) {
	if score == 0 {
		score = 0 // -0 becomes +0
	}
	e := zsetEntry{score: score, tie: tie, member: member}
	prev, existed := z.byMember.swap(e)
	if !existed {
		z.byRank.set(e)
		z.byMember.set(e)
		return 0, false
	}
	if prev.score != score {
		z.byRank.delete(prev)
		z.byRank.set(e)
	}
	return prev.score, true
}

// Remove deletes member and returns its score, if it was present.
func (z *zset) Remove(member string) (float64, bool) {
	prev, ok := z.byMember.delete(member)
	if !ok {
		return 0, false
	}
	z.byRank.delete(prev)
	return prev.score, true
}

// Score returns member's score, if present.
func (z *zset) Score(member string) (float64, bool) {
	e, ok := z.byMember.get(member)
	return e.score, ok
}

// Entry returns member's entry (score and tie), if present.
func (z *zset) Entry(member string) (zsetEntry, bool) {
	return z.byMember.get(member)
}

// Rank returns member's 0-based ascending rank, if present. The descending rank is
// Len()-1-Rank.
func (z *zset) Rank(member string) (int, bool) {
	e, ok := z.byMember.get(member)
	if !ok {
		return 0, false
	}
	return z.byRank.rank(e)
}

// DenseRank returns the number of distinct scores lower than member's, if present: its
// 0-based ascending rank when equal scores share a rank. The descending dense rank is
// DistinctScores()-1-asc.
func (z *zset) DenseRank(member string) (asc int, ok bool) {
	e, ok := z.byMember.get(member)
	if !ok {
		return 0, false
	}
	return z.byRank.denseRank(e)
}

// DistinctScores is the number of distinct scores among the members, in O(log n).
func (z *zset) DistinctScores() int { return z.byRank.distinct(z.byRank.len()) }
