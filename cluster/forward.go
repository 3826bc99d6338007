package cluster

import (
	"context"
	"errors"

	"google.golang.org/grpc"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	"github.com/conclave-dev/conclave/proto/conclave/fsm/v1/fsmv1grpc"
)

// forwardService is the leader's side of forwarding: it applies commands and serves read
// indexes for followers, and never forwards again. Cluster errors travel back as
// ForwardError values so the follower returns the very same sentinel; anything else
// (context, transport) is an ordinary gRPC error.
type forwardService struct {
	fsmv1grpc.UnimplementedForwardServiceServer
	n *Node
}

// RegisterForwardService registers the node's internal ForwardService on s (the same
// gRPC server that serves the public API).
func (n *Node) RegisterForwardService(s grpc.ServiceRegistrar) {
	fsmv1grpc.RegisterForwardServiceServer(s, &forwardService{n: n})
}

func (f *forwardService) Apply(ctx context.Context, req *fsmv1.ApplyRequest) (*fsmv1.ApplyResponse, error) {
	res, err := f.n.ApplyLocal(ctx, req.GetCommand())
	if code, ok := forwardCode(err); ok {
		return &fsmv1.ApplyResponse{Error: code}, nil
	}
	if err != nil {
		return nil, err
	}
	return &fsmv1.ApplyResponse{Result: res}, nil
}

func (f *forwardService) ReadIndex(ctx context.Context, _ *fsmv1.ReadIndexRequest) (*fsmv1.ReadIndexResponse, error) {
	idx, err := f.n.LeaderReadIndex(ctx)
	if code, ok := forwardCode(err); ok {
		return &fsmv1.ReadIndexResponse{Error: code}, nil
	}
	if err != nil {
		return nil, err
	}
	return &fsmv1.ReadIndexResponse{Index: idx}, nil
}

var forwardErrors = []struct {
	err  error
	code fsmv1.ForwardError
}{
	{ErrNoLeader, fsmv1.ForwardError_FORWARD_ERROR_NO_LEADER},
	{ErrNotLeader, fsmv1.ForwardError_FORWARD_ERROR_NOT_LEADER},
	{ErrNotReady, fsmv1.ForwardError_FORWARD_ERROR_NOT_READY},
	{ErrLeadershipLost, fsmv1.ForwardError_FORWARD_ERROR_LEADERSHIP_LOST},
	{ErrShutdown, fsmv1.ForwardError_FORWARD_ERROR_SHUTDOWN},
}

func forwardCode(err error) (fsmv1.ForwardError, bool) {
	if err == nil {
		return 0, false
	}
	for _, e := range forwardErrors {
		if errors.Is(err, e.err) {
			return e.code, true
		}
	}
	return 0, false
}

// forwardErr turns a relayed ForwardError back into its sentinel (nil for none).
func forwardErr(code fsmv1.ForwardError) error {
	for _, e := range forwardErrors {
		if e.code == code {
			return e.err
		}
	}
	return nil
}
