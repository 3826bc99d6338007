package server

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func healthStatus(t *testing.T, ts *testServer, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthpb.NewHealthClient(ts.conn).Check(testContext(t), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetStatus()
}

func TestServer_HealthFollowsLeader(t *testing.T) {
	node := newLocalNode()
	node.leaderKnown.Store(false)
	ts := newTestServerWith(t, node, Config{})
	if got := healthStatus(t, ts, ""); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf(`"" = %v, want SERVING`, got)
	}
	if got := healthStatus(t, ts, kvServiceName); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("%s = %v without a leader, want NOT_SERVING", kvServiceName, got)
	}
	node.leaderKnown.Store(true)
	eventually(t, 10*time.Second, "KVService SERVING", func() bool {
		return healthStatus(t, ts, kvServiceName) == healthpb.HealthCheckResponse_SERVING
	})
	node.leaderKnown.Store(false)
	eventually(t, 10*time.Second, "KVService NOT_SERVING", func() bool {
		return healthStatus(t, ts, kvServiceName) == healthpb.HealthCheckResponse_NOT_SERVING
	})
}

// TestServer_ShutdownEndsStreams checks that Shutdown reports NOT_SERVING and ends an
// open health Watch rather than waiting for it until the graceful timeout.
func TestServer_ShutdownEndsStreams(t *testing.T) {
	ts := newTestServerWith(t, newLocalNode(), Config{ShutdownTimeout: time.Hour})
	ctx := testContext(t)
	w, err := healthpb.NewHealthClient(ts.conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: kvServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := w.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watch update = %v, %v", first, err)
	}
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	for {
		resp, err := w.Recv()
		if err != nil {
			if code := status.Code(err); code != codes.Unavailable {
				t.Fatalf("watch ended with %v, want Unavailable", err)
			}
			break
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("watch update %v during shutdown", resp.GetStatus())
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Shutdown did not return")
	}
	resp, err := ts.srv.health.Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf(`"" after Shutdown = %v, %v`, resp, err)
	}
}

func TestServer_ReflectionListsServices(t *testing.T) {
	ts := newTestServer(t)
	stream, err := reflectionpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"conclave.v1.KVService", "conclave.v1.ClusterService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	stream.CloseSend()
}

func TestServer_PanicIsInternal(t *testing.T) {
	ts := newTestServer(t)
	ts.node.panicApply.Store(true)
	_, err := ts.kv.Set(testContext(t), &conclavev1.SetRequest{Key: []byte("a")})
	if code := status.Code(err); code != codes.Internal {
		t.Fatalf("panicking handler: %v, want Internal", err)
	}
	ts.node.panicApply.Store(false)
	if _, err := ts.kv.Set(testContext(t), &conclavev1.SetRequest{Key: []byte("a")}); err != nil {
		t.Fatalf("server unusable after a panic: %v", err)
	}
}

func TestServer_Metrics(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	_, _ = ts.kv.Get(ctx, &conclavev1.GetRequest{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ts.srv.ServeMetrics(lis) }()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lis.Addr().String()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{
		`conclave_grpc_requests_total{code="OK",method="/conclave.v1.KVService/Set"} 1`,
		`conclave_grpc_requests_total{code="InvalidArgument",method="/conclave.v1.KVService/Get"} 1`,
		`conclave_grpc_request_duration_seconds_count{method="/conclave.v1.KVService/Set"} 1`,
		"conclave_raft_term 1",
		"conclave_raft_applied_index 1",
		"conclave_raft_commit_index 1",
		"conclave_raft_is_leader 1",
		`conclave_raft_state{state="Leader"} 1`,
		`conclave_raft_state{state="Follower"} 0`,
		"conclave_fsm_keys 1",
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeMetrics: %v", err)
	}
}

func TestCluster_RPCs(t *testing.T) {
	ts := newTestServer(t)
	ctx := testContext(t)
	st, err := ts.cluster.Status(ctx, &conclavev1.StatusRequest{})
	if err != nil || st.GetNodeId() != "local" || st.GetRaftState() != "Leader" || st.GetHeader().GetNodeId() != "local" {
		t.Fatalf("Status = %v, %v", st, err)
	}
	join, err := ts.cluster.Join(ctx, &conclavev1.JoinRequest{Id: "n2", RaftAddress: "127.0.0.1:7001", GrpcAddress: "127.0.0.1:8001"})
	if err != nil || len(join.GetMembers()) != 2 || join.GetHeader().GetNodeId() != "local" {
		t.Fatalf("Join = %v, %v", join, err)
	}
	tl, err := ts.cluster.TransferLeadership(ctx, &conclavev1.TransferLeadershipRequest{ToId: "n2"})
	if err != nil || tl.GetLeaderId() != "n2" {
		t.Fatalf("TransferLeadership = %v, %v", tl, err)
	}
	_, err = ts.cluster.TransferLeadership(ctx, &conclavev1.TransferLeadershipRequest{})
	wantCode(t, err, codes.Unavailable, "NO_LEADER")
	rm, err := ts.cluster.Remove(ctx, &conclavev1.RemoveRequest{Id: "n2"})
	if err != nil || len(rm.GetMembers()) != 1 {
		t.Fatalf("Remove = %v, %v", rm, err)
	}
	_, err = ts.cluster.Remove(ctx, &conclavev1.RemoveRequest{Id: "n2"})
	wantCode(t, err, codes.NotFound, "UNKNOWN_MEMBER")
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	snap, err := ts.cluster.Snapshot(ctx, &conclavev1.SnapshotRequest{})
	if err != nil || snap.GetIndex() != 1 {
		t.Fatalf("Snapshot = %v, %v", snap, err)
	}
}
