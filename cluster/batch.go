package cluster

import (
	"context"
	"sync"
)

// batcher queues calls and sends them in batches, as etcd's read loop does: whenever one
// of its slots is free it takes every call waiting (up to max), so calls that arrive while
// a batch is in flight leave together in the next one. send fills each call's resp or err;
// the batcher then completes the calls.
type batcher[Req, Resp any] struct {
	n     *Node
	max   int // most calls in one batch; 0 means no limit
	send  func(batch []*call[Req, Resp])
	slots chan struct{}
	wake  chan struct{}

	mu      sync.Mutex
	pending []*call[Req, Resp]
}

type call[Req, Resp any] struct {
	req  Req
	resp Resp
	err  error
	done chan struct{}
}

// newBatcher returns a batcher with inFlight batches outstanding at most. Its run
// goroutine must be started under n.wg.
func newBatcher[Req, Resp any](n *Node, inFlight, max int, send func([]*call[Req, Resp])) *batcher[Req, Resp] {
	return &batcher[Req, Resp]{n: n, max: max, send: send, slots: make(chan struct{}, inFlight), wake: make(chan struct{}, 1)}
}

// do queues req for the next batch and waits for its outcome, ctx or shutdown.
func (b *batcher[Req, Resp]) do(ctx context.Context, req Req) (Resp, error) {
	c := &call[Req, Resp]{req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	var zero Resp
	select {
	case <-c.done:
		return c.resp, c.err
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-b.n.shutdownCh:
		return zero, ErrShutdown
	}
}

func (b *batcher[Req, Resp]) run() {
	defer b.n.wg.Done()
	for {
		select {
		case <-b.wake:
		case <-b.n.shutdownCh:
			return
		}
		for b.sendNext() {
		}
	}
}

// sendNext waits for a free slot and sends the calls waiting; it reports false when
// there were none (or on shutdown).
func (b *batcher[Req, Resp]) sendNext() bool {
	select {
	case b.slots <- struct{}{}:
	case <-b.n.shutdownCh:
		return false
	}
	b.mu.Lock()
	n := len(b.pending)
	if b.max > 0 {
		n = min(n, b.max)
	}
	batch := b.pending[:n:n]
	b.pending = b.pending[n:]
	b.mu.Unlock()
	if len(batch) == 0 {
		<-b.slots
		return false
	}
	b.n.wg.Add(1)
	go func() {
		defer b.n.wg.Done()
		defer func() { <-b.slots }()
		b.send(batch)
		for _, c := range batch {
			close(c.done)
		}
	}()
	return true
}
