package server

import (
	"fmt"
	"math"

	"github.com/conclave-dev/conclave/fsm"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Limits on sorted-set requests.
const (
	// MaxZsetMembers is the most members one Add, Remove or MultiScore names.
	MaxZsetMembers = 1000
	// MaxZsetStoreKeys is the most source keys of a UnionStore, IntersectStore or DiffStore.
	MaxZsetStoreKeys = 64
	// MaxPopWaitMs is the longest a PopMin or PopMax waits for a member: five minutes.
	MaxPopWaitMs int64 = 5 * 60 * 1000
)

func checkMember(field, member string) error {
	if len(member) > fsm.MaxZsetMember {
		return invalid(field, "must be at most %d bytes, got %d", fsm.MaxZsetMember, len(member))
	}
	return nil
}

func checkMembers(field string, members []string) error {
	if len(members) == 0 || len(members) > MaxZsetMembers {
		return invalid(field, "must name 1 to %d members, got %d", MaxZsetMembers, len(members))
	}
	for i, m := range members {
		if err := checkMember(fmt.Sprintf("%s[%d]", field, i), m); err != nil {
			return err
		}
	}
	return nil
}

func checkNumber(field string, f float64) error {
	if math.IsNaN(f) {
		return invalid(field, "must be a number, not NaN")
	}
	return nil
}

func checkEnum[E ~int32](field string, v E, names map[int32]string) error {
	if _, ok := names[int32(v)]; !ok {
		return invalid(field, "unknown value %d", v)
	}
	return nil
}

func checkTieBreak(field string, t conclavev1.TieBreak) error {
	return checkEnum(field, t, conclavev1.TieBreak_name)
}

func checkRankMode(field string, m conclavev1.RankMode) error {
	return checkEnum(field, m, conclavev1.RankMode_name)
}

func checkScoreInterval(field string, iv *conclavev1.ScoreInterval) error {
	if iv == nil {
		return nil
	}
	return firstErr(checkNumber(field+".min.score", iv.GetMin().GetScore()), checkNumber(field+".max.score", iv.GetMax().GetScore()))
}

func checkLexInterval(field string, iv *conclavev1.LexInterval) error {
	if iv == nil {
		return nil
	}
	return firstErr(checkMember(field+".min.member", iv.GetMin().GetMember()), checkMember(field+".max.member", iv.GetMax().GetMember()))
}

func checkCount(field string, n, most int64) error {
	if n < 0 || n > most {
		return invalid(field, "must be 0 to %d, got %d", most, n)
	}
	return nil
}

func validateZsetAdd(req *conclavev1.AddRequest) error {
	ms := req.GetMembers()
	if err := checkKey("key", req.GetKey()); err != nil {
		return err
	}
	if len(ms) == 0 || len(ms) > MaxZsetMembers {
		return invalid("members", "must hold 1 to %d members, got %d", MaxZsetMembers, len(ms))
	}
	for i, m := range ms {
		if err := firstErr(checkMember(fmt.Sprintf("members[%d].member", i), m.GetMember()),
			checkNumber(fmt.Sprintf("members[%d].score", i), m.GetScore())); err != nil {
			return err
		}
	}
	switch {
	case req.GetIfAbsent() && req.GetIfPresent():
		return invalid("if_present", "cannot be combined with if_absent (Redis NX and XX)")
	case req.GetOnlyGreater() && req.GetOnlyLess():
		return invalid("only_less", "cannot be combined with only_greater (Redis GT and LT)")
	case req.GetIfAbsent() && (req.GetOnlyGreater() || req.GetOnlyLess()):
		return invalid("if_absent", "cannot be combined with only_greater or only_less (Redis NX with GT or LT)")
	case req.GetIncrement() && len(ms) != 1:
		return invalid("members", "increment takes exactly one member, got %d", len(ms))
	}
	return firstErr(checkTieBreak("tie_break", req.GetTieBreak()), checkTTL("ttl_ms", req.GetTtlMs()), checkRequestID("request_id", req.GetRequestId()))
}

func validateZsetIncrement(req *conclavev1.IncrementScoreRequest) error {
	return firstErr(checkKey("key", req.GetKey()), checkMember("member", req.GetMember()), checkNumber("delta", req.GetDelta()),
		checkTieBreak("tie_break", req.GetTieBreak()), checkTTL("ttl_ms", req.GetTtlMs()), checkRequestID("request_id", req.GetRequestId()))
}

func validateZsetRange(req *conclavev1.RangeRequest) error {
	if err := firstErr(checkKey("key", req.GetKey()), checkScoreInterval("score", req.GetScore()), checkLexInterval("lex", req.GetLex()),
		checkCount("offset", req.GetOffset(), math.MaxInt64), checkCount("limit", req.GetLimit(), fsm.ZsetMaxPage),
		checkRankMode("rank_mode", req.GetRankMode()), checkConsistency(req.GetConsistency())); err != nil {
		return err
	}
	if tok := req.GetPageToken(); tok != "" && !fsm.DecodeZsetPageToken(tok) {
		return invalid("page_token", "is not a token a Range returned")
	}
	return nil
}

func validateZsetRemoveRange(req *conclavev1.RemoveRangeRequest) error {
	if req.GetInterval() == nil {
		return invalid("interval", "must be one of rank, score or lex")
	}
	return firstErr(checkKey("key", req.GetKey()), checkScoreInterval("score", req.GetScore()), checkLexInterval("lex", req.GetLex()),
		checkRequestID("request_id", req.GetRequestId()))
}

func validateZsetPop(key []byte, count, waitMs int64, requestID string) error {
	return firstErr(checkKey("key", key), checkCount("count", count, fsm.ZsetMaxPage), checkCount("wait_ms", waitMs, MaxPopWaitMs),
		checkRequestID("request_id", requestID))
}

func validateZsetStore(dst []byte, keys [][]byte, weights []float64, agg conclavev1.Aggregate, tie conclavev1.TieBreak, requestID string) error {
	if err := checkKey("destination", dst); err != nil {
		return err
	}
	if len(keys) == 0 || len(keys) > MaxZsetStoreKeys {
		return invalid("keys", "must name 1 to %d keys, got %d", MaxZsetStoreKeys, len(keys))
	}
	for i, k := range keys {
		if err := checkKey(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return err
		}
	}
	if len(weights) != 0 && len(weights) != len(keys) {
		return invalid("weights", "must be empty or one per key: %d weights for %d keys", len(weights), len(keys))
	}
	for i, w := range weights {
		if err := checkNumber(fmt.Sprintf("weights[%d]", i), w); err != nil {
			return err
		}
	}
	return firstErr(checkEnum("aggregate", agg, conclavev1.Aggregate_name), checkTieBreak("tie_break", tie), checkRequestID("request_id", requestID))
}
