package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Errors a Session's Err reports once its Done channel is closed.
var (
	// ErrSessionExpired: the session ended (KeepAlive answered NotFound) or could not be
	// renewed before SafeUntil; its holder must assume it lost what the session guarded.
	// The error wraps the cause, so errors.Is(err, ErrNotFound) tells the two apart.
	ErrSessionExpired = errors.New("client: session expired")
	// ErrSessionClosed: Close was called.
	ErrSessionClosed = errors.New("client: session closed")
)

// SessionOption changes the CreateSession request of NewSession.
type SessionOption func(*conclavev1.CreateSessionRequest)

// WithOwner sets the session's owner (see RevokeByOwner and ListSessions).
func WithOwner(owner string) SessionOption {
	return func(r *conclavev1.CreateSessionRequest) { r.Owner = owner }
}

// WithAttributes sets the session's initial attributes. The map is not copied.
func WithAttributes(attrs map[string][]byte) SessionOption {
	return func(r *conclavev1.CreateSessionRequest) { r.Attributes = attrs }
}

// WithLockDelay sets the session's lock-delay: when it ends (expires or is revoked)
// while holding locks, they are granted to no one for d (at most a minute), as Consul's.
func WithLockDelay(d time.Duration) SessionOption {
	return func(r *conclavev1.CreateSessionRequest) { r.LockDelayMs = durationMs(d) }
}

// Session is a session kept alive by a goroutine of its own, with a unary KeepAlive every
// third of its granted TTL (a unary call fails over between endpoints like any other).
//
// The session is safe until SafeUntil: the local time at which the last successful
// KeepAlive (or the CreateSession) was sent, plus the TTL the server answered. Measuring
// from the send time accounts for the round trip. When KeepAlive answers NotFound, or no
// KeepAlive succeeds before SafeUntil, Done is closed and Err reports ErrSessionExpired;
// keep-alives stop. All methods are safe for concurrent use.
type Session struct {
	c        *Client
	id       uint64
	interval time.Duration // between keep-alives: a third of the granted TTL

	cancel   context.CancelFunc // stops the keep-alive goroutine
	loopDone chan struct{}      // closed when the keep-alive goroutine has returned
	done     chan struct{}      // closed, under mu, when err is set

	mu        sync.Mutex
	safeUntil time.Time
	err       error

	closeOnce sync.Once
	closeErr  error
}

// NewSession creates a session of time to live ttl (the server raises it to its minimum)
// and keeps it alive until Close or until it expires. ctx bounds only the creation.
func (c *Client) NewSession(ctx context.Context, ttl time.Duration, opts ...SessionOption) (*Session, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("client: session ttl %v: must be positive", ttl)
	}
	req := &conclavev1.CreateSessionRequest{TtlMs: durationMs(ttl)}
	for _, o := range opts {
		o(req)
	}
	sent := time.Now()
	resp, err := c.sessions.CreateSession(ctx, req)
	if err != nil {
		return nil, err
	}
	granted := time.Duration(resp.GetTtlMs()) * time.Millisecond
	if granted <= 0 {
		granted = ttl
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s := &Session{
		c:         c,
		id:        resp.GetId(),
		interval:  max(granted/3, time.Millisecond),
		cancel:    cancel,
		loopDone:  make(chan struct{}),
		done:      make(chan struct{}),
		safeUntil: sent.Add(granted),
	}
	go s.keepAlive(loopCtx)
	return s, nil
}

// ID returns the session's id, to attach keys to it.
func (s *Session) ID() uint64 { return s.id }

// SafeUntil returns the local time until which the session is known to be alive.
func (s *Session) SafeUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.safeUntil
}

// Done is closed when the session expired or was closed; Err then says which.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while Done is open, and then why it closed: an error matching
// ErrSessionExpired (wrapping the last KeepAlive error) or ErrSessionClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the keep-alives and revokes the session, deleting its keys. A session
// already gone (NotFound) is not an error. Later calls return the first call's result.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.loopDone
		s.end(ErrSessionClosed)
		_, err := s.c.sessions.RevokeSession(ctx, &conclavev1.RevokeSessionRequest{Id: s.id})
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// keepAlive renews the session every interval until ctx ends or the session expires.
func (s *Session) keepAlive(ctx context.Context) {
	defer close(s.loopDone)
	t := time.NewTimer(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.renew(ctx); err != nil {
			if ctx.Err() == nil {
				s.end(fmt.Errorf("%w: session %d: %w", ErrSessionExpired, s.id, err))
			}
			return
		}
		t.Reset(s.interval)
	}
}

// renew sends KeepAlive until one succeeds, it answers NotFound, or SafeUntil passes.
// Unavailable is retried inside the call by the failover connection; other errors are
// retried here with the same capped backoff.
func (s *Session) renew(ctx context.Context) error {
	ctx, cancel := context.WithDeadline(ctx, s.SafeUntil())
	defer cancel()
	delay := retryBaseDelay
	for {
		sent := time.Now()
		resp, err := s.c.sessions.KeepAlive(ctx, &conclavev1.KeepAliveRequest{Id: s.id})
		if err == nil {
			if resp.GetTtlMs() <= 0 {
				return fmt.Errorf("client: keep-alive of session %d granted ttl %d ms", s.id, resp.GetTtlMs())
			}
			s.mu.Lock()
			s.safeUntil = sent.Add(time.Duration(resp.GetTtlMs()) * time.Millisecond)
			s.mu.Unlock()
			return nil
		}
		if errors.Is(err, ErrNotFound) || ctx.Err() != nil {
			return err
		}
		if !sleep(ctx, delay) {
			return err
		}
		delay = min(2*delay, retryMaxDelay)
	}
}

// end records err as the reason Done closed, unless one already was, and closes Done.
func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	close(s.done)
}
