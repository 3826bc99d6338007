package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Bounds of the server-side wait of Mutex.Lock.
const (
	// MaxLockWait is the longest wait_timeout_ms the server accepts, and the wait of a
	// Lock whose context has no deadline.
	MaxLockWait = time.Hour
	// lockWaitMargin caps the time left between the end of the server-side wait and the
	// context's deadline, so that the server's LOCK_HELD answer arrives before the call is
	// cancelled. The margin is a tenth of the time left, at most this.
	lockWaitMargin = time.Second
)

// ErrNotLocked is returned by Unlock when the Mutex holds no lock.
var ErrNotLocked = errors.New("client: mutex not locked")

// Mutex is an exclusive LockService lock held by a Session: the hold lasts until Unlock
// or until the session ends (Session.Done), whichever comes first. While held, Token is
// the fencing token to pass to fenced writes and to other systems.
//
// Lock, TryLock and Unlock must not be called concurrently on one Mutex; Token may be
// called at any time. Two Mutexes on the same session and name are two holders of one
// session, which the server treats as one session asking twice.
type Mutex struct {
	s    *Session
	name string

	mu    sync.Mutex
	token uint64 // 0 while not held
}

// NewMutex returns an unlocked Mutex for the lock name, held by s when locked.
func NewMutex(s *Session, name string) *Mutex { return &Mutex{s: s, name: name} }

// Name returns the lock's name.
func (m *Mutex) Name() string { return m.name }

// Token returns the fencing token of the current hold, or 0 when not held. A non-zero
// token does not prove the hold is still alive: check the session's Done, and fence.
func (m *Mutex) Token() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token
}

// Lock acquires the lock, waiting server-side in FIFO order until ctx's deadline (less a
// small margin), or MaxLockWait when ctx has none. It returns an error matching
// ErrLockHeld when the wait ended without the lock; the request is then withdrawn and
// the lock is not held.
func (m *Mutex) Lock(ctx context.Context) error {
	wait, ctx, cancel := lockWait(ctx)
	defer cancel()
	return m.acquire(ctx, wait)
}

// TryLock tries once to acquire the lock, without waiting. It returns false and no
// error when the lock is held by another.
func (m *Mutex) TryLock(ctx context.Context) (bool, error) {
	err := m.acquire(ctx, 0)
	if errors.Is(err, ErrLockHeld) {
		return false, nil
	}
	return err == nil, err
}

// Unlock releases the hold. It returns ErrNotLocked when not held. When the Release call
// fails the Mutex still records the token, so Unlock may be called again.
func (m *Mutex) Unlock(ctx context.Context) error {
	token := m.Token()
	if token == 0 {
		return fmt.Errorf("%w: lock %q", ErrNotLocked, m.name)
	}
	if _, err := m.s.c.locks.Release(ctx, &conclavev1.ReleaseRequest{Name: m.name, Token: token}); err != nil {
		return err
	}
	m.mu.Lock()
	m.token = 0
	m.mu.Unlock()
	return nil
}

// acquire sends one Acquire with wait and records the token.
func (m *Mutex) acquire(ctx context.Context, wait time.Duration) error {
	if m.Token() != 0 {
		return fmt.Errorf("client: lock %q: already held by this Mutex", m.name)
	}
	if err := m.s.Err(); err != nil {
		return fmt.Errorf("client: lock %q: %w", m.name, err)
	}
	resp, err := m.s.c.locks.Acquire(ctx, &conclavev1.AcquireRequest{
		Name:          m.name,
		SessionId:     m.s.ID(),
		WaitTimeoutMs: wait.Milliseconds(),
		Mode:          conclavev1.LockMode_LOCK_MODE_EXCLUSIVE,
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.token = resp.GetToken()
	m.mu.Unlock()
	return nil
}

// lockWait returns the server-side wait for a Lock with ctx, and a context for the call:
// ctx itself when it has a deadline, or ctx bounded a little past MaxLockWait (so that the
// client's RequestTimeout does not cut the wait short).
func lockWait(ctx context.Context) (time.Duration, context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		ctx, cancel := context.WithTimeout(ctx, MaxLockWait+lockWaitMargin)
		return MaxLockWait, ctx, cancel
	}
	left := time.Until(deadline)
	wait := min(left-min(left/10, lockWaitMargin), MaxLockWait)
	return max(wait, 0), ctx, func() {}
}
