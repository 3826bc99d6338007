package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/conclave-dev/conclave/cluster/chaos"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// chaosZsetMembers are the members of every leaderboard key: few, so that ZsetModel
// stays quick and Tops often meet equal scores.
var chaosZsetMembers = []string{"amy", "bob", "cy"}

// addBoards gives the workload n sorted-set (leaderboard) keys, zset/0 … zset/n-1 (none
// when n ≤ 0: no sorted-set operations).
func (w *workload) addBoards(n int) {
	for i := range n {
		w.boards = append(w.boards, fmt.Sprintf("zset/%d", i))
	}
}

// zsetStep runs one sorted-set operation of client id on a random board key: half of
// them an IncrementScore of 1 to 3 on a random member, one in five a linearizable Score,
// one in four a linearizable Top of 1 to all members, one in twenty a Remove. A write
// carries a request id and, created by it, the set breaks ties by member
// (TIE_BREAK_LEX). A write that fails is asked once more with the same request id
// through other, the next node: the state machine answers a known id with its first
// result, so an answer is the one effect, made between the first call and that answer.
// When neither answers and one may have reached the log, the outcome is unknown. A read
// that fails changed nothing and is left out. Every call has its own deadline of
// w.opTimeout.
func (w *workload) zsetStep(own, other conclavev1grpc.SortedSetServiceClient, id, seq int, rng *rand.Rand) {
	key := w.boards[rng.IntN(len(w.boards))]
	member := chaosZsetMembers[rng.IntN(len(chaosZsetMembers))]
	reqID := fmt.Sprintf("chaos-zs-%d-%d", id, seq)
	switch p := rng.IntN(20); {
	case p < 10:
		delta := int64(1 + rng.IntN(3))
		req := &conclavev1.IncrementScoreRequest{Key: []byte(key), Member: member, Delta: float64(delta),
			TieBreak: conclavev1.TieBreak_TIE_BREAK_LEX, RequestId: reqID}
		pend := w.rec.Call(id, chaos.Input{Op: chaos.OpZsetIncrement, Key: key, Value: member, Delta: delta})
		w.zsetWrite(pend, key, []conclavev1grpc.SortedSetServiceClient{own, other}, func(ctx context.Context, zs conclavev1grpc.SortedSetServiceClient) (chaos.Output, error) {
			resp, err := zs.IncrementScore(ctx, req)
			if err != nil {
				return chaos.Output{}, err
			}
			return chaos.Output{Counter: w.zsetScore(key, member, resp.GetScore())}, nil
		})
	case p < 14:
		ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
		defer cancel()
		pend := w.rec.Call(id, chaos.Input{Op: chaos.OpZsetScore, Key: key, Value: member})
		resp, err := own.Score(ctx, &conclavev1.ScoreRequest{Key: []byte(key), Member: member, Consistency: conclavev1.Consistency_CONSISTENCY_LINEARIZABLE})
		if err != nil {
			w.zsetReadFailed(pend, key, err)
			return
		}
		pend.Return(chaos.Output{Found: resp.GetFound(), Counter: w.zsetScore(key, member, resp.GetScore())})
	case p < 19:
		ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
		defer cancel()
		w.zsetTop(ctx, own, id, key, 1+rng.IntN(len(chaosZsetMembers)))
	default:
		req := &conclavev1.SortedSetServiceRemoveRequest{Key: []byte(key), Members: []string{member}, RequestId: reqID}
		pend := w.rec.Call(id, chaos.Input{Op: chaos.OpZsetRemove, Key: key, Value: member})
		w.zsetWrite(pend, key, []conclavev1grpc.SortedSetServiceClient{own, other}, func(ctx context.Context, zs conclavev1grpc.SortedSetServiceClient) (chaos.Output, error) {
			resp, err := zs.Remove(ctx, req)
			if err != nil {
				return chaos.Output{}, err
			}
			if resp.GetRemoved() > 1 {
				w.zsetProblem("Remove of one member of %s removed %d", key, resp.GetRemoved())
			}
			return chaos.Output{Found: resp.GetRemoved() > 0}, nil
		})
	}
}

// zsetWrite calls write through each client in turn until one answers, and records the
// answer, an unknown outcome, or nothing (refused before the log every time).
func (w *workload) zsetWrite(pend *chaos.Pending, key string, via []conclavev1grpc.SortedSetServiceClient,
	write func(context.Context, conclavev1grpc.SortedSetServiceClient) (chaos.Output, error)) {
	if invalid := retryWrite(w, pend, via, &w.zsetRetried, write); invalid != nil {
		w.zsetProblem("sorted-set write on %s refused as invalid: %v", key, invalid)
	}
}

// zsetReadFailed leaves a failed read out of the history; one refused as invalid is a
// problem.
func (w *workload) zsetReadFailed(pend *chaos.Pending, key string, err error) {
	pend.Discard()
	if status.Code(err) == codes.InvalidArgument {
		w.zsetProblem("sorted-set read of %s refused as invalid: %v", key, err)
	}
}

// zsetTop records a linearizable Top of count members of key through zs and reports
// whether it succeeded; a failed Top changed nothing and is left out.
func (w *workload) zsetTop(ctx context.Context, zs conclavev1grpc.SortedSetServiceClient, id int, key string, count int) bool {
	pend := w.rec.Call(id, chaos.Input{Op: chaos.OpZsetTop, Key: key, Limit: uint64(count)})
	resp, err := zs.Top(ctx, &conclavev1.TopRequest{Key: []byte(key), Count: int64(count), Consistency: conclavev1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		w.zsetReadFailed(pend, key, err)
		return false
	}
	entries := make([]chaos.ZsetEntry, 0, len(resp.GetMembers()))
	for _, m := range resp.GetMembers() {
		entries = append(entries, chaos.ZsetEntry{Member: m.GetMember(), Score: w.zsetScore(key, m.GetMember(), m.GetScore())})
	}
	pend.Return(chaos.ZsetTopOutput(entries))
	return true
}

// zsetScore is score as the integer every score of the workload is (sums of integer
// deltas); another is recorded as a problem.
func (w *workload) zsetScore(key, member string, score float64) int64 {
	if score != math.Trunc(score) || math.Abs(score) > 1<<53 {
		w.zsetProblem("score of %s in %s is %v, not a sum of the workload's integer deltas", member, key, score)
	}
	return int64(score)
}

// zsetProblem records a sorted-set answer that is wrong whatever the history, to count
// as a violation; repeats of one message are recorded once.
func (w *workload) zsetProblem(format string, args ...any) {
	w.problem(&w.zsetProblems, format, args...)
}

// zsetProblemsSeen returns the malformed or refused sorted-set answers seen.
func (w *workload) zsetProblemsSeen() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.zsetProblems)
}

// zsetSummary counts a history's sorted-set operations per key by kind and outcome, for
// the run's report.
func (w *workload) zsetSummary(ops []porcupine.Operation) string {
	type counts struct{ incr, incrUnknown, scores, tops, removes, removeUnknown int }
	per := map[string]*counts{}
	for _, op := range ops {
		in, out := op.Input.(chaos.Input), op.Output.(chaos.Output)
		c := per[in.Key]
		if c == nil {
			c = &counts{}
			per[in.Key] = c
		}
		switch in.Op {
		case chaos.OpZsetIncrement:
			c.incr++
			if out.Unknown {
				c.incrUnknown++
			}
		case chaos.OpZsetScore:
			c.scores++
		case chaos.OpZsetTop:
			c.tops++
		case chaos.OpZsetRemove:
			c.removes++
			if out.Unknown {
				c.removeUnknown++
			}
		}
	}
	var parts []string
	for _, key := range w.boards {
		c := per[key]
		if c == nil {
			c = &counts{}
		}
		parts = append(parts, fmt.Sprintf("%s increments=%d (unknown=%d), scores=%d, tops=%d, removes=%d (unknown=%d)",
			key, c.incr, c.incrUnknown, c.scores, c.tops, c.removes, c.removeUnknown))
	}
	w.mu.Lock()
	retried := w.zsetRetried
	w.mu.Unlock()
	return fmt.Sprintf("%s; answered on a retry with the same request id=%d", strings.Join(parts, "; "), retried)
}
