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

// ReadPoint is where a linearizable read may be served: once the local machine has
// applied Index, at time Now (the leader's clock when it confirmed leadership), so
// every node judges TTL deadlines by the same clock that stamps writes.
type ReadPoint struct {
	Index uint64
	Now   int64
}

// Read runs fn on local state once that is safe for consistency c, and returns the
// response header. LINEARIZABLE (the default) obtains a read point — from this node's
// batched ReadIndex loop when it leads, from the leader otherwise — and waits until the
// local machine has applied its index, so reads scale with nodes. STALE reads local
// state at once, judging TTLs by the local clock.
func (n *Node) Read(ctx context.Context, c conclavev1.Consistency, fn func(v *fsm.View)) (*conclavev1.ResponseHeader, error) {
	now := n.cfg.Clock().UnixNano()
	if c != conclavev1.Consistency_CONSISTENCY_STALE {
		rp, err := n.ReadIndex(ctx)
		if err != nil {
			return nil, err
		}
		if err := n.waitApplied(ctx, rp.Index); err != nil {
			return nil, err
		}
		now = rp.Now
	}
	h := &conclavev1.ResponseHeader{NodeId: n.cfg.ID, RaftTerm: n.raft.CurrentTerm()}
	n.machine.Read(now, func(v *fsm.View) {
		h.Revision = v.Revision()
		fn(v)
	})
	h.AppliedIndex = h.Revision
	if c == conclavev1.Consistency_CONSISTENCY_STALE && !n.IsLeader() {
		h.LastLeaderContactMs = time.Since(n.raft.LastContact()).Milliseconds()
	}
	return h, nil
}

// ReadIndex returns a read point for a linearizable read. On the leader it joins the
// leader's batch; on a follower it joins the follower's batch, one ReadIndex request to
// the leader serving every read that waits (the leader never forwards a forwarded
// request).
func (n *Node) ReadIndex(ctx context.Context) (ReadPoint, error) {
	if n.IsLeader() || Forwarded(ctx) {
		return n.LeaderReadIndex(ctx)
	}
	return n.followerReads.do(ctx, struct{}{})
}

// LeaderReadIndex joins the next ReadIndex batch on this node, which must lead.
// A leader that has not yet applied its own LeaderStart entry is waited for briefly.
func (n *Node) LeaderReadIndex(ctx context.Context) (ReadPoint, error) {
	wait := 5 * time.Millisecond
	deadline := time.Now().Add(2 * n.cfg.ElectionTimeout)
	for {
		rp, err := n.leaderReads.do(ctx, struct{}{})
		if !errors.Is(err, ErrNotReady) || time.Now().After(deadline) {
			return rp, err
		}
		if !n.sleep(ctx, wait) {
			return ReadPoint{}, errors.Join(err, ctx.Err())
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
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

// readBatch answers every read of a batch with the read point of one round: on the
// leader one VerifyLeader (a heartbeat round to a quorum), on a follower one request to
// the leader. One round runs at a time.
func readBatch(round func() (ReadPoint, error)) func([]*call[struct{}, ReadPoint]) {
	return func(batch []*call[struct{}, ReadPoint]) {
		rp, err := round()
		for _, c := range batch {
			c.resp, c.err = rp, err
		}
	}
}

// leaderReadRound confirms leadership and returns the commit index recorded before
// confirming, with the leader's clock at that moment.
//
// The commit index is safe to wait for because this leader has applied its own
// LeaderStart: every entry after it is a command or configuration entry, which the
// machine records as applied (raft's own no-op entries, which it never sees, come
// before it).
func (n *Node) leaderReadRound() (ReadPoint, error) {
	r := n.raft
	if r.State() != raft.Leader {
		return ReadPoint{}, ErrNotLeader
	}
	term := r.CurrentTerm()
	if n.machine.LeaderStartTerm() < term {
		return ReadPoint{}, ErrNotReady
	}
	rp := ReadPoint{Index: r.CommitIndex(), Now: n.cfg.Clock().UnixNano()}
	if err := n.futureErr(r.VerifyLeader()); err != nil {
		return ReadPoint{}, raftError(err)
	}
	if r.CurrentTerm() != term {
		return ReadPoint{}, ErrLeadershipLost
	}
	return rp, nil
}

// askLeaderReadIndex is the follower's batch round: one ReadIndex request to the leader.
func (n *Node) askLeaderReadIndex() (ReadPoint, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ForwardTimeout)
	defer cancel()
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return ReadPoint{}, err
	}
	resp, err := fsmv1grpc.NewForwardServiceClient(conn).ReadIndex(markForwarded(ctx), &fsmv1.ReadIndexRequest{})
	if err != nil {
		return ReadPoint{}, err
	}
	if err := forwardErr(resp.GetError()); err != nil {
		return ReadPoint{}, err
	}
	return ReadPoint{Index: resp.GetIndex(), Now: resp.GetNowUnixNano()}, nil
}
