package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// electionService is conclave.v1.ElectionService. An election is an exclusive lock whose
// holder carries a value: Campaign is a waiting Acquire, Resign a Release, Proclaim a
// LockProclaim, and the leader is the lock's exclusive holder.
type electionService struct {
	conclavev1grpc.UnimplementedElectionServiceServer
	node Node
}

func (s *electionService) Campaign(ctx context.Context, req *conclavev1.CampaignRequest) (*conclavev1.CampaignResponse, error) {
	if err := validateCampaign(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_LockAcquire{LockAcquire: &fsmv1.LockAcquire{
		Name: req.GetName(), SessionId: req.GetSessionId(), Mode: fsmv1.LockMode_LOCK_MODE_EXCLUSIVE, Wait: true, Value: req.GetValue(),
	}}}
	hold, err := acquire(ctx, s.node, cmd, time.Duration(req.GetWaitTimeoutMs())*time.Millisecond)
	if err != nil {
		return nil, err
	}
	return &conclavev1.CampaignResponse{Header: s.node.Header(hold.GetRevision()), Leader: leadership(req.GetName(), hold)}, nil
}

func (s *electionService) Proclaim(ctx context.Context, req *conclavev1.ProclaimRequest) (*conclavev1.ProclaimResponse, error) {
	if err := firstErr(checkLockName(req.GetName()), checkToken(req.GetToken()), checkValue("value", req.GetValue()), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_LockProclaim{LockProclaim: &fsmv1.LockProclaim{
		Name: req.GetName(), Token: req.GetToken(), Value: req.GetValue(),
	}}}
	res, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetLock)
	if err != nil {
		return nil, err
	}
	return &conclavev1.ProclaimResponse{Header: s.node.Header(index), Leader: leadership(req.GetName(), res.GetHolder())}, nil
}

func (s *electionService) Resign(ctx context.Context, req *conclavev1.ResignRequest) (*conclavev1.ResignResponse, error) {
	h, err := release(ctx, s.node, req.GetName(), req.GetToken(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &conclavev1.ResignResponse{Header: h}, nil
}

func (s *electionService) Leader(ctx context.Context, req *conclavev1.LeaderRequest) (*conclavev1.LeaderResponse, error) {
	if err := firstErr(checkLockName(req.GetName()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp := &conclavev1.LeaderResponse{}
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) { resp.Leader = currentLeader(v, req.GetName()) })
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = h
	return resp, nil
}

// Observe sends the leader as of a linearizable read, then follows this node's applied
// state and sends every change of leader or value (an unset leader when it has none).
// Changes between two applied entries of this node are not seen one by one: an observer
// learns the latest leader, as a watch on etcd's election key does.
func (s *electionService) Observe(req *conclavev1.ObserveRequest, stream conclavev1grpc.ElectionService_ObserveServer) error {
	if err := checkLockName(req.GetName()); err != nil {
		return toStatus(err)
	}
	ctx := stream.Context()
	consistency := conclavev1.Consistency_CONSISTENCY_LINEARIZABLE
	var last *conclavev1.Leadership
	for first := true; ; first = false {
		changed := s.node.Changed() // before reading, so no change slips between
		var cur *conclavev1.Leadership
		h, err := s.node.Read(ctx, consistency, func(v *fsm.View) { cur = currentLeader(v, req.GetName()) })
		if err != nil {
			return toStatus(err)
		}
		consistency = conclavev1.Consistency_CONSISTENCY_STALE
		if first || !proto.Equal(cur, last) {
			if err := stream.Send(&conclavev1.ObserveResponse{Header: h, Leader: cur}); err != nil {
				return err
			}
			last = cur
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return toStatus(ctx.Err())
		}
	}
}

// currentLeader is the exclusive holder of lock name, or nil.
func currentLeader(v *fsm.View, name string) *conclavev1.Leadership {
	l, ok := v.Lock(name)
	if !ok {
		return nil
	}
	for _, h := range l.GetHolders() {
		if h.GetMode() == fsmv1.LockMode_LOCK_MODE_EXCLUSIVE {
			return leadership(name, h)
		}
	}
	return nil
}

func leadership(name string, h *fsmv1.LockHolder) *conclavev1.Leadership {
	return &conclavev1.Leadership{Name: name, SessionId: h.GetSessionId(), Token: h.GetToken(), Value: h.GetValue(),
		Revision: h.GetRevision(), SinceUnixMs: h.GetSinceUnixNano() / 1e6}
}

func checkToken(token uint64) error {
	if token == 0 {
		return invalid("token", "must be the fencing token the grant returned (non-zero)")
	}
	return nil
}

func validateCampaign(req *conclavev1.CampaignRequest) error {
	if w := req.GetWaitTimeoutMs(); w < 0 || w > MaxLockWait.Milliseconds() {
		return invalid("wait_timeout_ms", "must be 0 (as long as the call lasts) to %d, got %d", MaxLockWait.Milliseconds(), w)
	}
	return firstErr(checkLockName(req.GetName()), checkSessionID("session_id", req.GetSessionId()), checkValue("value", req.GetValue()), checkRequestID("request_id", req.GetRequestId()))
}
