package fsm

import "strings"

// zsetIndex is a sorted set's member index: a copy-on-write B-tree of zsetEntry ordered
// by (zsetHash(member), member). Comparing 64-bit hashes, kept in their own array in each
// node, touches no string until the hashes are equal, which at the end of a lookup means
// the member itself; ordering by member alone missed cache on every comparison. Hash order
// is deterministic (the hash has no seed), so iteration order never depends on the
// process. It has no counts: nothing asks a member's position in it.
//
// Copy-on-write works as in zsetTree. Invariants: members are unique; every node but the
// root holds zsetIndexMin to zsetIndexMax entries; hashes[i] is zsetHash(items[i].member).
type zsetIndex struct {
	isoid  uint64
	root   *zsetIndexNode
	length int
}

// zsetIndexMax is the node capacity: a node of 101 entries is 4,064 bytes, inside the
// 4 KiB allocation class. At a million members it beat 24 and 50 (a shallower tree
// for ~58 bytes per member). zsetIndexMin is a quarter of it, as in zsetTree.
const (
	zsetIndexMax = 101
	zsetIndexMin = zsetIndexMax / 4
)

// zsetIndexNode is a leaf (kids == nil) or an interior node with n+1 children.
type zsetIndexNode struct {
	isoid  uint64
	n      int
	kids   *[zsetIndexMax + 1]*zsetIndexNode
	hashes [zsetIndexMax]uint64
	items  [zsetIndexMax]zsetEntry
}

// zsetHash is FNV-1a 64 of member: fixed, so the same in every process and run.
func zsetHash(member string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(member); i++ {
		h ^= uint64(member[i])
		h *= 1099511628211
	}
	return h & zsetHashMask
}

// zsetHashMask is all ones. Only a test narrows it, to force hash collisions, and then
// only while no sorted set built with the full hash is in use.
var zsetHashMask = ^uint64(0)

func newZsetIndex() *zsetIndex { return &zsetIndex{isoid: zsetIsoSeq.Add(1)} }

func (t *zsetIndex) len() int { return t.length }

// clone returns an independent copy in O(1).
func (t *zsetIndex) clone() *zsetIndex {
	t.isoid = zsetIsoSeq.Add(1)
	return &zsetIndex{isoid: zsetIsoSeq.Add(1), root: t.root, length: t.length}
}

// mut returns *p, first copying it if another tree may share it.
func (t *zsetIndex) mut(p **zsetIndexNode) *zsetIndexNode {
	n := *p
	if n.isoid == t.isoid {
		return n
	}
	c := *n
	c.isoid = t.isoid
	if n.kids != nil {
		k := *n.kids
		c.kids = &k
	}
	*p = &c
	return &c
}

// search returns the first index in n whose key is >= (h, member), and whether it equals it.
func (n *zsetIndexNode) search(h uint64, member string) (int, bool) {
	lo, hi := 0, n.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if n.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for ; lo < n.n && n.hashes[lo] == h; lo++ { // equal hashes: order by member
		if c := strings.Compare(n.items[lo].member, member); c >= 0 {
			return lo, c == 0
		}
	}
	return lo, false
}

// less reports whether entry i of n orders before (h, member).
func (n *zsetIndexNode) less(i int, h uint64, member string) bool {
	return n.hashes[i] < h || n.hashes[i] == h && n.items[i].member < member
}

// get returns member's entry.
func (t *zsetIndex) get(member string) (zsetEntry, bool) {
	h := zsetHash(member)
	for n := t.root; n != nil; {
		i, found := n.search(h, member)
		if found {
			return n.items[i], true
		}
		if n.kids == nil {
			break
		}
		n = n.kids[i]
	}
	return zsetEntry{}, false
}

// zsetIndexMaxDepth bounds the height of a zsetIndex: every node but the root has at
// least zsetIndexMin+1 children, so a tree this high would hold over 26^22 members.
const zsetIndexMaxDepth = 24

// swap replaces the entry of e.member by e, unless it has e's score already, and returns
// the entry it found. It searches read-only and then copies the shared nodes on the
// path, if any, only when it writes; so a score change walks the index once, and a
// write that changes nothing copies nothing. A member not present is not added.
func (t *zsetIndex) swap(e zsetEntry) (zsetEntry, bool) {
	h := zsetHash(e.member)
	var path [zsetIndexMaxDepth]int
	depth := 0
	for n := t.root; n != nil; depth++ {
		i, found := n.search(h, e.member)
		if found {
			prev := n.items[i]
			if prev.score == e.score {
				return prev, true
			}
			p := &t.root
			for _, k := range path[:depth] {
				p = &t.mut(p).kids[k]
			}
			t.mut(p).items[i] = e
			return prev, true
		}
		if n.kids == nil {
			break
		}
		path[depth] = i
		n = n.kids[i]
	}
	return zsetEntry{}, false
}

// set stores e, replacing the entry of e.member if there is one, and returns that entry.
func (t *zsetIndex) set(e zsetEntry) (zsetEntry, bool) {
	h := zsetHash(e.member)
	if t.root == nil {
		t.root = &zsetIndexNode{isoid: t.isoid}
	}
	root := t.mut(&t.root)
	if root.n == zsetIndexMax {
		up := &zsetIndexNode{isoid: t.isoid, kids: &[zsetIndexMax + 1]*zsetIndexNode{root}}
		t.root = up
		t.split(up, 0, h, e.member)
	}
	prev, replaced := t.setAt(t.root, h, e)
	if !replaced {
		t.length++
	}
	return prev, replaced
}

func (t *zsetIndex) setAt(n *zsetIndexNode, h uint64, e zsetEntry) (zsetEntry, bool) {
	for {
		i, found := n.search(h, e.member)
		if found {
			prev := n.items[i]
			n.items[i] = e
			return prev, true
		}
		if n.kids == nil {
			copy(n.hashes[i+1:n.n+1], n.hashes[i:n.n])
			copy(n.items[i+1:n.n+1], n.items[i:n.n])
			n.hashes[i], n.items[i] = h, e
			n.n++
			return zsetEntry{}, false
		}
		child := t.mut(&n.kids[i])
		if child.n == zsetIndexMax {
			t.split(n, i, h, e.member)
			continue // search n again: the median moved up into it
		}
		n = child
	}
}

// split divides the full, writable child i of n around a median, which moves up into n.
// As in zsetTree, a key beyond either end of the child splits it unevenly.
func (t *zsetIndex) split(n *zsetIndexNode, i int, h uint64, member string) {
	left := n.kids[i]
	mid := zsetIndexMax / 2
	if left.less(zsetIndexMax-1, h, member) {
		mid = zsetIndexMax - 1 - zsetIndexMin
	} else if !left.less(0, h, member) {
		mid = zsetIndexMin
	}
	right := &zsetIndexNode{isoid: t.isoid, n: zsetIndexMax - mid - 1}
	mh, me := left.hashes[mid], left.items[mid]
	copy(right.hashes[:], left.hashes[mid+1:])
	copy(right.items[:], left.items[mid+1:])
	clear(left.hashes[mid:])
	clear(left.items[mid:])
	left.n = mid
	if left.kids != nil {
		right.kids = &[zsetIndexMax + 1]*zsetIndexNode{}
		copy(right.kids[:], left.kids[mid+1:])
		clear(left.kids[mid+1:])
	}
	copy(n.hashes[i+1:n.n+1], n.hashes[i:n.n])
	copy(n.items[i+1:n.n+1], n.items[i:n.n])
	copy(n.kids[i+2:n.n+2], n.kids[i+1:n.n+1])
	n.hashes[i], n.items[i] = mh, me
	n.kids[i+1] = right
	n.n++
}

// delete removes member and returns its entry, if it was present.
func (t *zsetIndex) delete(member string) (zsetEntry, bool) {
	if t.root == nil {
		return zsetEntry{}, false
	}
	prev, ok := t.deleteAt(t.mut(&t.root), zsetHash(member), member)
	if !ok {
		return zsetEntry{}, false
	}
	t.length--
	if root := t.root; root.n == 0 {
		if root.kids != nil {
			t.root = root.kids[0] // shrink
		} else {
			t.root = nil
		}
	}
	return prev, true
}

func (t *zsetIndex) deleteAt(n *zsetIndexNode, h uint64, member string) (zsetEntry, bool) {
	i, found := n.search(h, member)
	if n.kids == nil {
		if !found {
			return zsetEntry{}, false
		}
		prev := n.items[i]
		copy(n.hashes[i:n.n], n.hashes[i+1:n.n])
		copy(n.items[i:n.n], n.items[i+1:n.n])
		n.n--
		n.hashes[n.n], n.items[n.n] = 0, zsetEntry{}
		return prev, true
	}
	var prev zsetEntry
	if found {
		// Replace the entry by its predecessor, the last entry of the subtree before it.
		prev = n.items[i]
		n.hashes[i], n.items[i] = t.popMax(t.mut(&n.kids[i]))
	} else {
		var ok bool
		if prev, ok = t.deleteAt(t.mut(&n.kids[i]), h, member); !ok {
			return zsetEntry{}, false
		}
	}
	t.rebalance(n, i)
	return prev, true
}

func (t *zsetIndex) popMax(n *zsetIndexNode) (uint64, zsetEntry) {
	if n.kids == nil {
		n.n--
		h, e := n.hashes[n.n], n.items[n.n]
		n.hashes[n.n], n.items[n.n] = 0, zsetEntry{}
		return h, e
	}
	h, e := t.popMax(t.mut(&n.kids[n.n]))
	t.rebalance(n, n.n)
	return h, e
}

// rebalance restores the minimum fill of child i of n after a delete, by merging it
// with a sibling or moving one entry (and one child) over from the sibling.
func (t *zsetIndex) rebalance(n *zsetIndexNode, i int) {
	if n.kids[i].n >= zsetIndexMin {
		return
	}
	if i == n.n {
		i--
	}
	k := n.kids
	left, right := t.mut(&k[i]), k[i+1]
	if left.n+right.n >= zsetIndexMax {
		right = t.mut(&k[i+1])
	}
	switch {
	case left.n+right.n < zsetIndexMax: // merge right (only read) and the separator into left
		left.hashes[left.n], left.items[left.n] = n.hashes[i], n.items[i]
		copy(left.hashes[left.n+1:], right.hashes[:right.n])
		copy(left.items[left.n+1:], right.items[:right.n])
		if left.kids != nil {
			copy(left.kids[left.n+1:], right.kids[:right.n+1])
		}
		left.n += right.n + 1
		copy(n.hashes[i:n.n], n.hashes[i+1:n.n])
		copy(n.items[i:n.n], n.items[i+1:n.n])
		copy(k[i+1:n.n+1], k[i+2:n.n+1])
		n.n--
		n.hashes[n.n], n.items[n.n] = 0, zsetEntry{}
		k[n.n+1] = nil
	case left.n < right.n: // rotate left
		left.hashes[left.n], left.items[left.n] = n.hashes[i], n.items[i]
		n.hashes[i], n.items[i] = right.hashes[0], right.items[0]
		copy(right.hashes[:right.n], right.hashes[1:right.n])
		copy(right.items[:right.n], right.items[1:right.n])
		right.hashes[right.n-1], right.items[right.n-1] = 0, zsetEntry{}
		if left.kids != nil {
			left.kids[left.n+1] = right.kids[0]
			copy(right.kids[:right.n+1], right.kids[1:right.n+1])
			right.kids[right.n] = nil
		}
		left.n++
		right.n--
	default: // rotate right
		copy(right.hashes[1:right.n+1], right.hashes[:right.n])
		copy(right.items[1:right.n+1], right.items[:right.n])
		right.hashes[0], right.items[0] = n.hashes[i], n.items[i]
		n.hashes[i], n.items[i] = left.hashes[left.n-1], left.items[left.n-1]
		left.hashes[left.n-1], left.items[left.n-1] = 0, zsetEntry{}
		if left.kids != nil {
			copy(right.kids[1:right.n+2], right.kids[:right.n+1])
			right.kids[0] = left.kids[left.n]
			left.kids[left.n] = nil
		}
		left.n--
		right.n++
	}
}

// ascend calls fn on every entry in index order until fn returns false.
func (t *zsetIndex) ascend(fn func(zsetEntry) bool) {
	if t.root != nil {
		t.root.ascend(fn)
	}
}

func (n *zsetIndexNode) ascend(fn func(zsetEntry) bool) bool {
	for i := 0; i <= n.n; i++ {
		if n.kids != nil && !n.kids[i].ascend(fn) {
			return false
		}
		if i < n.n && !fn(n.items[i]) {
			return false
		}
	}
	return true
}
