package fsm

import (
	"encoding/base64"
	"encoding/binary"
	"math"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Page sizes of sorted-set reads.
const (
	// ZsetDefaultPage is a Range's page when limit is 0; ZsetMaxPage the largest page of
	// a Range or Top, and the most members a Pop takes.
	ZsetDefaultPage = 1000
	ZsetMaxPage     = 10_000
	// ZsetMaxAround is the most neighbours on each side of an Around.
	ZsetMaxAround = 1000
)

// zsetInterval is one of a request's rank, score or lex intervals (all nil: every member).
type zsetInterval struct {
	rank  *conclavev1.RankInterval
	score *conclavev1.ScoreInterval
	lex   *conclavev1.LexInterval
}

// bounds returns the interval as ascending ranks [lo, hi). A rank interval counts from
// the top when reverse. A lex interval reads the members with the set's lowest score
// (Redis assumes one score for lex ranges), and needs a set ordered by member.
func (iv zsetInterval) bounds(key []byte, ss *sortedSet, reverse bool) (lo, hi int, err *Error) {
	t, n := ss.z.byRank, ss.z.Len()
	switch {
	case iv.rank != nil:
		start, stop := iv.rank.GetStart(), iv.rank.GetStop()
		if start < 0 {
			start += int64(n)
		}
		if stop < 0 {
			stop += int64(n)
		}
		start, stop = max(start, 0), min(stop, int64(n)-1)
		if start > stop {
			return 0, 0, nil
		}
		if reverse {
			return n - 1 - int(stop), n - int(start), nil
		}
		return int(start), int(stop) + 1, nil
	case iv.score != nil:
		if math.IsNaN(iv.score.GetMin().GetScore()) || math.IsNaN(iv.score.GetMax().GetScore()) {
			return 0, 0, errInvalid(key, "score bounds must be numbers, not NaN")
		}
		lo, hi = 0, n
		if b := iv.score.GetMin(); b != nil {
			lo = t.scoreRank(b.GetScore(), b.GetExclusive())
		}
		if b := iv.score.GetMax(); b != nil {
			hi = t.scoreRank(b.GetScore(), !b.GetExclusive())
		}
		return lo, max(lo, hi), nil
	case iv.lex != nil:
		if ss.tie != conclavev1.TieBreak_TIE_BREAK_LEX {
			return 0, 0, errCondition(key, "lex intervals need a set whose ties break by member (TIE_BREAK_LEX)")
		}
		if n == 0 {
			return 0, 0, nil
		}
		first, _ := t.at(0)
		lo, hi = 0, t.scoreRank(first.score, true)
		if b := iv.lex.GetMin(); b != nil {
			r, found := t.seek(zsetEntry{score: first.score, member: b.GetMember()})
			if found && b.GetExclusive() {
				r++
			}
			lo = r
		}
		if b := iv.lex.GetMax(); b != nil {
			r, found := t.seek(zsetEntry{score: first.score, member: b.GetMember()})
			if found && !b.GetExclusive() {
				r++
			}
			hi = min(hi, r)
		}
		return lo, max(lo, hi), nil
	}
	return 0, n, nil
}

// zsetRanker computes the ranks of a run of entries read in one direction, asking the
// tree only for the first: after it, the ordinal rank grows by one per entry, and the
// dense and competition ranks change only where the score does.
type zsetRanker struct {
	ss      *sortedSet
	mode    conclavev1.RankMode
	reverse bool
	started bool
	rank    int64
	score   float64
}

// next returns the rank of e, the entry of ascending ordinal asc, read after the
// previous one passed to next (if any).
func (r *zsetRanker) next(e zsetEntry, asc int) int64 {
	n := r.ss.z.Len()
	pos := int64(asc)
	if r.reverse {
		pos = int64(n - 1 - asc)
	}
	switch {
	case r.mode == conclavev1.RankMode_RANK_MODE_DENSE && !r.started:
		r.rank = int64(r.ss.denseRank(e.score, r.reverse))
	case r.mode == conclavev1.RankMode_RANK_MODE_DENSE && e.score != r.score:
		r.rank++
	case r.mode == conclavev1.RankMode_RANK_MODE_COMPETITION && !r.started:
		r.rank = int64(r.ss.competitionRank(e.score, r.reverse))
	case r.mode == conclavev1.RankMode_RANK_MODE_COMPETITION && e.score != r.score:
		r.rank = pos
	case r.mode == conclavev1.RankMode_RANK_MODE_DENSE, r.mode == conclavev1.RankMode_RANK_MODE_COMPETITION:
		// a tie: the rank stays
	default:
		r.rank = pos
	}
	r.started, r.score = true, e.score
	return r.rank
}

// competitionRank is the number of members with a strictly better score: lower when
// ascending, higher when reverse.
func (ss *sortedSet) competitionRank(score float64, reverse bool) int {
	t := ss.z.byRank
	if reverse {
		return t.len() - t.scoreRank(score, true)
	}
	return t.scoreRank(score, false)
}

// denseRank is the number of distinct scores strictly better than score.
func (ss *sortedSet) denseRank(score float64, reverse bool) int {
	t := ss.z.byRank
	if reverse {
		return t.distinct(t.len()) - t.distinct(t.scoreRank(score, true))
	}
	return t.distinct(t.scoreRank(score, false))
}

// rankOf returns the rank of e (at ascending ordinal asc) in the direction and mode asked.
func (ss *sortedSet) rankOf(e zsetEntry, asc int, reverse bool, mode conclavev1.RankMode) int64 {
	r := zsetRanker{ss: ss, mode: mode, reverse: reverse}
	return r.next(e, asc)
}

// Page tokens hold the last entry a page returned: version byte 1, score bits, tie,
// member, in URL-safe base64. The next page starts just after that entry, wherever it
// now ranks, so members moving between pages are neither skipped twice nor repeated
// because of an offset shift.
func encodeZsetToken(e zsetEntry) string {
	b := make([]byte, 0, 17+len(e.member))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(e.score))
	b = binary.BigEndian.AppendUint64(b, e.tie)
	b = append(b, e.member...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeZsetPageToken checks a Range page token; the server calls it to reject a bad one.
func DecodeZsetPageToken(tok string) (ok bool) {
	_, ok = decodeZsetToken(tok)
	return ok
}

func decodeZsetToken(tok string) (zsetEntry, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 17 || b[0] != 1 {
		return zsetEntry{}, false
	}
	score := math.Float64frombits(binary.BigEndian.Uint64(b[1:]))
	if math.IsNaN(score) {
		return zsetEntry{}, false
	}
	return zsetEntry{score: score, tie: binary.BigEndian.Uint64(b[9:]), member: string(b[17:])}, true
}

// zsetRead is the read side of a sorted set at one key: nil ss when the key is absent.
func (v *View) zsetRead(key []byte) (*sortedSet, *Error) {
	ss, _, err := v.st.zsetAt(key, v.now)
	return ss, err
}

// ZsetScore returns member's score.
func (v *View) ZsetScore(key []byte, member string) (score float64, found bool, err error) {
	ss, zerr := v.zsetRead(key)
	if zerr != nil || ss == nil {
		return 0, false, nilIfNone(zerr)
	}
	score, found = ss.z.Score(member)
	return score, found, nil
}

// ZsetCard returns the number of members (0 for a missing key).
func (v *View) ZsetCard(key []byte) (int64, error) {
	ss, err := v.zsetRead(key)
	if err != nil || ss == nil {
		return 0, nilIfNone(err)
	}
	return int64(ss.z.Len()), nil
}

// ZsetCount counts the members in a score or lex interval.
func (v *View) ZsetCount(req *conclavev1.CountRequest) (int64, error) {
	ss, err := v.zsetRead(req.GetKey())
	if err != nil || ss == nil {
		return 0, nilIfNone(err)
	}
	lo, hi, err := zsetInterval{score: req.GetScore(), lex: req.GetLex()}.bounds(req.GetKey(), ss, false)
	if err != nil {
		return 0, err
	}
	return int64(hi - lo), nil
}

// ZsetRank returns member's rank and score.
func (v *View) ZsetRank(req *conclavev1.RankRequest) (*conclavev1.RankResponse, error) {
	resp := &conclavev1.RankResponse{}
	ss, err := v.zsetRead(req.GetKey())
	if err != nil || ss == nil {
		return resp, nilIfNone(err)
	}
	e, ok := ss.z.Entry(req.GetMember())
	if !ok {
		return resp, nil
	}
	asc, _ := ss.z.byRank.rank(e)
	resp.Found, resp.Score = true, e.score
	resp.Rank = ss.rankOf(e, asc, req.GetReverse(), req.GetMode())
	return resp, nil
}

// ZsetRange lists a page of members of an interval, in the direction asked.
func (v *View) ZsetRange(req *conclavev1.RangeRequest) (*conclavev1.RangeResponse, error) {
	resp := &conclavev1.RangeResponse{}
	ss, err := v.zsetRead(req.GetKey())
	if err != nil || ss == nil {
		return resp, nilIfNone(err)
	}
	iv := zsetInterval{rank: req.GetRank(), score: req.GetScore(), lex: req.GetLex()}
	lo, hi, err := iv.bounds(req.GetKey(), ss, req.GetReverse())
	if err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = ZsetDefaultPage
	}
	limit = min(limit, ZsetMaxPage)
	t, reverse := ss.z.byRank, req.GetReverse()
	// from is the ascending ordinal of the first entry to list.
	from := lo
	if reverse {
		from = hi - 1
	}
	if tok := req.GetPageToken(); tok != "" {
		last, ok := decodeZsetToken(tok)
		if !ok {
			return nil, errInvalid(req.GetKey(), "page_token is not a token a Range returned")
		}
		r, found := t.seek(last)
		if reverse {
			from = min(from, r-1)
		} else if found {
			from = max(from, r+1)
		} else {
			from = max(from, r)
		}
	} else if off := req.GetOffset(); off > 0 {
		if reverse {
			from -= int(min(off, int64(hi-lo)))
		} else {
			from += int(min(off, int64(hi-lo)))
		}
	}
	ranker := zsetRanker{ss: ss, mode: req.GetRankMode(), reverse: reverse}
	var last zsetEntry
	emit := func(asc int) func(zsetEntry) bool {
		return func(e zsetEntry) bool {
			if len(resp.Members) == limit {
				resp.NextPageToken = encodeZsetToken(last)
				return false
			}
			resp.Members = append(resp.Members, &conclavev1.RankedMember{Member: e.member, Score: e.score, Rank: ranker.next(e, asc)})
			last = e
			if reverse {
				asc--
				return asc >= lo
			}
			asc++
			return asc < hi
		}
	}
	if reverse {
		if from >= lo {
			t.descend(from, emit(from))
		}
	} else if from < hi {
		t.ascend(from, emit(from))
	}
	return resp, nil
}

// ZsetAround lists member and up to count neighbours on each side, with ranks.
func (v *View) ZsetAround(req *conclavev1.AroundRequest) (*conclavev1.AroundResponse, error) {
	resp := &conclavev1.AroundResponse{}
	ss, err := v.zsetRead(req.GetKey())
	if err != nil || ss == nil {
		return resp, nilIfNone(err)
	}
	e, ok := ss.z.Entry(req.GetMember())
	if !ok {
		return resp, nil
	}
	asc, _ := ss.z.byRank.rank(e)
	count := int(min(max(req.GetCount(), 0), ZsetMaxAround))
	n := ss.z.Len()
	lo, hi := max(asc-count, 0), min(asc+count+1, n)
	start, stop := lo, hi-1 // ranks in the direction read
	if req.GetReverse() {
		start, stop = n-hi, n-1-lo
	}
	r, err2 := v.ZsetRange(&conclavev1.RangeRequest{
		Key: req.GetKey(), Interval: &conclavev1.RangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: int64(start), Stop: int64(stop)}},
		Reverse: req.GetReverse(), Limit: int64(hi - lo), RankMode: req.GetRankMode(),
	})
	if err2 != nil {
		return nil, err2
	}
	resp.Found, resp.Members = true, r.GetMembers()
	return resp, nil
}

// ZsetTop lists the count best members: the highest scores first unless lowest.
func (v *View) ZsetTop(req *conclavev1.TopRequest) (*conclavev1.TopResponse, error) {
	count := req.GetCount()
	if count <= 0 {
		count = 10
	}
	r, err := v.ZsetRange(&conclavev1.RangeRequest{
		Key: req.GetKey(), Interval: &conclavev1.RangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: 0, Stop: count - 1}},
		Reverse: !req.GetLowest(), Limit: count, RankMode: req.GetRankMode(),
	})
	if err != nil {
		return nil, err
	}
	return &conclavev1.TopResponse{Members: r.GetMembers()}, nil
}

// nilIfNone turns a nil *Error into a nil error (not a typed nil).
func nilIfNone(err *Error) error {
	if err == nil {
		return nil
	}
	return err
}
