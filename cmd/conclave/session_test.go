package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeSessions is a SessionService holding sessions in a map, for the CLI and the bench.
type fakeSessions struct {
	conclavev1grpc.UnimplementedSessionServiceServer
	mu       sync.Mutex
	nextID   uint64
	sessions map[uint64]*conclavev1.Session
	lastAttr *conclavev1.UpdateAttributesRequest
	lost     bool // KeepAlive answers NotFound
}

func (f *fakeSessions) CreateSession(_ context.Context, r *conclavev1.CreateSessionRequest) (*conclavev1.CreateSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.sessions[f.nextID] = &conclavev1.Session{Id: f.nextID, Owner: r.GetOwner(), TtlMs: r.GetTtlMs(),
		CreatedAtUnixMs: 1, Attributes: r.GetAttributes()}
	return &conclavev1.CreateSessionResponse{Id: f.nextID, TtlMs: r.GetTtlMs()}, nil
}

func (f *fakeSessions) RevokeSession(_ context.Context, r *conclavev1.RevokeSessionRequest) (*conclavev1.RevokeSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sessions[r.GetId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "session %d not found", r.GetId())
	}
	delete(f.sessions, r.GetId())
	return &conclavev1.RevokeSessionResponse{KeysDeleted: 2}, nil
}

func (f *fakeSessions) KeepAlive(_ context.Context, r *conclavev1.KeepAliveRequest) (*conclavev1.KeepAliveResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[r.GetId()]
	if !ok || f.lost {
		return nil, status.Errorf(codes.NotFound, "session %d not found", r.GetId())
	}
	return &conclavev1.KeepAliveResponse{Id: s.GetId(), TtlMs: s.GetTtlMs()}, nil
}

func (f *fakeSessions) GetSession(_ context.Context, r *conclavev1.GetSessionRequest) (*conclavev1.GetSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[r.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "session %d not found", r.GetId())
	}
	s = proto.CloneOf(s)
	s.Keys = [][]byte{[]byte("lock/a")}
	return &conclavev1.GetSessionResponse{Session: s}, nil
}

func (f *fakeSessions) UpdateAttributes(_ context.Context, r *conclavev1.UpdateAttributesRequest) (*conclavev1.UpdateAttributesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastAttr = proto.CloneOf(r)
	return &conclavev1.UpdateAttributesResponse{AttributesRevision: 3}, nil
}

func (f *fakeSessions) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// startFakeSessions serves a fakeSessions on a loopback port and returns it with its address.
func startFakeSessions(t *testing.T) (*fakeSessions, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSessions{sessions: map[uint64]*conclavev1.Session{}}
	srv := grpc.NewServer()
	conclavev1grpc.RegisterSessionServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

func TestCLI_Session(t *testing.T) {
	f, addr := startFakeSessions(t)
	ep := "--endpoints=" + addr
	steps := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string // substring of stdout
		wantErrOut string // substring of stderr
	}{
		{"create", []string{"session", "create", "--ttl", "5s", "--owner", "alice", "--attr", "role=a=b", ep}, 0, "1\n", ""},
		{"bad attr", []string{"session", "create", "--attr", "role", ep}, 1, "", `Error: --attr "role": want key=value`},
		{"get", []string{"session", "get", "1", ep}, 0, "role=a=b", ""},
		{"get keys", []string{"session", "get", "1", ep}, 0, "lock/a", ""},
		{"bad id", []string{"session", "get", "x", ep}, 1, "", `Error: ID "x"`},
		{"attrs", []string{"session", "attrs", "1", "--set", "k=v", "--delete", "role", ep}, 0, "3\n", ""},
		{"attrs needs a change", []string{"session", "attrs", "1", ep}, 1, "", "Error: nothing to change"},
		{"revoke", []string{"session", "revoke", "1", ep}, 0, "2\n", ""},
		{"revoke again", []string{"session", "revoke", "1", ep}, 1, "", "Error: session 1 not found"},
	}
	for _, tt := range steps {
		code, out, errOut := runCLI(tt.args...)
		if code != tt.wantCode || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErrOut) {
			t.Fatalf("%s: exit %d stdout %q stderr %q; want exit %d, stdout with %q, stderr with %q",
				tt.name, code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErrOut)
		}
	}
	f.mu.Lock()
	r := f.lastAttr
	f.mu.Unlock()
	if string(r.GetSet()["k"]) != "v" || len(r.GetDelete()) != 1 || r.GetDelete()[0] != "role" || r.GetRequestId() == "" {
		t.Fatalf("update request = %v", r)
	}
}

func TestBenchSession_AgainstFake(t *testing.T) {
	f, addr := startFakeSessions(t)
	cfg := benchSessionConfig{
		benchLoad: benchLoad{endpoints: []string{addr}, timeout: 5 * time.Second,
			clients: 4, conns: 2, duration: 100 * time.Millisecond},
		ttl: time.Second, owner: "bench",
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := runBenchSession(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Latency.Count == 0 {
		t.Fatalf("result = %+v: want cycles and no errors", res)
	}
	if n := f.count(); n != 0 {
		t.Fatalf("%d sessions left, want every one revoked", n)
	}
	var buf strings.Builder
	if err := printBenchTable(&buf, res); err != nil || !strings.Contains(buf.String(), "cycles/s") {
		t.Fatalf("table %q, %v", buf.String(), err)
	}
}
