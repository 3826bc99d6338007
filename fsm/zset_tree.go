package fsm

import (
	"math"
	"strings"
	"sync/atomic"
)

// zsetTree is a counted, copy-on-write B-tree of zsetEntry, in the total order (score,
// tie, member) for a sorted set's ranks. Each interior node keeps the number
// of entries under each child, so insert, delete, rank, entry-at-rank and seek are all
// O(log n), and iteration can start at any rank.
//
// tidwall/btree keeps per-node counts (GetAt, DeleteAt) but has no rank-of-item, and a
// rank found by binary search over GetAt would cost O(log² n); hence this small tree.
//
// Copy-on-write works as in tidwall/btree: every node carries the isolation id of the
// tree that created it. clone shares the root and gives both trees fresh ids, so a node
// with a foreign id is shared and is copied before it is written ("path copying"). A
// clone therefore never sees later writes to the original, nor the original to the clone.
//
// Invariants: entries are unique; no score is NaN (callers reject it) and no score is
// -0 (insert normalises it to +0); every node but the root holds zsetMinItems to
// zsetMaxItems entries; counts[i] is the number of entries under children[i].
// A zsetTree is not safe for concurrent writes; a clone may be read while the original
// is written.
type zsetTree struct {
	isoid  uint64
	root   *zsetNode
	length int
}

// zsetEntry is one member of a sorted set with its score and tie-breaker. tie is 0 when
// ties are broken by member (as Redis does), or an arrival sequence when the member that
// reached a score first ranks before later ones.
type zsetEntry struct {
	score  float64
	tie    uint64
	member string
}

// zsetCompare orders entries by score, then tie, then member. It assumes no NaN; -0 and
// +0 compare equal.
func zsetCompare(a, b zsetEntry) int {
	switch {
	case a.score < b.score:
		return -1
	case a.score > b.score:
		return 1
	case a.tie < b.tie:
		return -1
	case a.tie > b.tie:
		return 1
	}
	return strings.Compare(a.member, b.member)
}

// zsetMaxItems is the node capacity, chosen by the benchmarks in zset_tree_test.go:
// a node of 63 entries is 2,040 bytes, just inside the 2 KiB allocation class.
// zsetMinItems is a quarter of it rather than half so that a node filled by appends
// (rising scores, new members in name order) can split unevenly and stay 3/4 full.
const (
	zsetMaxItems = 63
	zsetMinItems = zsetMaxItems / 4
)

// zsetNode is a leaf (kids == nil) or an interior node with n+1 children.
type zsetNode struct {
	isoid uint64
	n     int // entries in items
	kids  *zsetKids
	items [zsetMaxItems]zsetEntry
}

// zsetKids are an interior node's children and the number of entries under each.
type zsetKids struct {
	children [zsetMaxItems + 1]*zsetNode
	counts   [zsetMaxItems + 1]int
}

// zsetIsoSeq hands out isolation ids. Ids never reach a result; they only tell a tree
// which nodes it owns.
var zsetIsoSeq atomic.Uint64

func newZsetTree() *zsetTree { return &zsetTree{isoid: zsetIsoSeq.Add(1)} }

// len is the number of entries.
func (t *zsetTree) len() int { return t.length }

// clone returns an independent copy in O(1): both trees share every node until one of
// them writes to it.
func (t *zsetTree) clone() *zsetTree {
	t.isoid = zsetIsoSeq.Add(1)
	return &zsetTree{isoid: zsetIsoSeq.Add(1), root: t.root, length: t.length}
}

// mut returns *p, first copying it if another tree may share it.
func (t *zsetTree) mut(p **zsetNode) *zsetNode {
	n := *p
	if n.isoid == t.isoid {
		return n
	}
	c := &zsetNode{isoid: t.isoid, n: n.n, items: n.items}
	if n.kids != nil {
		k := *n.kids
		c.kids = &k
	}
	*p = c
	return c
}

// search returns the first index in n whose entry is >= e, and whether it equals e.
func (t *zsetTree) search(n *zsetNode, e zsetEntry) (int, bool) {
	lo, hi := 0, n.n
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		c := zsetCompare(n.items[h], e)
		if c == 0 {
			return h, true
		}
		if c < 0 {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo, false
}

// set stores e, replacing an entry that compares equal to it, and returns the entry
// replaced, if any. In a member index that updates a member's score and tie.
func (t *zsetTree) set(e zsetEntry) (zsetEntry, bool) {
	if e.score == 0 {
		e.score = 0 // -0 becomes +0
	}
	if t.root == nil {
		t.root = &zsetNode{isoid: t.isoid}
	}
	root := t.mut(&t.root)
	if root.n == zsetMaxItems {
		// Grow: the old root becomes the only child of a new one, and is split.
		up := &zsetNode{isoid: t.isoid, kids: &zsetKids{}}
		up.kids.children[0] = root
		up.kids.counts[0] = t.length
		t.root = up
		t.split(up, 0, e)
	}
	prev, replaced := t.setAt(t.root, e)
	if !replaced {
		t.length++
	}
	return prev, replaced
}

// setAt stores e under n, which is writable and not full. Full children are split on
// the way down, so a leaf always has room.
func (t *zsetTree) setAt(n *zsetNode, e zsetEntry) (zsetEntry, bool) {
	i, found := t.search(n, e)
	if found {
		prev := n.items[i]
		n.items[i] = e
		return prev, true
	}
	if n.kids == nil {
		copy(n.items[i+1:n.n+1], n.items[i:n.n])
		n.items[i] = e
		n.n++
		return zsetEntry{}, false
	}
	child := t.mut(&n.kids.children[i])
	if child.n == zsetMaxItems {
		t.split(n, i, e)
		switch c := zsetCompare(e, n.items[i]); {
		case c == 0:
			prev := n.items[i]
			n.items[i] = e
			return prev, true
		case c > 0:
			i++
		}
		child = n.kids.children[i] // both halves are new or writable
	}
	prev, replaced := t.setAt(child, e)
	if !replaced {
		n.kids.counts[i]++
	}
	return prev, replaced
}

// split divides the full, writable child i of n around a median, which moves up into n
// at index i; n has room for it. The median is the middle entry, unless e, the entry
// being stored, lies beyond the child's last (or before its first) entry: then the
// split leaves the side that appends do not reach 3/4 full.
func (t *zsetTree) split(n *zsetNode, i int, e zsetEntry) {
	left := n.kids.children[i]
	mid := zsetMaxItems / 2
	if zsetCompare(e, left.items[zsetMaxItems-1]) > 0 {
		mid = zsetMaxItems - 1 - zsetMinItems
	} else if zsetCompare(e, left.items[0]) < 0 {
		mid = zsetMinItems
	}
	right := &zsetNode{isoid: t.isoid, n: zsetMaxItems - mid - 1}
	median := left.items[mid]
	copy(right.items[:], left.items[mid+1:])
	clear(left.items[mid:])
	left.n = mid
	rightCount := right.n
	if left.kids != nil {
		right.kids = &zsetKids{}
		copy(right.kids.children[:], left.kids.children[mid+1:])
		copy(right.kids.counts[:], left.kids.counts[mid+1:])
		clear(left.kids.children[mid+1:])
		clear(left.kids.counts[mid+1:])
		for _, c := range right.kids.counts[:right.n+1] {
			rightCount += c
		}
	}
	copy(n.items[i+1:n.n+1], n.items[i:n.n])
	copy(n.kids.children[i+2:n.n+2], n.kids.children[i+1:n.n+1])
	copy(n.kids.counts[i+2:n.n+2], n.kids.counts[i+1:n.n+1])
	n.items[i] = median
	n.kids.children[i+1] = right
	n.kids.counts[i] -= rightCount + 1
	n.kids.counts[i+1] = rightCount
	n.n++
}

// delete removes e and reports whether it was present.
func (t *zsetTree) delete(e zsetEntry) bool {
	if t.root == nil || !t.deleteAt(t.mut(&t.root), e) {
		return false
	}
	t.length--
	if root := t.root; root.n == 0 {
		if root.kids != nil {
			t.root = root.kids.children[0] // shrink
		} else {
			t.root = nil
		}
	}
	return true
}

// deleteAt removes e from under the writable node n and reports whether it was there.
func (t *zsetTree) deleteAt(n *zsetNode, e zsetEntry) bool {
	i, found := t.search(n, e)
	if n.kids == nil {
		if !found {
			return false
		}
		copy(n.items[i:n.n], n.items[i+1:n.n])
		n.n--
		n.items[n.n] = zsetEntry{}
		return true
	}
	if found {
		// Replace e by its predecessor, the last entry of the subtree before it.
		n.items[i] = t.popMax(t.mut(&n.kids.children[i]))
	} else if !t.deleteAt(t.mut(&n.kids.children[i]), e) {
		return false
	}
	n.kids.counts[i]--
	t.rebalance(n, i)
	return true
}

// popMax removes and returns the last entry under the writable node n.
func (t *zsetTree) popMax(n *zsetNode) zsetEntry {
	if n.kids == nil {
		n.n--
		e := n.items[n.n]
		n.items[n.n] = zsetEntry{}
		return e
	}
	e := t.popMax(t.mut(&n.kids.children[n.n]))
	n.kids.counts[n.n]--
	t.rebalance(n, n.n)
	return e
}

// rebalance restores the minimum fill of child i of n after a delete, by merging it
// with a sibling or by moving one entry (and one child) over from the sibling.
func (t *zsetTree) rebalance(n *zsetNode, i int) {
	if n.kids.children[i].n >= zsetMinItems {
		return
	}
	if i == n.n {
		i-- // the last child pairs with its left sibling
	}
	k := n.kids
	left, right := t.mut(&k.children[i]), k.children[i+1]
	if left.n+right.n >= zsetMaxItems {
		right = t.mut(&k.children[i+1]) // entries move in or out of right
	}
	switch {
	case left.n+right.n < zsetMaxItems: // merge right (only read) and the separator into left
		left.items[left.n] = n.items[i]
		copy(left.items[left.n+1:], right.items[:right.n])
		if left.kids != nil {
			copy(left.kids.children[left.n+1:], right.kids.children[:right.n+1])
			copy(left.kids.counts[left.n+1:], right.kids.counts[:right.n+1])
		}
		left.n += right.n + 1
		k.counts[i] += k.counts[i+1] + 1
		copy(n.items[i:n.n], n.items[i+1:n.n])
		copy(k.children[i+1:n.n+1], k.children[i+2:n.n+1])
		copy(k.counts[i+1:n.n+1], k.counts[i+2:n.n+1])
		n.n--
		n.items[n.n] = zsetEntry{}
		k.children[n.n+1] = nil
		k.counts[n.n+1] = 0
	case left.n < right.n: // rotate left: the separator moves down into left
		moved := 1
		left.items[left.n] = n.items[i]
		n.items[i] = right.items[0]
		copy(right.items[:right.n], right.items[1:right.n])
		right.items[right.n-1] = zsetEntry{}
		if left.kids != nil {
			c := right.kids.counts[0]
			left.kids.children[left.n+1] = right.kids.children[0]
			left.kids.counts[left.n+1] = c
			copy(right.kids.children[:right.n+1], right.kids.children[1:right.n+1])
			copy(right.kids.counts[:right.n+1], right.kids.counts[1:right.n+1])
			right.kids.children[right.n] = nil
			right.kids.counts[right.n] = 0
			moved += c
		}
		left.n++
		right.n--
		k.counts[i] += moved
		k.counts[i+1] -= moved
	default: // rotate right: the separator moves down into right
		moved := 1
		copy(right.items[1:right.n+1], right.items[:right.n])
		right.items[0] = n.items[i]
		n.items[i] = left.items[left.n-1]
		left.items[left.n-1] = zsetEntry{}
		if left.kids != nil {
			c := left.kids.counts[left.n]
			copy(right.kids.children[1:right.n+2], right.kids.children[:right.n+1])
			copy(right.kids.counts[1:right.n+2], right.kids.counts[:right.n+1])
			right.kids.children[0] = left.kids.children[left.n]
			right.kids.counts[0] = c
			left.kids.children[left.n] = nil
			left.kids.counts[left.n] = 0
			moved += c
		}
		left.n--
		right.n++
		k.counts[i] -= moved
		k.counts[i+1] += moved
	}
}

// seek returns the rank of the first entry >= e (len if none), and whether that entry
// equals e. So the rank of a present entry is seek's first result; the first entry
// after a page token e is at seek(e) plus one if found.
func (t *zsetTree) seek(e zsetEntry) (int, bool) {
	rank := 0
	for n := t.root; n != nil; {
		i, found := t.search(n, e)
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

// get returns the stored entry that compares equal to e.
func (t *zsetTree) get(e zsetEntry) (zsetEntry, bool) {
	for n := t.root; n != nil; {
		i, found := t.search(n, e)
		if found {
			return n.items[i], true
		}
		if n.kids == nil {
			break
		}
		n = n.kids.children[i]
	}
	return zsetEntry{}, false
}

// rank returns the 0-based ascending rank of e, if present.
func (t *zsetTree) rank(e zsetEntry) (int, bool) {
	r, found := t.seek(e)
	if !found {
		return 0, false
	}
	return r, true
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
				return n.items[k], true
			}
			i -= c + 1
		}
		n = n.kids.children[k]
	}
	return n.items[i], true
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
		for _, e := range n.items[from:n.n] {
			if !fn(e) {
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
			if !fn(n.items[k]) {
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
			if !fn(n.items[i]) {
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
			if !fn(n.items[k]) || !n.kids.children[k].descend(c-1, fn) {
				return false
			}
			break
		}
		from -= c + 1
	}
	// Then everything before it, right to left.
	for k--; k >= 0; k-- {
		if !fn(n.items[k]) || !n.kids.children[k].descend(n.kids.counts[k]-1, fn) {
			return false
		}
	}
	return true
}
