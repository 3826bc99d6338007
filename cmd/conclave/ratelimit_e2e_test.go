package main

import (
	"context"
	"testing"
	"time"

	envoycommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/conclave-dev/conclave/server/envoyrl"
)

// TestE2E_EnvoyLimitsFromTheFirstRequestAfterImport: an import acknowledged through one
// node governs the very next ShouldRateLimit on every other node (the mapping is a
// linearizable read, not the serving node's possibly lagging state), and a kill -9 of
// the leader loses no hit.
func TestE2E_EnvoyLimitsFromTheFirstRequestAfterImport(t *testing.T) {
	c := startE2ECluster(t)
	leader := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := envoyrl.Parse([]byte("domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit:\n      unit: hour\n      requests_per_unit: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envoyrl.Import(ctx, c.client(c.nodes[leader].grpc).RateLimits(), cfg, false); err != nil {
		t.Fatal(err)
	}
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*envoycommon.RateLimitDescriptor{
		{Entries: []*envoycommon.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "10.0.0.1"}}}}}
	ask := func(node int) *rlsv3.RateLimitResponse {
		t.Helper()
		cc, err := grpc.NewClient(c.nodes[node].grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		var resp *rlsv3.RateLimitResponse
		poll(t, time.Minute, func() error { // a node may be electing a leader
			resp, err = rlsv3.NewRateLimitServiceClient(cc).ShouldRateLimit(ctx, req)
			return err
		})
		return resp
	}
	other := (leader + 1) % 3
	first := ask(other)
	if first.GetOverallCode() != rlsv3.RateLimitResponse_OK || first.GetStatuses()[0].GetCurrentLimit() == nil || first.GetStatuses()[0].GetLimitRemaining() != 1 {
		t.Fatalf("first request after the import, on a follower: %v (want limited, 1 remaining)", first)
	}
	c.kill(leader)
	if got := ask((leader + 2) % 3); got.GetOverallCode() != rlsv3.RateLimitResponse_OK || got.GetStatuses()[0].GetLimitRemaining() != 0 {
		t.Fatalf("second request, after the leader was killed: %v (want OK, 0 remaining)", got)
	}
	if got := ask(other); got.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("third request: %v, want OVER_LIMIT", got)
	}
}
