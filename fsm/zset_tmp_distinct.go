package fsm

// zsetDistinct is a stand-in, O(r), until zsetTree.distinct lands.
func zsetDistinct(t *zsetTree, r int) int {
	n, prev, first := 0, 0.0, true
	if r <= 0 {
		return 0
	}
	t.ascend(0, func(e zsetEntry) bool {
		if first || e.score != prev {
			n++
		}
		first, prev = false, e.score
		r--
		return r > 0
	})
	return n
}
