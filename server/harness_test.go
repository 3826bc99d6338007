package server

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// testServer is a Server on an in-process bufconn listener, backed by a localNode.
type testServer struct {
	srv     *Server
	node    *localNode
	conn    *grpc.ClientConn
	kv      conclavev1grpc.KVServiceClient
	cluster conclavev1grpc.ClusterServiceClient
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	return newTestServerWith(t, newLocalNode(), Config{})
}

func newTestServerWith(t *testing.T, node *localNode, cfg Config) *testServer {
	t.Helper()
	return serveTest(t, New(cfg, node, zaptest.NewLogger(t)), node)
}

// serveTest serves srv (built on node) on a bufconn listener and connects a client to it.
// tb's cleanup closes the client and shuts the server down; a *testing.F may own it, so
// a fuzz target can keep one server for all its inputs.
func serveTest(tb testing.TB, srv *Server, node *localNode) *testServer {
	tb.Helper()
	lis := bufconn.Listen(1 << 20)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn.Close()
		if err := srv.Shutdown(context.Background()); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return &testServer{
		srv:     srv,
		node:    node,
		conn:    conn,
		kv:      conclavev1grpc.NewKVServiceClient(conn),
		cluster: conclavev1grpc.NewClusterServiceClient(conn),
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// errorInfo returns the google.rpc.ErrorInfo detail of err, if any.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// badRequest returns the google.rpc.BadRequest detail of err, if any.
func badRequest(err error) *errdetails.BadRequest {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			return br
		}
	}
	return nil
}

// wantCode fails the test unless err is a status with code want and an ErrorInfo with reason.
func wantCode(t *testing.T, err error, want codes.Code, reason string) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
	if reason == "" {
		return
	}
	info := errorInfo(err)
	if info == nil || info.GetReason() != reason || info.GetDomain() != ErrorDomain {
		t.Fatalf("ErrorInfo = %v, want reason %s in domain %s", info, reason, ErrorDomain)
	}
}

var errTest = errors.New("test: something else")

// wantField fails the test unless err is InvalidArgument with a BadRequest naming field.
func wantField(t *testing.T, err error, field string) {
	t.Helper()
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	if br := badRequest(err); br == nil || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != field {
		t.Fatalf("BadRequest = %v (%v), want field %q", br, err, field)
	}
}
