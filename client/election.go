package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// ErrNotLeader is returned by Proclaim and Resign when this Election does not lead.
var ErrNotLeader = errors.New("client: not the election's leader")

// Election is a Session's candidacy in the election name, as etcd's concurrency.Election:
// Campaign waits to be elected, the leader announces a value (Proclaim) and gives up
// leadership (Resign) or loses it when its session ends. While leading, Token is the
// fencing token to pass to fenced writes. Campaign, Proclaim and Resign must not be
// called concurrently on one Election; Leader, Observe and Token may be.
type Election struct {
	s    *Session
	name string

	mu     sync.Mutex
	leader *conclavev1.Leadership // ours, while we lead
}

// NewElection returns a candidacy of s in the election name.
func NewElection(s *Session, name string) *Election { return &Election{s: s, name: name} }

// Name returns the election's name.
func (e *Election) Name() string { return e.name }

// Token returns the fencing token of this Election's leadership, or 0 when not leading.
func (e *Election) Token() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader.GetToken()
}

// Leadership returns this Election's leadership as last elected or proclaimed, or nil
// when not leading. It does not prove the leadership is still alive: fence.
func (e *Election) Leadership() *conclavev1.Leadership {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Campaign waits, in FIFO order among candidates, until this session is elected with
// value, or ctx ends (the candidacy is then withdrawn and an error returned). With no
// deadline on ctx it waits as long as ctx lasts.
func (e *Election) Campaign(ctx context.Context, value []byte) error {
	if e.Token() != 0 {
		return fmt.Errorf("client: election %q: already leading", e.name)
	}
	_, hasDeadline := ctx.Deadline()
	for {
		if err := e.s.Err(); err != nil {
			return fmt.Errorf("client: election %q: %w", e.name, err)
		}
		wait, cctx, cancel := lockWait(ctx)
		resp, err := e.s.c.elections.Campaign(cctx, &conclavev1.CampaignRequest{
			Name: e.name, SessionId: e.s.ID(), Value: value, WaitTimeoutMs: max(wait.Milliseconds(), 1),
		})
		cancel()
		if errors.Is(err, ErrLockHeld) && !hasDeadline && ctx.Err() == nil {
			continue // MaxLockWait passed without an election: campaign again
		}
		if err != nil {
			return err
		}
		e.mu.Lock()
		e.leader = resp.GetLeader()
		e.mu.Unlock()
		return nil
	}
}

// Proclaim replaces the leader's value. It fails with ErrNotLeader when this Election
// does not lead, and with an error matching ErrFenceStale when leadership was lost.
func (e *Election) Proclaim(ctx context.Context, value []byte) error {
	token := e.Token()
	if token == 0 {
		return fmt.Errorf("%w: election %q", ErrNotLeader, e.name)
	}
	resp, err := e.s.c.elections.Proclaim(ctx, &conclavev1.ProclaimRequest{Name: e.name, Token: token, Value: value})
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.leader = resp.GetLeader()
	e.mu.Unlock()
	return nil
}

// Resign gives up leadership; the next candidate is elected at once. Resigning after
// leadership was lost (the session ended) returns an error matching ErrFenceStale and
// forgets the leadership.
func (e *Election) Resign(ctx context.Context) error {
	token := e.Token()
	if token == 0 {
		return fmt.Errorf("%w: election %q", ErrNotLeader, e.name)
	}
	_, err := e.s.c.elections.Resign(ctx, &conclavev1.ResignRequest{Name: e.name, Token: token})
	if err == nil || errors.Is(err, ErrFenceStale) {
		e.mu.Lock()
		e.leader = nil
		e.mu.Unlock()
	}
	return err
}

// Leader returns the election's current leader (linearizable), or nil when it has none.
func (e *Election) Leader(ctx context.Context) (*conclavev1.Leadership, error) {
	resp, err := e.s.c.elections.Leader(ctx, &conclavev1.LeaderRequest{Name: e.name})
	if err != nil {
		return nil, err
	}
	return resp.GetLeader(), nil
}

// Observe returns a channel that receives the election's leader now and after every
// change of leader or value (nil while it has none), until ctx ends; then it is closed.
// A broken stream is re-opened (on another endpoint when the node is unavailable), so a
// change may be skipped but the latest leader is always delivered.
func (e *Election) Observe(ctx context.Context) <-chan *conclavev1.Leadership {
	return ObserveElection(ctx, e.s.c, e.name)
}

// ObserveElection is Election.Observe for an observer that does not campaign (and needs
// no session).
func ObserveElection(ctx context.Context, c *Client, name string) <-chan *conclavev1.Leadership {
	ch := make(chan *conclavev1.Leadership)
	go func() {
		defer close(ch)
		var last *conclavev1.Leadership
		sent := false
		delay := retryBaseDelay
		for ctx.Err() == nil {
			at := c.conn.current.Load()
			stream, err := c.elections.Observe(ctx, &conclavev1.ObserveRequest{Name: name})
			for err == nil {
				var resp *conclavev1.ObserveResponse
				if resp, err = stream.Recv(); err != nil {
					break
				}
				delay = retryBaseDelay
				if sent && proto.Equal(resp.GetLeader(), last) {
					continue // the first answer of a re-opened stream
				}
				select {
				case ch <- resp.GetLeader():
					last, sent = resp.GetLeader(), true
				case <-ctx.Done():
					return
				}
			}
			c.conn.failover(at, err)
			if !sleep(ctx, delay) {
				return
			}
			delay = min(2*delay, retryMaxDelay)
		}
	}()
	return ch
}
