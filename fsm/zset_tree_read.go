package fsm

import (
	"math"
	"math/bits"
)

// The read side of zsetTree: seeks, ranks, distinct-score counts and iteration.

// seek returns the rank of the first entry >= e (len if none), and whether that entry
// equals e. So the rank of a present entry is seek's first result; the first entry
// after a page token e is at seek(e) plus one if found.
func (t *zsetTree) seek(e zsetEntry) (int, bool) {
	rank := 0
	for n := t.root; n != nil; {
		i, found := n.search(e)
		if n.kids == nil {
			return rank + i, found
		}
		for _, c := range n.kids.counts[:i] {
			rank += c
		}
		rank += i
		if found {
			return rank + n.kids.counts[i], true
		}
		n = n.kids.children[i]
	}
	return rank, false
}

// rank returns the 0-based ascending rank of e, if present.
func (t *zsetTree) rank(e zsetEntry) (int, bool) {
	r, found := t.seek(e)
	if !found {
		return 0, false
	}
	return r, true
}

// denseRank returns the number of distinct scores lower than e's, if e is present. It
// counts the first entries before e in one descent, less one when e is not first (one
// of them then has e's score).
func (t *zsetTree) denseRank(e zsetEntry) (int, bool) {
	d := 0
	for n := t.root; n != nil; {
		i, found := n.search(e)
		d += bits.OnesCount64(n.first & (1<<uint(i) - 1))
		if n.kids == nil {
			if !found {
				break
			}
			return d - 1 + flag(n.first, i), true
		}
		for _, c := range n.kids.dcounts[:i] {
			d += c
		}
		if found {
			return d + n.kids.dcounts[i] - 1 + flag(n.first, i), true
		}
		n = n.kids.children[i]
	}
	return 0, false
}

// scoreRank returns the rank of the first entry with a score >= score, or with a score
// > score if exclusive; len if none. Score ranges are [scoreRank(min), scoreRank(max, !excl)).
func (t *zsetTree) scoreRank(score float64, exclusive bool) int {
	if exclusive {
		if score == math.Inf(1) {
			return t.length
		}
		score = math.Nextafter(score, math.Inf(1))
	}
	// (score, 0, "") is the least entry that has this score.
	r, _ := t.seek(zsetEntry{score: score})
	return r
}

// countBetween returns the number of entries e with lo <= e < hi.
func (t *zsetTree) countBetween(lo, hi zsetEntry) int {
	a, _ := t.seek(lo)
	b, _ := t.seek(hi)
	return max(b-a, 0)
}

// at returns the entry of rank i (0-based, ascending).
func (t *zsetTree) at(i int) (zsetEntry, bool) {
	if i < 0 || i >= t.length {
		return zsetEntry{}, false
	}
	n := t.root
	for n.kids != nil {
		k := 0
		for ; ; k++ {
			c := n.kids.counts[k]
			if i < c {
				break
			}
			if i == c {
				return n.entry(k), true
			}
			i -= c + 1
		}
		n = n.kids.children[k]
	}
	return n.entry(i), true
}

// distinct returns the number of distinct scores among the entries of rank < r
// (0 <= r <= len): the number of first entries before rank r. So distinct(len) is the
// number of distinct scores, and the dense rank of the entry of rank r is
// distinct(r+1)-1.
func (t *zsetTree) distinct(r int) int {
	d := 0
	n := t.root
	for n != nil && r > 0 {
		if n.kids == nil {
			return d + bits.OnesCount64(n.first&(1<<uint(r)-1))
		}
		k := 0
		for ; ; k++ {
			c := n.kids.counts[k]
			if r <= c {
				break
			}
			d += n.kids.dcounts[k] + flag(n.first, k)
			r -= c + 1
			if r == 0 {
				return d
			}
		}
		if r == n.kids.counts[k] {
			return d + n.kids.dcounts[k]
		}
		n = n.kids.children[k]
	}
	return d
}

// ascend calls fn on the entries of rank from, from+1, … until fn returns false.
func (t *zsetTree) ascend(from int, fn func(zsetEntry) bool) {
	if t.root == nil || from >= t.length {
		return
	}
	t.root.ascend(max(from, 0), fn)
}

func (n *zsetNode) ascend(from int, fn func(zsetEntry) bool) bool {
	if n.kids == nil {
		for i := from; i < n.n; i++ {
			if !fn(n.entry(i)) {
				return false
			}
		}
		return true
	}
	for k := 0; k <= n.n; k++ {
		if c := n.kids.counts[k]; from < c {
			if !n.kids.children[k].ascend(from, fn) {
				return false
			}
			from = 0
		} else {
			from -= c
		}
		if k == n.n {
			break
		}
		if from == 0 {
			if !fn(n.entry(k)) {
				return false
			}
		} else {
			from--
		}
	}
	return true
}

// descend calls fn on the entries of rank from, from-1, …, 0 until fn returns false.
// The top of a leaderboard is descend(len-1, …).
func (t *zsetTree) descend(from int, fn func(zsetEntry) bool) {
	if t.root == nil || from < 0 {
		return
	}
	t.root.descend(min(from, t.length-1), fn)
}

func (n *zsetNode) descend(from int, fn func(zsetEntry) bool) bool {
	if n.kids == nil {
		for i := from; i >= 0; i-- {
			if !fn(n.entry(i)) {
				return false
			}
		}
		return true
	}
	// Find where from lies: inside child k, or at item k; emit that part first.
	k := 0
	for ; ; k++ {
		c := n.kids.counts[k]
		if from < c {
			if !n.kids.children[k].descend(from, fn) {
				return false
			}
			break
		}
		if from == c {
			if !fn(n.entry(k)) || !n.kids.children[k].descend(c-1, fn) {
				return false
			}
			break
		}
		from -= c + 1
	}
	// Then everything before it, right to left.
	for k--; k >= 0; k-- {
		if !fn(n.entry(k)) || !n.kids.children[k].descend(n.kids.counts[k]-1, fn) {
			return false
		}
	}
	return true
}
