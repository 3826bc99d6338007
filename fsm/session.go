package fsm

import (
	"slices"
	"strings"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
)

// session is one live session (lease). Like entries, sessions are immutable once in the
// tree: a change inserts a new value. The keep-alive deadline is not here: the leader
// keeps it in memory (DESIGN §5); the machine stores what does not change on keep-alive.
type session struct {
	id            uint64 // raft index of the SessionCreate entry
	owner         string
	ttlMs         int64
	createdAt     int64 // command time of the create
	maxLifetimeMs int64 // 0: none
	lockDelayMs   int64 // locks held when the session ends stay ungranted this long
	attrs         []*fsmv1.Attribute
	attrRev       uint64
}

// ownerRef orders sessions by owner, then id.
type ownerRef struct {
	owner string
	id    uint64
}

func ownerRefLess(a, b ownerRef) bool {
	if a.owner != b.owner {
		return a.owner < b.owner
	}
	return a.id < b.id
}

// sessionKey orders attached keys by session, then key.
type sessionKey struct {
	id  uint64
	key string
}

func sessionKeyLess(a, b sessionKey) bool {
	if a.id != b.id {
		return a.id < b.id
	}
	return a.key < b.key
}

func (s *session) proto() *fsmv1.SessionRecord {
	return &fsmv1.SessionRecord{Id: s.id, Owner: s.owner, TtlMs: s.ttlMs, CreatedAtUnixNano: s.createdAt,
		MaxLifetimeMs: s.maxLifetimeMs, Attributes: s.attrs, AttributesRevision: s.attrRev, LockDelayMs: s.lockDelayMs}
}

func sessionFromProto(r *fsmv1.SessionRecord) *session {
	return &session{id: r.GetId(), owner: r.GetOwner(), ttlMs: r.GetTtlMs(), createdAt: r.GetCreatedAtUnixNano(),
		maxLifetimeMs: r.GetMaxLifetimeMs(), attrs: r.GetAttributes(), attrRev: r.GetAttributesRevision(), lockDelayMs: r.GetLockDelayMs()}
}

// addSession stores a session and its owner index entry.
func (s *state) addSession(ss *session) {
	s.sessions.Set(ss)
	s.owners.Set(ownerRef{ss.owner, ss.id})
}

// endSession removes a session, its owner index entry, its holds and waits on locks
// (granting the next waiters with token index) and every key attached to it, and
// reports how many live keys it deleted.
func (s *state) endSession(id, index uint64, now int64) (bool, int64) {
	ss, ok := s.sessions.Delete(&session{id: id})
	if !ok {
		return false, 0
	}
	s.owners.Delete(ownerRef{ss.owner, id})
	s.releaseSession(id, index, now, ss.lockDelayMs)
	var keys []string
	s.sessionKeys.Ascend(sessionKey{id: id}, func(k sessionKey) bool {
		if k.id != id {
			return false
		}
		keys = append(keys, k.key)
		return true
	})
	var deleted int64
	for _, k := range keys {
		if e, ok := s.remove(k); ok && e.live(now) {
			deleted++
		}
	}
	return true, deleted
}

// mergeAttributes returns attrs with set applied (replacing by name) and names in del
// removed, sorted by name. It rejects empty and repeated names.
func mergeAttributes(attrs, set []*fsmv1.Attribute, del []string) ([]*fsmv1.Attribute, *Error) {
	byName := make(map[string]*fsmv1.Attribute, len(attrs)+len(set))
	for _, a := range attrs {
		byName[a.GetName()] = a
	}
	seen := make(map[string]bool, len(set)+len(del))
	for _, a := range set {
		if a.GetName() == "" || seen[a.GetName()] {
			return nil, errInvalid(nil, "attribute names must be non-empty and distinct, got %q", a.GetName())
		}
		seen[a.GetName()] = true
		byName[a.GetName()] = &fsmv1.Attribute{Name: a.GetName(), Value: a.GetValue()}
	}
	for _, name := range del {
		if seen[name] {
			return nil, errInvalid(nil, "attribute %q is named twice", name)
		}
		seen[name] = true
		delete(byName, name)
	}
	out := make([]*fsmv1.Attribute, 0, len(byName))
	for _, a := range byName {
		out = append(out, a)
	}
	// Sorted, so map order never reaches the state.
	slices.SortFunc(out, func(a, b *fsmv1.Attribute) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

func (m *Machine) sessionCreate(index uint64, now int64, op *fsmv1.SessionCreate) (*fsmv1.Result_Session, *Error) {
	if op.GetTtlMs() <= 0 {
		return nil, errInvalid(nil, "session ttl_ms must be positive")
	}
	if op.GetMaxLifetimeMs() < 0 || op.GetLockDelayMs() < 0 {
		return nil, errInvalid(nil, "session max_lifetime_ms and lock_delay_ms must not be negative")
	}
	attrs, err := mergeAttributes(nil, op.GetAttributes(), nil)
	if err != nil {
		return nil, err
	}
	m.st.addSession(&session{id: index, owner: op.GetOwner(), ttlMs: op.GetTtlMs(), createdAt: now,
		maxLifetimeMs: op.GetMaxLifetimeMs(), attrs: attrs, attrRev: index, lockDelayMs: op.GetLockDelayMs()})
	return &fsmv1.Result_Session{Session: &fsmv1.SessionResult{Id: index}}, nil
}

// NoSession is the NotFound error for a session that does not exist; the cluster and
// server use it too, so every path reports a missing session the same way.
func NoSession(id uint64) *Error {
	return newError(fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, nil, "session %d does not exist", id)
}

func (m *Machine) sessionRevoke(index uint64, now int64, op *fsmv1.SessionRevoke) (*fsmv1.Result_Session, *Error) {
	ok, deleted := m.st.endSession(op.GetId(), index, now)
	if !ok {
		return nil, NoSession(op.GetId())
	}
	return &fsmv1.Result_Session{Session: &fsmv1.SessionResult{Id: op.GetId(), Ended: 1, KeysDeleted: deleted}}, nil
}

func (m *Machine) sessionRevokeByOwner(index uint64, now int64, op *fsmv1.SessionRevokeByOwner) *fsmv1.Result_Session {
	var ids []uint64
	m.st.owners.Ascend(ownerRef{owner: op.GetOwner()}, func(r ownerRef) bool {
		if r.owner != op.GetOwner() {
			return false
		}
		ids = append(ids, r.id)
		return true
	})
	return &fsmv1.Result_Session{Session: m.endSessions(index, now, ids)}
}

// sessionExpire ends the listed sessions that still exist; the leader proposes it.
func (m *Machine) sessionExpire(index uint64, now int64, op *fsmv1.SessionExpire) *fsmv1.Result_Session {
	return &fsmv1.Result_Session{Session: m.endSessions(index, now, op.GetIds())}
}

func (m *Machine) endSessions(index uint64, now int64, ids []uint64) *fsmv1.SessionResult {
	res := &fsmv1.SessionResult{}
	for _, id := range ids {
		if ok, deleted := m.st.endSession(id, index, now); ok {
			res.Ended++
			res.KeysDeleted += deleted
		}
	}
	return res
}

func (m *Machine) sessionSetAttributes(index uint64, op *fsmv1.SessionSetAttributes) (*fsmv1.Result_Session, *Error) {
	old, ok := m.st.sessions.Get(&session{id: op.GetId()})
	if !ok {
		return nil, NoSession(op.GetId())
	}
	attrs, err := mergeAttributes(old.attrs, op.GetSet(), op.GetDelete())
	if err != nil {
		return nil, err
	}
	next := *old
	next.attrs, next.attrRev = attrs, index
	m.st.sessions.Set(&next)
	return &fsmv1.Result_Session{Session: &fsmv1.SessionResult{Id: op.GetId()}}, nil
}
