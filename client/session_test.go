package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeSessions is a SessionService that grants the TTL asked for, counts keep-alives and
// revocations, and fails KeepAlive with keepAliveFail unless it is codes.OK.
type fakeSessions struct {
	conclavev1grpc.UnimplementedSessionServiceServer

	mu            sync.Mutex
	nextID        uint64
	created       []*conclavev1.CreateSessionRequest
	keepAlives    int
	keepAliveFail codes.Code
	revoked       []*conclavev1.RevokeSessionRequest
}

func (f *fakeSessions) CreateSession(_ context.Context, r *conclavev1.CreateSessionRequest) (*conclavev1.CreateSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.created = append(f.created, r)
	return &conclavev1.CreateSessionResponse{Id: f.nextID, TtlMs: r.GetTtlMs()}, nil
}

func (f *fakeSessions) KeepAlive(_ context.Context, r *conclavev1.KeepAliveRequest) (*conclavev1.KeepAliveResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keepAlives++
	if f.keepAliveFail != codes.OK {
		return nil, status.Errorf(f.keepAliveFail, "session %d: failing with %s", r.GetId(), f.keepAliveFail)
	}
	return &conclavev1.KeepAliveResponse{Id: r.GetId(), TtlMs: f.created[r.GetId()-1].GetTtlMs()}, nil
}

func (f *fakeSessions) RevokeSession(_ context.Context, r *conclavev1.RevokeSessionRequest) (*conclavev1.RevokeSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, r)
	return &conclavev1.RevokeSessionResponse{}, nil
}

func (f *fakeSessions) setKeepAliveFail(c codes.Code) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keepAliveFail = c
}

func (f *fakeSessions) keepAliveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keepAlives
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitDone waits for s.Done, failing the test after timeout.
func waitDone(t *testing.T, s *Session, timeout time.Duration) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(timeout):
		t.Fatalf("session %d: Done not closed after %v", s.ID(), timeout)
	}
}

func TestSession_KeepsAliveAndRevokesOnClose(t *testing.T) {
	c, nodes := newTestCluster(t, 1)
	f := &nodes[0].sessions
	ctx := context.Background()
	s, err := c.NewSession(ctx, 300*time.Millisecond, WithOwner("alice"),
		WithAttributes(map[string][]byte{"role": []byte("primary")}))
	if err != nil {
		t.Fatal(err)
	}
	first := s.SafeUntil()
	eventually(t, 5*time.Second, "want 2 keep-alives", func() bool {
		select {
		case <-s.Done():
			t.Fatalf("session ended: %v", s.Err())
		default:
		}
		return f.keepAliveCount() >= 2
	})
	if !s.SafeUntil().After(first) {
		t.Fatalf("SafeUntil %v not extended past %v", s.SafeUntil(), first)
	}
	if s.Err() != nil {
		t.Fatalf("Err() = %v while alive", s.Err())
	}

	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s, time.Second)
	if !errors.Is(s.Err(), ErrSessionClosed) {
		t.Fatalf("Err() = %v, want ErrSessionClosed", s.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cr := f.created[0]
	if cr.GetTtlMs() != 300 || cr.GetOwner() != "alice" || string(cr.GetAttributes()["role"]) != "primary" || cr.GetRequestId() == "" {
		t.Fatalf("create request = %v", cr)
	}
	if len(f.revoked) != 1 || f.revoked[0].GetId() != s.ID() || f.revoked[0].GetRequestId() == "" {
		t.Fatalf("revocations = %v, want one of session %d with a request id", f.revoked, s.ID())
	}
}

func TestSession_Expires(t *testing.T) {
	tests := []struct {
		name         string
		fail         codes.Code
		wantNotFound bool
	}{
		{"not found ends it at once", codes.NotFound, true},
		{"cannot renew before safe-until", codes.Internal, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, nodes := newTestCluster(t, 1)
			nodes[0].sessions.setKeepAliveFail(tt.fail)
			s, err := c.NewSession(context.Background(), 150*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			waitDone(t, s, 5*time.Second)
			err = s.Err()
			if !errors.Is(err, ErrSessionExpired) || errors.Is(err, ErrNotFound) != tt.wantNotFound {
				t.Fatalf("Err() = %v, want ErrSessionExpired (not found: %v)", err, tt.wantNotFound)
			}
			if !tt.wantNotFound && time.Now().Before(s.SafeUntil()) {
				t.Fatalf("expired before SafeUntil %v", s.SafeUntil())
			}
			n := nodes[0].sessions.keepAliveCount()
			if tt.wantNotFound && n != 1 {
				t.Fatalf("keep-alives = %d, want 1 (NotFound is final)", n)
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(s.Err(), ErrSessionExpired) {
				t.Fatalf("Err() after Close = %v, want it to stay ErrSessionExpired", s.Err())
			}
		})
	}
}

func TestPolicy_SessionMethods(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		req       any
		wantRetry bool
		wantID    bool
	}{
		{"get is a read", conclavev1grpc.SessionService_GetSession_FullMethodName, &conclavev1.GetSessionRequest{Id: 1}, true, false},
		{"list is a read", conclavev1grpc.SessionService_ListSessions_FullMethodName, &conclavev1.ListSessionsRequest{}, true, false},
		{"keep-alive is idempotent", conclavev1grpc.SessionService_KeepAlive_FullMethodName, &conclavev1.KeepAliveRequest{Id: 1}, true, false},
		{"create gets an id", conclavev1grpc.SessionService_CreateSession_FullMethodName, &conclavev1.CreateSessionRequest{}, true, true},
		{"revoke gets an id", conclavev1grpc.SessionService_RevokeSession_FullMethodName, &conclavev1.RevokeSessionRequest{Id: 1}, true, true},
		{"revoke by owner gets an id", conclavev1grpc.SessionService_RevokeByOwner_FullMethodName, &conclavev1.RevokeByOwnerRequest{Owner: "o"}, true, true},
		{"update attributes gets an id", conclavev1grpc.SessionService_UpdateAttributes_FullMethodName, &conclavev1.UpdateAttributesRequest{Id: 1}, true, true},
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
