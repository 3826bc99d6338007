package fsm

import (
	"slices"

	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
)

// lockState is one lock with holders or waiters; a lock with neither is not stored.
// Like entries, a lockState in the tree is never changed: a change stores a new one.
type lockState struct {
	name    string
	limit   uint32 // most SHARED holders; 0 = no limit
	holders []*fsmv1.LockHolder
	waiters []*fsmv1.LockWaiter // FIFO
	// delayUntil: nothing is granted before this command time (a holder's session ended
	// with a lock-delay); 0 = none. A delayed lock is stored even with no holder or waiter.
	delayUntil int64
}

// lockDelay orders the lock-delay index by end, then lock name.
type lockDelay struct {
	until int64
	name  string
}

func lockDelayLess(a, b lockDelay) bool {
	if a.until != b.until {
		return a.until < b.until
	}
	return a.name < b.name
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

// canGrant says whether a request of mode m fits beside the current holders at now.
func (l *lockState) canGrant(m fsmv1.LockMode, now int64) bool {
	if now < l.delayUntil {
		return false
	}
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

// promote ends a lock-delay that has passed, then grants waiters in FIFO order while
// the head fits; their token is index.
func (l *lockState) promote(index uint64, now int64) {
	if l.delayUntil != 0 && now >= l.delayUntil {
		l.delayUntil = 0
	}
	for len(l.waiters) > 0 && l.canGrant(l.waiters[0].GetMode(), now) {
		w := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.holders = append(l.holders, newHolder(index, now, w.GetSessionId(), w.GetMode(), w.GetId(), w.GetValue()))
	}
}

func newHolder(index uint64, now int64, session uint64, md fsmv1.LockMode, request uint64, value []byte) *fsmv1.LockHolder {
	return &fsmv1.LockHolder{SessionId: session, Token: index, Mode: md, SinceUnixNano: now, Request: request, Value: value, Revision: index}
}

func (l *lockState) clone() *lockState {
	return &lockState{name: l.name, limit: l.limit, holders: slices.Clone(l.holders), waiters: slices.Clone(l.waiters), delayUntil: l.delayUntil}
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

// putLock stores l (deleting it when empty) and keeps the session and delay indexes true.
func (s *state) putLock(l *lockState) {
	if old, ok := s.locks.Get(&lockState{name: l.name}); ok {
		for _, id := range old.sessions() {
			s.sessionLocks.Delete(sessionLock{id, l.name})
		}
		if old.delayUntil != 0 {
			s.lockDelays.Delete(lockDelay{old.delayUntil, l.name})
		}
	}
	if len(l.holders) == 0 && len(l.waiters) == 0 && l.delayUntil == 0 {
		s.locks.Delete(l)
		return
	}
	s.locks.Set(l)
	for _, id := range l.sessions() {
		s.sessionLocks.Set(sessionLock{id, l.name})
	}
	if l.delayUntil != 0 {
		s.lockDelays.Set(lockDelay{l.delayUntil, l.name})
	}
}

// endLockDelays ends up to limit lock-delays that have passed at now, granting those
// locks' waiters with token index.
func (s *state) endLockDelays(index uint64, now int64, limit int) {
	for range limit {
		d, ok := s.lockDelays.Min()
		if !ok || d.until > now {
			return
		}
		l, _ := s.getLock(d.name)
		l.promote(index, now)
		s.putLock(l)
	}
}

// releaseSession drops every hold and wait of a session, granting the next waiters with
// token index. Locks it held are not granted again before now+delayMs (lock-delay).
func (s *state) releaseSession(id, index uint64, now, delayMs int64) {
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
		held := len(l.holders)
		l.holders = slices.DeleteFunc(l.holders, func(h *fsmv1.LockHolder) bool { return h.GetSessionId() == id })
		if delayMs > 0 && len(l.holders) < held {
			l.delayUntil = max(l.delayUntil, now+delayMs*1e6)
		}
		l.waiters = slices.DeleteFunc(l.waiters, func(w *fsmv1.LockWaiter) bool { return w.GetSessionId() == id })
		l.promote(index, now)
		s.putLock(l)
	}
}

// waitResult is a lock command's result that grants nothing: the id of the request
// left waiting, or 0.
func waitResult(waiter uint64) *fsmv1.Result_Lock {
	return &fsmv1.Result_Lock{Lock: &fsmv1.LockResult{Waiter: waiter}}
}

func grantResult(h *fsmv1.LockHolder) *fsmv1.Result_Lock {
	return &fsmv1.Result_Lock{Lock: &fsmv1.LockResult{Granted: true, Token: h.GetToken(), Holder: h}}
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
	if !exists || len(l.holders)+len(l.waiters) == 0 {
		l.limit = op.GetLimit() // a lock kept only by its lock-delay takes the new limit
	} else if md == fsmv1.LockMode_LOCK_MODE_SHARED && l.limit != op.GetLimit() {
		return nil, errInvalid([]byte(name), "lock has a limit of %d holders, not %d", l.limit, op.GetLimit())
	}
	for _, h := range l.holders {
		if h.GetSessionId() == op.GetSessionId() {
			return grantResult(h), nil // already held: the same hold
		}
	}
	for _, w := range l.waiters {
		if w.GetSessionId() == op.GetSessionId() {
			return waitResult(w.GetId()), nil // already waiting
		}
	}
	l.promote(index, now) // a lock-delay may have passed with waiters queued
	switch {
	case len(l.waiters) == 0 && l.canGrant(md, now):
		h := newHolder(index, now, op.GetSessionId(), md, index, op.GetValue())
		l.holders = append(l.holders, h)
		m.st.putLock(l)
		return grantResult(h), nil
	case op.GetWait():
		l.waiters = append(l.waiters, &fsmv1.LockWaiter{Id: index, SessionId: op.GetSessionId(), Mode: md, SinceUnixNano: now, Value: op.GetValue()})
		m.st.putLock(l)
		return waitResult(index), nil
	}
	// Refused: nothing is stored, not even waiters whose lock-delay just passed (a failed
	// command changes nothing; the leader's ExpireDue grants them).
	if now < l.delayUntil {
		return nil, newError(fsmv1.ErrorCode_ERROR_CODE_LOCK_HELD, []byte(name), "lock is in its lock-delay for %d ms more: its holder's session ended", (l.delayUntil-now+999_999)/1e6)
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
	return waitResult(0), nil
}

func (m *Machine) lockProclaim(index uint64, op *fsmv1.LockProclaim) (*fsmv1.Result_Lock, *Error) {
	l, _ := m.st.getLock(op.GetName())
	i := slices.IndexFunc(l.holders, func(h *fsmv1.LockHolder) bool { return h.GetToken() == op.GetToken() })
	if op.GetToken() == 0 || i < 0 {
		return nil, errStaleToken(op.GetName(), op.GetToken())
	}
	h := proto.CloneOf(l.holders[i]) // stored holders are never changed in place
	h.Value, h.Revision = op.GetValue(), index
	l.holders[i] = h
	m.st.putLock(l)
	return grantResult(h), nil
}

func (m *Machine) lockCancel(index uint64, now int64, op *fsmv1.LockCancel) *fsmv1.Result_Lock {
	l, ok := m.st.getLock(op.GetName())
	if ok {
		l.waiters = slices.DeleteFunc(l.waiters, func(w *fsmv1.LockWaiter) bool { return w.GetId() == op.GetWaiter() })
		l.promote(index, now) // the head may have been what held others back
		m.st.putLock(l)
	}
	return waitResult(0)
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
	return &fsmv1.LockRecord{Name: l.name, Limit: l.limit, Holders: l.holders, Waiters: l.waiters, DelayUntilUnixNano: l.delayUntil}
}
