package fsm

import (
	"math"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// View is a consistent read-only look at the machine, valid only inside the function
// passed to Machine.Read. Its time is the reader's now: a key whose deadline has passed
// is absent even before the leader's ExpireDue deletes it. What its methods return may
// share memory with the machine's state: callers read it and must not modify it.
type View struct {
	st       *state
	now      int64
	revision uint64
}

// Read runs fn on a consistent view of the state at time now (never earlier than the
// machine's clock). Applies wait while fn runs, so fn must be short.
func (m *Machine) Read(now int64, fn func(v *View)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(&View{st: m.st, now: max(now, m.clock), revision: m.applied.Load()})
}

// Revision is the applied raft index the view reads at.
func (v *View) Revision() uint64 { return v.revision }

// Get returns the live entry for key.
func (v *View) Get(key []byte) (*conclavev1.KeyValue, bool) {
	e, ok := v.st.getLive(string(key), v.now)
	if !ok {
		return nil, false
	}
	return e.toProto(v.now, true), true
}

// TTL returns the remaining TTL of key in milliseconds: -1 when it has none; found is
// false when the key does not exist.
func (v *View) TTL(key []byte) (ttlMs int64, found bool) {
	e, ok := v.st.getLive(string(key), v.now)
	if !ok {
		return -2, false
	}
	if e.expiresAt == 0 {
		return -1, true
	}
	return e.ttlMs(v.now), true
}

// Scan returns up to limit live entries whose key has prefix and sorts after `after`
// (empty: from the start), in key order; more says whether entries remain.
func (v *View) Scan(prefix, after []byte, limit int, keysOnly bool) (kvs []*conclavev1.KeyValue, more bool) {
	v.st.scan(string(prefix), string(after), func(e *entry) bool {
		if !e.live(v.now) {
			return true
		}
		if len(kvs) == limit {
			more = true
			return false
		}
		kvs = append(kvs, e.toProto(v.now, !keysOnly))
		return true
	})
	return kvs, more
}

// KeyCount is the number of stored keys, including expired keys not yet deleted.
func (v *View) KeyCount() int { return v.st.entries.Len() }

// Members lists the member table in id order.
func (v *View) Members() []*fsmv1.Member {
	out := make([]*fsmv1.Member, 0, v.st.members.Len())
	v.st.members.Scan(func(m *fsmv1.Member) bool {
		out = append(out, m)
		return true
	})
	return out
}

// NextDeadline is the earliest TTL deadline stored, if any.
func (v *View) NextDeadline() (int64, bool) {
	d, ok := v.st.deadlines.Min()
	return d.at, ok
}

// DueCount counts, up to limit, what an ExpireDue at the view's now would do: the keys
// whose deadline is at or before it, the lock-delays that have passed (at most one is
// counted) and the rate limiters idle since then.
func (v *View) DueCount(limit int) int {
	n := 0
	if d, ok := v.st.lockDelays.Min(); ok && d.until <= v.now {
		n++
	}
	v.st.deadlines.Scan(func(d deadline) bool {
		if d.at > v.now || n >= limit {
			return false
		}
		n++
		return true
	})
	v.st.limiterDeadlines.Scan(func(d limiterDeadline) bool {
		if d.at > v.now || n >= limit {
			return false
		}
		n++
		return true
	})
	return n
}

// SessionRecord returns a live session without its keys: the keep-alive path.
func (v *View) SessionRecord(id uint64) (*fsmv1.SessionRecord, bool) {
	ss, ok := v.st.sessions.Get(&session{id: id})
	if !ok {
		return nil, false
	}
	return ss.proto(), true
}

// Session returns a live session and the keys attached to it, in key order.
func (v *View) Session(id uint64) (*fsmv1.SessionRecord, []string, bool) {
	ss, ok := v.st.sessions.Get(&session{id: id})
	if !ok {
		return nil, nil, false
	}
	var keys []string
	v.st.sessionKeys.Ascend(sessionKey{id: id}, func(k sessionKey) bool {
		if k.id != id {
			return false
		}
		keys = append(keys, k.key)
		return true
	})
	return ss.proto(), keys, true
}

// SessionsByOwner returns up to limit sessions of owner (every owner when empty) with
// ids above after, in (owner, id) order; more says whether others remain.
func (v *View) SessionsByOwner(owner string, after uint64, limit int) (out []*fsmv1.SessionRecord, more bool) {
	if after == math.MaxUint64 {
		return nil, false
	}
	collect := func(id uint64) bool {
		if len(out) == limit {
			more = true
			return false
		}
		ss, _ := v.st.sessions.Get(&session{id: id})
		out = append(out, ss.proto())
		return true
	}
	if owner == "" {
		v.st.sessions.Ascend(&session{id: after + 1}, func(ss *session) bool { return collect(ss.id) })
		return out, more
	}
	v.st.owners.Ascend(ownerRef{owner: owner, id: after + 1}, func(r ownerRef) bool {
		return r.owner == owner && collect(r.id)
	})
	return out, more
}

// SessionCount is the number of live sessions.
func (v *View) SessionCount() int { return v.st.sessions.Len() }

// Lock returns a lock's holders and FIFO waiters; false when it has neither.
func (v *View) Lock(name string) (*fsmv1.LockRecord, bool) {
	l, ok := v.st.locks.Get(&lockState{name: name})
	if !ok {
		return nil, false
	}
	return l.proto(), true
}
