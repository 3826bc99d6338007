package cluster

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	"github.com/conclave-dev/conclave/proto/conclave/fsm/v1/fsmv1grpc"
)

type grant int

const (
	grantWaiting grant = iota
	grantGranted
	grantGone
)

// grantState looks up queued lock request waiter on name in local state, and returns
// its hold once granted.
func (n *Node) grantState(name string, waiter uint64) (*fsmv1.LockHolder, grant) {
	var hold *fsmv1.LockHolder
	state := grantGone
	n.machine.Read(0, func(v *fsm.View) {
		l, ok := v.Lock(name)
		if !ok {
			return
		}
		for _, h := range l.GetHolders() {
			if h.GetRequest() == waiter {
				hold, state = h, grantGranted
				return
			}
		}
		for _, w := range l.GetWaiters() {
			if w.GetId() == waiter {
				state = grantWaiting
				return
			}
		}
	})
	return hold, state
}

// Changed returns a channel closed when this node next applies an entry: wait on it,
// then read, to follow state without polling.
func (n *Node) Changed() <-chan struct{} { return n.applied.wait() }

// WaitGrant waits until the queued lock request waiter on name is granted and returns
// the hold (its Token is the fencing token). A follower asks the leader, which applies
// the granting entry before any follower does, so a handover does not wait for the
// follower to learn of the commit; if the leader cannot answer, the follower watches its
// own state instead. If ctx ends first it withdraws the request (LockCancel) and, should
// the grant have won that race, releases the hold: a caller that gave up never holds
// the lock.
func (n *Node) WaitGrant(ctx context.Context, name string, waiter uint64) (*fsmv1.LockHolder, error) {
	hold, err := n.awaitGrant(ctx, name, waiter)
	if err != nil && ctx.Err() != nil {
		n.abandon(name, waiter)
		return nil, ctx.Err()
	}
	return hold, err
}

func (n *Node) awaitGrant(ctx context.Context, name string, waiter uint64) (*fsmv1.LockHolder, error) {
	if !n.IsLeader() {
		hold, err := n.forwardWaitGrant(ctx, name, waiter)
		if err == nil || errors.Is(err, fsm.ErrNotFound) || ctx.Err() != nil {
			return hold, err
		}
		n.log.Debug("wait for a lock grant locally", zap.String("lock", name), zap.Uint64("waiter", waiter), zap.Error(err))
	}
	return n.watchGrant(ctx, name, waiter)
}

// watchGrant follows this node's applied state until waiter is granted or gone. It never
// withdraws the request.
func (n *Node) watchGrant(ctx context.Context, name string, waiter uint64) (*fsmv1.LockHolder, error) {
	// The waiter id is the index of its LockAcquire entry, which this node (perhaps a
	// follower) may not have applied yet.
	if err := n.waitApplied(ctx, waiter); err != nil {
		return nil, err
	}
	for {
		ch := n.applied.wait()
		switch hold, state := n.grantState(name, waiter); state {
		case grantGranted:
			return hold, nil
		case grantGone:
			return nil, grantGoneError(name, waiter)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.shutdownCh:
			return nil, ErrShutdown
		}
	}
}

func grantGoneError(name string, waiter uint64) error {
	return fsm.ErrorFromProto(&fsmv1.Error{Code: fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, Key: []byte(name),
		Message: fmt.Sprintf("lock request %d is gone: its session ended or it was withdrawn", waiter)})
}

// forwardWaitGrant asks the leader to watch for the grant.
func (n *Node) forwardWaitGrant(ctx context.Context, name string, waiter uint64) (*fsmv1.LockHolder, error) {
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := fsmv1grpc.NewForwardServiceClient(conn).WaitGrant(markForwarded(ctx), &fsmv1.WaitGrantRequest{Name: name, Waiter: waiter})
	switch {
	case err != nil:
		return nil, err
	case resp.GetError() != fsmv1.ForwardError_FORWARD_ERROR_UNSPECIFIED:
		return nil, forwardErr(resp.GetError())
	case resp.GetGone():
		return nil, grantGoneError(name, waiter)
	}
	return resp.GetHolder(), nil
}

// abandon withdraws a waiter, and releases the hold if it was granted meanwhile.
func (n *Node) abandon(name string, waiter uint64) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ForwardTimeout)
	defer cancel()
	cmd := &fsmv1.Command{Op: &fsmv1.Command_LockCancel{LockCancel: &fsmv1.LockCancel{Name: name, Waiter: waiter}}}
	if _, err := n.Apply(ctx, cmd); err != nil {
		n.log.Warn("withdraw lock request", zap.String("lock", name), zap.Uint64("waiter", waiter), zap.Error(err))
		return
	}
	// The cancel is applied on the leader; wait until this node has applied as far
	// before deciding whether the grant won.
	if idx, err := n.ReadIndex(ctx); err == nil && n.waitApplied(ctx, idx.Index) == nil {
		if hold, state := n.grantState(name, waiter); state == grantGranted {
			rel := &fsmv1.Command{Op: &fsmv1.Command_LockRelease{LockRelease: &fsmv1.LockRelease{Name: name, Token: hold.GetToken()}}}
			if _, err := n.Apply(ctx, rel); err != nil {
				n.log.Warn("release a grant nobody waits for", zap.String("lock", name), zap.Uint64("token", hold.GetToken()), zap.Error(err))
			}
		}
	}
}
