package client

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// DefaultMiddlewareTimeout bounds the Check of one HTTP request: well above a decision's
// latency (a replicated write), well below what a site can add to every request while
// the cluster elects a leader.
const DefaultMiddlewareTimeout = 500 * time.Millisecond

// Header fields of the IETF RateLimit header fields draft (draft-ietf-httpapi-ratelimit-headers,
// the three-field form that Envoy and most gateways send) and Retry-After (RFC 9110).
const (
	HeaderRateLimitLimit     = "RateLimit-Limit"
	HeaderRateLimitRemaining = "RateLimit-Remaining"
	HeaderRateLimitReset     = "RateLimit-Reset"
	HeaderRetryAfter         = "Retry-After"
)

// middleware is what RateLimitMiddleware's options configure.
type middleware struct {
	l          *Limiter
	keyFunc    func(*http.Request) string
	cost       func(*http.Request) uint64
	failClosed bool
	timeout    time.Duration
	onError    func(*http.Request, error)
	denied     http.Handler
}

// MiddlewareOption changes RateLimitMiddleware.
type MiddlewareOption func(*middleware)

// MiddlewareFailClosed answers 503 Service Unavailable when a request cannot be decided
// (Conclave unreachable, timed out, the policy missing). The default is to fail open:
// serve the request unlimited, log a warning on the client's Logger and call the
// MiddlewareOnError hook — a rate limiter should not take the site down with it.
func MiddlewareFailClosed() MiddlewareOption {
	return func(m *middleware) { m.failClosed = true }
}

// MiddlewareTimeout bounds each request's Check (default DefaultMiddlewareTimeout); when
// it passes the request is undecided, and fails open or closed.
func MiddlewareTimeout(d time.Duration) MiddlewareOption {
	return func(m *middleware) { m.timeout = d }
}

// MiddlewareOnError calls fn with every error of the limiter — a request that could not
// be decided (then failing open or closed) or a CONCURRENCY slot that could not be
// released — for a metric or a log. fn must be safe for concurrent use.
func MiddlewareOnError(fn func(r *http.Request, err error)) MiddlewareOption {
	return func(m *middleware) { m.onError = fn }
}

// MiddlewareDenied serves denied requests with h instead of a plain-text 429. The
// RateLimit and Retry-After headers are set when h is called; h writes the status.
func MiddlewareDenied(h http.Handler) MiddlewareOption {
	return func(m *middleware) { m.denied = h }
}

// MiddlewareCost gives each request a cost (default 1), e.g. by the size of a batch.
func MiddlewareCost(fn func(*http.Request) uint64) MiddlewareOption {
	return func(m *middleware) { m.cost = fn }
}

// RateLimitMiddleware returns net/http middleware (the func(http.Handler) http.Handler of
// chi, alice and gorilla) that admits each request through l under the key
// keyFunc(r) — a client IP, a user, a tenant; an empty key is not limited.
//
// An admitted request gets RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset
// (seconds, rounded up) and is passed on. A denied one gets the same and Retry-After
// (seconds, rounded up; absent when the cost can never be allowed) and is answered 429
// Too Many Requests. Under a CONCURRENCY policy the slot is held while the next handler
// runs and released when it returns. A request that cannot be decided within
// MiddlewareTimeout is served without limit (fail open) unless MiddlewareFailClosed.
func RateLimitMiddleware(l *Limiter, keyFunc func(*http.Request) string, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	m := &middleware{l: l, keyFunc: keyFunc, timeout: DefaultMiddlewareTimeout}
	for _, o := range opts {
		o(m)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) })
	}
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	key := m.keyFunc(r)
	if key == "" {
		next.ServeHTTP(w, r)
		return
	}
	var cost uint64 = 1
	if m.cost != nil {
		cost = m.cost(r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), m.timeout)
	v, err := m.l.AllowN(ctx, key, cost)
	cancel()
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away: nobody to answer
		}
		m.fail(w, r, next, key, err)
		return
	}
	setRateLimitHeaders(w.Header(), v)
	if !v.Allowed {
		if m.denied != nil {
			m.denied.ServeHTTP(w, r)
			return
		}
		http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		return
	}
	if len(v.Slots) > 0 {
		defer m.release(r, v)
	}
	next.ServeHTTP(w, r)
}

// fail handles a request that could not be decided.
func (m *middleware) fail(w http.ResponseWriter, r *http.Request, next http.Handler, key string, err error) {
	if m.onError != nil {
		m.onError(r, err)
	}
	m.l.c.conn.log.Warn("rate limit check failed",
		zap.String("rate-limit-key", key), zap.Bool("fail-closed", m.failClosed), zap.Error(err))
	if m.failClosed {
		w.Header().Set(HeaderRetryAfter, "1")
		http.Error(w, "rate limiter unavailable", http.StatusServiceUnavailable)
		return
	}
	next.ServeHTTP(w, r)
}

// release gives back a CONCURRENCY verdict's slots after the request was served, even if
// the client went away meanwhile.
func (m *middleware) release(r *http.Request, v Verdict) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), m.timeout)
	defer cancel()
	if err := m.l.Refund(ctx, v); err != nil {
		if m.onError != nil {
			m.onError(r, err)
		}
		m.l.c.conn.log.Warn("rate limit slot release failed; it is freed when its TTL passes",
			zap.String("rate-limit-key", v.Key), zap.Error(err))
	}
}

// setRateLimitHeaders sets the RateLimit header fields for v, and Retry-After when v is
// denied and can be retried.
func setRateLimitHeaders(h http.Header, v Verdict) {
	h.Set(HeaderRateLimitLimit, strconv.FormatUint(v.Limit, 10))
	h.Set(HeaderRateLimitRemaining, strconv.FormatUint(v.Remaining, 10))
	h.Set(HeaderRateLimitReset, strconv.FormatInt(ceilSeconds(v.ResetAfter), 10))
	if !v.Allowed && v.RetryAfter >= 0 {
		h.Set(HeaderRetryAfter, strconv.FormatInt(max(ceilSeconds(v.RetryAfter), 1), 10))
	}
}

// ceilSeconds returns d in whole seconds, rounded up; 0 for d ≤ 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
