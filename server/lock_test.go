package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

func TestLock_AcquireWaitReleaseAndFence(t *testing.T) {
	ts := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sc := conclavev1grpc.NewSessionServiceClient(ts.conn)
	lc := conclavev1grpc.NewLockServiceClient(ts.conn)
	s1, err := sc.CreateSession(ctx, &conclavev1.CreateSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := sc.CreateSession(ctx, &conclavev1.CreateSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}

	first, err := lc.Acquire(ctx, &conclavev1.AcquireRequest{Name: "jobs", SessionId: s1.GetId()})
	if err != nil || first.GetToken() == 0 {
		t.Fatalf("acquire: %v, %v", first, err)
	}
	_, err = lc.Acquire(ctx, &conclavev1.AcquireRequest{Name: "jobs", SessionId: s2.GetId()})
	wantCode(t, err, codes.FailedPrecondition, "LOCK_HELD")

	// A fenced write with the holder's token is applied.
	fence := &conclavev1.Fence{Lock: "jobs", Token: first.GetToken()}
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("out"), Value: []byte("1"), Fence: fence}); err != nil {
		t.Fatal(err)
	}

	// Session 2 waits server-side; the release hands the lock over with a larger token.
	type result struct {
		resp *conclavev1.AcquireResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := lc.Acquire(ctx, &conclavev1.AcquireRequest{Name: "jobs", SessionId: s2.GetId(), WaitTimeoutMs: 10_000})
		done <- result{r, err}
	}()
	eventually(t, 10*time.Second, "session 2 queued", func() bool {
		in, err := lc.Inspect(ctx, &conclavev1.InspectRequest{Name: "jobs"})
		return err == nil && len(in.GetWaiters()) == 1
	})
	if _, err := lc.Release(ctx, &conclavev1.ReleaseRequest{Name: "jobs", Token: first.GetToken()}); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil || got.resp.GetToken() <= first.GetToken() {
		t.Fatalf("waiter got %v, %v: want a token above %d", got.resp, got.err, first.GetToken())
	}
	// The old holder's token is stale now: its fenced write is refused.
	_, err = ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("out"), Value: []byte("2"), Fence: fence})
	wantCode(t, err, codes.Aborted, "FENCE_STALE")
	_, err = lc.Release(ctx, &conclavev1.ReleaseRequest{Name: "jobs", Token: first.GetToken()})
	wantCode(t, err, codes.Aborted, "FENCE_STALE")

	// A wait that times out is withdrawn: the lock shows no waiter afterwards.
	_, err = lc.Acquire(ctx, &conclavev1.AcquireRequest{Name: "jobs", SessionId: s1.GetId(), WaitTimeoutMs: 50})
	wantCode(t, err, codes.FailedPrecondition, "LOCK_HELD")
	in, err := lc.Inspect(ctx, &conclavev1.InspectRequest{Name: "jobs"})
	if err != nil || len(in.GetWaiters()) != 0 || len(in.GetHolders()) != 1 || in.GetHolders()[0].GetSessionId() != s2.GetId() {
		t.Fatalf("inspect after a timed-out wait: %v, %v", in, err)
	}
}
