package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
	"github.com/conclave-dev/conclave/server"
)

// Operations of `conclave bench zset`.
const (
	opZsetIncr = "incr"
	opZsetTop  = "top"
)

// zsetPrefillBatch is the most members one prefill Add names (the server's limit).
const zsetPrefillBatch = server.MaxZsetMembers

// benchZsetConfig is a `conclave bench zset` run.
type benchZsetConfig struct {
	benchLoad
	op          string
	key         string
	members     int
	top         int
	consistency string
	seed        uint64
}

func (c benchZsetConfig) validate() error {
	switch c.op {
	case opZsetIncr, opZsetTop:
	default:
		return fmt.Errorf("--op %q: want incr or top", c.op)
	}
	if c.consistency != "linearizable" && c.consistency != "stale" {
		return fmt.Errorf("--consistency %q: want linearizable or stale", c.consistency)
	}
	if err := c.benchLoad.validate(); err != nil {
		return err
	}
	switch {
	case c.key == "":
		return errors.New("--key: must not be empty")
	case c.members < 1:
		return errors.New("--members: must be at least 1")
	case c.top < 1 || c.top > zsetMaxPage:
		return fmt.Errorf("--top: must be 1 to %d", zsetMaxPage)
	}
	return nil
}

func newBenchZsetCmd(o *clientOptions) *cobra.Command {
	cfg := benchZsetConfig{}
	cmd := &cobra.Command{
		Use:   "zset",
		Short: "Load one sorted set, a leaderboard, with concurrent clients",
		Long: `Load one sorted set (--key, emptied first) with --clients goroutines sharing --conns
gRPC connections spread round robin over --endpoints. Calls go straight to the generated
client, without failover or retries, so the numbers are the server's.

--op incr: each call is an IncrementScore (one raft write) of a member drawn uniformly
from --members players: a leaderboard taking points, every write on one hot key.
--op top: the set is first filled with --members members of random scores, then each
call is a Top of --top members, linearizable unless --consistency stale: a leaderboard
being viewed. --timeout bounds each call.`,
		Example: "  conclave bench zset --op incr --duration 10s\n  conclave bench zset --op top --members 100000 --top 10",
		Args:    cobra.NoArgs,
		RunE: benchRunE(o, &cfg.benchLoad, func() error { return cfg.validate() },
			func(ctx context.Context) (benchResult, error) { return runBenchZset(ctx, cfg) }),
	}
	fs := cmd.Flags()
	cfg.addFlags(fs, 64)
	fs.StringVar(&cfg.op, "op", opZsetIncr, "operation: incr or top")
	fs.StringVar(&cfg.key, "key", "bench/zset/board", "the sorted set loaded (deleted before the run)")
	fs.IntVar(&cfg.members, "members", 10_000, "players (incr) or members filled in first (top)")
	fs.IntVar(&cfg.top, "top", 10, "members per Top (top)")
	fs.StringVar(&cfg.consistency, "consistency", "linearizable", "Top's consistency: linearizable or stale")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the members and scores chosen")
	return cmd
}

// runBenchZset connects, empties the set (and fills it for top), runs the clients for the
// configured duration and returns the merged result.
func runBenchZset(ctx context.Context, cfg benchZsetConfig) (benchResult, error) {
	conns, err := dialBench(ctx, cfg.benchLoad)
	if err != nil {
		return benchResult{}, err
	}
	defer closeBench(conns)
	zs := make([]conclavev1grpc.SortedSetServiceClient, len(conns))
	for i, cc := range conns {
		zs[i] = conclavev1grpc.NewSortedSetServiceClient(cc)
	}
	members := make([]string, cfg.members)
	for i := range members {
		members[i] = fmt.Sprintf("player-%07d", i)
	}
	if err := prepareBoard(ctx, cfg, conns[0], zs[0], members); err != nil {
		return benchResult{}, err
	}

	key := []byte(cfg.key)
	cons := consistency(cfg.consistency == "stale")
	res, err := runLoad(ctx, cfg.benchLoad, func(i int) benchOp {
		z, rng := zs[i%len(zs)], rand.New(rand.NewPCG(cfg.seed, uint64(i)))
		if cfg.op == opZsetTop {
			req := &conclavev1.TopRequest{Key: key, Count: int64(cfg.top), Consistency: cons}
			return func(ctx context.Context) error {
				_, err := z.Top(ctx, req)
				return err
			}
		}
		return func(ctx context.Context) error {
			_, err := z.IncrementScore(ctx, &conclavev1.IncrementScoreRequest{Key: key, Member: members[rng.IntN(len(members))], Delta: 1})
			return err
		}
	})
	res.Op = fmt.Sprintf("IncrementScore on one set of %d players", cfg.members)
	if cfg.op == opZsetTop {
		res.Op = fmt.Sprintf("Top %d of one set of %d members", cfg.top, cfg.members)
		res.Consistency = cfg.consistency
	}
	return res, err
}

// prepareBoard deletes the set and, for top, adds every member with a random score, a
// batch per Add.
func prepareBoard(ctx context.Context, cfg benchZsetConfig, conn grpc.ClientConnInterface, z conclavev1grpc.SortedSetServiceClient, members []string) error {
	octx, cancel := context.WithTimeout(ctx, cfg.timeout)
	_, err := conclavev1grpc.NewKVServiceClient(conn).Delete(octx, &conclavev1.DeleteRequest{Keys: [][]byte{[]byte(cfg.key)}})
	cancel()
	if err != nil {
		return fmt.Errorf("bench: emptying %q: %w", cfg.key, err)
	}
	if cfg.op != opZsetTop {
		return nil
	}
	rng := rand.New(rand.NewPCG(cfg.seed, 0))
	for i := 0; i < len(members); i += zsetPrefillBatch {
		req := &conclavev1.AddRequest{Key: []byte(cfg.key)}
		for _, m := range members[i:min(i+zsetPrefillBatch, len(members))] {
			req.Members = append(req.Members, &conclavev1.ScoredMember{Member: m, Score: float64(rng.IntN(1_000_000))})
		}
		octx, cancel := context.WithTimeout(ctx, cfg.timeout)
		_, err := z.Add(octx, req)
		cancel()
		if err != nil {
			return fmt.Errorf("bench: filling %q: %w", cfg.key, err)
		}
	}
	return nil
}
