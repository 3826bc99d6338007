package cluster

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	"github.com/conclave-dev/conclave/proto/conclave/fsm/v1/fsmv1grpc"
)

// sessionTracker holds the leader's session deadlines (DESIGN §5). They live in memory
// on the leader only: a keep-alive moves one without a raft write, and a new leader
// starts every session with a fresh full TTL. Expiry is one SessionExpire entry.
type sessionTracker struct {
	mu        sync.Mutex
	active    bool
	deadlines map[uint64]time.Time
	queue     deadlineQueue // may hold stale items; deadlines is the truth
	lastSeen  uint64        // highest session id tracked since becoming leader
}

type deadlineItem struct {
	id uint64
	at time.Time
}

// deadlineQueue is a min-heap of deadlines.
type deadlineQueue []deadlineItem

func (q deadlineQueue) Len() int           { return len(q) }
func (q deadlineQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q deadlineQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *deadlineQueue) Push(x any)        { *q = append(*q, x.(deadlineItem)) }
func (q *deadlineQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// sessionDeadline is now plus the session's TTL, bounded by its absolute lifetime.
func sessionDeadline(s *fsmv1.SessionRecord, now time.Time) time.Time {
	d := now.Add(time.Duration(s.GetTtlMs()) * time.Millisecond)
	if s.GetMaxLifetimeMs() > 0 {
		if end := time.Unix(0, s.GetCreatedAtUnixNano()).Add(time.Duration(s.GetMaxLifetimeMs()) * time.Millisecond); end.Before(d) {
			d = end
		}
	}
	return d
}

// set records a deadline; the caller holds mu.
func (t *sessionTracker) set(id uint64, at time.Time) {
	t.deadlines[id] = at
	heap.Push(&t.queue, deadlineItem{id, at})
	t.lastSeen = max(t.lastSeen, id)
}

// start begins tracking as the new leader: every session gets a fresh full TTL.
func (t *sessionTracker) start(m *fsm.Machine, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active, t.deadlines, t.queue, t.lastSeen = true, map[uint64]time.Time{}, nil, 0
	t.syncLocked(m, now)
}

func (t *sessionTracker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active, t.deadlines, t.queue = false, nil, nil
}

// syncLocked starts the clock of sessions created since the last look (ids are raft
// indexes, so new sessions are exactly those above lastSeen).
func (t *sessionTracker) syncLocked(m *fsm.Machine, now time.Time) {
	for {
		var page []*fsmv1.SessionRecord
		var more bool
		m.Read(now.UnixNano(), func(v *fsm.View) { page, more = v.SessionsByOwner("", t.lastSeen, 1000) })
		for _, s := range page {
			t.set(s.GetId(), sessionDeadline(s, now))
		}
		if !more {
			return
		}
	}
}

// due syncs new sessions and returns up to limit sessions whose deadline has passed.
func (t *sessionTracker) due(m *fsm.Machine, now time.Time, limit int) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return nil
	}
	t.syncLocked(m, now)
	var ids []uint64
	for len(t.queue) > 0 && len(ids) < limit && !t.queue[0].at.After(now) {
		it := heap.Pop(&t.queue).(deadlineItem)
		if at, ok := t.deadlines[it.id]; ok && at.Equal(it.at) {
			delete(t.deadlines, it.id)
			ids = append(ids, it.id)
		}
	}
	return ids
}

// touch renews a session's deadline; it reports the time left, or false when the
// session does not exist.
func (t *sessionTracker) touch(m *fsm.Machine, id uint64, now time.Time) (time.Duration, bool, error) {
	var s *fsmv1.SessionRecord
	m.Read(now.UnixNano(), func(v *fsm.View) { s, _ = v.SessionRecord(id) })
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return 0, false, ErrNotReady
	}
	if s == nil {
		return 0, false, nil
	}
	d := sessionDeadline(s, now)
	if !d.After(now) {
		return 0, false, nil // its lifetime is over; expiry is on its way
	}
	t.set(id, d)
	return d.Sub(now), true, nil
}

// MinSessionTTL is the shortest TTL a session gets: a few election timeouts, so that a
// leader change (which grants a fresh TTL) cannot expire a session kept alive.
func (n *Node) MinSessionTTL() time.Duration {
	return max(3*n.cfg.ElectionTimeout, time.Second)
}

// KeepAlive renews session id on the leader (forwarding once from a follower) without a
// raft write, and returns how long it now lives. A session that does not exist is an
// fsm NotFound error.
func (n *Node) KeepAlive(ctx context.Context, id uint64) (time.Duration, error) {
	if n.IsLeader() || Forwarded(ctx) {
		if !n.IsLeader() {
			return 0, ErrNotLeader
		}
		left, ok, err := n.sessions.touch(n.machine, id, n.cfg.Clock())
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fsm.NoSession(id)
		}
		return left, nil
	}
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return 0, err
	}
	ctx, cancel := n.withDefaultTimeout(ctx)
	defer cancel()
	resp, err := fsmv1grpc.NewForwardServiceClient(conn).KeepAlive(markForwarded(ctx), &fsmv1.KeepAliveRequest{Id: id})
	if err != nil {
		return 0, err
	}
	if err := forwardErr(resp.GetError()); err != nil {
		return 0, err
	}
	if resp.GetNotFound() {
		return 0, fsm.NoSession(id)
	}
	return time.Duration(resp.GetTtlMs()) * time.Millisecond, nil
}

// expireSessions proposes SessionExpire for sessions past their deadline, in batches.
func (n *Node) expireSessions(ctx context.Context) {
	for {
		ids := n.sessions.due(n.machine, n.cfg.Clock(), int(n.cfg.ExpireBatch))
		if len(ids) == 0 {
			return
		}
		cmd := &fsmv1.Command{Op: &fsmv1.Command_SessionExpire{SessionExpire: &fsmv1.SessionExpire{Ids: ids}}}
		if _, err := n.ApplyLocal(ctx, cmd); err != nil {
			return
		}
	}
}
