package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
)

func fsmErr(code fsmv1.ErrorCode, key, msg string) error {
	return fsm.ErrorFromProto(&fsmv1.Error{Code: code, Key: []byte(key), Message: msg})
}

func TestToStatus_Table(t *testing.T) {
	relayed := status.Error(codes.ResourceExhausted, "relayed from the leader")
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		reason  string // "" when no ErrorInfo is expected
		key     string // ErrorInfo metadata "key"
		message string
	}{
		{"invalid argument", fsmErr(fsmv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "k", "ttl_ms must not be negative"), codes.InvalidArgument, "INVALID_ARGUMENT", "k", `key "k": ttl_ms must not be negative`},
		{"not found", fsmErr(fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, "k", "key does not exist"), codes.NotFound, "NOT_FOUND", "k", `key "k": key does not exist`},
		{"already exists", fsmErr(fsmv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "k", "exists"), codes.AlreadyExists, "ALREADY_EXISTS", "k", `key "k": exists`},
		{"condition failed", fsmErr(fsmv1.ErrorCode_ERROR_CODE_CONDITION_FAILED, "k", "if_absent: key exists"), codes.FailedPrecondition, "CONDITION_FAILED", "k", `key "k": if_absent: key exists`},
		{"wrong type", fsmErr(fsmv1.ErrorCode_ERROR_CODE_WRONG_TYPE, "k", "not an integer"), codes.FailedPrecondition, "WRONG_TYPE", "k", `key "k": not an integer`},
		{"out of range", fsmErr(fsmv1.ErrorCode_ERROR_CODE_OUT_OF_RANGE, "k", "overflow"), codes.OutOfRange, "OUT_OF_RANGE", "k", `key "k": overflow`},
		{"stale fence", fsmErr(fsmv1.ErrorCode_ERROR_CODE_ABORTED, "L", "lock is not held with fencing token 7"), codes.Aborted, "FENCE_STALE", "L", `key "L": lock is not held with fencing token 7`},
		{"lock held", fsmErr(fsmv1.ErrorCode_ERROR_CODE_LOCK_HELD, "L", "held"), codes.FailedPrecondition, "LOCK_HELD", "L", `key "L": held`},
		{"fsm error without key", fsmErr(fsmv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "", "member id must not be empty"), codes.InvalidArgument, "INVALID_ARGUMENT", "", "member id must not be empty"},
		{"bare sentinel", fsm.ErrConditionFailed, codes.FailedPrecondition, "CONDITION_FAILED", "", "fsm: condition failed"},
		{"validation", invalid("key", "must be 1 to 1024 bytes, got 0"), codes.InvalidArgument, "INVALID_ARGUMENT", "", "key: must be 1 to 1024 bytes, got 0"},
		{"request id reused", fmt.Errorf("%w: x", errRequestIDReused), codes.FailedPrecondition, "REQUEST_ID_REUSED", "", "server: request id reused: x"},
		{"no leader", cluster.ErrNoLeader, codes.Unavailable, "NO_LEADER", "", "cluster: no leader"},
		{"not leader", cluster.ErrNotLeader, codes.Unavailable, "NOT_LEADER", "", "cluster: not the leader"},
		{"not ready", cluster.ErrNotReady, codes.Unavailable, "NOT_READY", "", "cluster: leader not ready"},
		{"leadership lost", cluster.ErrLeadershipLost, codes.Unavailable, "LEADERSHIP_LOST", "", "cluster: leadership lost, outcome unknown"},
		{"shutdown", cluster.ErrShutdown, codes.Unavailable, "SHUTTING_DOWN", "", "cluster: shutting down"},
		{"unknown member", fmt.Errorf("%w: %q", cluster.ErrUnknownMember, "n9"), codes.NotFound, "UNKNOWN_MEMBER", "", `cluster: unknown member: "n9"`},
		{"member conflict", fmt.Errorf("%w: %q", cluster.ErrMemberConflict, "n2"), codes.FailedPrecondition, "MEMBER_CONFLICT", "", `cluster: member id in use with another address: "n2"`},
		{"wrapped no leader", errors.Join(cluster.ErrNoLeader, context.Canceled), codes.Unavailable, "NO_LEADER", "", "cluster: no leader\ncontext canceled"},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", "context deadline exceeded"},
		{"canceled", fmt.Errorf("waiting: %w", context.Canceled), codes.Canceled, "CANCELED", "", "waiting: context canceled"},
		{"status passes through", relayed, codes.ResourceExhausted, "", "", "relayed from the leader"},
		{"anything else", errTest, codes.Internal, "INTERNAL", "", "test: something else"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toStatus(tt.err)
			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("toStatus(%v) = %v, not a status", tt.err, got)
			}
			if st.Code() != tt.code || st.Message() != tt.message {
				t.Fatalf("toStatus(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.code, tt.message)
			}
			info := errorInfo(got)
			if tt.reason == "" {
				if info != nil {
					t.Fatalf("unexpected ErrorInfo %v", info)
				}
				return
			}
			if info == nil || info.GetDomain() != ErrorDomain || info.GetReason() != tt.reason {
				t.Fatalf("ErrorInfo = %v, want %s/%s", info, ErrorDomain, tt.reason)
			}
			if info.GetMetadata()["key"] != tt.key {
				t.Fatalf("ErrorInfo key = %q, want %q", info.GetMetadata()["key"], tt.key)
			}
		})
	}
	if toStatus(nil) != nil {
		t.Fatal("toStatus(nil) != nil")
	}
	if got := toStatus(relayed); got != relayed {
		t.Fatalf("status error not passed through unchanged: %v", got)
	}
}

func TestToStatus_NonUTF8Key(t *testing.T) {
	info := errorInfo(toStatus(fsmErr(fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, "\xff\xfe", "key does not exist")))
	if info == nil || info.GetMetadata()["keyBase64"] != "//4=" {
		t.Fatalf("ErrorInfo = %v, want keyBase64 //4=", info)
	}
}

func TestToStatus_ValidationBadRequest(t *testing.T) {
	br := badRequest(toStatus(invalid("entries[2].key", "must be 1 to 1024 bytes, got 0")))
	if br == nil || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != "entries[2].key" {
		t.Fatalf("BadRequest = %v", br)
	}
}
