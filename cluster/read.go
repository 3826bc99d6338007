package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	"github.com/conclave-dev/conclave/proto/conclave/fsm/v1/fsmv1grpc"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Read runs fn on local state once that is safe for consistency c, and returns the
// response header. LINEARIZABLE (the default) obtains a read index — from this node's
// batched ReadIndex loop when it leads, from the leader otherwise — and waits until the
// local machine has applied it, so reads scale with nodes. STALE reads at once.
func (n *Node) Read(ctx context.Context, c conclavev1.Consistency, fn func(v *fsm.View)) (*conclavev1.ResponseHeader, error) {
	if c != conclavev1.Consistency_CONSISTENCY_STALE {
		idx, err := n.ReadIndex(ctx)
		if err != nil {
			return nil, err
		}
		if err := n.waitApplied(ctx, idx); err != nil {
			return nil, err
		}
	}
	h := &conclavev1.ResponseHeader{NodeId: n.cfg.ID, RaftTerm: n.raft.CurrentTerm()}
	n.machine.Read(time.Now().UnixNano(), func(v *fsm.View) {
		h.Revision = v.Revision()
		fn(v)
	})
	h.AppliedIndex = h.Revision
	if c == conclavev1.Consistency_CONSISTENCY_STALE && !n.IsLeader() {
		h.LastLeaderContactMs = time.Since(n.raft.LastContact()).Milliseconds()
	}
	return h, nil
}

// ReadIndex returns a raft index such that a read of state applied through it is
// linearizable. On the leader it joins the leader's batch; on a follower it joins the
// follower's batch, one ReadIndex request to the leader serving every read that waits
// (the leader never forwards a forwarded request).
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.IsLeader() || Forwarded(ctx) {
		return n.LeaderReadIndex(ctx)
	}
	return n.followerReads.do(ctx, struct{}{})
}

// LeaderReadIndex joins the next ReadIndex batch on this node, which must lead.
// A leader that has not yet applied its own LeaderStart entry is waited for briefly.
func (n *Node) LeaderReadIndex(ctx context.Context) (uint64, error) {
	wait := 5 * time.Millisecond
	deadline := time.Now().Add(2 * n.cfg.ElectionTimeout)
	for {
		idx, err := n.leaderReads.do(ctx, struct{}{})
		if !errors.Is(err, ErrNotReady) || time.Now().After(deadline) {
			return idx, err
		}
		if !n.sleep(ctx, wait) {
			return 0, errors.Join(err, ctx.Err())
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// askLeaderReadIndex is the follower's batch round: one ReadIndex request to the leader.
func (n *Node) askLeaderReadIndex() (uint64, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ForwardTimeout)
	defer cancel()
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return 0, err
	}
	resp, err := fsmv1grpc.NewForwardServiceClient(conn).ReadIndex(markForwarded(ctx), &fsmv1.ReadIndexRequest{})
	if err != nil {
		return 0, err
	}
	if err := forwardErr(resp.GetError()); err != nil {
		return 0, err
	}
	return resp.GetIndex(), nil
}

// waitApplied blocks until the machine has applied index.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch := n.applied.wait()
		if n.machine.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.shutdownCh:
			return ErrShutdown
		}
	}
}

// readBatch answers every read of a batch with the index of one round: on the leader
// one VerifyLeader (a heartbeat round to a quorum), on a follower one request to the
// leader. One round runs at a time.
func readBatch(round func() (uint64, error)) func([]*call[struct{}, uint64]) {
	return func(batch []*call[struct{}, uint64]) {
		idx, err := round()
		for _, c := range batch {
			c.resp, c.err = idx, err
		}
	}
}

// leaderReadRound confirms leadership and returns the commit index recorded before
// confirming.
func (n *Node) leaderReadRound() (uint64, error) {
	r := n.raft
	if r.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	term := r.CurrentTerm()
	if n.machine.LeaderStartTerm() < term {
		return 0, ErrNotReady
	}
	idx := r.CommitIndex()
	if err := r.VerifyLeader().Error(); err != nil {
		return 0, raftError(err)
	}
	if r.CurrentTerm() != term {
		return 0, ErrLeadershipLost
	}
	return idx, nil
}
