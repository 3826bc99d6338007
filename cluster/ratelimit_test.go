package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// TestRateLimit_ExactlyNPerWindowAcrossFailover: clients on all three nodes hammer one
// key limited to N per fixed window while the leader is killed mid-window. Every Check
// carries a request id and is retried with it until it has an answer, so each is applied
// once: exactly N are admitted in the window, no more, whatever node answered.
func TestRateLimit_ExactlyNPerWindowAcrossFailover(t *testing.T) {
	const (
		n       = 300
		clients = 6
		perCli  = 120 // 720 requests in all: more than n
	)
	// A year-long window: the run stays inside one window unless it straddles a year
	// boundary of the epoch, which the counting below tells apart.
	period := (365 * 24 * time.Hour).Milliseconds()
	policy := &conclavev1.RateLimitPolicy{Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW, Limit: n, PeriodMs: period}
	c := newTestCluster(t, 3)
	leader := c.waitLeader()

	var (
		mu       sync.Mutex
		admitted = map[int64]int{} // by window end, in periods
		answered atomic.Int64
		killed   atomic.Bool
		nodesMu  sync.RWMutex // the leader is stopped while clients pick nodes
	)
	check := func(node int, id string) (*conclavev1.CheckResponse, error) {
		cmd := &fsmv1.Command{RequestId: id, Op: &fsmv1.Command_RateLimitCheck{RateLimitCheck: &conclavev1.CheckRequest{
			Keys: []*conclavev1.RateLimitKey{{Key: "api", Limit: &conclavev1.RateLimitKey_Inline{Inline: policy}}},
		}}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		nodesMu.RLock()
		tn := c.nodes[node]
		up := tn.srv != nil
		nodesMu.RUnlock()
		if !up {
			return nil, fmt.Errorf("%s is down", tn.cfg.ID)
		}
		res, err := tn.node.Apply(ctx, cmd)
		if err != nil {
			return nil, err
		}
		if err := fsm.ErrorFromProto(res.GetError()); err != nil {
			t.Errorf("check: %v", err)
		}
		return res.GetRateLimitCheck(), nil
	}
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Go(func() {
			for i := range perCli {
				id := fmt.Sprintf("c%d-%d", cl, i)
				var resp *conclavev1.CheckResponse
				// Retry with the same request id on the next node until answered.
				deadline := time.Now().Add(60 * time.Second)
				for attempt := 0; resp == nil; attempt++ {
					r, err := check((cl+attempt)%3, id)
					if err != nil {
						if time.Now().After(deadline) {
							t.Errorf("request %s: no answer: %v", id, err)
							return
						}
						time.Sleep(20 * time.Millisecond) // back off between retries, as a client does
						continue
					}
					resp = r
				}
				if resp.GetAllowed() {
					end := time.Now().UnixMilli() + resp.GetVerdicts()[0].GetResetAfterMs()
					mu.Lock()
					admitted[(end+period/2)/period]++
					mu.Unlock()
				}
				// Kill the leader mid-window, once a third of the answers are in.
				if answered.Add(1) == clients*perCli/3 && killed.CompareAndSwap(false, true) {
					nodesMu.Lock()
					c.stop(c.nodes[leader])
					nodesMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if !killed.Load() {
		t.Fatal("the leader was never killed")
	}
	c.restart(leader)
	c.waitConverged()
	total := 0
	for w, got := range admitted {
		total += got
		if got > n {
			t.Errorf("window %d admitted %d, limit %d", w, got, n)
		}
	}
	if len(admitted) == 1 && total != n {
		t.Errorf("admitted %d in one window, want exactly %d (%d requests)", total, n, clients*perCli)
	}
	t.Logf("admitted per window: %v", admitted)
}
