package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// okHandler counts the requests it serves and answers 200 "ok".
type okHandler struct {
	mu     sync.Mutex
	served int
	during func() // called while serving
}

func (h *okHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	h.served++
	during := h.during
	h.mu.Unlock()
	if during != nil {
		during()
	}
	_, _ = w.Write([]byte("ok"))
}

func (h *okHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.served
}

// byHeader keys requests by their X-User header.
func byHeader(r *http.Request) string { return r.Header.Get("X-User") }

// serve sends one GET with X-User user through h and returns the response.
func serve(h http.Handler, user string) *http.Response {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if user != "" {
		r.Header.Set("X-User", user)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestRateLimitMiddleware_AllowThenDeny(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	f.set(func(f *fakeLimits) { f.retryMs = 1500 })
	next := &okHandler{}
	h := RateLimitMiddleware(c.NewLimiter(perMinute(2)), byHeader)(next)

	tests := []struct {
		status                              int
		limit, remaining, reset, retryAfter string
	}{
		{http.StatusOK, "2", "1", "60", ""},
		{http.StatusOK, "2", "0", "60", ""},
		{http.StatusTooManyRequests, "2", "0", "60", "2"}, // 1.5 s rounds up
	}
	for i, tt := range tests {
		resp := serve(h, "ann")
		got := [5]string{resp.Status, resp.Header.Get("RateLimit-Limit"), resp.Header.Get("RateLimit-Remaining"),
			resp.Header.Get("RateLimit-Reset"), resp.Header.Get("Retry-After")}
		want := [5]string{http.StatusText(tt.status), tt.limit, tt.remaining, tt.reset, tt.retryAfter}
		if !strings.HasSuffix(got[0], want[0]) || [4]string(got[1:]) != [4]string(want[1:]) {
			t.Fatalf("request #%d: status and headers %q, want %q", i, got, want)
		}
	}
	if next.count() != 2 {
		t.Fatalf("next served %d requests, want 2", next.count())
	}
	// Another key has its own limit.
	if resp := serve(h, "bob"); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob: status %d, want 200", resp.StatusCode)
	}
}

func TestRateLimitMiddleware_NeverAllowedHasNoRetryAfter(t *testing.T) {
	c, _ := newLimitsTestClient(t, 1)
	h := RateLimitMiddleware(c.NewLimiter(perMinute(2)), byHeader,
		MiddlewareCost(func(*http.Request) uint64 { return 3 }))(&okHandler{})
	resp := serve(h, "ann")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("status %d, Retry-After %q; want 429 without Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestRateLimitMiddleware_EmptyKeyNotLimited(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	next := &okHandler{}
	h := RateLimitMiddleware(c.NewLimiter(perMinute(1)), byHeader)(next)
	for range 3 {
		if resp := serve(h, ""); resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit-Limit") != "" {
			t.Fatalf("status %d, headers %v; want 200 without RateLimit headers", resp.StatusCode, resp.Header)
		}
	}
	if n := f.callCount("Check"); n != 0 {
		t.Fatalf("%d Checks for requests without a key, want 0", n)
	}
}

func TestRateLimitMiddleware_Unreachable(t *testing.T) {
	tests := []struct {
		name       string
		fail       codes.Code
		opts       []MiddlewareOption
		wantStatus int
		wantServed int
	}{
		{"fails open by default", codes.Internal, nil, http.StatusOK, 1},
		{"fails open after the timeout", codes.Unavailable, []MiddlewareOption{MiddlewareTimeout(20 * time.Millisecond)}, http.StatusOK, 1},
		{"fails closed", codes.Internal, []MiddlewareOption{MiddlewareFailClosed()}, http.StatusServiceUnavailable, 0},
		{"missing policy fails open", codes.NotFound, nil, http.StatusOK, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newLimitsTestClient(t, 1)
			f.set(func(f *fakeLimits) { f.fail = tt.fail })
			var (
				mu     sync.Mutex
				errs   []error
				next   = &okHandler{}
				onErr  = MiddlewareOnError(func(_ *http.Request, err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
				h      = RateLimitMiddleware(c.NewLimiter(perMinute(1)), byHeader, append(tt.opts, onErr)...)(next)
				resp   = serve(h, "ann")
				served = next.count()
			)
			if resp.StatusCode != tt.wantStatus || served != tt.wantServed {
				t.Fatalf("status %d, served %d; want %d, %d", resp.StatusCode, served, tt.wantStatus, tt.wantServed)
			}
			if resp.Header.Get("RateLimit-Limit") != "" {
				t.Fatalf("RateLimit headers without a verdict: %v", resp.Header)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(errs) != 1 {
				t.Fatalf("OnError saw %v, want one error", errs)
			}
			// An Unavailable call is retried until the timeout: it ends as the context does
			// (in a backoff, or in a call that grpc ends at the deadline).
			timedOut := errors.Is(errs[0], context.DeadlineExceeded) || codeOf(errs[0]) == codes.DeadlineExceeded
			if tt.fail == codes.Unavailable && !timedOut ||
				tt.fail != codes.Unavailable && codeOf(errs[0]) != tt.fail {
				t.Fatalf("OnError saw %v, want code %s (Unavailable: the timeout)", errs[0], tt.fail)
			}
		})
	}
}

func TestRateLimitMiddleware_DeniedHandler(t *testing.T) {
	c, _ := newLimitsTestClient(t, 1)
	denied := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":"slow down"}`))
	})
	h := RateLimitMiddleware(c.NewLimiter(perMinute(1)), byHeader, MiddlewareDenied(denied))(&okHandler{})
	serve(h, "ann")
	resp := serve(h, "ann")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Type") != "application/json" ||
		resp.Header.Get("RateLimit-Remaining") != "0" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d, headers %v; want the denied handler's 429 with the RateLimit headers", resp.StatusCode, resp.Header)
	}
}

func TestRateLimitMiddleware_ConcurrencySlotHeldWhileServing(t *testing.T) {
	c, f := newLimitsTestClient(t, 1)
	l := c.NewLimiter(&conclavev1.RateLimitPolicy{Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY,
		Limit: 1, PeriodMs: 30_000})
	next := &okHandler{}
	h := RateLimitMiddleware(l, byHeader)(next)
	var inner *http.Response
	next.during = func() {
		next.during = nil // the nested request is served without recursion
		inner = serve(h, "ann")
		if n := len(f.refundRequests()); n != 0 {
			t.Errorf("%d Refunds while the request is served, want the slot held", n)
		}
	}
	if resp := serve(h, "ann"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if inner.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a second request while the only slot is held: status %d, want 429", inner.StatusCode)
	}
	refunds := f.refundRequests()
	if len(refunds) != 1 || len(refunds[0].GetKeys()[0].GetSlots()) != 1 {
		t.Fatalf("refunds = %v, want the one slot released after serving", refunds)
	}
	if resp := serve(h, "ann"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the release: status %d, want 200", resp.StatusCode)
	}
}
