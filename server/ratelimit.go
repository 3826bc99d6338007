package server

import (
	"context"
	"strconv"

	"github.com/conclave-dev/conclave/fsm"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// rateLimitService is conclave.v1.RateLimitService. Every Check and Refund is one
// command — all its keys in one raft entry — decided by the state machine at the
// command's time; Peek and the policy reads read the node's state.
type rateLimitService struct {
	conclavev1grpc.UnimplementedRateLimitServiceServer
	node Node
}

func (s *rateLimitService) Check(ctx context.Context, req *conclavev1.CheckRequest) (*conclavev1.CheckResponse, error) {
	if err := firstErr(checkRateLimitKeys(req.GetKeys(), false), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_RateLimitCheck{RateLimitCheck: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetRateLimitCheck)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *rateLimitService) Refund(ctx context.Context, req *conclavev1.RefundRequest) (*conclavev1.RefundResponse, error) {
	if err := firstErr(checkRateLimitKeys(req.GetKeys(), true), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_RateLimitRefund{RateLimitRefund: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetRateLimitRefund)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *rateLimitService) PutPolicy(ctx context.Context, req *conclavev1.PutPolicyRequest) (*conclavev1.PutPolicyResponse, error) {
	if err := firstErr(checkPolicy("policy", req.GetPolicy(), true), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_PolicyPut{PolicyPut: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetPolicyPut)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *rateLimitService) DeletePolicy(ctx context.Context, req *conclavev1.DeletePolicyRequest) (*conclavev1.DeletePolicyResponse, error) {
	if err := firstErr(checkPolicyName("name", req.GetName()), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_PolicyDelete{PolicyDelete: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetPolicyDelete)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *rateLimitService) Peek(ctx context.Context, req *conclavev1.PeekRequest) (*conclavev1.PeekResponse, error) {
	if err := firstErr(checkRateLimitKeys(req.GetKeys(), false), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp, h, err := read(ctx, s.node, req.GetConsistency(), func(v *fsm.View) (*conclavev1.PeekResponse, error) {
		return v.PeekRateLimit(req)
	})
	if err != nil {
		return nil, err
	}
	resp.Header = h
	return resp, nil
}

func (s *rateLimitService) GetPolicy(ctx context.Context, req *conclavev1.GetPolicyRequest) (*conclavev1.GetPolicyResponse, error) {
	if err := firstErr(checkPolicyName("name", req.GetName()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp := &conclavev1.GetPolicyResponse{}
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) { resp.Policy, _ = v.Policy(req.GetName()) })
	if err != nil {
		return nil, toStatus(err)
	}
	if resp.Policy == nil {
		return nil, toStatus(fsm.ErrorFromProto(&fsmv1.Error{Code: fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, Key: []byte(req.GetName()),
			Message: "rate-limit policy " + strconv.Quote(req.GetName()) + " does not exist"}))
	}
	resp.Header = h
	return resp, nil
}

func (s *rateLimitService) ListPolicies(ctx context.Context, req *conclavev1.ListPoliciesRequest) (*conclavev1.ListPoliciesResponse, error) {
	if err := checkPolicyPage(req); err != nil {
		return nil, toStatus(err)
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultPageSize
	}
	resp := &conclavev1.ListPoliciesResponse{}
	var more bool
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) {
		resp.Policies, more = v.Policies(req.GetPrefix(), req.GetPageToken(), size)
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if more {
		resp.NextPageToken = resp.Policies[len(resp.Policies)-1].GetName()
	}
	resp.Header = h
	return resp, nil
}
