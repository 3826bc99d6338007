package server

import (
	"context"
	"fmt"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/cluster"
)

// interceptors returns the unary and stream chains, outermost first: logging and
// metrics see the final code of every RPC, the size limit rejects oversized requests
// before any handler runs, streams end when Shutdown begins, and recovery (innermost)
// turns a handler's panic into Internal.
func (s *Server) interceptors() []grpc.ServerOption {
	rec := recovery.WithRecoveryHandlerContext(s.recovered)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(
			s.logUnary,
			s.metrics.unary,
			sizeLimitUnary,
			recovery.UnaryServerInterceptor(rec),
		),
		grpc.ChainStreamInterceptor(
			s.logStream,
			s.metrics.stream,
			sizeLimitStream,
			s.endOnShutdown,
			recovery.StreamServerInterceptor(rec),
		),
	}
}

// recovered logs a handler's panic with its stack and answers Internal without
// revealing the panic to the client.
func (s *Server) recovered(ctx context.Context, p any) error {
	method, _ := grpc.Method(ctx)
	s.log.Error("panic in handler", zap.String("grpc-method", method), zap.Any("panic", p), zap.StackSkip("stack", 2))
	return status.Error(codes.Internal, "internal error")
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	s.logRPC(info.FullMethod, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	s.logRPC(info.FullMethod, start, err)
	return err
}

// logRPC logs one finished RPC: at debug level normally, at warn level when the server
// failed (Internal, Unknown, DataLoss).
func (s *Server) logRPC(method string, start time.Time, err error) {
	code := status.Code(err)
	level := zapcore.DebugLevel
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = zapcore.WarnLevel
	}
	ce := s.log.Check(level, "rpc")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("grpc-method", method),
		zap.String("grpc-code", code.String()),
		zap.Duration("duration", time.Since(start)),
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(fields...)
}

// checkSize rejects a request message larger than MaxRequestBytes.
func checkSize(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	if n := proto.Size(msg); n > MaxRequestBytes {
		return toStatus(&invalidError{rule: fmt.Sprintf("request is %d bytes; the limit is %d", n, MaxRequestBytes)})
	}
	return nil
}

func sizeLimitUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkSize(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func sizeLimitStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &sizeLimitedStream{ServerStream: ss})
}

// sizeLimitedStream applies the request size limit to every message a stream receives.
type sizeLimitedStream struct {
	grpc.ServerStream
}

func (s *sizeLimitedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkSize(m)
}

// endOnShutdown cancels a stream's context when Shutdown begins, so long-lived streams
// (health Watch, future watches) end instead of holding GracefulStop until its timeout.
// A stream ended this way fails with Unavailable (SHUTTING_DOWN): retry elsewhere.
func (s *Server) endOnShutdown(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	if err != nil && ss.Context().Err() == nil && s.stopping() {
		return toStatus(cluster.ErrShutdown)
	}
	return err
}

// contextStream is a ServerStream with a replaced context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
