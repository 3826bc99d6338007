package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// benchLockConfig is a `conclave bench lock` run.
type benchLockConfig struct {
	benchLoad
	locks int // distinct lock names, shared round robin by the clients
}

func newBenchLockCmd(o *clientOptions) *cobra.Command {
	cfg := benchLockConfig{}
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Acquire and release locks with concurrent clients",
		Long: `Each of --clients goroutines creates a session (not measured), then acquires a lock
(waiting server-side, FIFO) and releases it, back to back, over --locks lock names
shared round robin. One acquire+release cycle is measured. With --locks 1 every cycle
is a contended handover; with --locks equal to --clients no client ever waits.`,
		Args: cobra.NoArgs,
		RunE: benchRunE(o, &cfg.benchLoad, func() error {
			if cfg.locks < 1 {
				return fmt.Errorf("--locks: must be at least 1")
			}
			return cfg.validate()
		}, func(ctx context.Context) (benchResult, error) { return runBenchLock(ctx, cfg) }),
	}
	fs := cmd.Flags()
	cfg.addFlags(fs, 16)
	fs.IntVar(&cfg.locks, "locks", 1, "distinct lock names")
	return cmd
}

func runBenchLock(ctx context.Context, cfg benchLockConfig) (benchResult, error) {
	conns, err := dialBench(ctx, cfg.benchLoad)
	if err != nil {
		return benchResult{}, err
	}
	defer closeBench(conns)
	// Sessions outlive the run without keep-alives.
	ttl := cfg.duration + time.Minute
	sessions := make([]uint64, cfg.clients)
	for i := range sessions {
		sc := conclavev1grpc.NewSessionServiceClient(conns[i%len(conns)])
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := sc.CreateSession(cctx, &conclavev1.CreateSessionRequest{TtlMs: ttl.Milliseconds(), Owner: "bench"})
		cancel()
		if err != nil {
			return benchResult{}, fmt.Errorf("bench: create session: %w", err)
		}
		sessions[i] = resp.GetId()
	}
	defer func() {
		for i, id := range sessions {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = conclavev1grpc.NewSessionServiceClient(conns[i%len(conns)]).RevokeSession(cctx, &conclavev1.RevokeSessionRequest{Id: id})
			cancel()
		}
	}()
	res, err := runLoad(ctx, cfg.benchLoad, func(i int) benchOp {
		lc := conclavev1grpc.NewLockServiceClient(conns[i%len(conns)])
		acquire := &conclavev1.AcquireRequest{Name: fmt.Sprintf("bench/lock/%d", i%cfg.locks), SessionId: sessions[i], WaitTimeoutMs: cfg.timeout.Milliseconds()}
		return func(ctx context.Context) error {
			got, err := lc.Acquire(ctx, acquire)
			if err != nil {
				return err
			}
			_, err = lc.Release(ctx, &conclavev1.ReleaseRequest{Name: acquire.GetName(), Token: got.GetToken()})
			return err
		}
	})
	res.Op, res.Unit = fmt.Sprintf("acquire+release over %d locks", cfg.locks), "cycles"
	return res, err
}
