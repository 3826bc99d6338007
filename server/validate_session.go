package server

import (
	"strconv"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Session limits; a violation is InvalidArgument naming the field and the limit.
const (
	MaxOwnerBytes          = 256
	MaxAttributes          = 64
	MaxAttributeNameBytes  = 128
	MaxAttributeValueBytes = 64 << 10
	maxSessionTTLMs        = 10 * 365 * 24 * 3600 * 1000
)

func checkSessionID(field string, id uint64) error {
	if id == 0 {
		return invalid(field, "must name a session (non-zero)")
	}
	return nil
}

func checkOwner(owner string, required bool) error {
	if (required && owner == "") || len(owner) > MaxOwnerBytes {
		return invalid("owner", "must be 1 to %d bytes, got %d", MaxOwnerBytes, len(owner))
	}
	return nil
}

func checkAttributes(field string, m map[string][]byte) error {
	if len(m) > MaxAttributes {
		return invalid(field, "at most %d attributes, got %d", MaxAttributes, len(m))
	}
	for name, value := range m {
		if name == "" || len(name) > MaxAttributeNameBytes {
			return invalid(field, "attribute names must be 1 to %d bytes, got %q", MaxAttributeNameBytes, name)
		}
		if len(value) > MaxAttributeValueBytes {
			return invalid(field+"["+name+"]", "must be at most %d bytes, got %d", MaxAttributeValueBytes, len(value))
		}
	}
	return nil
}

func validateCreateSession(req *conclavev1.CreateSessionRequest) error {
	switch {
	case req.GetTtlMs() < 0 || req.GetTtlMs() > maxSessionTTLMs:
		return invalid("ttl_ms", "must be 0 (the minimum) to %d, got %d", int64(maxSessionTTLMs), req.GetTtlMs())
	case req.GetMaxLifetimeMs() < 0 || req.GetMaxLifetimeMs() > maxSessionTTLMs:
		return invalid("max_lifetime_ms", "must be 0 (none) to %d, got %d", int64(maxSessionTTLMs), req.GetMaxLifetimeMs())
	case req.GetLockDelayMs() < 0 || req.GetLockDelayMs() > MaxLockDelay.Milliseconds():
		return invalid("lock_delay_ms", "must be 0 (none) to %d, got %d", MaxLockDelay.Milliseconds(), req.GetLockDelayMs())
	}
	return firstErr(checkOwner(req.GetOwner(), false), checkAttributes("attributes", req.GetAttributes()), checkRequestID("request_id", req.GetRequestId()))
}

func validateUpdateAttributes(req *conclavev1.UpdateAttributesRequest) error {
	if err := firstErr(checkSessionID("id", req.GetId()), checkAttributes("set", req.GetSet()), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return err
	}
	if len(req.GetDelete()) > MaxAttributes {
		return invalid("delete", "at most %d names, got %d", MaxAttributes, len(req.GetDelete()))
	}
	seen := map[string]bool{}
	for _, name := range req.GetDelete() {
		if _, both := req.GetSet()[name]; both || seen[name] || name == "" {
			return invalid("delete", "names must be non-empty, distinct and not also set, got %q", name)
		}
		seen[name] = true
	}
	return nil
}

func validateListSessions(req *conclavev1.ListSessionsRequest) (after uint64, err error) {
	if err := firstErr(checkOwner(req.GetOwner(), false), checkConsistency(req.GetConsistency())); err != nil {
		return 0, err
	}
	if req.GetPageSize() > MaxPageSize {
		return 0, invalid("page_size", "must be at most %d, got %d", MaxPageSize, req.GetPageSize())
	}
	if t := req.GetPageToken(); t != "" {
		if after, err = strconv.ParseUint(t, 10, 64); err != nil {
			return 0, invalid("page_token", "is not a token this service returned")
		}
	}
	return after, nil
}
