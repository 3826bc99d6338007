package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

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
	endpoints   []string
	timeout     time.Duration // per call
	clients     int
	conns       int
	duration    time.Duration
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
	switch {
	case c.clients < 1:
		return errors.New("--clients: must be at least 1")
	case c.conns < 1:
		return errors.New("--conns: must be at least 1")
	case c.duration <= 0:
		return errors.New("--duration: must be positive")
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
	conns, err := dialBench(ctx, cfg)
	if err != nil {
		return benchResult{}, err
	}
	defer func() {
		for _, cc := range conns {
			_ = cc.Close()
		}
	}()
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

	res := benchResult{Op: cfg.op, Clients: cfg.clients, Conns: cfg.conns}
	if cfg.reads() {
		res.Consistency = cfg.consistency
	}
	workers := make([]benchWorker, cfg.clients)
	start := time.Now()
	end := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.cfg, w.kv, w.keys = &cfg, kvs[i%len(kvs)], keys
		w.rng = rand.New(rand.NewPCG(cfg.seed, uint64(i)))
		wg.Go(func() { w.run(ctx, end) })
	}
	wg.Wait()
	res.Elapsed = time.Since(start)

	parts := make([][]time.Duration, len(workers))
	for i, w := range workers {
		parts[i] = w.latencies
		res.Errors += w.errors
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
	}
	res.Latency = summarize(parts...)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: interrupted: %w", err)
	}
	return res, nil
}

// dialBench opens cfg.conns connections spread round robin over the endpoints and waits
// until each is ready, so that connecting is not measured.
func dialBench(ctx context.Context, cfg benchKVConfig) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, cfg.conns)
	fail := func(err error) ([]*grpc.ClientConn, error) {
		for _, cc := range conns {
			_ = cc.Close()
		}
		return nil, err
	}
	for i := range cfg.conns {
		ep := cfg.endpoints[i%len(cfg.endpoints)]
		cc, err := grpc.NewClient("passthrough:///"+ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fail(fmt.Errorf("bench: endpoint %q: %w", ep, err))
		}
		conns = append(conns, cc)
		if err := waitReady(ctx, cc, cfg.timeout); err != nil {
			return fail(fmt.Errorf("bench: endpoint %q: %w", ep, err))
		}
	}
	return conns, nil
}

// waitReady connects cc and waits, at most timeout, until it is ready.
func waitReady(ctx context.Context, cc *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("cannot connect (%s)", s)
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("not ready after %v", timeout)
		}
	}
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

// benchWorker is one client goroutine; its fields are its own until the run ends.
type benchWorker struct {
	cfg       *benchKVConfig
	kv        conclavev1grpc.KVServiceClient
	keys      [][]byte
	rng       *rand.Rand
	latencies []time.Duration
	errors    int
	firstErr  error
}

// run issues operations back to back until end or until ctx ends.
func (w *benchWorker) run(ctx context.Context, end time.Time) {
	value := make([]byte, w.cfg.valueSize)
	for i := range value {
		value[i] = byte(w.rng.IntN(256))
	}
	consistency := conclavev1.Consistency_CONSISTENCY_LINEARIZABLE
	if w.cfg.consistency == "stale" {
		consistency = conclavev1.Consistency_CONSISTENCY_STALE
	}
	w.latencies = make([]time.Duration, 0, 1024)
	for ctx.Err() == nil && time.Now().Before(end) {
		key := w.keys[w.rng.IntN(len(w.keys))]
		op := w.cfg.op
		if op == opMixed {
			op = opSet
			if w.rng.IntN(100) < 80 {
				op = opGet
			}
		}
		octx, cancel := context.WithTimeout(ctx, w.cfg.timeout)
		t0 := time.Now()
		var err error
		switch op {
		case opSet:
			_, err = w.kv.Set(octx, &conclavev1.SetRequest{Key: key, Value: value})
		case opGet:
			_, err = w.kv.Get(octx, &conclavev1.GetRequest{Key: key, Consistency: consistency})
		case opIncr:
			_, err = w.kv.Increment(octx, &conclavev1.IncrementRequest{Key: key, Delta: 1})
		}
		lat := time.Since(t0)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return // interrupted, not a server error
			}
			w.errors++
			if w.firstErr == nil {
				w.firstErr = err
			}
			continue
		}
		w.latencies = append(w.latencies, lat)
	}
}
