package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// nextLeader reads observations until one satisfies want, or fails after timeout.
func nextLeader(t *testing.T, ch <-chan *conclavev1.Leadership, timeout time.Duration, what string, want func(*conclavev1.Leadership) bool) *conclavev1.Leadership {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("observe ended while waiting for %s", what)
			}
			if want(l) {
				return l
			}
		case <-deadline.C:
			t.Fatalf("not observed within %v: %s", timeout, what)
		}
	}
}

// TestE2E_ElectionSurvivesFailover: a leader elected through one node keeps its
// leadership (and its session) while the raft leader is killed, observers on every node
// follow each change, the next candidate is elected with a larger token when it resigns,
// and the old token is fenced off.
func TestE2E_ElectionSurvivesFailover(t *testing.T) {
	c := startE2ECluster(t)
	raftLeader := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	newSession := func() *client.Session {
		// Longer than a failover can take (an election may need two rounds): the client
		// only trusts a session it renewed within its TTL.
		s, err := c.client(c.endpoints()...).NewSession(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	}
	sa, sb := newSession(), newSession()
	ea, eb := client.NewElection(sa, "primary"), client.NewElection(sb, "primary")
	if err := ea.Campaign(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	tokenA := ea.Token()

	obs := client.ObserveElection(ctx, c.client(c.endpoints()...), "primary")
	nextLeader(t, obs, time.Minute, "leader a", func(l *conclavev1.Leadership) bool { return l.GetToken() == tokenA })

	elected := make(chan error, 1)
	go func() { elected <- eb.Campaign(ctx, []byte("b")) }()

	c.kill(raftLeader)
	c.leader() // a new raft leader
	// The leadership and its session survived: the leader can still proclaim.
	poll(t, time.Minute, func() error { return ea.Proclaim(ctx, []byte("a2")) })
	nextLeader(t, obs, time.Minute, "value a2", func(l *conclavev1.Leadership) bool {
		return l.GetToken() == tokenA && string(l.GetValue()) == "a2"
	})
	if sa.Err() != nil {
		t.Fatalf("the leader's session was lost in the failover: %v", sa.Err())
	}

	if err := ea.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-elected; err != nil {
		t.Fatalf("second candidate: %v", err)
	}
	if eb.Token() <= tokenA {
		t.Fatalf("second leader's token %d, want above %d", eb.Token(), tokenA)
	}
	nextLeader(t, obs, time.Minute, "leader b", func(l *conclavev1.Leadership) bool {
		return l.GetToken() == eb.Token() && string(l.GetValue()) == "b"
	})
	_, err := c.client(c.endpoints()...).KV().Set(ctx, &conclavev1.SetRequest{Key: []byte("config"), Value: []byte("x"),
		Fence: &conclavev1.Fence{Lock: "primary", Token: tokenA}})
	if !errors.Is(err, client.ErrFenceStale) {
		t.Fatalf("write fenced by the resigned leader's token: %v, want ErrFenceStale", err)
	}
	if err := ea.Proclaim(ctx, []byte("x")); err == nil {
		t.Fatal("a resigned Election proclaimed")
	}

	// The CLI sees the same leader, and refuses the old token.
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	code, out, errOut := runCLI("election", "leader", "primary", eps)
	if code != 0 || !strings.Contains(out, strconv.FormatUint(eb.Token(), 10)) || !strings.Contains(out, "b") {
		t.Fatalf("election leader: exit %d, %q %q", code, out, errOut)
	}
	code, _, errOut = runCLI("election", "proclaim", "primary", strconv.FormatUint(tokenA, 10), "x", eps)
	if code == 0 || !strings.Contains(errOut, "fencing token") {
		t.Fatalf("election proclaim with a resigned token: exit %d, %q", code, errOut)
	}
	if code, out, errOut = runCLI("election", "proclaim", "primary", strconv.FormatUint(eb.Token(), 10), "b2", eps); code != 0 || out != "OK\n" {
		t.Fatalf("election proclaim: exit %d, %q %q", code, out, errOut)
	}

	// A semaphore of two over the same cluster.
	s1, s2, s3 := newSession(), newSession(), newSession()
	sem := []*client.Semaphore{client.NewSemaphore(s1, "pool", 2), client.NewSemaphore(s2, "pool", 2), client.NewSemaphore(s3, "pool", 2)}
	for i, want := range []bool{true, true, false} {
		if got, err := sem[i].TryAcquire(ctx); err != nil || got != want {
			t.Fatalf("semaphore holder %d: TryAcquire = %v, %v; want %v", i, got, err, want)
		}
	}
	if err := sem[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sem[2].Acquire(ctx); err != nil {
		t.Fatalf("acquire after a release: %v", err)
	}
	in, err := c.client(c.endpoints()...).Locks().Inspect(ctx, &conclavev1.InspectRequest{Name: "pool"})
	if err != nil || len(in.GetHolders()) != 2 || in.GetLimit() != 2 {
		t.Fatalf("inspect pool: %v, %v", in, err)
	}
	t.Logf("leader tokens %d then %d", tokenA, eb.Token())
}
