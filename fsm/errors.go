package fsm

import (
	"errors"
	"fmt"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
)

// Sentinel errors. Every domain failure returned by the machine is an *Error that
// unwraps to exactly one of these, so callers can classify it with errors.Is.
var (
	// ErrInvalidArgument: the command is malformed (the server validates first, so this
	// is a defence against a bad log entry, not the normal path).
	ErrInvalidArgument = errors.New("fsm: invalid argument")
	// ErrNotFound: the key the command needs does not exist (or has expired).
	ErrNotFound = errors.New("fsm: not found")
	// ErrAlreadyExists: the thing to create exists.
	ErrAlreadyExists = errors.New("fsm: already exists")
	// ErrConditionFailed: a condition of the command (if_absent, if_revision, …) did not hold.
	ErrConditionFailed = errors.New("fsm: condition failed")
	// ErrWrongType: the stored value cannot be used as the command needs (e.g. not an integer).
	ErrWrongType = errors.New("fsm: wrong type")
	// ErrOutOfRange: the result would leave the representable range (integer overflow).
	ErrOutOfRange = errors.New("fsm: out of range")
	// ErrAborted: a fencing token is stale: the lock is no longer held with it.
	ErrAborted = errors.New("fsm: stale fencing token")
	// ErrLockHeld: the lock is held, or others wait first, and the caller would not wait.
	ErrLockHeld = errors.New("fsm: lock held")
)

var codeSentinel = map[fsmv1.ErrorCode]error{
	fsmv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT: ErrInvalidArgument,
	fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND:        ErrNotFound,
	fsmv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:   ErrAlreadyExists,
	fsmv1.ErrorCode_ERROR_CODE_CONDITION_FAILED: ErrConditionFailed,
	fsmv1.ErrorCode_ERROR_CODE_WRONG_TYPE:       ErrWrongType,
	fsmv1.ErrorCode_ERROR_CODE_OUT_OF_RANGE:     ErrOutOfRange,
	fsmv1.ErrorCode_ERROR_CODE_ABORTED:          ErrAborted,
	fsmv1.ErrorCode_ERROR_CODE_LOCK_HELD:        ErrLockHeld,
}

// Error is a typed domain failure: its Code classifies it, Key names the key involved
// (if any) and Msg states the rule that was broken.
type Error struct {
	Code fsmv1.ErrorCode
	Key  []byte
	Msg  string
}

func (e *Error) Error() string {
	if len(e.Key) > 0 {
		return fmt.Sprintf("key %q: %s", e.Key, e.Msg)
	}
	return e.Msg
}

// Unwrap returns the sentinel for the error's code.
func (e *Error) Unwrap() error {
	if s, ok := codeSentinel[e.Code]; ok {
		return s
	}
	return ErrInvalidArgument
}

// Proto returns the error as it is kept in a Result.
func (e *Error) Proto() *fsmv1.Error {
	return &fsmv1.Error{Code: e.Code, Key: e.Key, Message: e.Msg}
}

// ErrorFromProto turns a Result's error back into an *Error; nil stays nil.
func ErrorFromProto(pe *fsmv1.Error) error {
	if pe == nil {
		return nil
	}
	return &Error{Code: pe.GetCode(), Key: pe.GetKey(), Msg: pe.GetMessage()}
}

func newError(code fsmv1.ErrorCode, key []byte, format string, args ...any) *Error {
	return &Error{Code: code, Key: key, Msg: fmt.Sprintf(format, args...)}
}

func errInvalid(key []byte, format string, args ...any) *Error {
	return newError(fsmv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, key, format, args...)
}

func errNotFound(key []byte) *Error {
	return newError(fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, key, "key does not exist")
}

func errCondition(key []byte, format string, args ...any) *Error {
	return newError(fsmv1.ErrorCode_ERROR_CODE_CONDITION_FAILED, key, format, args...)
}

// errWrongType says the key holds has (e.g. "a sorted set") where the command needs want.
func errWrongType(key []byte, has, want string) *Error {
	return newError(fsmv1.ErrorCode_ERROR_CODE_WRONG_TYPE, key, "key holds %s, not %s", has, want)
}

// WrongType is the error of reading a key that holds has (e.g. "a sorted set") as want.
func WrongType(key []byte, has, want string) error { return errWrongType(key, has, want) }
