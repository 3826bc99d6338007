package server

import (
	"context"
	"time"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// sortedSetService is conclave.v1.SortedSetService: writes are commands, reads read the
// node's state at the consistency asked.
type sortedSetService struct {
	conclavev1grpc.UnimplementedSortedSetServiceServer
	node Node
}

var _ conclavev1grpc.SortedSetServiceServer = (*sortedSetService)(nil)

func (s *sortedSetService) Add(ctx context.Context, req *conclavev1.AddRequest) (*conclavev1.AddResponse, error) {
	if err := validateZsetAdd(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_ZsetAdd{ZsetAdd: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetZsetAdd)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *sortedSetService) IncrementScore(ctx context.Context, req *conclavev1.IncrementScoreRequest) (*conclavev1.IncrementScoreResponse, error) {
	if err := validateZsetIncrement(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_ZsetIncrement{ZsetIncrement: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetZsetIncrement)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *sortedSetService) Remove(ctx context.Context, req *conclavev1.SortedSetServiceRemoveRequest) (*conclavev1.SortedSetServiceRemoveResponse, error) {
	if err := firstErr(checkKey("key", req.GetKey()), checkMembers("members", req.GetMembers()), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_ZsetRemove{ZsetRemove: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetZsetRemove)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *sortedSetService) RemoveRange(ctx context.Context, req *conclavev1.RemoveRangeRequest) (*conclavev1.RemoveRangeResponse, error) {
	if err := validateZsetRemoveRange(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_ZsetRemoveRange{ZsetRemoveRange: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetZsetRemoveRange)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *sortedSetService) PopMin(ctx context.Context, req *conclavev1.PopMinRequest) (*conclavev1.PopMinResponse, error) {
	if err := validateZsetPop(req.GetKey(), req.GetCount(), req.GetWaitMs(), req.GetRequestId()); err != nil {
		return nil, toStatus(err)
	}
	ms, h, err := s.pop(ctx, &fsmv1.ZsetPop{Key: req.GetKey(), Count: req.GetCount()}, req.GetWaitMs(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &conclavev1.PopMinResponse{Header: h, Members: ms}, nil
}

func (s *sortedSetService) PopMax(ctx context.Context, req *conclavev1.PopMaxRequest) (*conclavev1.PopMaxResponse, error) {
	if err := validateZsetPop(req.GetKey(), req.GetCount(), req.GetWaitMs(), req.GetRequestId()); err != nil {
		return nil, toStatus(err)
	}
	ms, h, err := s.pop(ctx, &fsmv1.ZsetPop{Key: req.GetKey(), Count: req.GetCount(), Max: true}, req.GetWaitMs(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &conclavev1.PopMaxResponse{Header: h, Members: ms}, nil
}

// pop proposes the pop. With a wait, while the set is empty it watches this node's
// applied state and proposes again only once the set has members there, so an idle
// waiter writes nothing to the log; it answers empty when the wait ends.
//
// Two cases propose without looking first. A request with an id proposes on its first
// pass: it may be the retry of a pop that emptied the set, whose members only the
// log's dedup table can return. And after an empty pop (another popper was first) the
// node's state is not looked at again until it has applied that pop, so a follower
// still showing the member taken does not propose once per entry it applies.
func (s *sortedSetService) pop(ctx context.Context, op *fsmv1.ZsetPop, waitMs int64, requestID string) ([]*conclavev1.ScoredMember, *conclavev1.ResponseHeader, error) {
	deadline := time.NewTimer(time.Duration(waitMs) * time.Millisecond)
	defer deadline.Stop()
	var (
		h       *conclavev1.ResponseHeader
		lastPop uint64 // the index of the last empty pop proposed
	)
	propose := waitMs == 0 || requestID != ""
	for {
		changed := s.node.Changed() // before the look, so no change slips between
		if !propose {
			var card int64
			var err error
			card, h, err = read(ctx, s.node, conclavev1.Consistency_CONSISTENCY_STALE, func(v *fsm.View) (int64, error) {
				if v.Revision() < lastPop {
					return 0, nil // not caught up with our own empty pop yet
				}
				return v.ZsetCard(op.GetKey())
			})
			if err != nil {
				return nil, nil, err
			}
			propose = card > 0
		}
		if propose {
			cmd := &fsmv1.Command{RequestId: requestID, Op: &fsmv1.Command_ZsetPop{ZsetPop: op}}
			res, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetZsetPop)
			if err != nil {
				return nil, nil, err
			}
			h = s.node.Header(index)
			if len(res.GetMembers()) > 0 || waitMs == 0 {
				return res.GetMembers(), h, nil
			}
			lastPop, propose = index, false
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil, h, nil
		case <-ctx.Done():
			return nil, nil, toStatus(ctx.Err())
		}
	}
}

func (s *sortedSetService) UnionStore(ctx context.Context, req *conclavev1.UnionStoreRequest) (*conclavev1.UnionStoreResponse, error) {
	count, h, err := s.store(ctx, req.GetRequestId(), &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_UNION,
		Destination: req.GetDestination(), Keys: req.GetKeys(), Weights: req.GetWeights(), Aggregate: req.GetAggregate(), TieBreak: req.GetTieBreak()})
	if err != nil {
		return nil, err
	}
	return &conclavev1.UnionStoreResponse{Header: h, Count: count}, nil
}

func (s *sortedSetService) IntersectStore(ctx context.Context, req *conclavev1.IntersectStoreRequest) (*conclavev1.IntersectStoreResponse, error) {
	count, h, err := s.store(ctx, req.GetRequestId(), &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_INTERSECT,
		Destination: req.GetDestination(), Keys: req.GetKeys(), Weights: req.GetWeights(), Aggregate: req.GetAggregate(), TieBreak: req.GetTieBreak()})
	if err != nil {
		return nil, err
	}
	return &conclavev1.IntersectStoreResponse{Header: h, Count: count}, nil
}

func (s *sortedSetService) DiffStore(ctx context.Context, req *conclavev1.DiffStoreRequest) (*conclavev1.DiffStoreResponse, error) {
	count, h, err := s.store(ctx, req.GetRequestId(), &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp_ZSET_STORE_OP_DIFF,
		Destination: req.GetDestination(), Keys: req.GetKeys(), Weights: req.GetWeights(), TieBreak: req.GetTieBreak()})
	if err != nil {
		return nil, err
	}
	return &conclavev1.DiffStoreResponse{Header: h, Count: count}, nil
}

func (s *sortedSetService) store(ctx context.Context, requestID string, op *fsmv1.ZsetStore) (int64, *conclavev1.ResponseHeader, error) {
	if err := validateZsetStore(op.GetDestination(), op.GetKeys(), op.GetWeights(), op.GetAggregate(), op.GetTieBreak(), requestID); err != nil {
		return 0, nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: requestID, Op: &fsmv1.Command_ZsetStore{ZsetStore: op}}
	res, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetZsetStore)
	if err != nil {
		return 0, nil, err
	}
	return res.GetCount(), s.node.Header(index), nil
}

func (s *sortedSetService) Score(ctx context.Context, req *conclavev1.ScoreRequest) (*conclavev1.ScoreResponse, error) {
	if err := firstErr(checkKey("key", req.GetKey()), checkMember("member", req.GetMember()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (*conclavev1.ScoreResponse, error) {
		score, found, err := v.ZsetScore(req.GetKey(), req.GetMember())
		return &conclavev1.ScoreResponse{Found: found, Score: score}, err
	})
	if err != nil {
		return nil, err
	}
	resp.Header = h
	return resp, nil
}

func (s *sortedSetService) MultiScore(ctx context.Context, req *conclavev1.MultiScoreRequest) (*conclavev1.MultiScoreResponse, error) {
	if err := firstErr(checkKey("key", req.GetKey()), checkMembers("members", req.GetMembers()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (*conclavev1.MultiScoreResponse, error) {
		resp := &conclavev1.MultiScoreResponse{}
		for _, m := range req.GetMembers() {
			score, found, err := v.ZsetScore(req.GetKey(), m)
			if err != nil {
				return nil, err
			}
			resp.Scores = append(resp.Scores, &conclavev1.MemberScore{Member: m, Found: found, Score: score})
		}
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	resp.Header = h
	return resp, nil
}

func (s *sortedSetService) Cardinality(ctx context.Context, req *conclavev1.CardinalityRequest) (*conclavev1.CardinalityResponse, error) {
	if err := firstErr(checkKey("key", req.GetKey()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	n, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (int64, error) { return v.ZsetCard(req.GetKey()) })
	if err != nil {
		return nil, err
	}
	return &conclavev1.CardinalityResponse{Header: h, Count: n}, nil
}

func (s *sortedSetService) Count(ctx context.Context, req *conclavev1.CountRequest) (*conclavev1.CountResponse, error) {
	if err := firstErr(checkKey("key", req.GetKey()), checkScoreInterval("score", req.GetScore()), checkLexInterval("lex", req.GetLex()),
		checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	n, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (int64, error) { return v.ZsetCount(req) })
	if err != nil {
		return nil, err
	}
	return &conclavev1.CountResponse{Header: h, Count: n}, nil
}

func (s *sortedSetService) Rank(ctx context.Context, req *conclavev1.RankRequest) (*conclavev1.RankResponse, error) {
	if err := firstErr(checkKey("key", req.GetKey()), checkMember("member", req.GetMember()), checkRankMode("mode", req.GetMode()),
		checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (*conclavev1.RankResponse, error) { return v.ZsetRank(req) })
	if err != nil {
		return nil, err
	}
	resp.Header = h
	return resp, nil
}

func (s *sortedSetService) Range(ctx context.Context, req *conclavev1.RangeRequest) (*conclavev1.RangeResponse, error) {
	if err := validateZsetRange(req); err != nil {
		return nil, toStatus(err)
	}
	resp, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (*conclavev1.RangeResponse, error) { return v.ZsetRange(req) })
	if err != nil {
		return nil, err
	}
	resp.Header = h
	return resp, nil
}

func (s *sortedSetService) Around(ctx context.Context, req *conclavev1.AroundRequest) (*conclavev1.AroundResponse, error) {
	if err := firstErr(checkKey("key", req.GetKey()), checkMember("member", req.GetMember()), checkCount("count", req.GetCount(), fsm.ZsetMaxAround),
		checkRankMode("rank_mode", req.GetRankMode()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (*conclavev1.AroundResponse, error) { return v.ZsetAround(req) })
	if err != nil {
		return nil, err
	}
	resp.Header = h
	return resp, nil
}

func (s *sortedSetService) Top(ctx context.Context, req *conclavev1.TopRequest) (*conclavev1.TopResponse, error) {
	if err := firstErr(checkKey("key", req.GetKey()), checkCount("count", req.GetCount(), fsm.ZsetMaxPage),
		checkRankMode("rank_mode", req.GetRankMode()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (*conclavev1.TopResponse, error) { return v.ZsetTop(req) })
	if err != nil {
		return nil, err
	}
	resp.Header = h
	return resp, nil
}
