package fsm

import (
	"math"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Limits on sorted-set commands (the server checks them first, naming the field).
const (
	// MaxZsetMember is the longest member, in bytes.
	MaxZsetMember = 4096
	// MaxZsetBulk bounds the members a UnionStore, IntersectStore or DiffStore may read,
	// and a RemoveRange remove (unless it removes the whole set), in one entry, so that
	// one command cannot stall the log for long (a million takes about 0.3 s).
	MaxZsetBulk = 1_000_000
)

// sortedSet is the value of a key holding a sorted set: the members (z), how ties are
// broken and the last arrival number given. gen is the state generation that may write
// it in place; any other state copies it first (zset.Clone is O(1)), so a snapshot or a
// transaction's discarded clone never sees a write.
type sortedSet struct {
	z   *zset
	tie conclavev1.TieBreak // never UNSPECIFIED
	seq uint64
	gen uint64
}

// tieFor returns the tie-breaker of a member reaching a new score now.
func (ss *sortedSet) tieFor() uint64 {
	switch ss.tie {
	case conclavev1.TieBreak_TIE_BREAK_ARRIVAL:
		ss.seq++
		return math.MaxUint64 - ss.seq // read highest first, the earliest comes first
	case conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING:
		ss.seq++
		return ss.seq
	}
	return 0
}

func tieBreakOf(t conclavev1.TieBreak) conclavev1.TieBreak {
	if t == conclavev1.TieBreak_TIE_BREAK_UNSPECIFIED {
		return conclavev1.TieBreak_TIE_BREAK_LEX
	}
	return t
}

// checkTieBreak refuses a tie-break the machine does not know (a snapshot could not
// hold it).
func checkTieBreak(key []byte, t conclavev1.TieBreak) *Error {
	if _, ok := conclavev1.TieBreak_name[int32(t)]; !ok {
		return errInvalid(key, "tie_break: unknown value %d", t)
	}
	return nil
}

// zsetAt returns the live sorted set at key (nil if the key does not exist) and its
// entry, or WRONG_TYPE if the key holds a string.
func (s *state) zsetAt(key []byte, now int64) (*sortedSet, *entry, *Error) {
	e, ok := s.getLive(string(key), now)
	if !ok {
		return nil, nil, nil
	}
	if e.zset == nil {
		return nil, nil, errWrongType(key, "a string", "a sorted set")
	}
	return e.zset, e, nil
}

// zsetWrite is a sorted-set write in progress: the set to change in place and the entry
// it came from (nil when the key is new).
type zsetWrite struct {
	key string
	ss  *sortedSet
	old *entry
}

// zsetForWrite returns the sorted set at key ready to be changed, creating an empty one
// with tie-break tie if the key does not exist; WRONG_TYPE if it holds a string.
func (s *state) zsetForWrite(key []byte, now int64, tie conclavev1.TieBreak) (*zsetWrite, *Error) {
	ss, old, err := s.zsetAt(key, now)
	switch {
	case err != nil:
		return nil, err
	case ss == nil:
		ss = &sortedSet{z: newZset(), tie: tieBreakOf(tie), gen: s.gen}
	case ss.gen != s.gen:
		ss = &sortedSet{z: ss.z.Clone(), tie: ss.tie, seq: ss.seq, gen: s.gen}
	}
	return &zsetWrite{key: string(key), ss: ss, old: old}, nil
}

// commit stores the changed set at revision index (deleting the key if the set is now
// empty). ttlMs > 0 sets a deadline on a new key; an existing key keeps its own.
func (w *zsetWrite) commit(s *state, index uint64, now int64, ttlMs int64) {
	if w.ss.z.Len() == 0 {
		if w.old != nil {
			s.remove(w.key)
		}
		return
	}
	if w.old != nil {
		ttlMs = 0
	}
	write(s, index, now, w.key, nil, writeOpts{ttlMs: ttlMs, keepTTL: true, zset: w.ss})
}

func checkZsetKey(key []byte) *Error {
	if len(key) == 0 {
		return errInvalid(nil, "key must not be empty")
	}
	return nil
}

func checkScore(key []byte, field string, f float64) *Error {
	if math.IsNaN(f) {
		return errInvalid(key, "%s must be a number, not NaN", field)
	}
	return nil
}

// zsetAdd is Redis's ZADD: NX (if_absent), XX (if_present), GT (only_greater), LT
// (only_less), CH (the changed count, always reported) and INCR (increment).
func (m *Machine) zsetAdd(index uint64, now int64, req *conclavev1.AddRequest) (*fsmv1.Result_ZsetAdd, *Error) {
	key := req.GetKey()
	if err := checkZsetKey(key); err != nil {
		return nil, err
	}
	members := req.GetMembers()
	switch {
	case len(members) == 0:
		return nil, errInvalid(key, "members must not be empty")
	case req.GetIfAbsent() && req.GetIfPresent():
		return nil, errInvalid(key, "if_absent and if_present cannot be combined")
	case req.GetOnlyGreater() && req.GetOnlyLess():
		return nil, errInvalid(key, "only_greater and only_less cannot be combined")
	case req.GetIfAbsent() && (req.GetOnlyGreater() || req.GetOnlyLess()):
		return nil, errInvalid(key, "if_absent cannot be combined with only_greater or only_less")
	case req.GetIncrement() && len(members) != 1:
		return nil, errInvalid(key, "increment takes exactly one member, got %d", len(members))
	case req.GetTtlMs() < 0:
		return nil, errInvalid(key, "ttl_ms must not be negative")
	}
	if err := checkTieBreak(key, req.GetTieBreak()); err != nil {
		return nil, err
	}
	for _, sm := range members {
		if err := checkScore(key, "score", sm.GetScore()); err != nil {
			return nil, err
		}
	}
	w, err := m.st.zsetForWrite(key, now, req.GetTieBreak())
	if err != nil {
		return nil, err
	}
	resp := &conclavev1.AddResponse{}
	if req.GetIncrement() {
		// One member: check the result before changing anything.
		sm := members[0]
		cur, exists := w.ss.z.Score(sm.GetMember())
		next := cur + sm.GetScore()
		if exists && math.IsNaN(next) {
			return nil, newError(fsmv1.ErrorCode_ERROR_CODE_OUT_OF_RANGE, key, "increment would make the score NaN")
		}
		members = []*conclavev1.ScoredMember{{Member: sm.GetMember(), Score: next}}
	}
	for _, sm := range members {
		member, score := sm.GetMember(), sm.GetScore()
		cur, exists := w.ss.z.Score(member)
		switch {
		case exists && req.GetIfAbsent(), !exists && req.GetIfPresent():
			continue
		case exists && req.GetOnlyGreater() && score <= cur, exists && req.GetOnlyLess() && score >= cur:
			continue
		}
		if req.GetIncrement() {
			resp.Score = &score
		}
		if !exists {
			resp.Added++
			resp.Changed++
		} else if score != cur {
			resp.Changed++
		}
		if !exists || score != cur {
			w.ss.z.Add(member, score, w.ss.tieFor())
		}
	}
	if resp.Changed > 0 {
		w.commit(m.st, index, now, req.GetTtlMs())
	}
	return &fsmv1.Result_ZsetAdd{ZsetAdd: resp}, nil
}

// zsetIncrement is Redis's ZINCRBY: a missing member starts at 0.
func (m *Machine) zsetIncrement(index uint64, now int64, req *conclavev1.IncrementScoreRequest) (*fsmv1.Result_ZsetIncrement, *Error) {
	key := req.GetKey()
	if err := checkZsetKey(key); err != nil {
		return nil, err
	}
	if err := checkScore(key, "delta", req.GetDelta()); err != nil {
		return nil, err
	}
	if req.GetTtlMs() < 0 {
		return nil, errInvalid(key, "ttl_ms must not be negative")
	}
	if err := checkTieBreak(key, req.GetTieBreak()); err != nil {
		return nil, err
	}
	w, err := m.st.zsetForWrite(key, now, req.GetTieBreak())
	if err != nil {
		return nil, err
	}
	cur, exists := w.ss.z.Score(req.GetMember())
	next := cur + req.GetDelta()
	if math.IsNaN(next) {
		return nil, newError(fsmv1.ErrorCode_ERROR_CODE_OUT_OF_RANGE, key, "increment would make the score NaN")
	}
	if !exists || next != cur {
		w.ss.z.Add(req.GetMember(), next, w.ss.tieFor())
		w.commit(m.st, index, now, req.GetTtlMs())
	}
	return &fsmv1.Result_ZsetIncrement{ZsetIncrement: &conclavev1.IncrementScoreResponse{Score: next}}, nil
}

// zsetRemove is Redis's ZREM; the key goes when its last member does.
func (m *Machine) zsetRemove(index uint64, now int64, req *conclavev1.SortedSetServiceRemoveRequest) (*fsmv1.Result_ZsetRemove, *Error) {
	key := req.GetKey()
	if err := checkZsetKey(key); err != nil {
		return nil, err
	}
	resp := &conclavev1.SortedSetServiceRemoveResponse{}
	w, err := m.st.zsetForWrite(key, now, 0)
	if err != nil || w.old == nil {
		return &fsmv1.Result_ZsetRemove{ZsetRemove: resp}, err
	}
	for _, member := range req.GetMembers() {
		if _, ok := w.ss.z.Remove(member); ok {
			resp.Removed++
		}
	}
	if resp.Removed > 0 {
		w.commit(m.st, index, now, 0)
	}
	return &fsmv1.Result_ZsetRemove{ZsetRemove: resp}, nil
}

// zsetRemoveRange is Redis's ZREMRANGEBYRANK, ZREMRANGEBYSCORE and ZREMRANGEBYLEX.
func (m *Machine) zsetRemoveRange(index uint64, now int64, req *conclavev1.RemoveRangeRequest) (*fsmv1.Result_ZsetRemoveRange, *Error) {
	key := req.GetKey()
	if err := checkZsetKey(key); err != nil {
		return nil, err
	}
	resp := &conclavev1.RemoveRangeResponse{}
	w, err := m.st.zsetForWrite(key, now, 0)
	if err != nil || w.old == nil {
		return &fsmv1.Result_ZsetRemoveRange{ZsetRemoveRange: resp}, err
	}
	ss := w.ss
	sel := zsetInterval{rank: req.GetRank(), score: req.GetScore(), lex: req.GetLex()}
	lo, hi, ierr := sel.bounds(key, ss, false)
	if ierr != nil {
		return nil, ierr
	}
	if lo >= hi {
		return &fsmv1.Result_ZsetRemoveRange{ZsetRemoveRange: resp}, nil
	}
	resp.Removed = int64(hi - lo)
	if lo == 0 && hi == ss.z.Len() {
		m.st.remove(string(key))
		return &fsmv1.Result_ZsetRemoveRange{ZsetRemoveRange: resp}, nil
	}
	if hi-lo > MaxZsetBulk {
		return nil, newError(fsmv1.ErrorCode_ERROR_CODE_OUT_OF_RANGE, key, "the interval holds %d members; a RemoveRange removes at most %d (or the whole set)", hi-lo, MaxZsetBulk)
	}
	gone := make([]string, 0, hi-lo)
	w.ss.z.byRank.ascend(lo, func(e zsetEntry) bool {
		gone = append(gone, e.member)
		return len(gone) < hi-lo
	})
	for _, member := range gone {
		w.ss.z.Remove(member)
	}
	w.commit(m.st, index, now, 0)
	return &fsmv1.Result_ZsetRemoveRange{ZsetRemoveRange: resp}, nil
}

// zsetPop is Redis's ZPOPMIN and ZPOPMAX: up to count members, in the order popped.
func (m *Machine) zsetPop(index uint64, now int64, req *fsmv1.ZsetPop) (*fsmv1.Result_ZsetPop, *Error) {
	key := req.GetKey()
	if err := checkZsetKey(key); err != nil {
		return nil, err
	}
	if req.GetCount() < 0 {
		return nil, errInvalid(key, "count must not be negative")
	}
	res := &fsmv1.ZsetPopResult{}
	w, err := m.st.zsetForWrite(key, now, 0)
	if err != nil || w.old == nil {
		return &fsmv1.Result_ZsetPop{ZsetPop: res}, err
	}
	count := int(min(max(req.GetCount(), 1), int64(w.ss.z.Len())))
	collect := func(e zsetEntry) bool {
		res.Members = append(res.Members, &conclavev1.ScoredMember{Member: e.member, Score: e.score})
		return len(res.Members) < count
	}
	if req.GetMax() {
		w.ss.z.byRank.descend(w.ss.z.Len()-1, collect)
	} else {
		w.ss.z.byRank.ascend(0, collect)
	}
	for _, sm := range res.Members {
		w.ss.z.Remove(sm.GetMember())
	}
	w.commit(m.st, index, now, 0)
	return &fsmv1.Result_ZsetPop{ZsetPop: res}, nil
}
