package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/conclave-dev/conclave/cluster/chaos"
	"github.com/conclave-dev/conclave/fsm"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
	"github.com/conclave-dev/conclave/server"
)

// chaosLimitPeriodMs is the window of the workload's FIXED_WINDOW limiters: the longest
// period a policy may have, ten 365-day years (the server's bound; the state machine's
// is ten 366-day years). Windows are aligned to the unix epoch, so a run crosses a
// boundary only at a multiple of it (the next is on 2029-12-17); the verdicts'
// reset_after tell if one did (limitSkips), and RateLimitModel, which never forgets,
// checks only histories within one window.
const chaosLimitPeriodMs = min(server.MaxTTLMs, fsm.MaxPolicyPeriodMs)

// chaosWindowSlack is how far apart the window ends read from two verdicts of one key
// (receipt time + reset_after) may be and still be the same window: far more than
// latency and the nodes' clock differences, far less than a window.
const chaosWindowSlack = time.Hour

// chaosLimits returns the limit of each of n rate-limiter keys for a run of o: key i
// reaches its limit (i+1)/(n+1) of the way through the run at half of --rate — what
// the harness reaches here, every write waiting for fsync — so that each key sees both
// allowed and denied verdicts. A rate-limit step is one in four of the steps that are
// not lock steps; three in four of them are Checks, of mean cost 9/8.
func chaosLimits(o chaosOptions) []uint64 {
	if o.limiters <= 0 {
		return nil
	}
	share := 0.25
	if o.locks > 0 {
		share *= 0.8
	}
	hits := float64(o.rate) / 2 * o.duration.Seconds() * share * 0.75 * 9 / 8 / float64(o.limiters)
	limits := make([]uint64, o.limiters)
	for i := range limits {
		limits[i] = max(uint64(hits*float64(i+1)/float64(o.limiters+1)), 10)
	}
	return limits
}

// limitWindow is the range of window ends (unix ms) a key's verdicts implied.
type limitWindow struct{ lo, hi int64 }

// limitKey is key as one key of a Check or Peek under the workload's inline policy.
func limitKey(key string, limit, cost uint64) []*conclavev1.RateLimitKey {
	return []*conclavev1.RateLimitKey{{Key: key, Cost: cost, Limit: &conclavev1.RateLimitKey_Inline{Inline: &conclavev1.RateLimitPolicy{
		Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW, Limit: limit, PeriodMs: chaosLimitPeriodMs}}}}
}

// limitStep runs one rate-limit operation of client id on a random limiter key: one in
// four a linearizable Peek of cost 1 through own, otherwise a Check (cost 2 one time in
// eight, else 1) with a request id. A Check that fails is asked once more with the same
// request id through other, the next node: the state machine answers a known id with
// its first verdict, so an answer is the one decision, made between the first call and
// that answer. When neither answers and one may have reached the log, the outcome is
// unknown. Every call has its own deadline of w.opTimeout.
func (w *workload) limitStep(own, other conclavev1grpc.RateLimitServiceClient, id, seq int, rng *rand.Rand) {
	i := rng.IntN(len(w.limiters))
	if rng.IntN(4) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
		defer cancel()
		w.peekLimit(ctx, own, id, i)
		return
	}
	key, limit, cost := w.limiters[i], w.limits[i], uint64(1)
	if rng.IntN(8) == 0 {
		cost = 2
	}
	req := &conclavev1.CheckRequest{Keys: limitKey(key, limit, cost), RequestId: fmt.Sprintf("chaos-rl-%d-%d", id, seq)}
	pend := w.rec.Call(id, chaos.Input{Op: chaos.OpLimitCheck, Key: key, Limit: limit, Cost: cost})
	via := []conclavev1grpc.RateLimitServiceClient{own, other}
	invalid := retryWrite(w, pend, via, &w.limitRetried, func(ctx context.Context, rl conclavev1grpc.RateLimitServiceClient) (chaos.Output, error) {
		resp, err := rl.Check(ctx, req)
		if err != nil {
			return chaos.Output{}, err
		}
		return w.limitVerdict(key, limit, resp.GetAllowed(), resp.GetVerdicts()), nil
	})
	if invalid != nil {
		w.limitProblem("rate-limit Check on %s (limit %d, cost %d) refused as invalid: %v", key, limit, cost, invalid)
	}
}

// retryWrite calls write through each client in turn until one answers, and records the
// answer, an unknown outcome, or nothing (refused before the log every time); an answer
// on a retry counts in *retried. A write refused as invalid is left out and its error
// returned, for the caller to record as a problem.
func retryWrite[C any](w *workload, pend *chaos.Pending, via []C, retried *int,
	write func(context.Context, C) (chaos.Output, error)) (invalid error) {
	mayHaveApplied := false
	for attempt, c := range via {
		ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
		out, err := write(ctx, c)
		cancel()
		if err == nil {
			pend.Return(out)
			if attempt > 0 {
				w.mu.Lock()
				*retried++
				w.mu.Unlock()
			}
			return nil
		}
		if status.Code(err) == codes.InvalidArgument {
			pend.Discard() // refused before the log
			return err
		}
		mayHaveApplied = mayHaveApplied || !refused(err)
	}
	if mayHaveApplied {
		pend.Unknown()
	} else {
		pend.Discard() // refused every time before the log: no effect
	}
	return nil
}

// peekLimit records a linearizable Peek of cost 1 on limiter key i through rl and
// reports whether it succeeded; a failed Peek changed nothing and is left out.
func (w *workload) peekLimit(ctx context.Context, rl conclavev1grpc.RateLimitServiceClient, id, i int) bool {
	key, limit := w.limiters[i], w.limits[i]
	pend := w.rec.Call(id, chaos.Input{Op: chaos.OpLimitPeek, Key: key, Limit: limit})
	resp, err := rl.Peek(ctx, &conclavev1.PeekRequest{Keys: limitKey(key, limit, 1), Consistency: conclavev1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		pend.Discard()
		if status.Code(err) == codes.InvalidArgument {
			w.limitProblem("rate-limit Peek of %s refused as invalid: %v", key, err)
		}
		return false
	}
	pend.Return(w.limitVerdict(key, limit, resp.GetAllowed(), resp.GetVerdicts()))
	return true
}

// limitProblem records a rate-limit answer that is wrong whatever the history, to count
// as a violation; repeats of one message are recorded once.
func (w *workload) limitProblem(format string, args ...any) {
	w.problem(&w.limitProblems, format, args...)
}

// problem records a message in list once, however often it repeats.
func (w *workload) problem(list *[]string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Contains(*list, msg) {
		*list = append(*list, msg)
	}
}

// limitVerdict is the model's output for an answer on key: the overall allowed and the
// key's remaining. It notes the window end the verdict implies, and records a problem
// when the answer is not one verdict for key under limit that agrees with allowed.
func (w *workload) limitVerdict(key string, limit uint64, allowed bool, verdicts []*conclavev1.KeyVerdict) chaos.Output {
	now := time.Now().UnixMilli()
	if len(verdicts) != 1 || verdicts[0].GetKey() != key || verdicts[0].GetLimit() != limit || verdicts[0].GetAllowed() != allowed {
		w.limitProblem("rate-limit answer on %s (limit %d, allowed %t) has verdicts %v", key, limit, allowed, verdicts)
		return chaos.Output{OK: allowed}
	}
	v := verdicts[0]
	w.mu.Lock()
	defer w.mu.Unlock()
	end := now + v.GetResetAfterMs()
	if win, ok := w.limitWindows[key]; ok {
		win.lo, win.hi = min(win.lo, end), max(win.hi, end)
	} else {
		w.limitWindows[key] = &limitWindow{end, end}
	}
	return chaos.Output{OK: allowed, Remaining: v.GetRemaining()}
}

// limitSkips returns the limiter keys whose verdicts came from more than one window,
// each with the reason: RateLimitModel cannot judge their histories.
func (w *workload) limitSkips() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	for key, win := range w.limitWindows {
		if time.Duration(win.hi-win.lo)*time.Millisecond > chaosWindowSlack {
			out[key] = fmt.Sprintf("its verdicts' reset_after put the window's end between %s and %s: the run crossed a window boundary",
				time.UnixMilli(win.lo).UTC().Format(time.RFC3339), time.UnixMilli(win.hi).UTC().Format(time.RFC3339))
		}
	}
	return out
}

// limitSummary counts a history's rate-limit operations per key by outcome, for the
// run's report.
func (w *workload) limitSummary(ops []porcupine.Operation) string {
	type counts struct{ allowed, denied, unknown, peeks int }
	per := map[string]*counts{}
	for _, op := range ops {
		in, out := op.Input.(chaos.Input), op.Output.(chaos.Output)
		c := per[in.Key]
		if c == nil {
			c = &counts{}
			per[in.Key] = c
		}
		switch {
		case in.Op == chaos.OpLimitPeek:
			c.peeks++
		case out.Unknown:
			c.unknown++
		case out.OK:
			c.allowed++
		default:
			c.denied++
		}
	}
	var parts []string
	for i, key := range w.limiters {
		c := per[key]
		if c == nil {
			c = &counts{}
		}
		parts = append(parts, fmt.Sprintf("%s (limit %d) check allowed=%d denied=%d unknown=%d, peek=%d",
			key, w.limits[i], c.allowed, c.denied, c.unknown, c.peeks))
	}
	w.mu.Lock()
	retried := w.limitRetried
	w.mu.Unlock()
	return fmt.Sprintf("%s; answered on a retry with the same request id=%d", strings.Join(parts, "; "), retried)
}

// limitCheckPlan returns the limiter keys to leave out of the check, those whose
// verdicts crossed a window boundary (saying each), and the malformed answers seen, to
// count as violations.
func (w *workload) limitCheckPlan(say func(string, ...any)) (drop map[string]bool, problems []string) {
	skips := w.limitSkips()
	keys := make([]string, 0, len(skips))
	for key := range skips {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	drop = map[string]bool{}
	for _, key := range keys {
		drop[key] = true
		say("rate-limit history of %s skipped, not checked: %s", key, skips[key])
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return drop, slices.Clone(w.limitProblems)
}
