package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/conclave-dev/conclave/fsm"
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

// Apply proposes every command of the batch before waiting for any, so they share one
// raft append, and answers with one outcome per command. Commands only a leader makes
// for itself (LeaderStart, ExpireDue) are refused: a forged LeaderStart of a future term
// would make later leaders serve reads before they are ready.
func (f *forwardService) Apply(ctx context.Context, req *fsmv1.ApplyRequest) (*fsmv1.ApplyResponse, error) {
	cmds := req.GetCommands()
	futures := make([]raft.ApplyFuture, len(cmds))
	out := &fsmv1.ApplyResponse{Outcomes: make([]*fsmv1.ApplyOutcome, len(cmds))}
	for i, cmd := range cmds {
		switch cmd.GetOp().(type) {
		case *fsmv1.Command_LeaderStart, *fsmv1.Command_ExpireDue:
			out.Outcomes[i] = &fsmv1.ApplyOutcome{Result: &fsmv1.Result{Error: &fsmv1.Error{
				Code:    fsmv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
				Message: "only the leader proposes LeaderStart and ExpireDue",
			}}}
			continue
		}
		fut, err := f.n.propose(ctx, cmd)
		if err != nil {
			out.Outcomes[i] = outcome(nil, err)
			continue
		}
		futures[i] = fut
	}
	if err := f.n.await(ctx, futures...); err != nil {
		code, ok := forwardCode(err)
		if !ok {
			return nil, err
		}
		for i, fut := range futures {
			if fut != nil {
				out.Outcomes[i] = &fsmv1.ApplyOutcome{Error: code}
			}
		}
		return out, nil
	}
	for i, fut := range futures {
		if fut != nil {
			out.Outcomes[i] = outcome(result(fut))
		}
	}
	return out, nil
}

func outcome(res *fsmv1.Result, err error) *fsmv1.ApplyOutcome {
	if err == nil {
		return &fsmv1.ApplyOutcome{Result: res}
	}
	code, ok := forwardCode(err)
	if !ok {
		code = fsmv1.ForwardError_FORWARD_ERROR_LEADERSHIP_LOST // outcome unknown: retry with the request id
	}
	return &fsmv1.ApplyOutcome{Error: code}
}

func (f *forwardService) ReadIndex(ctx context.Context, _ *fsmv1.ReadIndexRequest) (*fsmv1.ReadIndexResponse, error) {
	rp, err := f.n.LeaderReadIndex(ctx)
	if code, ok := forwardCode(err); ok {
		return &fsmv1.ReadIndexResponse{Error: code}, nil
	}
	if err != nil {
		return nil, err
	}
	return &fsmv1.ReadIndexResponse{Index: rp.Index, NowUnixNano: rp.Now}, nil
}

func (f *forwardService) KeepAlive(ctx context.Context, req *fsmv1.KeepAliveRequest) (*fsmv1.KeepAliveResponse, error) {
	left, err := f.n.KeepAlive(ctx, req.GetId())
	if code, ok := forwardCode(err); ok {
		return &fsmv1.KeepAliveResponse{Error: code}, nil
	}
	if errors.Is(err, fsm.ErrNotFound) {
		return &fsmv1.KeepAliveResponse{NotFound: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return &fsmv1.KeepAliveResponse{TtlMs: left.Milliseconds()}, nil
}

// WaitGrant watches the leader's state for a lock grant; it never withdraws the request
// (the asking node does, when its caller gives up).
// It answers LEADERSHIP_LOST when this node stops leading meanwhile: a deposed leader
// (partitioned away) would not see the grant the next leader makes.
func (f *forwardService) WaitGrant(ctx context.Context, req *fsmv1.WaitGrantRequest) (*fsmv1.WaitGrantResponse, error) {
	changed := f.n.leadership.wait() // before checking, so no change slips between
	if !f.n.IsLeader() {
		return &fsmv1.WaitGrantResponse{Error: fsmv1.ForwardError_FORWARD_ERROR_NOT_LEADER}, nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-wctx.Done():
		}
	}()
	hold, err := f.n.watchGrant(wctx, req.GetName(), req.GetWaiter())
	if err != nil && wctx.Err() != nil && ctx.Err() == nil {
		err = ErrLeadershipLost
	}
	if code, ok := forwardCode(err); ok {
		return &fsmv1.WaitGrantResponse{Error: code}, nil
	}
	if errors.Is(err, fsm.ErrNotFound) {
		return &fsmv1.WaitGrantResponse{Gone: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return &fsmv1.WaitGrantResponse{Holder: hold}, nil
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

// maxForwardBatch bounds the commands one forwarded Apply carries; maxForwardsInFlight
// bounds the batches a follower has outstanding. While every slot is busy, commands
// queue up and leave together in the next batch.
const (
	maxForwardBatch     = 512
	maxForwardsInFlight = 4
)

// forwardBatch sends one batch of commands to the leader in a single Apply and fills
// each call's result or error.
func (n *Node) forwardBatch(batch []*call[*fsmv1.Command, *fsmv1.Result]) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ForwardTimeout)
	defer cancel()
	finish := func(err error) {
		for _, c := range batch {
			c.err = err
		}
	}
	conn, err := n.leaderConn(ctx)
	if err != nil {
		finish(err)
		return
	}
	req := &fsmv1.ApplyRequest{Commands: make([]*fsmv1.Command, len(batch))}
	for i, c := range batch {
		req.Commands[i] = c.req
	}
	resp, err := fsmv1grpc.NewForwardServiceClient(conn).Apply(markForwarded(ctx), req)
	if err == nil && len(resp.GetOutcomes()) != len(batch) {
		err = fmt.Errorf("cluster: leader answered %d outcomes for %d commands", len(resp.GetOutcomes()), len(batch))
	}
	if err != nil {
		finish(err)
		return
	}
	for i, c := range batch {
		o := resp.GetOutcomes()[i]
		c.resp, c.err = o.GetResult(), forwardErr(o.GetError())
	}
}
