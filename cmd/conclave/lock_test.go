package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeLocks is a LockService that grants token 42 for any lock but "busy" (LOCK_HELD),
// and inspects every lock as one holder and one waiter.
type fakeLocks struct {
	conclavev1grpc.UnimplementedLockServiceServer
	mu          sync.Mutex
	lastAcquire *conclavev1.AcquireRequest
	releases    []*conclavev1.ReleaseRequest
}

func (f *fakeLocks) Acquire(_ context.Context, r *conclavev1.AcquireRequest) (*conclavev1.AcquireResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastAcquire = proto.CloneOf(r)
	if r.GetName() == "busy" {
		st, _ := status.New(codes.FailedPrecondition, `lock "busy" is held`).
			WithDetails(&errdetails.ErrorInfo{Domain: "conclave.dev", Reason: "LOCK_HELD"})
		return nil, st.Err()
	}
	return &conclavev1.AcquireResponse{Token: 42}, nil
}

func (f *fakeLocks) Release(_ context.Context, r *conclavev1.ReleaseRequest) (*conclavev1.ReleaseResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases = append(f.releases, proto.CloneOf(r))
	return &conclavev1.ReleaseResponse{}, nil
}

func (f *fakeLocks) Inspect(context.Context, *conclavev1.InspectRequest) (*conclavev1.InspectResponse, error) {
	return &conclavev1.InspectResponse{
		Holders: []*conclavev1.LockHolder{{SessionId: 7, Token: 42, Mode: conclavev1.LockMode_LOCK_MODE_EXCLUSIVE}},
		Waiters: []*conclavev1.LockWaiter{{SessionId: 9, Mode: conclavev1.LockMode_LOCK_MODE_EXCLUSIVE}},
	}, nil
}

func (f *fakeLocks) released() []*conclavev1.ReleaseRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*conclavev1.ReleaseRequest(nil), f.releases...)
}

// startFakeLocks serves a fakeLocks and a fakeSessions on a loopback port.
func startFakeLocks(t *testing.T) (*fakeLocks, *fakeSessions, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeLocks{}
	s := &fakeSessions{sessions: map[uint64]*conclavev1.Session{}}
	srv := grpc.NewServer()
	conclavev1grpc.RegisterLockServiceServer(srv, l)
	conclavev1grpc.RegisterSessionServiceServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return l, s, lis.Addr().String()
}

func TestCLI_Lock(t *testing.T) {
	f, _, addr := startFakeLocks(t)
	ep := "--endpoints=" + addr
	steps := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string // substring of stdout
		wantErrOut string // substring of stderr
	}{
		{"acquire creates a session", []string{"lock", "acquire", "jobs", "--wait", "2s", ep}, 0, "session=1 token=42\n", ""},
		{"acquire held", []string{"lock", "acquire", "busy", "--session", "1", ep}, 1, "", `Error: lock "busy" is held`},
		{"acquire for a session", []string{"lock", "acquire", "jobs", "--session", "1", "--shared", "--limit", "3", ep}, 0, "session=1 token=42\n", ""},
		{"limit needs shared", []string{"lock", "acquire", "jobs", "--limit", "3", ep}, 1, "", "Error: --limit applies only with --shared"},
		{"session and ttl exclusive", []string{"lock", "acquire", "jobs", "--session", "1", "--ttl", "5s", ep}, 1, "", "Error: if any flags in the group"},
		{"release", []string{"lock", "release", "jobs", "42", ep}, 0, "OK\n", ""},
		{"bad token", []string{"lock", "release", "jobs", "x", ep}, 1, "", `Error: TOKEN "x"`},
		{"inspect holder", []string{"lock", "inspect", "jobs", ep}, 0, "holder  7        42     exclusive", ""},
		{"inspect waiter", []string{"lock", "inspect", "jobs", ep}, 0, "waiter  9        -      exclusive", ""},
	}
	for _, tt := range steps {
		code, out, errOut := runCLI(tt.args...)
		if code != tt.wantCode || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErrOut) {
			t.Fatalf("%s: exit %d stdout %q stderr %q; want exit %d, stdout with %q, stderr with %q",
				tt.name, code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErrOut)
		}
	}
	f.mu.Lock()
	r := f.lastAcquire
	f.mu.Unlock()
	if r.GetSessionId() != 1 || r.GetMode() != conclavev1.LockMode_LOCK_MODE_SHARED || r.GetLimit() != 3 || r.GetRequestId() == "" {
		t.Fatalf("acquire request = %v", r)
	}
}

func TestCLI_LockRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrOut string
	}{
		{"status passed on", []string{"sh", "-c", `echo "token=$CONCLAVE_FENCING_TOKEN session=$CONCLAVE_LOCK_SESSION"; exit 3`}, 3, "token=42 session=1\n", ""},
		{"success", []string{"true"}, 0, "", ""},
		{"killed by a signal", []string{"sh", "-c", "kill -TERM $$"}, 128 + 15, "", ""},
		{"command not found", []string{"/nonexistent/cmd"}, 1, "", "Error: fork/exec /nonexistent/cmd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, s, addr := startFakeLocks(t)
			args := append([]string{"lock", "run", "jobs", "--endpoints", addr, "--"}, tt.args...)
			code, out, errOut := runCLI(args...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errOut, tt.wantErrOut) {
				t.Fatalf("exit %d stdout %q stderr %q; want exit %d, stdout %q, stderr with %q",
					code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErrOut)
			}
			if rel := f.released(); len(rel) != 1 || rel[0].GetName() != "jobs" || rel[0].GetToken() != 42 {
				t.Fatalf("releases = %v, want one of jobs token 42", rel)
			}
			if n := s.count(); n != 0 {
				t.Fatalf("%d sessions left, want the session closed", n)
			}
		})
	}
}

func TestCLI_LockRunHeld(t *testing.T) {
	_, s, addr := startFakeLocks(t)
	code, _, errOut := runCLI("lock", "run", "busy", "--wait", "1s", "--endpoints", addr, "--", "true")
	if code != 1 || !strings.Contains(errOut, `Error: lock "busy" is held`) {
		t.Fatalf("exit %d stderr %q; want 1 and the lock held", code, errOut)
	}
	if n := s.count(); n != 0 {
		t.Fatalf("%d sessions left, want the session closed", n)
	}
}

func TestCLI_LockRunLost(t *testing.T) {
	f, s, addr := startFakeLocks(t)
	s.mu.Lock()
	s.lost = true // the first keep-alive finds the session gone
	s.mu.Unlock()
	code, _, errOut := runCLI("lock", "run", "jobs", "--ttl", "300ms", "--endpoints", addr, "--", "sleep", "60")
	if code != 1 || !strings.Contains(errOut, "lock lost") {
		t.Fatalf("exit %d stderr %q; want 1 and lock lost", code, errOut)
	}
	if rel := f.released(); len(rel) != 0 {
		t.Fatalf("releases = %v: the hold ended with the session, want none", rel)
	}
}
