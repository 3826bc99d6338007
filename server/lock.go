package server

import (
	"context"
	"errors"
	"time"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// lockService is conclave.v1.LockService.
type lockService struct {
	conclavev1grpc.UnimplementedLockServiceServer
	node Node
}

// MaxLockWait bounds wait_timeout_ms.
const MaxLockWait = time.Hour

// MaxLockDelay bounds a session's lock_delay_ms, as Consul's 60 s.
const MaxLockDelay = time.Minute

func (s *lockService) Acquire(ctx context.Context, req *conclavev1.AcquireRequest) (*conclavev1.AcquireResponse, error) {
	if err := validateAcquire(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_LockAcquire{LockAcquire: &fsmv1.LockAcquire{
		Name: req.GetName(), SessionId: req.GetSessionId(), Mode: fsmv1.LockMode(req.GetMode()), Limit: req.GetLimit(), Wait: req.GetWaitTimeoutMs() > 0,
	}}}
	hold, err := acquire(ctx, s.node, cmd, time.Duration(req.GetWaitTimeoutMs())*time.Millisecond)
	if err != nil {
		return nil, err
	}
	return &conclavev1.AcquireResponse{Header: s.node.Header(hold.GetToken()), Token: hold.GetToken()}, nil
}

// acquire applies a LockAcquire and, if it was queued, waits for the grant: up to wait,
// or as long as ctx lasts when wait is 0. A wait that ends without the lock fails with
// LOCK_HELD, and the request is withdrawn.
func acquire(ctx context.Context, node Node, cmd *fsmv1.Command, wait time.Duration) (*fsmv1.LockHolder, error) {
	res, _, err := apply(ctx, node, cmd, (*fsmv1.Result).GetLock)
	if err != nil {
		return nil, err
	}
	if res.GetGranted() {
		return res.GetHolder(), nil
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if wait > 0 {
		wctx, cancel = context.WithTimeout(ctx, wait)
	}
	defer cancel()
	name := cmd.GetLockAcquire().GetName()
	hold, err := node.WaitGrant(wctx, name, res.GetWaiter())
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = fsm.ErrorFromProto(&fsmv1.Error{Code: fsmv1.ErrorCode_ERROR_CODE_LOCK_HELD, Key: []byte(name),
			Message: "not granted within wait_timeout_ms " + wait.String()})
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return hold, nil
}

func (s *lockService) Release(ctx context.Context, req *conclavev1.ReleaseRequest) (*conclavev1.ReleaseResponse, error) {
	h, err := release(ctx, s.node, req.GetName(), req.GetToken(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &conclavev1.ReleaseResponse{Header: h}, nil
}

// release gives up the hold of lock name with token (LockService.Release and
// ElectionService.Resign) and returns the response header.
func release(ctx context.Context, node Node, name string, token uint64, requestID string) (*conclavev1.ResponseHeader, error) {
	if err := firstErr(checkLockName(name), checkToken(token), checkRequestID("request_id", requestID)); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: requestID, Op: &fsmv1.Command_LockRelease{LockRelease: &fsmv1.LockRelease{Name: name, Token: token}}}
	_, index, err := apply(ctx, node, cmd, (*fsmv1.Result).GetLock)
	if err != nil {
		return nil, err
	}
	return node.Header(index), nil
}

func (s *lockService) Inspect(ctx context.Context, req *conclavev1.InspectRequest) (*conclavev1.InspectResponse, error) {
	if err := firstErr(checkLockName(req.GetName()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	resp := &conclavev1.InspectResponse{}
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) {
		l, ok := v.Lock(req.GetName())
		if !ok {
			return
		}
		resp.Limit, resp.DelayUntilUnixMs = l.GetLimit(), l.GetDelayUntilUnixNano()/1e6
		for _, x := range l.GetHolders() {
			resp.Holders = append(resp.Holders, &conclavev1.LockHolder{SessionId: x.GetSessionId(), Token: x.GetToken(),
				Mode: conclavev1.LockMode(x.GetMode()), SinceUnixMs: x.GetSinceUnixNano() / 1e6})
		}
		for _, x := range l.GetWaiters() {
			resp.Waiters = append(resp.Waiters, &conclavev1.LockWaiter{SessionId: x.GetSessionId(),
				Mode: conclavev1.LockMode(x.GetMode()), SinceUnixMs: x.GetSinceUnixNano() / 1e6})
		}
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = h
	return resp, nil
}

func checkLockName(name string) error {
	if n := len(name); n == 0 || n > MaxKeyBytes {
		return invalid("name", "must be 1 to %d bytes, got %d", MaxKeyBytes, n)
	}
	return nil
}

func validateAcquire(req *conclavev1.AcquireRequest) error {
	switch {
	case req.GetWaitTimeoutMs() < 0 || req.GetWaitTimeoutMs() > MaxLockWait.Milliseconds():
		return invalid("wait_timeout_ms", "must be 0 (try once) to %d, got %d", MaxLockWait.Milliseconds(), req.GetWaitTimeoutMs())
	case req.GetMode() < 0 || req.GetMode() > conclavev1.LockMode_LOCK_MODE_SHARED:
		return invalid("mode", "must be EXCLUSIVE or SHARED, got %d", req.GetMode())
	case req.GetLimit() != 0 && req.GetMode() != conclavev1.LockMode_LOCK_MODE_SHARED:
		return invalid("limit", "applies only to SHARED holds")
	}
	return firstErr(checkLockName(req.GetName()), checkSessionID("session_id", req.GetSessionId()), checkRequestID("request_id", req.GetRequestId()))
}
