package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-dev/conclave/fsm"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// benchRateLimitConfig is a `conclave bench ratelimit` run.
type benchRateLimitConfig struct {
	benchLoad
	keys      int    // distinct limiter keys, shared round robin by the clients
	perCheck  int    // keys named in one Check
	algorithm string // gcra, sliding, fixed
	limit     uint64
	period    time.Duration
}

func newBenchRateLimitCmd(o *clientOptions) *cobra.Command {
	cfg := benchRateLimitConfig{}
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Make rate-limit decisions (Check) with concurrent clients",
		Long: `Each of --clients goroutines sends Check requests back to back, each naming
--per-check keys drawn round robin from --keys limiter keys, with an inline policy of
--algorithm admitting --limit hits per --period (by default 1,000,000 per second, so
decisions, not denials, are measured). One Check is one decision and one raft entry,
whatever its number of keys. A small limit over a long period leaves every key touched
holding state until it refills: a way to fill a cluster with idle limiter keys.`,
		Args: cobra.NoArgs,
		RunE: benchRunE(o, &cfg.benchLoad, func() error {
			if cfg.keys < 1 || cfg.perCheck < 1 || cfg.perCheck > cfg.keys {
				return fmt.Errorf("--keys must be at least 1 and --per-check 1 to --keys")
			}
			if cfg.limit < 1 || cfg.period < time.Millisecond {
				return fmt.Errorf("--limit must be at least 1 and --period at least 1ms")
			}
			if !slices.Contains(benchAlgorithms, cfg.algorithm) {
				return fmt.Errorf("--algorithm %q: want gcra, sliding or fixed", cfg.algorithm)
			}
			return cfg.validate()
		}, func(ctx context.Context) (benchResult, error) { return runBenchRateLimit(ctx, cfg) }),
	}
	fs := cmd.Flags()
	cfg.addFlags(fs, 64)
	fs.IntVar(&cfg.keys, "keys", 10_000, "distinct limiter keys")
	fs.IntVar(&cfg.perCheck, "per-check", 1, "keys in one Check")
	fs.StringVar(&cfg.algorithm, "algorithm", "gcra", "gcra, sliding or fixed")
	fs.Uint64Var(&cfg.limit, "limit", 1_000_000, "hits allowed per --period (a sliding window keeps at most 100,000)")
	fs.DurationVar(&cfg.period, "period", time.Second, "the policy's period")
	return cmd
}

// benchAlgorithms are the --algorithm values the bench takes (rateLimitAlgorithms' names).
var benchAlgorithms = []string{"gcra", "sliding", "fixed"}

func runBenchRateLimit(ctx context.Context, cfg benchRateLimitConfig) (benchResult, error) {
	conns, err := dialBench(ctx, cfg.benchLoad)
	if err != nil {
		return benchResult{}, err
	}
	defer closeBench(conns)
	policy := &conclavev1.RateLimitPolicy{Algorithm: rateLimitAlgorithms[cfg.algorithm], Limit: cfg.limit, PeriodMs: cfg.period.Milliseconds()}
	if cfg.algorithm == "sliding" {
		policy.Limit = min(policy.Limit, fsm.MaxSlidingWindowLimit) // the most a sliding window keeps a log for
	}
	res, err := runLoad(ctx, cfg.benchLoad, func(i int) benchOp {
		rc := conclavev1grpc.NewRateLimitServiceClient(conns[i%len(conns)])
		next := i
		return func(ctx context.Context) error {
			req := &conclavev1.CheckRequest{Keys: make([]*conclavev1.RateLimitKey, cfg.perCheck)}
			for k := range req.Keys {
				req.Keys[k] = &conclavev1.RateLimitKey{Key: fmt.Sprintf("bench/rl/%d", (next+k)%cfg.keys), Limit: &conclavev1.RateLimitKey_Inline{Inline: policy}}
			}
			next += cfg.clients
			_, err := rc.Check(ctx, req)
			return err
		}
	})
	res.Op, res.Unit = fmt.Sprintf("%s Check of %d key(s) over %d keys", cfg.algorithm, cfg.perCheck, cfg.keys), "decisions"
	return res, err
}
