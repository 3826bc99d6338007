package client

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backoff between two attempts of one call: doubling from retryBaseDelay to retryMaxDelay.
const (
	retryBaseDelay = 20 * time.Millisecond
	retryMaxDelay  = 500 * time.Millisecond
)

// failoverConn is a grpc.ClientConnInterface over one connection per endpoint. It sends
// a call to the current endpoint (the last that worked), and retries a safe call that
// failed with Unavailable on the next endpoint until the call's context ends.
type failoverConn struct {
	endpoints      []string
	conns          []*grpc.ClientConn
	current        atomic.Uint32 // index into conns
	requestTimeout time.Duration
	log            *zap.Logger
}

var _ grpc.ClientConnInterface = (*failoverConn)(nil)

// Invoke performs a unary call with request ids, failover and typed errors.
func (f *failoverConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok && f.requestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.requestTimeout)
		defer cancel()
	}
	args = withRequestID(args)
	retry := retryable(method, args)

	delay := retryBaseDelay
	for attempt := 1; ; attempt++ {
		i := f.current.Load()
		err := f.conns[i].Invoke(ctx, method, args, reply, opts...)
		if err == nil {
			return nil
		}
		if !retry || status.Code(err) != codes.Unavailable {
			return toError(ctx, err)
		}
		next := f.advance(i)
		f.log.Debug("call unavailable, failing over",
			zap.String("method", method),
			zap.String("endpoint", f.endpoints[i]),
			zap.String("next-endpoint", f.endpoints[next]),
			zap.Int("attempt", attempt),
			zap.Error(err))

		if !sleep(ctx, delay) {
			return toError(ctx, err)
		}
		delay = min(2*delay, retryMaxDelay)
	}
}

// advance moves the next calls from endpoint from to the one after it, unless another
// call already moved them, and returns the one after from.
func (f *failoverConn) advance(from uint32) uint32 {
	next := (from + 1) % uint32(len(f.conns))
	f.current.CompareAndSwap(from, next)
	return next
}

// sleep waits d, or until ctx ends; it reports whether the whole wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// NewStream opens a stream on the current endpoint, without retry; its errors are *Error.
func (f *failoverConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := f.conns[f.current.Load()].NewStream(ctx, desc, method, opts...)
	if err != nil {
		return nil, toError(ctx, err)
	}
	return &typedStream{ClientStream: cs, ctx: ctx}, nil
}

// failover moves the next calls and streams on from endpoint from (where a stream was
// opened) when err says it is unavailable; a stream's owner calls it before re-opening.
func (f *failoverConn) failover(from uint32, err error) {
	if errors.Is(err, ErrUnavailable) {
		f.advance(from)
	}
}

func (f *failoverConn) close() error { return closeAll(f.conns) }

// typedStream converts a stream's errors (other than io.EOF) to *Error.
type typedStream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s *typedStream) SendMsg(m any) error { return toStreamError(s.ctx, s.ClientStream.SendMsg(m)) }

func (s *typedStream) RecvMsg(m any) error { return toStreamError(s.ctx, s.ClientStream.RecvMsg(m)) }
