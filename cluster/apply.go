package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
)

// forwardedKey marks a request one node sent to another; such a request is never
// forwarded again, so a stale view of the leader cannot make requests loop.
const forwardedKey = "conclave-forwarded"

// Forwarded reports whether ctx carries an incoming request forwarded by a peer.
func Forwarded(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(forwardedKey)) > 0
}

func markForwarded(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
}

// Apply proposes cmd through raft and waits for its result. On a follower it forwards
// the command to the leader once, batched with every other command waiting there. A
// domain failure is in Result.Error; a returned error is a cluster error, a context
// error, or a gRPC status error relayed from the leader.
func (n *Node) Apply(ctx context.Context, cmd *fsmv1.Command) (*fsmv1.Result, error) {
	if n.IsLeader() || Forwarded(ctx) {
		return n.ApplyLocal(ctx, cmd)
	}
	return n.forwards.do(ctx, cmd)
}

// ApplyLocal proposes cmd on this node, which must be the leader, stamping it with the
// leader's clock. It never forwards.
func (n *Node) ApplyLocal(ctx context.Context, cmd *fsmv1.Command) (*fsmv1.Result, error) {
	f, err := n.propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if err := n.await(ctx, f); err != nil {
		return nil, err
	}
	return result(f)
}

// await waits until every future has its outcome, or ctx ends, or the node shuts down.
// When it returns early an entry may still commit: the caller learns the outcome by
// retrying with its request id.
func (n *Node) await(ctx context.Context, futures ...raft.ApplyFuture) error {
	done := make(chan struct{})
	go func() {
		for _, f := range futures {
			if f != nil {
				_ = f.Error()
			}
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.shutdownCh:
		return ErrShutdown
	}
}

// futureErr returns f's error, or ErrShutdown if the node shuts down first: raft may
// never answer a future still queued when it shuts down (a VerifyLeader, a configuration
// change), and a node goroutine stuck on one would keep Close waiting forever.
func (n *Node) futureErr(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.shutdownCh:
		return ErrShutdown
	}
}

// propose stamps cmd with the leader's clock and hands it to raft without waiting.
func (n *Node) propose(ctx context.Context, cmd *fsmv1.Command) (raft.ApplyFuture, error) {
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	stamped := proto.CloneOf(cmd)
	stamped.NowUnixNano = n.cfg.Clock().UnixNano()
	data, err := proto.Marshal(stamped)
	if err != nil {
		return nil, err
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return n.raft.Apply(data, timeout), nil
}

// result waits for f and returns the state machine's result.
func result(f raft.ApplyFuture) (*fsmv1.Result, error) {
	if err := f.Error(); err != nil {
		return nil, raftError(err)
	}
	res, ok := f.Response().(*fsmv1.Result)
	if !ok {
		return nil, errors.New("cluster: state machine returned no result")
	}
	return res, nil
}

// raftError turns raft's errors into this package's.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return ErrLeadershipLost
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return context.DeadlineExceeded
	}
	return err
}

// leaderConn returns a connection to the leader's gRPC address, waiting (until ctx ends,
// at most a few election timeouts) for a leader whose address is in the member table.
func (n *Node) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	wait := 10 * time.Millisecond
	deadline := time.Now().Add(3 * n.cfg.ElectionTimeout)
	for {
		addr, err := n.leaderGRPCAddr()
		if err == nil {
			return n.conns.get(addr)
		}
		if time.Now().After(deadline) || !n.sleep(ctx, wait) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func (n *Node) leaderGRPCAddr() (string, error) {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return "", ErrNoLeader
	}
	if string(id) == n.cfg.ID {
		return n.cfg.GRPCAddr, nil
	}
	if m := n.member(string(id)); m != nil && m.GetGrpcAddress() != "" {
		return m.GetGrpcAddress(), nil
	}
	return "", ErrNoLeader
}

func (n *Node) member(id string) *fsmv1.Member {
	var found *fsmv1.Member
	n.machine.Read(0, func(v *fsm.View) {
		for _, m := range v.Members() {
			if m.GetId() == id {
				found = m
			}
		}
	})
	return found
}

func (n *Node) withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.ForwardTimeout)
}
