package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of Conclave's errors.
const ErrorDomain = "conclave.dev"

// Reasons carried in google.rpc.ErrorInfo by the server.
const (
	ReasonConditionFailed = "CONDITION_FAILED"
	ReasonWrongType       = "WRONG_TYPE"
	ReasonNotFound        = "NOT_FOUND"
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	ReasonOutOfRange      = "OUT_OF_RANGE"
	ReasonLockHeld        = "LOCK_HELD"
	ReasonFenceStale      = "FENCE_STALE"
)

// Sentinels to compare errors with errors.Is. A sentinel with a Reason matches an *Error
// with that Reason; one without (ErrUnavailable) matches by Code.
var (
	// ErrConditionFailed: a write's condition (if_absent, if_present, if_revision, an
	// Expire condition) did not hold; nothing changed.
	ErrConditionFailed = &Error{Code: codes.FailedPrecondition, Reason: ReasonConditionFailed, Message: "condition failed"}
	// ErrWrongType: the key holds a value of another type (e.g. Increment on a non-integer).
	ErrWrongType = &Error{Code: codes.FailedPrecondition, Reason: ReasonWrongType, Message: "wrong type"}
	// ErrNotFound: the key (or member, or session) does not exist.
	ErrNotFound = &Error{Code: codes.NotFound, Reason: ReasonNotFound, Message: "not found"}
	// ErrInvalidArgument: the request was malformed or too large; retrying cannot help.
	ErrInvalidArgument = &Error{Code: codes.InvalidArgument, Reason: ReasonInvalidArgument, Message: "invalid argument"}
	// ErrUnavailable: no endpoint could serve the call (no leader, node down, shutting
	// down) before the context ended. Safe calls were already retried.
	ErrUnavailable = &Error{Code: codes.Unavailable, Message: "unavailable"}
	// ErrOutOfRange: a revision was compacted or a value overflowed.
	ErrOutOfRange = &Error{Code: codes.OutOfRange, Reason: ReasonOutOfRange, Message: "out of range"}
	// ErrLockHeld: Acquire found the lock held and did not get it within its wait
	// (wait 0: at once); the request was withdrawn, so the caller does not hold the lock.
	ErrLockHeld = &Error{Code: codes.FailedPrecondition, Reason: ReasonLockHeld, Message: "lock held"}
	// ErrFenceStale: a fenced write's token is no longer the lock's current hold (the
	// lock was released or moved on); nothing changed.
	ErrFenceStale = &Error{Code: codes.Aborted, Reason: ReasonFenceStale, Message: "fence stale"}
)

// defaultReasons gives a Reason to errors of codes that have exactly one, when the
// server sent no ErrorInfo (for example an error raised by grpc itself).
var defaultReasons = map[codes.Code]string{
	codes.NotFound:        ReasonNotFound,
	codes.InvalidArgument: ReasonInvalidArgument,
	codes.OutOfRange:      ReasonOutOfRange,
}

// Error is a failed call, converted from its gRPC status.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the ErrorInfo reason of domain ErrorDomain, e.g. CONDITION_FAILED; it may
	// be empty.
	Reason string
	// Message is the server's message, naming the key and the rule broken.
	Message string
	// Key is the key the error is about (ErrorInfo metadata "key"), when there is one.
	Key string

	st    *status.Status // the original status; nil for sentinels
	cause error          // the context's error when the call's context ended
}

// Error returns "client: <code>: <message>".
func (e *Error) Error() string {
	s := fmt.Sprintf("client: %s: %s", e.Code, e.Message)
	if e.cause != nil {
		s += " (" + e.cause.Error() + ")"
	}
	return s
}

// Is reports whether target is an *Error with the same Reason or, when target has no
// Reason, the same Code. It makes errors.Is(err, ErrConditionFailed) work.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Reason != "" {
		return e.Reason == t.Reason
	}
	return e.Code == t.Code
}

// Unwrap returns the context's error (context.DeadlineExceeded or context.Canceled) when
// the call ended because its context did, and nil otherwise.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus returns the status the Error was converted from, so status.Code(err) works.
func (e *Error) GRPCStatus() *status.Status {
	if e.st != nil {
		return e.st
	}
	return status.New(e.Code, e.Message)
}

// toError converts the error of a call made with ctx to an *Error.
func toError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	e = fromStatus(st)
	if ctx != nil && ctx.Err() != nil {
		e.cause = ctx.Err()
	}
	return e
}

// toStreamError is toError that lets io.EOF, the end of a stream, through.
func toStreamError(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return toError(ctx, err)
}

// fromStatus builds an *Error from st, reading its ErrorInfo of domain ErrorDomain.
func fromStatus(st *status.Status) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), st: st}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		e.Reason = info.GetReason()
		e.Key = info.GetMetadata()["key"]
		break
	}
	if e.Reason == "" {
		e.Reason = defaultReasons[e.Code]
	}
	return e
}
