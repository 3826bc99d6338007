package fsm

import (
	"slices"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
)

// lockState is one lock with holders or waiters; a lock with neither is not stored.
// Like entries, a lockState in the tree is never changed: a change stores a new one.
type lockState struct {
	name    string
	limit   uint32 // most SHARED holders; 0 = no limit
	holders []*fsmv1.LockHolder
	waiters []*fsmv1.LockWaiter // FIFO
}

// sessionLock indexes the locks a session holds or waits on, by (session, name).
type sessionLock struct {
	session uint64
	name    string
}

func sessionLockLess(a, b sessionLock) bool {
	if a.session != b.session {
		return a.session < b.session
	}
	return a.name < b.name
}

func mode(m fsmv1.LockMode) fsmv1.LockMode {
	if m == fsmv1.LockMode_LOCK_MODE_UNSPECIFIED {
		return fsmv1.LockMode_LOCK_MODE_EXCLUSIVE
	}
	return m
}

// canGrant says whether a request of mode m fits beside the current holders.
func (l *lockState) canGrant(m fsmv1.LockMode) bool {
	if m == fsmv1.LockMode_LOCK_MODE_EXCLUSIVE {
		return len(l.holders) == 0
	}
	for _, h := range l.holders {
		if h.GetMode() == fsmv1.LockMode_LOCK_MODE_EXCLUSIVE {
			return false
		}
	}
	return l.limit == 0 || len(l.holders) < int(l.limit)
}

// promote grants waiters in FIFO order while the head fits; their token is index.
func (l *lockState) promote(index uint64, now int64) {
	for len(l.waiters) > 0 && l.canGrant(l.waiters[0].GetMode()) {
		w := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.holders = append(l.holders, &fsmv1.LockHolder{SessionId: w.GetSessionId(), Token: index, Mode: w.GetMode(), SinceUnixNano: now, Request: w.GetId()})
	}
}

func (l *lockState) clone() *lockState {
	return &lockState{name: l.name, limit: l.limit, holders: slices.Clone(l.holders), waiters: slices.Clone(l.waiters)}
}

func (l *lockState) sessions() []uint64 {
	var ids []uint64
	for _, h := range l.holders {
		ids = append(ids, h.GetSessionId())
	}
	for _, w := range l.waiters {
		ids = append(ids, w.GetSessionId())
	}
	return ids
}

// getLock returns a copy of the named lock to change, or a new empty one.
func (s *state) getLock(name string) (*lockState, bool) {
	if l, ok := s.locks.Get(&lockState{name: name}); ok {
		return l.clone(), true
	}
	return &lockState{name: name}, false
}

// putLock stores l (deleting it when empty) and keeps the session index true.
func (s *state) putLock(l *lockState) {
	if old, ok := s.locks.Get(&lockState{name: l.name}); ok {
		for _, id := range old.sessions() {
			s.sessionLocks.Delete(sessionLock{id, l.name})
		}
	}
	if len(l.holders) == 0 && len(l.waiters) == 0 {
		s.locks.Delete(l)
		return
	}
	s.locks.Set(l)
	for _, id := range l.sessions() {
		s.sessionLocks.Set(sessionLock{id, l.name})
	}
}

// releaseSession drops every hold and wait of a session, granting the next waiters with
// token index.
func (s *state) releaseSession(id, index uint64, now int64) {
	var names []string
	s.sessionLocks.Ascend(sessionLock{session: id}, func(r sessionLock) bool {
		if r.session != id {
			return false
		}
		names = append(names, r.name)
		return true
	})
	for _, name := range names {
		l, _ := s.getLock(name)
		l.holders = slices.DeleteFunc(l.holders, func(h *fsmv1.LockHolder) bool { return h.GetSessionId() == id })
		l.waiters = slices.DeleteFunc(l.waiters, func(w *fsmv1.LockWaiter) bool { return w.GetSessionId() == id })
		l.promote(index, now)
		s.putLock(l)
	}
}

func lockResult(granted bool, token, waiter uint64) *fsmv1.Result_Lock {
	return &fsmv1.Result_Lock{Lock: &fsmv1.LockResult{Granted: granted, Token: token, Waiter: waiter}}
}

func (m *Machine) lockAcquire(index uint64, now int64, op *fsmv1.LockAcquire) (*fsmv1.Result_Lock, *Error) {
	name, md := op.GetName(), mode(op.GetMode())
	if name == "" {
		return nil, errInvalid(nil, "lock name must not be empty")
	}
	if _, ok := m.st.sessions.Get(&session{id: op.GetSessionId()}); !ok {
		return nil, NoSession(op.GetSessionId())
	}
	l, exists := m.st.getLock(name)
	if !exists {
		l.limit = op.GetLimit()
	} else if md == fsmv1.LockMode_LOCK_MODE_SHARED && l.limit != op.GetLimit() {
		return nil, errInvalid([]byte(name), "lock has a limit of %d holders, not %d", l.limit, op.GetLimit())
	}
	for _, h := range l.holders {
		if h.GetSessionId() == op.GetSessionId() {
			return lockResult(true, h.GetToken(), 0), nil // already held: the same hold
		}
	}
	for _, w := range l.waiters {
		if w.GetSessionId() == op.GetSessionId() {
			return lockResult(false, 0, w.GetId()), nil // already waiting
		}
	}
	switch {
	case len(l.waiters) == 0 && l.canGrant(md):
		l.holders = append(l.holders, &fsmv1.LockHolder{SessionId: op.GetSessionId(), Token: index, Mode: md, SinceUnixNano: now, Request: index})
		m.st.putLock(l)
		return lockResult(true, index, 0), nil
	case op.GetWait():
		l.waiters = append(l.waiters, &fsmv1.LockWaiter{Id: index, SessionId: op.GetSessionId(), Mode: md, SinceUnixNano: now})
		m.st.putLock(l)
		return lockResult(false, 0, index), nil
	}
	holder := uint64(0)
	if len(l.holders) > 0 {
		holder = l.holders[0].GetSessionId()
	}
	return nil, newError(fsmv1.ErrorCode_ERROR_CODE_LOCK_HELD, []byte(name), "lock is held (by session %d) or others wait first", holder)
}

func (m *Machine) lockRelease(index uint64, now int64, op *fsmv1.LockRelease) (*fsmv1.Result_Lock, *Error) {
	l, _ := m.st.getLock(op.GetName())
	i := slices.IndexFunc(l.holders, func(h *fsmv1.LockHolder) bool { return h.GetToken() == op.GetToken() })
	if op.GetToken() == 0 || i < 0 {
		return nil, errStaleToken(op.GetName(), op.GetToken())
	}
	l.holders = slices.Delete(l.holders, i, i+1)
	l.promote(index, now)
	m.st.putLock(l)
	return lockResult(false, 0, 0), nil
}

func (m *Machine) lockCancel(index uint64, now int64, op *fsmv1.LockCancel) *fsmv1.Result_Lock {
	l, ok := m.st.getLock(op.GetName())
	if ok {
		l.waiters = slices.DeleteFunc(l.waiters, func(w *fsmv1.LockWaiter) bool { return w.GetId() == op.GetWaiter() })
		l.promote(index, now) // the head may have been what held others back
		m.st.putLock(l)
	}
	return lockResult(false, 0, 0)
}

func errStaleToken(name string, token uint64) *Error {
	return newError(fsmv1.ErrorCode_ERROR_CODE_ABORTED, []byte(name), "lock is not held with fencing token %d", token)
}

// checkFence fails with ABORTED unless lock name is held with token.
func checkFence(s *state, name string, token uint64) *Error {
	l, ok := s.locks.Get(&lockState{name: name})
	if ok && token != 0 && slices.ContainsFunc(l.holders, func(h *fsmv1.LockHolder) bool { return h.GetToken() == token }) {
		return nil
	}
	return errStaleToken(name, token)
}

func (l *lockState) proto() *fsmv1.LockRecord {
	return &fsmv1.LockRecord{Name: l.name, Limit: l.limit, Holders: l.holders, Waiters: l.waiters}
}
