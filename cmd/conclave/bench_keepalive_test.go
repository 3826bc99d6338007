package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeKeepAlive adds KeepAliveStream and RevokeByOwner to fakeSessions. Like the server,
// the stream answers in order and ends at the first session it does not know.
type fakeKeepAlive struct {
	*fakeSessions
	gone uint64 // this session disappears at its first keep-alive
}

func (f *fakeKeepAlive) KeepAliveStream(stream conclavev1grpc.SessionService_KeepAliveStreamServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		f.mu.Lock()
		if req.GetId() == f.gone {
			delete(f.sessions, f.gone)
		}
		s, ok := f.sessions[req.GetId()]
		f.mu.Unlock()
		if !ok {
			return status.Errorf(codes.NotFound, "session %d not found", req.GetId())
		}
		if err := stream.Send(&conclavev1.KeepAliveStreamResponse{Id: s.GetId(), TtlMs: s.GetTtlMs()}); err != nil {
			return err
		}
	}
}

func (f *fakeKeepAlive) RevokeByOwner(_ context.Context, r *conclavev1.RevokeByOwnerRequest) (*conclavev1.RevokeByOwnerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for id, s := range f.sessions {
		if s.GetOwner() == r.GetOwner() {
			delete(f.sessions, id)
			n++
		}
	}
	return &conclavev1.RevokeByOwnerResponse{Revoked: n}, nil
}

func TestBenchKeepAlive_AgainstFake(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKeepAlive{fakeSessions: &fakeSessions{sessions: map[uint64]*conclavev1.Session{}}, gone: 5}
	srv := grpc.NewServer()
	conclavev1grpc.RegisterSessionServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\nconclave_raft_is_leader 1\n")
	}))
	t.Cleanup(metrics.Close)

	cfg := benchKeepAliveConfig{
		benchLoad: benchLoad{endpoints: []string{lis.Addr().String()}, timeout: 5 * time.Second,
			clients: 4, conns: 2, duration: 100 * time.Millisecond},
		sessions: 40, ttl: 60 * time.Millisecond, streams: 3,
		metrics: []string{strings.TrimPrefix(metrics.URL, "http://")},
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := runBenchKeepAlive(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every slot falls due inside the measured phase (it lasts longer than TTL/3), so
	// session 5 is found lost exactly once, and every other keep-alive is answered.
	if res.Lost != 1 || res.Errors != 0 || res.Unanswered != 0 || res.Sent == 0 || res.Answered < res.Sent-1 || res.Answered > res.Sent {
		t.Fatalf("result = %+v: want one session lost and the rest answered", res)
	}
	if res.Revoked != 39 || res.RevokeError != "" || f.count() != 0 {
		t.Fatalf("revoked %d (%s), %d left: want the 39 sessions still alive revoked", res.Revoked, res.RevokeError, f.count())
	}
	if len(res.Nodes) != 1 || res.Nodes[0].Err != "" || res.Nodes[0].role() != "leader" {
		t.Fatalf("nodes = %+v", res.Nodes)
	}
	var buf strings.Builder
	if err := printKeepAliveTable(&buf, res); err != nil || !strings.Contains(buf.String(), "lost sessions:") {
		t.Fatalf("table %q, %v", buf.String(), err)
	}
	buf.Reset()
	if err := printKeepAliveJSON(&buf, res); err != nil || !strings.Contains(buf.String(), `"lost": 1`) {
		t.Fatalf("json %q, %v", buf.String(), err)
	}
}

func TestBenchKeepAliveConfig_Validate(t *testing.T) {
	ok := benchKeepAliveConfig{benchLoad: benchLoad{clients: 1, conns: 1, duration: time.Second},
		sessions: 10, ttl: 30 * time.Second, streams: 10, metrics: []string{"127.0.0.1:7201"}}
	tests := []struct {
		name    string
		change  func(*benchKeepAliveConfig)
		wantErr string
	}{
		{"valid", func(*benchKeepAliveConfig) {}, ""},
		{"no sessions", func(c *benchKeepAliveConfig) { c.sessions = 0 }, "--sessions"},
		{"ttl too short", func(c *benchKeepAliveConfig) { c.ttl = time.Millisecond }, "--ttl"},
		{"no create clients", func(c *benchKeepAliveConfig) { c.clients = 0 }, "--create-clients"},
		{"no streams", func(c *benchKeepAliveConfig) { c.streams = 0 }, "--streams"},
		{"more streams than sessions", func(c *benchKeepAliveConfig) { c.streams = 11 }, "--streams"},
		{"no conns", func(c *benchKeepAliveConfig) { c.conns = 0 }, "--conns"},
		{"no duration", func(c *benchKeepAliveConfig) { c.duration = 0 }, "--duration"},
		{"metrics without port", func(c *benchKeepAliveConfig) { c.metrics = []string{"localhost"} }, "--metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			err := c.validate()
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("validate() = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestCLI_BenchKeepAliveRejectsBadFlags(t *testing.T) {
	code, _, errOut := runCLI("bench", "keepalive", "--sessions", "5", "--streams", "6", "--endpoints", "127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "--streams 6") {
		t.Fatalf("exit %d, stderr %q: want a --streams error", code, errOut)
	}
}
