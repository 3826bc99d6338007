package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func withInfo(t *testing.T, code codes.Code, msg, domain, reason, key string) error {
	t.Helper()
	info := &errdetails.ErrorInfo{Domain: domain, Reason: reason}
	if key != "" {
		info.Metadata = map[string]string{"key": key}
	}
	st, err := status.New(code, msg).WithDetails(info)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestError_FromStatus(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantCode   codes.Code
		wantReason string
		wantKey    string
		is         error // a sentinel the error must match
		isNot      error // a sentinel it must not match
	}{
		{"condition failed", withInfo(t, codes.FailedPrecondition, `kv: key "a" exists`, ErrorDomain, ReasonConditionFailed, "a"),
			codes.FailedPrecondition, ReasonConditionFailed, "a", ErrConditionFailed, ErrWrongType},
		{"wrong type", withInfo(t, codes.FailedPrecondition, `kv: key "n" is not an integer`, ErrorDomain, ReasonWrongType, "n"),
			codes.FailedPrecondition, ReasonWrongType, "n", ErrWrongType, ErrConditionFailed},
		{"not found", withInfo(t, codes.NotFound, `kv: key "x" not found`, ErrorDomain, ReasonNotFound, "x"),
			codes.NotFound, ReasonNotFound, "x", ErrNotFound, ErrInvalidArgument},
		{"invalid argument", withInfo(t, codes.InvalidArgument, "kv: empty key", ErrorDomain, ReasonInvalidArgument, ""),
			codes.InvalidArgument, ReasonInvalidArgument, "", ErrInvalidArgument, ErrNotFound},
		{"out of range", withInfo(t, codes.OutOfRange, "kv: increment overflows", ErrorDomain, ReasonOutOfRange, "n"),
			codes.OutOfRange, ReasonOutOfRange, "n", ErrOutOfRange, ErrUnavailable},
		{"lock held", withInfo(t, codes.FailedPrecondition, `lock "l" is held`, ErrorDomain, ReasonLockHeld, "l"),
			codes.FailedPrecondition, ReasonLockHeld, "l", ErrLockHeld, ErrConditionFailed},
		{"fence stale", withInfo(t, codes.Aborted, `lock "l": token 3 is stale`, ErrorDomain, ReasonFenceStale, "l"),
			codes.Aborted, ReasonFenceStale, "l", ErrFenceStale, ErrLockHeld},
		{"unavailable", status.Error(codes.Unavailable, "cluster: no leader"),
			codes.Unavailable, "", "", ErrUnavailable, ErrConditionFailed},
		{"no details gets the code's reason", status.Error(codes.NotFound, "missing"),
			codes.NotFound, ReasonNotFound, "", ErrNotFound, ErrConditionFailed},
		{"foreign domain ignored", withInfo(t, codes.FailedPrecondition, "x", "example.com", ReasonConditionFailed, "a"),
			codes.FailedPrecondition, "", "", nil, ErrConditionFailed},
		{"not a status", errors.New("boom"),
			codes.Unknown, "", "", nil, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := toError(context.Background(), tt.err)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("toError = %T, want *Error", err)
			}
			if e.Code != tt.wantCode || e.Reason != tt.wantReason || e.Key != tt.wantKey {
				t.Fatalf("got {%s %q %q}, want {%s %q %q}", e.Code, e.Reason, e.Key, tt.wantCode, tt.wantReason, tt.wantKey)
			}
			if tt.is != nil && !errors.Is(fmt.Errorf("wrapped: %w", err), tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if tt.isNot != nil && errors.Is(err, tt.isNot) {
				t.Errorf("errors.Is(%v, %v) = true", err, tt.isNot)
			}
			if status.Code(err) != tt.wantCode {
				t.Errorf("status.Code = %s, want %s", status.Code(err), tt.wantCode)
			}
		})
	}
}

func TestError_ContextCause(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := toError(ctx, status.Error(codes.Canceled, "context canceled"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("errors.Is(%v, context.Canceled) = false", err)
	}
	if toError(ctx, nil) != nil {
		t.Fatal("toError(nil) != nil")
	}
}
