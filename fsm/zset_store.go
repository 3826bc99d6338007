package fsm

import (
	"math"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// zsetStore is Redis's ZUNIONSTORE, ZINTERSTORE and ZDIFFSTORE: destination is replaced
// (whatever it held, and its TTL) by the result, or deleted if the result is empty. A
// missing source is an empty set. As in Redis, a weighted or summed score that is NaN
// (0 × ∞, ∞ − ∞) counts as 0. Members are stored in a fixed order — by source, then rank
// in the destination's reading direction — so arrival tie-breakers are the same on every
// replica and members tied in a source keep their order.
func (m *Machine) zsetStore(index uint64, now int64, req *fsmv1.ZsetStore) (*fsmv1.Result_ZsetStore, *Error) {
	dst := req.GetDestination()
	if err := checkZsetKey(dst); err != nil {
		return nil, err
	}
	keys, weights := req.GetKeys(), req.GetWeights()
	switch {
	case len(keys) == 0:
		return nil, errInvalid(dst, "keys must not be empty")
	case len(weights) != 0 && len(weights) != len(keys):
		return nil, errInvalid(dst, "weights must be empty or one per key: %d weights for %d keys", len(weights), len(keys))
	case req.GetOp() < fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION || req.GetOp() > fsmv1.ZsetStoreOp_ZSET_STORE_OP_DIFF:
		return nil, errInvalid(dst, "unknown store operation %v", req.GetOp())
	}
	for _, w := range weights {
		if err := checkScore(dst, "weight", w); err != nil {
			return nil, err
		}
	}
	if err := checkTieBreak(dst, req.GetTieBreak()); err != nil {
		return nil, err
	}
	if _, ok := conclavev1.Aggregate_name[int32(req.GetAggregate())]; !ok {
		return nil, errInvalid(dst, "aggregate: unknown value %d", req.GetAggregate())
	}
	sources := make([]*zset, len(keys))
	total := 0
	for i, k := range keys {
		if err := checkZsetKey(k); err != nil {
			return nil, err
		}
		ss, _, err := m.st.zsetAt(k, now)
		if err != nil {
			return nil, err
		}
		if ss != nil {
			sources[i] = ss.z
			total += ss.z.Len()
		}
	}
	if total > MaxZsetBulk {
		return nil, newError(fsmv1.ErrorCode_ERROR_CODE_OUT_OF_RANGE, dst, "the sources hold %d members; a store reads at most %d", total, MaxZsetBulk)
	}
	weight := func(i int) float64 {
		if len(weights) == 0 {
			return 1
		}
		return weights[i]
	}
	// Members arrive in the destination in the order its readers rank them: a set read
	// from the top (TIE_BREAK_ARRIVAL) takes each source from the top, so that of two
	// members tied in a source, the one ahead stays ahead.
	each := func(z *zset, fn func(zsetEntry) bool) { z.byRank.ascend(0, fn) }
	if req.GetTieBreak() == conclavev1.TieBreak_TIE_BREAK_ARRIVAL {
		each = func(z *zset, fn func(zsetEntry) bool) { z.byRank.descend(z.Len()-1, fn) }
	}
	out := newZsetBuilder(req.GetAggregate())
	switch req.GetOp() {
	case fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION:
		for i, z := range sources {
			if z != nil {
				each(z, func(e zsetEntry) bool {
					out.merge(e.member, weight(i)*e.score)
					return true
				})
			}
		}
	case fsmv1.ZsetStoreOp_ZSET_STORE_OP_INTERSECT:
		if sources[0] != nil {
			each(sources[0], func(e zsetEntry) bool {
				scores := []float64{weight(0) * e.score}
				for i, z := range sources[1:] {
					if z == nil {
						return false
					}
					s, ok := z.Score(e.member)
					if !ok {
						return true
					}
					scores = append(scores, weight(i+1)*s)
				}
				for _, s := range scores {
					out.merge(e.member, s)
				}
				return true
			})
		}
	case fsmv1.ZsetStoreOp_ZSET_STORE_OP_DIFF:
		if sources[0] != nil {
			each(sources[0], func(e zsetEntry) bool {
				for _, z := range sources[1:] {
					if z != nil {
						if _, ok := z.Score(e.member); ok {
							return true
						}
					}
				}
				out.merge(e.member, weight(0)*e.score)
				return true
			})
		}
	}
	count := len(out.order)
	if count == 0 {
		m.st.remove(string(dst))
	} else {
		ss := &sortedSet{z: newZset(), tie: tieBreakOf(req.GetTieBreak()), gen: m.st.gen}
		for _, member := range out.order {
			ss.z.Add(member, out.scores[member], ss.tieFor())
		}
		// A replaced key keeps its create revision and version history, as a Set does,
		// and loses its TTL.
		write(m.st, index, now, string(dst), nil, writeOpts{zset: ss})
	}
	return &fsmv1.Result_ZsetStore{ZsetStore: &fsmv1.ZsetStoreResult{Count: int64(count)}}, nil
}

// zsetBuilder gathers the members of a store and their aggregated scores. The map is
// only looked up; order keeps the members in the order first met.
type zsetBuilder struct {
	agg    conclavev1.Aggregate
	scores map[string]float64
	order  []string
}

func newZsetBuilder(agg conclavev1.Aggregate) *zsetBuilder {
	return &zsetBuilder{agg: agg, scores: make(map[string]float64)}
}

func (b *zsetBuilder) merge(member string, score float64) {
	if math.IsNaN(score) {
		score = 0
	}
	cur, ok := b.scores[member]
	if !ok {
		b.scores[member] = score
		b.order = append(b.order, member)
		return
	}
	switch b.agg {
	case conclavev1.Aggregate_AGGREGATE_MIN:
		score = min(cur, score)
	case conclavev1.Aggregate_AGGREGATE_MAX:
		score = max(cur, score)
	default:
		score += cur
		if math.IsNaN(score) {
			score = 0
		}
	}
	b.scores[member] = score
}
