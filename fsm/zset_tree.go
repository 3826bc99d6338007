package fsm

import (
	"math/bits"
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
// Dense ranks (the number of distinct scores below an entry) come from flags: an entry
// is "first" when it is the first entry of its score in the whole tree (its predecessor
// has another score, or it has none). Each node keeps its entries' flags in a bitmap,
// and each interior node the number of first entries under each child, so distinct(r)
// is found like a rank. An insert or delete can change the flag of the entry's
// successor when the two have the same score; the successor is always on the path
// (later in the same leaf, or the separator where the path last went left), so writes
// still walk one path.
//
// Invariants: entries are unique; no score is NaN (callers reject it) and no score is
// -0 (insert normalises it to +0); every node but the root holds zsetMinItems to
// zsetMaxItems entries; counts[i] is the number of entries under children[i];
// bit i of first is set iff entry i is a first entry, bits from n up are clear;
// dcounts[i] is the number of first entries under children[i]; and slots from n up are
// zero, so that they hold no member strings.
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
// a node of 62 entries is 2,016 bytes, which with the 8-byte header the runtime puts
// on a large object that holds pointers stays inside the 2 KiB allocation class (63
// entries and their flags would need the 2,304-byte class, 12% more memory).
// zsetMinItems is a quarter of it rather than half so that a node filled by appends
// (rising scores, new members in name order) can split unevenly and stay 3/4 full.
const (
	zsetMaxItems = 62
	zsetMinItems = zsetMaxItems / 4
)

// zsetNode is a leaf (kids == nil) or an interior node with n+1 children. Its entries
// are kept as three arrays rather than an array of zsetEntry, so that a search reads
// the scores (8 cache lines rather than 31) and looks at a tie or a member only where
// the scores are equal.
type zsetNode struct {
	isoid   uint64
	n       int    // entries
	first   uint64 // bit i: entry i is the first entry of its score
	kids    *zsetKids
	scores  [zsetMaxItems]float64
	ties    [zsetMaxItems]uint64
	members [zsetMaxItems]string
}

// entry returns entry i of n.
func (n *zsetNode) entry(i int) zsetEntry {
	return zsetEntry{score: n.scores[i], tie: n.ties[i], member: n.members[i]}
}

// setEntry stores e as entry i of n.
func (n *zsetNode) setEntry(i int, e zsetEntry) {
	n.scores[i], n.ties[i], n.members[i] = e.score, e.tie, e.member
}

// compare is zsetCompare(n.entry(i), e), reading the tie and member only if needed.
func (n *zsetNode) compare(i int, e zsetEntry) int {
	if s := n.scores[i]; s != e.score {
		if s < e.score {
			return -1
		}
		return 1
	}
	if t := n.ties[i]; t != e.tie {
		if t < e.tie {
			return -1
		}
		return 1
	}
	return strings.Compare(n.members[i], e.member)
}

// copyEntries copies k entries from src at si to dst at di, as copy does (they may
// overlap). It leaves flags alone.
func copyEntries(dst *zsetNode, di int, src *zsetNode, si, k int) {
	copy(dst.scores[di:di+k], src.scores[si:si+k])
	copy(dst.ties[di:di+k], src.ties[si:si+k])
	copy(dst.members[di:di+k], src.members[si:si+k])
}

// clearEntries zeroes the slots from i up to j.
func (n *zsetNode) clearEntries(i, j int) {
	clear(n.scores[i:j])
	clear(n.ties[i:j])
	clear(n.members[i:j])
}

// insertEntry puts e, with flag f, at i, moving the entries from i up by one; n has room.
func (n *zsetNode) insertEntry(i int, e zsetEntry, f int) {
	copyEntries(n, i+1, n, i, n.n-i)
	n.setEntry(i, e)
	n.first = insertFlag(n.first, i, f)
	n.n++
}

// removeEntry removes entry i, moving the ones above it down, and returns it and its flag.
func (n *zsetNode) removeEntry(i int) (zsetEntry, int) {
	e, f := n.entry(i), flag(n.first, i)
	copyEntries(n, i, n, i+1, n.n-i-1)
	n.n--
	n.clearEntries(n.n, n.n+1)
	n.first = removeFlag(n.first, i)
	return e, f
}

// zsetKids are an interior node's children, the number of entries under each, and the
// number of first entries under each.
type zsetKids struct {
	children [zsetMaxItems + 1]*zsetNode
	counts   [zsetMaxItems + 1]int
	dcounts  [zsetMaxItems + 1]int
}

// zsetInner is how an interior node is allocated: the node and its kids in one object
// of 3,528 bytes, so in the 4 KiB class, whose objects are each one page. A descent then
// misses the TLB once per level rather than twice; leaves, which are most nodes, have
// no kids and stay in the 2 KiB class.
type zsetInner struct {
	node zsetNode
	kids zsetKids
}

// newZsetInner returns a new, empty interior node.
func newZsetInner(isoid uint64) *zsetNode {
	in := &zsetInner{}
	in.node.isoid = isoid
	in.node.kids = &in.kids
	return &in.node
}

// zsetSucc is where a descent's successor entry is stored: the separator of the
// nearest ancestor whose path went left of it (node nil if none). Only its flag is
// ever written through it, and every node on a write path is already writable.
type zsetSucc struct {
	node *zsetNode
	at   int
}

// flag returns bit i of b as 0 or 1.
func flag(b uint64, i int) int { return int(b >> uint(i) & 1) }

// insertFlag returns b with bit f inserted at i, the bits from i up moving up by one.
func insertFlag(b uint64, i int, f int) uint64 {
	low := uint64(1)<<uint(i) - 1
	return b&low | (b&^low)<<1 | uint64(f)<<uint(i)
}

// removeFlag returns b without bit i, the bits above it moving down by one.
func removeFlag(b uint64, i int) uint64 {
	low := uint64(1)<<uint(i) - 1
	return b&low | b>>1&^low
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
	var c *zsetNode
	if n.kids == nil {
		c = new(zsetNode)
		*c = *n
	} else {
		c = newZsetInner(0)
		kids := c.kids
		*c, *kids = *n, *n.kids
		c.kids = kids
	}
	c.isoid = t.isoid
	*p = c
	return c
}

// search returns the first index in n whose entry is >= e, and whether it equals e.
func (n *zsetNode) search(e zsetEntry) (int, bool) {
	lo, hi := 0, n.n
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		c := n.compare(h, e)
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
		up := newZsetInner(t.isoid)
		up.kids.children[0] = root
		up.kids.counts[0] = t.length
		up.kids.dcounts[0] = root.firsts()
		t.root = up
		t.split(up, 0, e)
	}
	prev, replaced, _ := t.setAt(t.root, e, false, 0, zsetSucc{})
	if !replaced {
		t.length++
	}
	return prev, replaced
}

// setAt stores e under n, which is writable and not full. Full children are split on
// the way down, so a leaf always has room. hasPred and pred are the score of the entry
// before n's subtree, if any; succ is where the entry after it is stored. setAt returns
// the change in the number of first entries under n, so the caller can keep dcounts.
func (t *zsetTree) setAt(n *zsetNode, e zsetEntry, hasPred bool, pred float64, succ zsetSucc) (zsetEntry, bool, int) {
	i, found := n.search(e)
	if found {
		prev := n.entry(i)
		n.setEntry(i, e) // same score: no flag changes
		return prev, true, 0
	}
	if n.kids == nil {
		if i > 0 {
			hasPred, pred = true, n.scores[i-1]
		}
		f := 1 // e is first unless its predecessor has its score
		if hasPred && pred == e.score {
			f = 0
		}
		// e now precedes its successor: one of e's score is not first any more.
		d := f
		if i < n.n {
			if n.scores[i] == e.score && flag(n.first, i) == 1 {
				n.first &^= 1 << uint(i)
				d--
			}
		} else if succ.node != nil && succ.node.scores[succ.at] == e.score {
			succ.node.first &^= 1 << uint(succ.at) // counted by that ancestor
		}
		n.insertEntry(i, e, f)
		return zsetEntry{}, false, d
	}
	child := t.mut(&n.kids.children[i])
	if child.n == zsetMaxItems {
		t.split(n, i, e)
		switch c := n.compare(i, e); {
		case c == 0:
			prev := n.entry(i)
			n.setEntry(i, e)
			return prev, true, 0
		case c < 0:
			i++
		}
		child = n.kids.children[i] // both halves are new or writable
	}
	if i > 0 {
		hasPred, pred = true, n.scores[i-1]
	}
	old := 0
	if i < n.n {
		succ, old = zsetSucc{n, i}, flag(n.first, i)
	}
	prev, replaced, d := t.setAt(child, e, hasPred, pred, succ)
	if !replaced {
		n.kids.counts[i]++
		n.kids.dcounts[i] += d
		if i < n.n {
			d += flag(n.first, i) - old // the child may have cleared separator i's flag
		}
	}
	return prev, replaced, d
}

// firsts is the number of first entries under n.
func (n *zsetNode) firsts() int {
	d := bits.OnesCount64(n.first)
	if n.kids != nil {
		for _, c := range n.kids.dcounts[:n.n+1] {
			d += c
		}
	}
	return d
}

// split divides the full, writable child i of n around a median, which moves up into n
// at index i; n has room for it. The median is the middle entry, unless e, the entry
// being stored, lies beyond the child's last (or before its first) entry: then the
// split leaves the side that appends do not reach 3/4 full.
func (t *zsetTree) split(n *zsetNode, i int, e zsetEntry) {
	left := n.kids.children[i]
	mid := zsetMaxItems / 2
	if left.compare(zsetMaxItems-1, e) < 0 {
		mid = zsetMaxItems - 1 - zsetMinItems
	} else if left.compare(0, e) > 0 {
		mid = zsetMinItems
	}
	var right *zsetNode
	if left.kids == nil {
		right = &zsetNode{isoid: t.isoid}
	} else {
		right = newZsetInner(t.isoid)
	}
	right.n = zsetMaxItems - mid - 1
	median, medianFlag := left.entry(mid), flag(left.first, mid)
	copyEntries(right, 0, left, mid+1, right.n)
	left.clearEntries(mid, zsetMaxItems)
	right.first = left.first >> uint(mid+1)
	left.first &= 1<<uint(mid) - 1
	left.n = mid
	rightCount := right.n
	if left.kids != nil {
		copy(right.kids.children[:], left.kids.children[mid+1:])
		copy(right.kids.counts[:], left.kids.counts[mid+1:])
		copy(right.kids.dcounts[:], left.kids.dcounts[mid+1:])
		clear(left.kids.children[mid+1:])
		clear(left.kids.counts[mid+1:])
		clear(left.kids.dcounts[mid+1:])
		for _, c := range right.kids.counts[:right.n+1] {
			rightCount += c
		}
	}
	rightFirsts := right.firsts()
	copyEntries(n, i+1, n, i, n.n-i)
	copy(n.kids.children[i+2:n.n+2], n.kids.children[i+1:n.n+1])
	copy(n.kids.counts[i+2:n.n+2], n.kids.counts[i+1:n.n+1])
	copy(n.kids.dcounts[i+2:n.n+2], n.kids.dcounts[i+1:n.n+1])
	n.setEntry(i, median)
	n.first = insertFlag(n.first, i, medianFlag)
	n.kids.children[i+1] = right
	n.kids.counts[i] -= rightCount + 1
	n.kids.counts[i+1] = rightCount
	n.kids.dcounts[i] -= rightFirsts + medianFlag
	n.kids.dcounts[i+1] = rightFirsts
	n.n++
}

// delete removes e and reports whether it was present.
func (t *zsetTree) delete(e zsetEntry) bool {
	if t.root == nil {
		return false
	}
	if ok, _ := t.deleteAt(t.mut(&t.root), e, zsetSucc{}); !ok {
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

// deleteAt removes e from under the writable node n and reports whether it was there,
// and the change in the number of first entries under n. succ is where the entry after
// n's subtree is stored.
func (t *zsetTree) deleteAt(n *zsetNode, e zsetEntry, succ zsetSucc) (bool, int) {
	i, found := n.search(e)
	if n.kids == nil {
		if !found {
			return false, 0
		}
		// If e was first, a successor of its score becomes first.
		f := flag(n.first, i)
		d := -f
		if f == 1 {
			if i+1 < n.n {
				if n.scores[i+1] == e.score {
					n.first |= 1 << uint(i+1)
					d++
				}
			} else if succ.node != nil && succ.node.scores[succ.at] == e.score {
				succ.node.first |= 1 << uint(succ.at) // counted by that ancestor
			}
		}
		n.removeEntry(i)
		return true, d
	}
	if found {
		// Replace e by its successor s, the first entry of the subtree after it, which
		// takes e's place as the first of e's score if it has that score.
		f := flag(n.first, i)
		s, sf := t.popMin(t.mut(&n.kids.children[i+1]))
		nf := 1
		if s.score == e.score {
			nf = f
		}
		n.setEntry(i, s)
		n.first = n.first&^(1<<uint(i)) | uint64(nf)<<uint(i)
		n.kids.counts[i+1]--
		n.kids.dcounts[i+1] -= sf
		t.rebalance(n, i+1)
		return true, nf - f - sf
	}
	old := 0
	if i < n.n {
		succ, old = zsetSucc{n, i}, flag(n.first, i)
	}
	ok, d := t.deleteAt(t.mut(&n.kids.children[i]), e, succ)
	if !ok {
		return false, 0
	}
	n.kids.counts[i]--
	n.kids.dcounts[i] += d
	if i < n.n {
		d += flag(n.first, i) - old // the child may have set separator i's flag
	}
	t.rebalance(n, i)
	return true, d
}

// popMin removes and returns the first entry under the writable node n, and its flag.
// Its successor keeps its flag: the entry before it is still the popped one.
func (t *zsetTree) popMin(n *zsetNode) (zsetEntry, int) {
	if n.kids == nil {
		return n.removeEntry(0)
	}
	e, f := t.popMin(t.mut(&n.kids.children[0]))
	n.kids.counts[0]--
	n.kids.dcounts[0] -= f
	t.rebalance(n, 0)
	return e, f
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
		sf := flag(n.first, i)
		left.setEntry(left.n, n.entry(i))
		copyEntries(left, left.n+1, right, 0, right.n)
		left.first |= uint64(sf)<<uint(left.n) | right.first<<uint(left.n+1)
		if left.kids != nil {
			copy(left.kids.children[left.n+1:], right.kids.children[:right.n+1])
			copy(left.kids.counts[left.n+1:], right.kids.counts[:right.n+1])
			copy(left.kids.dcounts[left.n+1:], right.kids.dcounts[:right.n+1])
		}
		left.n += right.n + 1
		k.counts[i] += k.counts[i+1] + 1
		k.dcounts[i] += k.dcounts[i+1] + sf
		copyEntries(n, i, n, i+1, n.n-i-1)
		copy(k.children[i+1:n.n+1], k.children[i+2:n.n+1])
		copy(k.counts[i+1:n.n+1], k.counts[i+2:n.n+1])
		copy(k.dcounts[i+1:n.n+1], k.dcounts[i+2:n.n+1])
		n.first = removeFlag(n.first, i)
		n.n--
		n.clearEntries(n.n, n.n+1)
		k.children[n.n+1] = nil
		k.counts[n.n+1] = 0
		k.dcounts[n.n+1] = 0
	case left.n < right.n: // rotate left: the separator moves down into left
		// The entries moved differ (the separator in, right's first out), so do their flags.
		moved, din, dout := 1, flag(n.first, i), flag(right.first, 0)
		left.setEntry(left.n, n.entry(i))
		left.first |= uint64(din) << uint(left.n)
		n.setEntry(i, right.entry(0))
		n.first = n.first&^(1<<uint(i)) | uint64(dout)<<uint(i)
		copyEntries(right, 0, right, 1, right.n-1)
		right.clearEntries(right.n-1, right.n)
		right.first >>= 1
		if left.kids != nil {
			c, dc := right.kids.counts[0], right.kids.dcounts[0]
			left.kids.children[left.n+1] = right.kids.children[0]
			left.kids.counts[left.n+1] = c
			left.kids.dcounts[left.n+1] = dc
			copy(right.kids.children[:right.n+1], right.kids.children[1:right.n+1])
			copy(right.kids.counts[:right.n+1], right.kids.counts[1:right.n+1])
			copy(right.kids.dcounts[:right.n+1], right.kids.dcounts[1:right.n+1])
			right.kids.children[right.n] = nil
			right.kids.counts[right.n] = 0
			right.kids.dcounts[right.n] = 0
			moved += c
			din += dc
			dout += dc
		}
		left.n++
		right.n--
		k.counts[i] += moved
		k.counts[i+1] -= moved
		k.dcounts[i] += din
		k.dcounts[i+1] -= dout
	default: // rotate right: the separator moves down into right
		moved, din, dout := 1, flag(n.first, i), flag(left.first, left.n-1)
		copyEntries(right, 1, right, 0, right.n)
		right.setEntry(0, n.entry(i))
		right.first = right.first<<1 | uint64(din)
		n.setEntry(i, left.entry(left.n-1))
		n.first = n.first&^(1<<uint(i)) | uint64(dout)<<uint(i)
		left.clearEntries(left.n-1, left.n)
		left.first &^= 1 << uint(left.n-1)
		if left.kids != nil {
			c, dc := left.kids.counts[left.n], left.kids.dcounts[left.n]
			copy(right.kids.children[1:right.n+2], right.kids.children[:right.n+1])
			copy(right.kids.counts[1:right.n+2], right.kids.counts[:right.n+1])
			copy(right.kids.dcounts[1:right.n+2], right.kids.dcounts[:right.n+1])
			right.kids.children[0] = left.kids.children[left.n]
			right.kids.counts[0] = c
			right.kids.dcounts[0] = dc
			left.kids.children[left.n] = nil
			left.kids.counts[left.n] = 0
			left.kids.dcounts[left.n] = 0
			moved += c
			din += dc
			dout += dc
		}
		left.n--
		right.n++
		k.counts[i] -= moved
		k.counts[i+1] += moved
		k.dcounts[i] -= dout
		k.dcounts[i+1] += din
	}
}
