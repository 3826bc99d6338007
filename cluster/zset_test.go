package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// TestZset_ExactTotalsAndRanksAcrossFailover: clients on all three nodes increment the
// scores of a leaderboard while the leader is killed. Every IncrementScore carries a
// request id and is retried with it until answered, so each is applied exactly once:
// every member ends with exactly the sum of its deltas, and after the old leader comes
// back every node reports the same ranks, matching the totals.
func TestZset_ExactTotalsAndRanksAcrossFailover(t *testing.T) {
	const (
		clients = 6
		perCli  = 100
		members = 12
	)
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	key := []byte("board")

	var (
		mu       sync.Mutex
		want     = map[string]float64{}
		answered atomic.Int64
		killed   atomic.Bool
		nodesMu  sync.RWMutex // the leader is stopped while clients pick nodes
	)
	incr := func(node int, id, member string, delta float64) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		nodesMu.RLock()
		tn := c.nodes[node]
		up := tn.srv != nil
		nodesMu.RUnlock()
		if !up {
			return fmt.Errorf("%s is down", tn.cfg.ID)
		}
		res, err := tn.node.Apply(ctx, &fsmv1.Command{RequestId: id, Op: &fsmv1.Command_ZsetIncrement{ZsetIncrement: &conclavev1.IncrementScoreRequest{
			Key: key, Member: member, Delta: delta, TieBreak: conclavev1.TieBreak_TIE_BREAK_ARRIVAL,
		}}})
		if err != nil {
			return err
		}
		if err := fsm.ErrorFromProto(res.GetError()); err != nil {
			t.Errorf("increment: %v", err)
		}
		return nil
	}
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Go(func() {
			for i := range perCli {
				id := fmt.Sprintf("c%d-%d", cl, i)
				member := fmt.Sprintf("player-%02d", (cl*7+i*5)%members)
				delta := float64(1 + (cl+i)%5)
				deadline := time.Now().Add(60 * time.Second)
				for attempt := 0; ; attempt++ {
					err := incr((cl+attempt)%3, id, member, delta)
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("request %s: no answer: %v", id, err)
						return
					}
					time.Sleep(20 * time.Millisecond) // back off between retries, as a client does
				}
				mu.Lock()
				want[member] += delta
				mu.Unlock()
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

	// The expected board: by total, highest first; ties by the order of arrival, which
	// only the log knows, so ties are compared as sets of members below.
	var boards []string
	for _, tn := range c.nodes {
		var got []*conclavev1.RankedMember
		_, err := tn.node.Read(context.Background(), conclavev1.Consistency_CONSISTENCY_STALE, func(v *fsm.View) {
			r, err := v.ZsetRange(&conclavev1.RangeRequest{Key: key, Reverse: true, RankMode: conclavev1.RankMode_RANK_MODE_COMPETITION})
			if err != nil {
				t.Fatal(err)
			}
			got = r.GetMembers()
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d members, want %d", tn.cfg.ID, len(got), len(want))
		}
		var line []string
		for _, m := range got {
			if m.GetScore() != want[m.GetMember()] {
				t.Errorf("%s: %s has %v, the acknowledged increments sum to %v", tn.cfg.ID, m.GetMember(), m.GetScore(), want[m.GetMember()])
			}
			better := 0
			for _, total := range want {
				if total > m.GetScore() {
					better++
				}
			}
			if m.GetRank() != int64(better) {
				t.Errorf("%s: %s ranks %d, %d members have more", tn.cfg.ID, m.GetMember(), m.GetRank(), better)
			}
			line = append(line, fmt.Sprintf("%s=%v@%d", m.GetMember(), m.GetScore(), m.GetRank()))
		}
		boards = append(boards, strings.Join(line, " "))
	}
	if len(slices.Compact(slices.Clone(boards))) != 1 {
		t.Fatalf("nodes disagree:\n%s", strings.Join(boards, "\n"))
	}
	t.Logf("board: %s", boards[0])
}
