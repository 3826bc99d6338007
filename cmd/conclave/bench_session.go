package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// benchSessionConfig is a `conclave bench session` run.
type benchSessionConfig struct {
	benchLoad
	ttl   time.Duration // of the sessions created
	owner string
}

func (c benchSessionConfig) validate() error {
	if c.ttl <= 0 {
		return fmt.Errorf("--ttl %v: must be positive", c.ttl)
	}
	return c.benchLoad.validate()
}

// runBenchSession connects and runs the clients, each creating a session and revoking it
// back to back; one measured operation is the whole create+revoke cycle.
func runBenchSession(ctx context.Context, cfg benchSessionConfig) (benchResult, error) {
	conns, err := dialBench(ctx, cfg.benchLoad)
	if err != nil {
		return benchResult{}, err
	}
	defer closeBench(conns)
	res, err := runLoad(ctx, cfg.benchLoad, func(i int) benchOp {
		return sessionCycle(conclavev1grpc.NewSessionServiceClient(conns[i%len(conns)]), cfg.ttl, cfg.owner)
	})
	res.Op, res.Unit = "create+revoke", "cycles"
	return res, err
}

// sessionCycle returns an operation that creates a session and revokes it.
func sessionCycle(sc conclavev1grpc.SessionServiceClient, ttl time.Duration, owner string) benchOp {
	create := &conclavev1.CreateSessionRequest{TtlMs: durationMs(ttl), Owner: owner}
	return func(ctx context.Context) error {
		resp, err := sc.CreateSession(ctx, create)
		if err != nil {
			return err
		}
		if resp.GetId() == 0 {
			return errors.New("bench: CreateSession returned session id 0")
		}
		_, err = sc.RevokeSession(ctx, &conclavev1.RevokeSessionRequest{Id: resp.GetId()})
		return err
	}
}
