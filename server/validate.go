package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/conclave-dev/conclave/fsm"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Limits on requests. They are checked here, before a request becomes a command, so
// bad input never reaches the raft log.
const (
	// MaxKeyBytes is the longest key (keys are never empty).
	MaxKeyBytes = 1024
	// MaxValueBytes is the largest value: 1 MiB.
	MaxValueBytes = 1 << 20
	// MaxTTLMs is the longest time to live: ten 365-day years in milliseconds.
	MaxTTLMs int64 = 10 * 365 * 24 * 60 * 60 * 1000
	// MaxRequestIDBytes is the longest request id.
	MaxRequestIDBytes = 128
	// MaxMultiSetEntries is the most entries one MultiSet may write.
	MaxMultiSetEntries = 128
	// MaxDeleteKeys is the most keys one Delete may remove.
	MaxDeleteKeys = 128
	// MaxMultiGetKeys is the most keys one MultiGet may read.
	MaxMultiGetKeys = 1000
	// MaxTxnCompares is the most compares one Txn may hold.
	MaxTxnCompares = 128
	// MaxTxnOps is the most operations in each branch of a Txn.
	MaxTxnOps = 128
	// MaxPageSize is the largest Scan page; DefaultPageSize is used when none is asked.
	MaxPageSize     = 1000
	DefaultPageSize = 100
	// MaxMemberIDBytes is the longest member id Join, Remove and TransferLeadership accept.
	MaxMemberIDBytes = 128
	// MaxRequestBytes is the largest request message (4 MiB). gRPC's own receive limit
	// is four times that, so a request over the limit gets a clear InvalidArgument from
	// sizeLimit rather than gRPC's ResourceExhausted (which only past 16 MiB remains).
	MaxRequestBytes = 4 << 20
	maxRecvMsgBytes = 4 * MaxRequestBytes
)

// invalidError is a request that broke a validation rule. field is the path of the
// offending field ("entries[3].key"), or empty when the rule is about the whole request.
// It unwraps to fsm.ErrInvalidArgument, so errors.go maps it with the state machine's
// own invalid-argument errors, adding a google.rpc.BadRequest field violation.
type invalidError struct {
	field string
	rule  string
}

func (e *invalidError) Error() string {
	if e.field == "" {
		return e.rule
	}
	return e.field + ": " + e.rule
}

func (e *invalidError) Unwrap() error { return fsm.ErrInvalidArgument }

func invalid(field, format string, args ...any) error {
	return &invalidError{field: field, rule: fmt.Sprintf(format, args...)}
}

// at joins a field path: at("success[0].set", "key") is "success[0].set.key".
func at(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func checkKey(field string, key []byte) error {
	if len(key) == 0 || len(key) > MaxKeyBytes {
		return invalid(field, "must be 1 to %d bytes, got %d", MaxKeyBytes, len(key))
	}
	return nil
}

func checkValue(field string, value []byte) error {
	if len(value) > MaxValueBytes {
		return invalid(field, "must be at most %d bytes (1 MiB), got %d", MaxValueBytes, len(value))
	}
	return nil
}

func checkTTL(field string, ttlMs int64) error {
	if ttlMs < 0 || ttlMs > MaxTTLMs {
		return invalid(field, "must be 0 to %d (10 years), got %d", MaxTTLMs, ttlMs)
	}
	return nil
}

func checkRequestID(field, id string) error {
	if len(id) > MaxRequestIDBytes {
		return invalid(field, "must be at most %d bytes, got %d", MaxRequestIDBytes, len(id))
	}
	return nil
}

func checkConsistency(c conclavev1.Consistency) error {
	return checkEnum("consistency", c, conclavev1.Consistency_name)
}

func validateGet(req *conclavev1.GetRequest) error {
	return firstErr(checkKey("key", req.GetKey()), checkConsistency(req.GetConsistency()))
}

func validateTTL(req *conclavev1.TTLRequest) error {
	return firstErr(checkKey("key", req.GetKey()), checkConsistency(req.GetConsistency()))
}

func validateMultiGet(req *conclavev1.MultiGetRequest) error {
	if n := len(req.GetKeys()); n == 0 || n > MaxMultiGetKeys {
		return invalid("keys", "must have 1 to %d keys, got %d", MaxMultiGetKeys, n)
	}
	for i, k := range req.GetKeys() {
		if err := checkKey(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return err
		}
	}
	return checkConsistency(req.GetConsistency())
}

// validateSet checks a SetRequest; prefix is its path inside a Txn ("" standalone).
func validateSet(prefix string, req *conclavev1.SetRequest) error {
	err := firstErr(
		checkKey(at(prefix, "key"), req.GetKey()),
		checkValue(at(prefix, "value"), req.GetValue()),
		checkTTL(at(prefix, "ttl_ms"), req.GetTtlMs()),
		checkRequestID(at(prefix, "request_id"), req.GetRequestId()),
		checkFence(at(prefix, "fence"), req.GetFence()),
	)
	switch {
	case err != nil:
		return err
	case req.GetIfAbsent() && req.GetIfPresent():
		return invalid(at(prefix, "if_present"), "cannot be combined with if_absent")
	case req.GetKeepTtl() && req.GetTtlMs() > 0:
		return invalid(at(prefix, "keep_ttl"), "cannot be combined with ttl_ms > 0")
	}
	return nil
}

func validateMultiSet(req *conclavev1.MultiSetRequest) error {
	if n := len(req.GetEntries()); n == 0 || n > MaxMultiSetEntries {
		return invalid("entries", "must have 1 to %d entries, got %d", MaxMultiSetEntries, n)
	}
	for i, e := range req.GetEntries() {
		p := fmt.Sprintf("entries[%d]", i)
		if err := firstErr(
			checkKey(at(p, "key"), e.GetKey()),
			checkValue(at(p, "value"), e.GetValue()),
			checkTTL(at(p, "ttl_ms"), e.GetTtlMs()),
		); err != nil {
			return err
		}
	}
	return checkRequestID("request_id", req.GetRequestId())
}

// validateDelete checks a DeleteRequest; prefix is its path inside a Txn ("" standalone).
func validateDelete(prefix string, req *conclavev1.DeleteRequest) error {
	if err := checkFence(at(prefix, "fence"), req.GetFence()); err != nil {
		return err
	}
	keys := req.GetKeys()
	if n := len(keys); n == 0 || n > MaxDeleteKeys {
		return invalid(at(prefix, "keys"), "must have 1 to %d keys, got %d", MaxDeleteKeys, n)
	}
	for i, k := range keys {
		if err := checkKey(at(prefix, fmt.Sprintf("keys[%d]", i)), k); err != nil {
			return err
		}
	}
	if req.IfRevision != nil && len(keys) != 1 {
		return invalid(at(prefix, "if_revision"), "needs exactly one key, got %d", len(keys))
	}
	return checkRequestID(at(prefix, "request_id"), req.GetRequestId())
}

// validateIncrement checks an IncrementRequest; prefix is its path inside a Txn.
func validateIncrement(prefix string, req *conclavev1.IncrementRequest) error {
	return firstErr(
		checkKey(at(prefix, "key"), req.GetKey()),
		checkTTL(at(prefix, "ttl_ms"), req.GetTtlMs()),
		checkRequestID(at(prefix, "request_id"), req.GetRequestId()),
	)
}

func validateExpire(req *conclavev1.ExpireRequest) error {
	if err := firstErr(checkKey("key", req.GetKey()), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return err
	}
	if _, ok := conclavev1.ExpireCondition_name[int32(req.GetCondition())]; !ok {
		return invalid("condition", "unknown value %d", req.GetCondition())
	}
	if req.GetPersist() {
		switch {
		case req.GetTtlMs() != 0:
			return invalid("ttl_ms", "must be 0 with persist, got %d", req.GetTtlMs())
		case req.GetCondition() != conclavev1.ExpireCondition_EXPIRE_CONDITION_UNSPECIFIED:
			return invalid("condition", "cannot be combined with persist")
		}
		return nil
	}
	if req.GetTtlMs() <= 0 || req.GetTtlMs() > MaxTTLMs {
		return invalid("ttl_ms", "must be 1 to %d (10 years) unless persist, got %d", MaxTTLMs, req.GetTtlMs())
	}
	return nil
}

// validateScan checks a ScanRequest and returns the key its page token continues after.
func validateScan(req *conclavev1.ScanRequest) (after []byte, err error) {
	if len(req.GetPrefix()) > MaxKeyBytes {
		return nil, invalid("prefix", "must be at most %d bytes, got %d", MaxKeyBytes, len(req.GetPrefix()))
	}
	if req.GetPageSize() > MaxPageSize {
		return nil, invalid("page_size", "must be at most %d, got %d", MaxPageSize, req.GetPageSize())
	}
	if t := req.GetPageToken(); t != "" {
		after, err = decodePageToken(t)
		if err != nil || len(after) == 0 || len(after) > MaxKeyBytes {
			return nil, invalid("page_token", "is not a token returned by Scan")
		}
		if !bytes.HasPrefix(after, req.GetPrefix()) {
			return nil, invalid("page_token", "does not continue a scan of this prefix")
		}
	}
	return after, checkConsistency(req.GetConsistency())
}

// A page token is the last key returned, base64url-encoded without padding.
func encodePageToken(lastKey []byte) string { return base64.RawURLEncoding.EncodeToString(lastKey) }

func decodePageToken(t string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(t) }

func checkMemberID(field, id string, required bool) error {
	if (required && id == "") || len(id) > MaxMemberIDBytes {
		return invalid(field, "must be 1 to %d bytes, got %d", MaxMemberIDBytes, len(id))
	}
	return nil
}

// MaxAddressBytes is the longest host:port Join accepts.
const MaxAddressBytes = 256

func checkHostPort(field, addr string) error {
	if len(addr) > MaxAddressBytes {
		return invalid(field, "must be at most %d bytes, got %d", MaxAddressBytes, len(addr))
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || strings.TrimSpace(host) != host || host == "" {
		return invalid(field, "must be host:port with a non-empty host, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return invalid(field, "port must be a number from 1 to 65535, got %q", port)
	}
	return nil
}

func validateJoin(req *conclavev1.JoinRequest) error {
	return firstErr(
		checkMemberID("id", req.GetId(), true),
		checkHostPort("raft_address", req.GetRaftAddress()),
		checkHostPort("grpc_address", req.GetGrpcAddress()),
	)
}

// checkFence accepts no fence, or a lock name of 1 to MaxKeyBytes bytes and a token.
func checkFence(field string, f *conclavev1.Fence) error {
	if f == nil {
		return nil
	}
	if n := len(f.GetLock()); n == 0 || n > MaxKeyBytes {
		return invalid(field+".lock", "must be 1 to %d bytes, got %d", MaxKeyBytes, n)
	}
	if f.GetToken() == 0 {
		return invalid(field+".token", "must be a fencing token a lock granted (non-zero)")
	}
	return nil
}
