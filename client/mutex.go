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

// ErrNotLocked is returned by Unlock (and Semaphore.Release) when nothing is held.
var ErrNotLocked = errors.New("client: mutex not locked")

// hold is one session's hold of a LockService lock in one mode: what Mutex and
// Semaphore share. Its acquire and release must not run concurrently.
type hold struct {
	s     *Session
	name  string
	mode  conclavev1.LockMode
	limit uint32

	mu    sync.Mutex
	token uint64 // 0 while not held
}

// Name returns the lock's name.
func (h *hold) Name() string { return h.name }

// Token returns the fencing token of the current hold, or 0 when not held. A non-zero
// token does not prove the hold is still alive: check the session's Done, and fence.
func (h *hold) Token() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.token
}

// acquire sends one Acquire waiting up to wait and records the token.
func (h *hold) acquire(ctx context.Context, wait time.Duration) error {
	if h.Token() != 0 {
		return fmt.Errorf("client: lock %q: already held by this session's handle", h.name)
	}
	if err := h.s.Err(); err != nil {
		return fmt.Errorf("client: lock %q: %w", h.name, err)
	}
	resp, err := h.s.c.locks.Acquire(ctx, &conclavev1.AcquireRequest{
		Name:          h.name,
		SessionId:     h.s.ID(),
		WaitTimeoutMs: wait.Milliseconds(),
		Mode:          h.mode,
		Limit:         h.limit,
	})
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.token = resp.GetToken()
	h.mu.Unlock()
	return nil
}

// wait acquires, waiting server-side in FIFO order until ctx's deadline (less a small
// margin), or MaxLockWait when ctx has none.
func (h *hold) wait(ctx context.Context) error {
	wait, ctx, cancel := lockWait(ctx)
	defer cancel()
	return h.acquire(ctx, wait)
}

// try acquires without waiting; false and no error when the lock is taken.
func (h *hold) try(ctx context.Context) (bool, error) {
	err := h.acquire(ctx, 0)
	if errors.Is(err, ErrLockHeld) {
		return false, nil
	}
	return err == nil, err
}

// release gives the hold up. When the Release call fails the token is kept, so it may
// be called again.
func (h *hold) release(ctx context.Context) error {
	token := h.Token()
	if token == 0 {
		return fmt.Errorf("%w: lock %q", ErrNotLocked, h.name)
	}
	if _, err := h.s.c.locks.Release(ctx, &conclavev1.ReleaseRequest{Name: h.name, Token: token}); err != nil {
		return err
	}
	h.mu.Lock()
	h.token = 0
	h.mu.Unlock()
	return nil
}

// Mutex is an exclusive LockService lock held by a Session: the hold lasts until Unlock
// or until the session ends (Session.Done), whichever comes first. While held, Token is
// the fencing token to pass to fenced writes and to other systems.
//
// Lock, TryLock and Unlock must not be called concurrently on one Mutex; Token may be
// called at any time. Two Mutexes on the same session and name are two holders of one
// session, which the server treats as one session asking twice.
type Mutex struct{ hold }

// NewMutex returns an unlocked Mutex for the lock name, held by s when locked.
func NewMutex(s *Session, name string) *Mutex {
	return &Mutex{hold{s: s, name: name, mode: conclavev1.LockMode_LOCK_MODE_EXCLUSIVE}}
}

// Lock acquires the lock, waiting server-side in FIFO order until ctx's deadline (less a
// small margin), or MaxLockWait when ctx has none. It returns an error matching
// ErrLockHeld when the wait ended without the lock; the request is then withdrawn and
// the lock is not held.
func (m *Mutex) Lock(ctx context.Context) error { return m.wait(ctx) }

// TryLock tries once to acquire the lock, without waiting. It returns false and no
// error when the lock is held by another.
func (m *Mutex) TryLock(ctx context.Context) (bool, error) { return m.try(ctx) }

// Unlock releases the hold. It returns ErrNotLocked when not held. When the Release call
// fails the Mutex still records the token, so Unlock may be called again.
func (m *Mutex) Unlock(ctx context.Context) error { return m.release(ctx) }

// Semaphore is one of at most limit holders of a LockService lock (SHARED mode), held by
// a Session until Release or the session's end. Every Semaphore on a name must use the
// same limit: the first holder fixes it. Waiters are served in FIFO order. Token is the
// fencing token of this holder's grant (holders granted in one entry share it).
type Semaphore struct{ hold }

// NewSemaphore returns a Semaphore handle for the lock name with limit holders (limit 0
// admits any number: the reader side of a read/write lock whose writer is a Mutex).
func NewSemaphore(s *Session, name string, limit uint32) *Semaphore {
	return &Semaphore{hold{s: s, name: name, mode: conclavev1.LockMode_LOCK_MODE_SHARED, limit: limit}}
}

// Acquire takes a slot, waiting as Mutex.Lock does.
func (m *Semaphore) Acquire(ctx context.Context) error { return m.wait(ctx) }

// TryAcquire takes a slot if one is free now and no one waits first.
func (m *Semaphore) TryAcquire(ctx context.Context) (bool, error) { return m.try(ctx) }

// Release gives the slot back.
func (m *Semaphore) Release(ctx context.Context) error { return m.release(ctx) }

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
