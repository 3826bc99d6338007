package client

import (
	"context"
	"errors"
	"testing"
	"time"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

func newTestSession(t *testing.T, c *Client) *Session {
	t.Helper()
	s, err := c.NewSession(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestMutex_LockUnlock(t *testing.T) {
	c, nodes := newTestCluster(t, 1)
	s := newTestSession(t, c)
	m := NewMutex(s, "jobs")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	r := nodes[0].locks.lastAcquire()
	if r.GetName() != "jobs" || r.GetSessionId() != s.ID() || r.GetRequestId() == "" ||
		r.GetWaitTimeoutMs() <= 0 || r.GetWaitTimeoutMs() > 5000 {
		t.Fatalf("acquire request = %v: want name, session, a request id and a wait within the deadline", r)
	}
	tok := m.Token()
	if tok == 0 {
		t.Fatal("Token() = 0 after Lock")
	}
	if err := m.Lock(ctx); err == nil {
		t.Fatal("second Lock on a held Mutex succeeded")
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if m.Token() != 0 {
		t.Fatalf("Token() = %d after Unlock, want 0", m.Token())
	}
	if err := m.Unlock(ctx); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Unlock of an unlocked Mutex = %v, want ErrNotLocked", err)
	}
	if err := m.Lock(ctx); err != nil || m.Token() <= tok {
		t.Fatalf("Lock again = %v, token %d: want a token above %d", err, m.Token(), tok)
	}
}

func TestMutex_TryLockHeld(t *testing.T) {
	c, nodes := newTestCluster(t, 1)
	ctx := context.Background()
	a, b := NewMutex(newTestSession(t, c), "jobs"), NewMutex(newTestSession(t, c), "jobs")
	if ok, err := a.TryLock(ctx); !ok || err != nil {
		t.Fatalf("a.TryLock = %v, %v; want true", ok, err)
	}
	if ok, err := b.TryLock(ctx); ok || err != nil {
		t.Fatalf("b.TryLock = %v, %v; want false, nil", ok, err)
	}
	if w := nodes[0].locks.lastAcquire().GetWaitTimeoutMs(); w != 0 {
		t.Fatalf("TryLock wait_timeout_ms = %d, want 0", w)
	}
	if b.Token() != 0 {
		t.Fatalf("b.Token() = %d after a failed TryLock", b.Token())
	}
}

func TestMutex_LockWaitsForRelease(t *testing.T) {
	c, nodes := newTestCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := NewMutex(newTestSession(t, c), "jobs"), NewMutex(newTestSession(t, c), "jobs")
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx) }()
	eventually(t, 5*time.Second, "b waits", func() bool { return nodes[0].locks.waiters() == 1 })
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("b.Lock: %v", err)
	}
	if b.Token() <= 100 {
		t.Fatalf("b.Token() = %d", b.Token())
	}
}

func TestMutex_LockTimesOut(t *testing.T) {
	c, _ := newTestCluster(t, 1)
	a, b := NewMutex(newTestSession(t, c), "jobs"), NewMutex(newTestSession(t, c), "jobs")
	if err := a.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.Lock(ctx); !errors.Is(err, ErrLockHeld) {
		t.Fatalf("b.Lock = %v, want ErrLockHeld", err)
	}
}

func TestMutex_LockWait(t *testing.T) {
	wait, ctx, cancel := lockWait(context.Background())
	defer cancel()
	if _, ok := ctx.Deadline(); wait != MaxLockWait || !ok {
		t.Fatalf("no deadline: wait %v (want %v), call deadline %v", wait, MaxLockWait, ok)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	defer dcancel()
	wait, _, cancel2 := lockWait(dctx)
	defer cancel2()
	if wait <= 0 || wait >= time.Minute-lockWaitMargin/2 {
		t.Fatalf("deadline in 1m: wait %v, want below it by the margin", wait)
	}
}

func TestPolicy_LockMethods(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		req       any
		wantRetry bool
		wantID    bool
	}{
		{"inspect is a read", conclavev1grpc.LockService_Inspect_FullMethodName, &conclavev1.InspectRequest{Name: "l"}, true, false},
		{"acquire gets an id", conclavev1grpc.LockService_Acquire_FullMethodName, &conclavev1.AcquireRequest{Name: "l"}, true, true},
		{"release gets an id", conclavev1grpc.LockService_Release_FullMethodName, &conclavev1.ReleaseRequest{Name: "l"}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := withRequestID(tt.req)
			if got := requestID(args) != ""; got != tt.wantID {
				t.Fatalf("request id filled = %v, want %v", got, tt.wantID)
			}
			if got := retryable(tt.method, args); got != tt.wantRetry {
				t.Fatalf("retryable = %v, want %v", got, tt.wantRetry)
			}
		})
	}
}
