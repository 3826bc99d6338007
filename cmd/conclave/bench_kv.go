package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// Operations of `conclave bench kv`.
const (
	opSet   = "set"
	opGet   = "get"
	opIncr  = "incr"
	opMixed = "mixed"
)

// benchKVConfig is a `conclave bench kv` run.
type benchKVConfig struct {
	benchLoad
	op          string
	valueSize   int
	keys        int
	consistency string
	seed        uint64
}

func (c benchKVConfig) validate() error {
	switch c.op {
	case opSet, opGet, opIncr, opMixed:
	default:
		return fmt.Errorf("--op %q: want set, get, incr or mixed", c.op)
	}
	if c.consistency != "linearizable" && c.consistency != "stale" {
		return fmt.Errorf("--consistency %q: want linearizable or stale", c.consistency)
	}
	if err := c.benchLoad.validate(); err != nil {
		return err
	}
	switch {
	case c.valueSize < 0:
		return errors.New("--value-size: must not be negative")
	case c.keys < 1:
		return errors.New("--keys: must be at least 1")
	}
	return nil
}

// reads reports whether the run issues reads (and so needs its keys written first).
func (c benchKVConfig) reads() bool { return c.op == opGet || c.op == opMixed }

// runBenchKV connects, pre-populates the keys when the op reads, runs the clients for the
// configured duration and returns the merged result.
func runBenchKV(ctx context.Context, cfg benchKVConfig) (benchResult, error) {
	conns, err := dialBench(ctx, cfg.benchLoad)
	if err != nil {
		return benchResult{}, err
	}
	defer closeBench(conns)
	kvs := make([]conclavev1grpc.KVServiceClient, len(conns))
	for i, cc := range conns {
		kvs[i] = conclavev1grpc.NewKVServiceClient(cc)
	}

	prefix := "bench/kv/"
	if cfg.op == opIncr {
		prefix = "bench/counter/"
	}
	keys := make([][]byte, cfg.keys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "%s%08d", prefix, i)
	}
	if cfg.reads() {
		if err := populate(ctx, cfg, kvs, keys); err != nil {
			return benchResult{}, err
		}
	}

	res, err := runLoad(ctx, cfg.benchLoad, func(i int) benchOp {
		return kvOp(&cfg, kvs[i%len(kvs)], keys, rand.New(rand.NewPCG(cfg.seed, uint64(i))))
	})
	res.Op = cfg.op
	if cfg.reads() {
		res.Consistency = cfg.consistency
	}
	return res, err
}

// populate writes every key once, the clients sharing the work, so that reads find values.
func populate(ctx context.Context, cfg benchKVConfig, kvs []conclavev1grpc.KVServiceClient, keys [][]byte) error {
	value := make([]byte, cfg.valueSize)
	errs := make([]error, cfg.clients)
	var wg sync.WaitGroup
	for w := range cfg.clients {
		wg.Go(func() {
			kv := kvs[w%len(kvs)]
			for i := w; i < len(keys); i += cfg.clients {
				octx, cancel := context.WithTimeout(ctx, cfg.timeout)
				_, err := kv.Set(octx, &conclavev1.SetRequest{Key: keys[i], Value: value})
				cancel()
				if err != nil {
					errs[w] = fmt.Errorf("bench: populating %q: %w", keys[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// kvOp returns one client's operation: the configured op (or, for mixed, a get 80% of
// the time and a set otherwise) on a key chosen uniformly with rng, which it owns.
func kvOp(cfg *benchKVConfig, kv conclavev1grpc.KVServiceClient, keys [][]byte, rng *rand.Rand) benchOp {
	value := make([]byte, cfg.valueSize)
	for i := range value {
		value[i] = byte(rng.IntN(256))
	}
	consistency := conclavev1.Consistency_CONSISTENCY_LINEARIZABLE
	if cfg.consistency == "stale" {
		consistency = conclavev1.Consistency_CONSISTENCY_STALE
	}
	return func(ctx context.Context) error {
		key := keys[rng.IntN(len(keys))]
		op := cfg.op
		if op == opMixed {
			op = opSet
			if rng.IntN(100) < 80 {
				op = opGet
			}
		}
		var err error
		switch op {
		case opSet:
			_, err = kv.Set(ctx, &conclavev1.SetRequest{Key: key, Value: value})
		case opGet:
			_, err = kv.Get(ctx, &conclavev1.GetRequest{Key: key, Consistency: consistency})
		case opIncr:
			_, err = kv.Increment(ctx, &conclavev1.IncrementRequest{Key: key, Delta: 1})
		}
		return err
	}
}
