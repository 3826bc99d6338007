package server

import (
	"context"
	"encoding/base64"
	"errors"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/fsm"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error this server returns.
const ErrorDomain = "conclave.dev"

// errRequestIDReused: a request id's remembered result belongs to a different kind of
// request, so the id was reused for something else within the dedup window.
var errRequestIDReused = errors.New("server: request id reused")

// errorTable is the one mapping from internal errors to gRPC codes and ErrorInfo
// reasons. Rows are tried in order with errors.Is; the first match wins.
var errorTable = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{fsm.ErrInvalidArgument, codes.InvalidArgument, "INVALID_ARGUMENT"},
	{fsm.ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{fsm.ErrAlreadyExists, codes.AlreadyExists, "ALREADY_EXISTS"},
	{fsm.ErrConditionFailed, codes.FailedPrecondition, "CONDITION_FAILED"},
	{fsm.ErrWrongType, codes.FailedPrecondition, "WRONG_TYPE"},
	{fsm.ErrOutOfRange, codes.OutOfRange, "OUT_OF_RANGE"},
	{fsm.ErrAborted, codes.Aborted, "FENCE_STALE"},
	{fsm.ErrLockHeld, codes.FailedPrecondition, "LOCK_HELD"},
	{errRequestIDReused, codes.FailedPrecondition, "REQUEST_ID_REUSED"},
	{cluster.ErrNoLeader, codes.Unavailable, "NO_LEADER"},
	{cluster.ErrNotLeader, codes.Unavailable, "NOT_LEADER"},
	{cluster.ErrNotReady, codes.Unavailable, "NOT_READY"},
	{cluster.ErrLeadershipLost, codes.Unavailable, "LEADERSHIP_LOST"},
	{cluster.ErrShutdown, codes.Unavailable, "SHUTTING_DOWN"},
	{cluster.ErrUnknownMember, codes.NotFound, "UNKNOWN_MEMBER"},
	{cluster.ErrMemberConflict, codes.FailedPrecondition, "MEMBER_CONFLICT"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED"},
	{context.Canceled, codes.Canceled, "CANCELED"},
}

// toStatus turns err into a gRPC status error. An error in the table gets its code, the
// error's message and a google.rpc.ErrorInfo (with the key in metadata when the error
// names one; a validation error also gets a google.rpc.BadRequest). An error that already
// is a gRPC status passes through unchanged; anything else is Internal. nil stays nil.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code, reason := codes.Internal, "INTERNAL"
	matched := false
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			code, reason, matched = row.code, row.reason, true
			break
		}
	}
	if !matched {
		if _, ok := status.FromError(err); ok {
			return err
		}
	}
	info := &errdetails.ErrorInfo{Domain: ErrorDomain, Reason: reason}
	var fe *fsm.Error
	if errors.As(err, &fe) && len(fe.Key) > 0 {
		info.Metadata = keyMetadata(fe.Key)
	}
	details := []protoadapt.MessageV1{info}
	var ve *invalidError
	if errors.As(err, &ve) && ve.field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: ve.field, Description: ve.rule},
		}})
	}
	st := status.New(code, err.Error())
	if withDetails, derr := st.WithDetails(details...); derr == nil {
		st = withDetails
	}
	return st.Err()
}

// keyMetadata puts key in ErrorInfo metadata: as "key" when it is valid UTF-8 (protobuf
// strings must be), otherwise base64-encoded as "keyBase64".
func keyMetadata(key []byte) map[string]string {
	if utf8.Valid(key) {
		return map[string]string{"key": string(key)}
	}
	return map[string]string{"keyBase64": base64.StdEncoding.EncodeToString(key)}
}
