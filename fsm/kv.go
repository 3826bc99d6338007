package fsm

import (
	"math"
	"strconv"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// deadlineAfter is now + ttlMs, saturating instead of overflowing.
func deadlineAfter(now, ttlMs int64) int64 {
	if ttlMs > (math.MaxInt64-now)/1_000_000 {
		return math.MaxInt64
	}
	return now + ttlMs*1_000_000
}

// writeOpts says how a write treats the deadline and session of the live entry it
// replaces.
type writeOpts struct {
	ttlMs       int64      // > 0 sets a new deadline
	keepTTL     bool       // otherwise keep the old deadline
	session     uint64     // attach the key to this session (0: none)
	keepSession bool       // keep the old attachment instead
	zset        *sortedSet // the key holds this sorted set (value is then nil)
}

// write stores value at key with revision index, keeping create revision and version
// history when the key is live.
func write(s *state, index uint64, now int64, key string, value []byte, o writeOpts) *entry {
	e := &entry{key: key, value: value, createRev: index, modRev: index, version: 1, session: o.session, zset: o.zset}
	if old, ok := s.getLive(key, now); ok {
		e.createRev = old.createRev
		e.version = old.version + 1
		if o.keepTTL {
			e.expiresAt = old.expiresAt
		}
		if o.keepSession {
			e.session = old.session
		}
	}
	if o.ttlMs > 0 {
		e.expiresAt = deadlineAfter(now, o.ttlMs)
	}
	s.put(e)
	return e
}

func (m *Machine) set(s *state, index uint64, now int64, req *conclavev1.SetRequest) (*fsmv1.Result_Set, *Error) {
	key := req.GetKey()
	if len(key) == 0 {
		return nil, errInvalid(nil, "key must not be empty")
	}
	if req.GetTtlMs() < 0 {
		return nil, errInvalid(key, "ttl_ms must not be negative")
	}
	if f := req.GetFence(); f != nil {
		if err := checkFence(s, f.GetLock(), f.GetToken()); err != nil {
			return nil, err
		}
	}
	if id := req.GetSessionId(); id != 0 {
		if _, ok := s.sessions.Get(&session{id: id}); !ok {
			e := NoSession(id)
			e.Key = key
			return nil, e
		}
	}
	old, exists := s.getLive(string(key), now)
	switch {
	case req.GetIfAbsent() && exists:
		return nil, errCondition(key, "if_absent: key exists")
	case req.GetIfPresent() && !exists:
		return nil, errCondition(key, "if_present: key does not exist")
	case req.IfRevision != nil && modRevision(old, exists) != req.GetIfRevision():
		return nil, errCondition(key, "if_revision: mod_revision is %d, not %d", modRevision(old, exists), req.GetIfRevision())
	}
	e := write(s, index, now, string(key), req.GetValue(), writeOpts{ttlMs: req.GetTtlMs(), keepTTL: req.GetKeepTtl(), session: req.GetSessionId()})
	resp := &conclavev1.SetResponse{Kv: e.toProto(now, false)}
	if req.GetReturnPrevious() && exists {
		resp.Prev = old.toProto(now, true)
	}
	return &fsmv1.Result_Set{Set: resp}, nil
}

func modRevision(e *entry, exists bool) uint64 {
	if !exists {
		return 0
	}
	return e.modRev
}

func (m *Machine) multiSet(index uint64, now int64, req *conclavev1.MultiSetRequest) (*fsmv1.Result_MultiSet, *Error) {
	for _, in := range req.GetEntries() {
		if len(in.GetKey()) == 0 {
			return nil, errInvalid(nil, "key must not be empty")
		}
		if in.GetTtlMs() < 0 {
			return nil, errInvalid(in.GetKey(), "ttl_ms must not be negative")
		}
	}
	for _, in := range req.GetEntries() {
		write(m.st, index, now, string(in.GetKey()), in.GetValue(), writeOpts{ttlMs: in.GetTtlMs()})
	}
	return &fsmv1.Result_MultiSet{MultiSet: &conclavev1.MultiSetResponse{}}, nil
}

func (m *Machine) delete(s *state, now int64, req *conclavev1.DeleteRequest) (*fsmv1.Result_Delete, *Error) {
	keys := req.GetKeys()
	if f := req.GetFence(); f != nil {
		if err := checkFence(s, f.GetLock(), f.GetToken()); err != nil {
			return nil, err
		}
	}
	if req.IfRevision != nil {
		if len(keys) != 1 {
			return nil, errInvalid(nil, "if_revision needs exactly one key, got %d", len(keys))
		}
		old, exists := s.getLive(string(keys[0]), now)
		if modRevision(old, exists) != req.GetIfRevision() {
			return nil, errCondition(keys[0], "if_revision: mod_revision is %d, not %d", modRevision(old, exists), req.GetIfRevision())
		}
	}
	resp := &conclavev1.DeleteResponse{}
	for _, k := range keys {
		old, ok := s.remove(string(k))
		if !ok || !old.live(now) {
			continue
		}
		resp.Deleted++
		if req.GetReturnPrevious() {
			resp.Prev = append(resp.Prev, old.toProto(now, true))
		}
	}
	return &fsmv1.Result_Delete{Delete: resp}, nil
}

func (m *Machine) increment(s *state, index uint64, now int64, req *conclavev1.IncrementRequest) (*fsmv1.Result_Increment, *Error) {
	key := req.GetKey()
	if len(key) == 0 {
		return nil, errInvalid(nil, "key must not be empty")
	}
	if req.GetTtlMs() < 0 {
		return nil, errInvalid(key, "ttl_ms must not be negative")
	}
	var cur int64
	ttl := req.GetTtlMs()
	if old, ok := s.getLive(string(key), now); ok {
		if old.zset != nil {
			return nil, errWrongType(key, "a sorted set", "an integer")
		}
		n, err := strconv.ParseInt(string(old.value), 10, 64)
		if err != nil {
			return nil, newError(fsmv1.ErrorCode_ERROR_CODE_WRONG_TYPE, key, "value is not a base-10 64-bit integer")
		}
		cur, ttl = n, 0 // an existing key keeps its TTL
	}
	d := req.GetDelta()
	if (d > 0 && cur > math.MaxInt64-d) || (d < 0 && cur < math.MinInt64-d) {
		return nil, newError(fsmv1.ErrorCode_ERROR_CODE_OUT_OF_RANGE, key, "increment by %d would overflow int64", d)
	}
	next := cur + d
	e := write(s, index, now, string(key), strconv.AppendInt(nil, next, 10), writeOpts{ttlMs: ttl, keepTTL: true, keepSession: true})
	return &fsmv1.Result_Increment{Increment: &conclavev1.IncrementResponse{Value: next, Kv: e.toProto(now, true)}}, nil
}

func (m *Machine) expire(index uint64, now int64, req *conclavev1.ExpireRequest) (*fsmv1.Result_Expire, *Error) {
	key := req.GetKey()
	old, ok := m.st.getLive(string(key), now)
	if !ok {
		return nil, errNotFound(key)
	}
	if !req.GetPersist() && req.GetTtlMs() <= 0 {
		return nil, errInvalid(key, "ttl_ms must be positive")
	}
	var next int64 // new deadline; 0 = none
	if !req.GetPersist() {
		next = deadlineAfter(now, req.GetTtlMs())
	}
	// A key without a TTL counts as living forever for GT and LT, as in Redis.
	forever := func(at int64) int64 {
		if at == 0 {
			return math.MaxInt64
		}
		return at
	}
	switch req.GetCondition() {
	case conclavev1.ExpireCondition_EXPIRE_CONDITION_NX:
		if old.expiresAt != 0 {
			return nil, errCondition(key, "NX: key already has a TTL")
		}
	case conclavev1.ExpireCondition_EXPIRE_CONDITION_XX:
		if old.expiresAt == 0 {
			return nil, errCondition(key, "XX: key has no TTL")
		}
	case conclavev1.ExpireCondition_EXPIRE_CONDITION_GT:
		if forever(next) <= forever(old.expiresAt) {
			return nil, errCondition(key, "GT: new TTL is not greater than the current one")
		}
	case conclavev1.ExpireCondition_EXPIRE_CONDITION_LT:
		if forever(next) >= forever(old.expiresAt) {
			return nil, errCondition(key, "LT: new TTL is not less than the current one")
		}
	}
	e := &entry{key: old.key, value: old.value, createRev: old.createRev, modRev: index, version: old.version + 1, expiresAt: next, session: old.session, zset: old.zset}
	m.st.put(e)
	return &fsmv1.Result_Expire{Expire: &conclavev1.ExpireResponse{Kv: e.toProto(now, false)}}, nil
}

// expireDue deletes up to limit keys whose deadline is at or before now, oldest first,
// ends up to limit lock-delays that have passed (granting waiters with token index), and
// deletes up to limit rate limiters idle since at or before now.
func (m *Machine) expireDue(index uint64, now int64, limit int) {
	m.st.endLockDelays(index, now, limit)
	m.st.expireLimiters(now, limit)
	for range limit {
		d, ok := m.st.deadlines.Min()
		if !ok || d.at > now {
			return
		}
		m.st.remove(d.key)
	}
}
