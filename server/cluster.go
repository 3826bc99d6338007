package server

import (
	"context"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// clusterService implements conclavev1grpc.ClusterService. Membership changes are not KV
// writes, so their headers carry the node and term but revision 0.
type clusterService struct {
	conclavev1grpc.UnimplementedClusterServiceServer
	node Node
}

var _ conclavev1grpc.ClusterServiceServer = (*clusterService)(nil)

func (s *clusterService) Status(ctx context.Context, req *conclavev1.StatusRequest) (*conclavev1.StatusResponse, error) {
	resp, err := s.node.Status(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetIncludeStateHash() {
		if resp.StateHash, resp.StateHashIndex, err = s.node.StateHash(); err != nil {
			return nil, toStatus(err)
		}
	}
	return resp, nil
}

func (s *clusterService) Join(ctx context.Context, req *conclavev1.JoinRequest) (*conclavev1.JoinResponse, error) {
	if err := validateJoin(req); err != nil {
		return nil, toStatus(err)
	}
	members, err := s.node.Join(ctx, req.GetId(), req.GetRaftAddress(), req.GetGrpcAddress())
	if err != nil {
		return nil, toStatus(err)
	}
	return &conclavev1.JoinResponse{Header: s.node.Header(0), Members: members}, nil
}

func (s *clusterService) Remove(ctx context.Context, req *conclavev1.RemoveRequest) (*conclavev1.RemoveResponse, error) {
	if err := checkMemberID("id", req.GetId(), true); err != nil {
		return nil, toStatus(err)
	}
	members, err := s.node.Remove(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &conclavev1.RemoveResponse{Header: s.node.Header(0), Members: members}, nil
}

func (s *clusterService) TransferLeadership(ctx context.Context, req *conclavev1.TransferLeadershipRequest) (*conclavev1.TransferLeadershipResponse, error) {
	if err := checkMemberID("to_id", req.GetToId(), false); err != nil {
		return nil, toStatus(err)
	}
	leader, err := s.node.TransferLeadership(ctx, req.GetToId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &conclavev1.TransferLeadershipResponse{Header: s.node.Header(0), LeaderId: leader}, nil
}

func (s *clusterService) Snapshot(ctx context.Context, _ *conclavev1.SnapshotRequest) (*conclavev1.SnapshotResponse, error) {
	index, err := s.node.Snapshot(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &conclavev1.SnapshotResponse{Header: s.node.Header(0), Index: index}, nil
}
