package fsm

import (
	"strings"
	"sync/atomic"

	"github.com/tidwall/btree"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// entry is one stored key. Entries are immutable once in the tree: a change inserts a new
// entry, so a copy-on-write clone of the tree is a consistent snapshot.
type entry struct {
	key       string
	value     []byte
	createRev uint64
	modRev    uint64
	version   int64
	expiresAt int64  // unix nanoseconds; 0 means no TTL
	session   uint64 // the session the key is attached to; 0 means none
	// zset is set when the key holds a sorted set (value is then nil). Unlike the rest
	// of the entry it is written in place, but only by the state generation that owns it
	// (see sortedSet.gen), so a clone never sees a later write.
	zset *sortedSet
}

// live reports whether the entry is visible at now (its deadline has not passed).
func (e *entry) live(now int64) bool { return e.expiresAt == 0 || now < e.expiresAt }

// ttlMs is the remaining TTL in milliseconds, rounded up so it is positive while live; 0 if none.
func (e *entry) ttlMs(now int64) int64 {
	if e.expiresAt == 0 {
		return 0
	}
	if e.expiresAt <= now {
		return 0
	}
	return (e.expiresAt-now-1)/1_000_000 + 1 // rounds up without overflowing
}

func (e *entry) toProto(now int64, withValue bool) *conclavev1.KeyValue {
	kv := &conclavev1.KeyValue{
		Key:            []byte(e.key),
		CreateRevision: e.createRev,
		ModRevision:    e.modRev,
		Version:        e.version,
		TtlMs:          e.ttlMs(now),
	}
	if e.zset != nil {
		kv.Type = conclavev1.KeyType_KEY_TYPE_SORTED_SET
		return kv
	}
	if withValue {
		kv.Value = e.value
	}
	return kv
}

// deadline orders the TTL index by deadline, then key.
type deadline struct {
	at  int64
	key string
}

func deadlineLess(a, b deadline) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.key < b.key
}

// dedupAge orders dedup records by the time they were made, then request id.
type dedupAge struct {
	at int64
	id string
}

func dedupAgeLess(a, b dedupAge) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.id < b.id
}

type dedupRecord struct {
	id     string
	at     int64
	result *fsmv1.Result
}

// state is everything the machine holds. Every field is a copy-on-write B-tree, so
// clone is O(1) and a clone is an independent, consistent state.
type state struct {
	// gen identifies this state until its next clone: the sorted sets it may write in
	// place carry it. clone gives both states new generations.
	gen       uint64
	entries   *btree.BTreeG[*entry]
	deadlines *btree.BTreeG[deadline]
	dedup     *btree.BTreeG[*dedupRecord]
	dedupAges *btree.BTreeG[dedupAge]
	members   *btree.BTreeG[*fsmv1.Member]
	sessions  *btree.BTreeG[*session]
	// owners indexes sessions by (owner, id); sessionKeys the keys attached to each
	// session by (session, key). Both are derived: Restore rebuilds them.
	owners       *btree.BTreeG[ownerRef]
	sessionKeys  *btree.BTreeG[sessionKey]
	locks        *btree.BTreeG[*lockState]
	sessionLocks *btree.BTreeG[sessionLock] // derived
	lockDelays   *btree.BTreeG[lockDelay]   // derived
	// policies are the named rate-limit policies by name; limiters the rate-limit state by
	// key, and limiterDeadlines (derived) their idle deadlines.
	policies         *btree.BTreeG[*conclavev1.RateLimitPolicy]
	limiters         *btree.BTreeG[*limiter]
	limiterDeadlines *btree.BTreeG[limiterDeadline]
	// specs interns the limiters' specs. It is a cache, not state: shared by clones and
	// touched only by the apply goroutine (and Restore, before the swap).
	specs map[limitSpec]*limitSpec
}

var treeOpts = btree.Options{NoLocks: true}

// stateGens hands out state generations. They never reach a result.
var stateGens atomic.Uint64

func newState() *state {
	return &state{
		gen:          stateGens.Add(1),
		entries:      btree.NewBTreeGOptions(func(a, b *entry) bool { return a.key < b.key }, treeOpts),
		deadlines:    btree.NewBTreeGOptions(deadlineLess, treeOpts),
		dedup:        btree.NewBTreeGOptions(func(a, b *dedupRecord) bool { return a.id < b.id }, treeOpts),
		dedupAges:    btree.NewBTreeGOptions(dedupAgeLess, treeOpts),
		members:      btree.NewBTreeGOptions(func(a, b *fsmv1.Member) bool { return a.GetId() < b.GetId() }, treeOpts),
		sessions:     btree.NewBTreeGOptions(func(a, b *session) bool { return a.id < b.id }, treeOpts),
		owners:       btree.NewBTreeGOptions(ownerRefLess, treeOpts),
		sessionKeys:  btree.NewBTreeGOptions(sessionKeyLess, treeOpts),
		locks:        btree.NewBTreeGOptions(func(a, b *lockState) bool { return a.name < b.name }, treeOpts),
		sessionLocks: btree.NewBTreeGOptions(sessionLockLess, treeOpts),
		lockDelays:   btree.NewBTreeGOptions(lockDelayLess, treeOpts),
		policies: btree.NewBTreeGOptions(func(a, b *conclavev1.RateLimitPolicy) bool {
			return a.GetName() < b.GetName()
		}, treeOpts),
		limiters:         btree.NewBTreeGOptions(func(a, b *limiter) bool { return a.key < b.key }, treeOpts),
		limiterDeadlines: btree.NewBTreeGOptions(limiterDeadlineLess, treeOpts),
		specs:            make(map[limitSpec]*limitSpec),
	}
}

func (s *state) clone() *state {
	s.gen = stateGens.Add(1)
	return &state{
		gen:          stateGens.Add(1),
		entries:      s.entries.Copy(),
		deadlines:    s.deadlines.Copy(),
		dedup:        s.dedup.Copy(),
		dedupAges:    s.dedupAges.Copy(),
		members:      s.members.Copy(),
		sessions:     s.sessions.Copy(),
		owners:       s.owners.Copy(),
		sessionKeys:  s.sessionKeys.Copy(),
		locks:        s.locks.Copy(),
		sessionLocks: s.sessionLocks.Copy(),
		lockDelays:   s.lockDelays.Copy(),

		policies:         s.policies.Copy(),
		limiters:         s.limiters.Copy(),
		limiterDeadlines: s.limiterDeadlines.Copy(),
		specs:            s.specs,
	}
}

// get returns the stored entry for key, live or not.
func (s *state) get(key string) (*entry, bool) {
	return s.entries.Get(&entry{key: key})
}

// getLive returns the entry for key if it exists and has not expired at now.
func (s *state) getLive(key string, now int64) (*entry, bool) {
	e, ok := s.get(key)
	if !ok || !e.live(now) {
		return nil, false
	}
	return e, true
}

// put stores e, replacing any entry with its key and keeping the deadline and session
// indexes true.
func (s *state) put(e *entry) {
	if old, ok := s.entries.Set(e); ok {
		s.unindex(old)
	}
	if e.expiresAt != 0 {
		s.deadlines.Set(deadline{e.expiresAt, e.key})
	}
	if e.session != 0 {
		s.sessionKeys.Set(sessionKey{e.session, e.key})
	}
}

// remove deletes key and its index entries; it returns the entry removed.
func (s *state) remove(key string) (*entry, bool) {
	old, ok := s.entries.Delete(&entry{key: key})
	if ok {
		s.unindex(old)
	}
	return old, ok
}

func (s *state) unindex(old *entry) {
	if old.expiresAt != 0 {
		s.deadlines.Delete(deadline{old.expiresAt, old.key})
	}
	if old.session != 0 {
		s.sessionKeys.Delete(sessionKey{old.session, old.key})
	}
}

// scan calls fn for each entry with the prefix whose key is after `after`, in key order,
// until fn returns false.
func (s *state) scan(prefix, after string, fn func(e *entry) bool) {
	start := prefix
	if after > start {
		start = after
	}
	s.entries.Ascend(&entry{key: start}, func(e *entry) bool {
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		if e.key == after {
			return true
		}
		return fn(e)
	})
}
