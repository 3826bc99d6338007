package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// benchLoad is what every bench subcommand shares: the endpoints, the concurrent clients
// and their connections, how long to run and how long one operation may take.
type benchLoad struct {
	endpoints []string
	timeout   time.Duration // per operation
	clients   int
	conns     int
	duration  time.Duration
}

// addFlags declares --clients (default clients), --conns and --duration on fs.
func (l *benchLoad) addFlags(fs *pflag.FlagSet, clients int) {
	fs.IntVar(&l.clients, "clients", clients, "concurrent clients (goroutines)")
	fs.IntVar(&l.conns, "conns", 8, "gRPC connections shared by the clients")
	fs.DurationVar(&l.duration, "duration", 10*time.Second, "how long to run")
}

func (l benchLoad) validate() error {
	switch {
	case l.clients < 1:
		return errors.New("--clients: must be at least 1")
	case l.conns < 1:
		return errors.New("--conns: must be at least 1")
	case l.duration <= 0:
		return errors.New("--duration: must be positive")
	}
	return nil
}

// benchOp performs one measured operation; ctx is bounded by the load's timeout.
type benchOp func(ctx context.Context) error

// runLoad runs l.clients goroutines, goroutine i calling newOp(i)'s operation back to
// back until l.duration has passed or ctx ends, and returns their merged latencies and
// errors. Failed operations count as errors, not in the latencies. Each newOp is called
// before any goroutine starts; the operation it returns is used by one goroutine only.
func runLoad(ctx context.Context, l benchLoad, newOp func(i int) benchOp) (benchResult, error) {
	res := benchResult{Clients: l.clients, Conns: l.conns}
	workers := make([]benchWorker, l.clients)
	for i := range workers {
		workers[i].op = newOp(i)
	}
	start := time.Now()
	end := start.Add(l.duration)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		wg.Go(func() { w.run(ctx, end, l.timeout) })
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

// benchWorker is one client goroutine; its fields are its own until the run ends.
type benchWorker struct {
	op        benchOp
	latencies []time.Duration
	errors    int
	firstErr  error
}

// run calls w.op back to back, each bounded by timeout, until end or until ctx ends.
func (w *benchWorker) run(ctx context.Context, end time.Time, timeout time.Duration) {
	w.latencies = make([]time.Duration, 0, 1024)
	for ctx.Err() == nil && time.Now().Before(end) {
		octx, cancel := context.WithTimeout(ctx, timeout)
		t0 := time.Now()
		err := w.op(octx)
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

// dialBench opens l.conns connections spread round robin over the endpoints and waits
// until each is ready, so that connecting is not measured.
func dialBench(ctx context.Context, l benchLoad) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, l.conns)
	fail := func(err error) ([]*grpc.ClientConn, error) {
		closeBench(conns)
		return nil, err
	}
	for i := range l.conns {
		ep := l.endpoints[i%len(l.endpoints)]
		cc, err := grpc.NewClient("passthrough:///"+ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fail(fmt.Errorf("bench: endpoint %q: %w", ep, err))
		}
		conns = append(conns, cc)
		if err := waitReady(ctx, cc, l.timeout); err != nil {
			return fail(fmt.Errorf("bench: endpoint %q: %w", ep, err))
		}
	}
	return conns, nil
}

// closeBench closes the connections of dialBench.
func closeBench(conns []*grpc.ClientConn) {
	for _, cc := range conns {
		_ = cc.Close()
	}
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
