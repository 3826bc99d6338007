package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

func TestElection_CampaignProclaimObserveResign(t *testing.T) {
	ts := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sc := conclavev1grpc.NewSessionServiceClient(ts.conn)
	ec := conclavev1grpc.NewElectionServiceClient(ts.conn)
	var sessions [2]uint64
	for i := range sessions {
		s, err := sc.CreateSession(ctx, &conclavev1.CreateSessionRequest{})
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = s.GetId()
	}

	obs, err := ec.Observe(ctx, &conclavev1.ObserveRequest{Name: "primary"})
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string) *conclavev1.Leadership {
		t.Helper()
		resp, err := obs.Recv()
		if err != nil {
			t.Fatalf("observe, waiting for %s: %v", what, err)
		}
		return resp.GetLeader()
	}
	if l := next("the first answer"); l != nil {
		t.Fatalf("observe before any campaign: %v, want no leader", l)
	}

	first, err := ec.Campaign(ctx, &conclavev1.CampaignRequest{Name: "primary", SessionId: sessions[0], Value: []byte("10.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	l1 := first.GetLeader()
	if l1.GetSessionId() != sessions[0] || l1.GetToken() == 0 || string(l1.GetValue()) != "10.0.0.1" || l1.GetRevision() != l1.GetToken() {
		t.Fatalf("campaign answered %v", l1)
	}
	if l := next("the first leader"); l.GetToken() != l1.GetToken() || string(l.GetValue()) != "10.0.0.1" {
		t.Fatalf("observed %v, want %v", l, l1)
	}

	// A second candidate waits; with a wait timeout it gives up and is withdrawn.
	_, err = ec.Campaign(ctx, &conclavev1.CampaignRequest{Name: "primary", SessionId: sessions[1], WaitTimeoutMs: 50})
	wantCode(t, err, codes.FailedPrecondition, "LOCK_HELD")

	p, err := ec.Proclaim(ctx, &conclavev1.ProclaimRequest{Name: "primary", Token: l1.GetToken(), Value: []byte("10.0.0.9")})
	if err != nil || string(p.GetLeader().GetValue()) != "10.0.0.9" || p.GetLeader().GetRevision() <= l1.GetRevision() {
		t.Fatalf("proclaim: %v, %v", p, err)
	}
	if l := next("the proclaimed value"); string(l.GetValue()) != "10.0.0.9" || l.GetToken() != l1.GetToken() {
		t.Fatalf("observed %v after proclaim", l)
	}

	type result struct {
		resp *conclavev1.CampaignResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := ec.Campaign(ctx, &conclavev1.CampaignRequest{Name: "primary", SessionId: sessions[1], Value: []byte("10.0.0.2")})
		done <- result{r, err}
	}()
	eventually(t, 10*time.Second, "the second candidate queued", func() bool {
		in, err := conclavev1grpc.NewLockServiceClient(ts.conn).Inspect(ctx, &conclavev1.InspectRequest{Name: "primary"})
		return err == nil && len(in.GetWaiters()) == 1
	})
	if _, err := ec.Resign(ctx, &conclavev1.ResignRequest{Name: "primary", Token: l1.GetToken()}); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil || got.resp.GetLeader().GetSessionId() != sessions[1] || got.resp.GetLeader().GetToken() <= l1.GetToken() ||
		string(got.resp.GetLeader().GetValue()) != "10.0.0.2" {
		t.Fatalf("second campaign: %v, %v", got.resp, got.err)
	}
	if l := next("the second leader"); l.GetSessionId() != sessions[1] {
		t.Fatalf("observed %v, want session %d", l, sessions[1])
	}
	lead, err := ec.Leader(ctx, &conclavev1.LeaderRequest{Name: "primary"})
	if err != nil || lead.GetLeader().GetToken() != got.resp.GetLeader().GetToken() {
		t.Fatalf("leader: %v, %v", lead, err)
	}

	// The old leader is fenced off everywhere.
	_, err = ec.Proclaim(ctx, &conclavev1.ProclaimRequest{Name: "primary", Token: l1.GetToken(), Value: []byte("x")})
	wantCode(t, err, codes.Aborted, "FENCE_STALE")
	_, err = ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("config"), Value: []byte("x"), Fence: &conclavev1.Fence{Lock: "primary", Token: l1.GetToken()}})
	wantCode(t, err, codes.Aborted, "FENCE_STALE")

	// The leader's session ends: observers see the election without a leader.
	if _, err := sc.RevokeSession(ctx, &conclavev1.RevokeSessionRequest{Id: sessions[1]}); err != nil {
		t.Fatal(err)
	}
	if l := next("no leader"); l != nil {
		t.Fatalf("observed %v after the leader's session ended, want none", l)
	}
}

func TestElection_BadInput(t *testing.T) {
	ts := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ec := conclavev1grpc.NewElectionServiceClient(ts.conn)
	_, err := ec.Campaign(ctx, &conclavev1.CampaignRequest{Name: "e"})
	wantField(t, err, "session_id")
	_, err = ec.Campaign(ctx, &conclavev1.CampaignRequest{Name: "e", SessionId: 1, WaitTimeoutMs: -1})
	wantField(t, err, "wait_timeout_ms")
	_, err = ec.Campaign(ctx, &conclavev1.CampaignRequest{SessionId: 1})
	wantField(t, err, "name")
	_, err = ec.Proclaim(ctx, &conclavev1.ProclaimRequest{Name: "e"})
	wantField(t, err, "token")
	_, err = ec.Proclaim(ctx, &conclavev1.ProclaimRequest{Name: "e", Token: 1, Value: make([]byte, MaxValueBytes+1)})
	wantField(t, err, "value")
	_, err = ec.Resign(ctx, &conclavev1.ResignRequest{Name: "e"})
	wantField(t, err, "token")
	_, err = ec.Leader(ctx, &conclavev1.LeaderRequest{Name: "e", Consistency: badEnum})
	wantField(t, err, "consistency")
	obs, err := ec.Observe(ctx, &conclavev1.ObserveRequest{})
	if err == nil {
		_, err = obs.Recv()
	}
	wantField(t, err, "name")
	_, err = conclavev1grpc.NewSessionServiceClient(ts.conn).CreateSession(ctx, &conclavev1.CreateSessionRequest{LockDelayMs: MaxLockDelay.Milliseconds() + 1})
	wantField(t, err, "lock_delay_ms")
	if ts.node.applies.Load() != 0 {
		t.Fatalf("bad input reached the node: %d applies", ts.node.applies.Load())
	}
}
