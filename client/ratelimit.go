package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// ErrNeverAllowed is returned by Limiter.Wait when the cost asked is above the policy's
// limit (or GCRA burst): the server says retry_after -1, so no wait can admit it.
var ErrNeverAllowed = errors.New("client: rate limit: cost is above the limit and can never be allowed")

// RetryNever is Verdict.RetryAfter when the cost can never be allowed.
const RetryNever time.Duration = -1

// minWaitStep is the shortest sleep of Wait between two Checks, so that a denial that
// says retry_after 0 cannot spin.
const minWaitStep = time.Millisecond

// Verdict is a RateLimitService decision for one key, with durations as time.Duration.
type Verdict struct {
	// Key is the limiter key decided on.
	Key string
	// Cost is the hits asked (at least 1).
	Cost uint64
	// Allowed says the hits were admitted and consumed (in shadow mode: always true).
	Allowed bool
	// Limit is the policy's limit (CONCURRENCY: slots).
	Limit uint64
	// Remaining is how many more hits would be allowed now, after this request if allowed.
	Remaining uint64
	// ResetAfter is the time until the limiter is back to full.
	ResetAfter time.Duration
	// RetryAfter is the time until Cost would be allowed: 0 when allowed, RetryNever
	// (negative) when it never can be (Cost above the limit or burst).
	RetryAfter time.Duration
	// Slots are the CONCURRENCY slots acquired; Limiter.Refund releases them.
	Slots []uint64
	// Shadow says the policy is in shadow mode: Allowed is true whatever the limiter
	// said, and WouldAllow is what it said.
	Shadow     bool
	WouldAllow bool
}

// consumed reports whether the verdict took something that Refund can give back: an
// admission the limiter itself allowed (not one only shadow mode let through).
func (v Verdict) consumed() bool {
	return v.Allowed && (!v.Shadow || v.WouldAllow)
}

// verdictOf converts the server's verdict for a key asked with cost.
func verdictOf(k *conclavev1.KeyVerdict, cost uint64) Verdict {
	v := Verdict{
		Key:        k.GetKey(),
		Cost:       cost,
		Allowed:    k.GetAllowed(),
		Limit:      k.GetLimit(),
		Remaining:  k.GetRemaining(),
		ResetAfter: time.Duration(k.GetResetAfterMs()) * time.Millisecond,
		RetryAfter: time.Duration(k.GetRetryAfterMs()) * time.Millisecond,
		Slots:      k.GetSlots(),
		Shadow:     k.GetShadow(),
		WouldAllow: k.GetWouldAllow(),
	}
	if k.GetRetryAfterMs() < 0 {
		v.RetryAfter = RetryNever
	}
	return v
}

// LimiterOption changes a Limiter.
type LimiterOption func(*Limiter)

// MaxWaitStep caps the sleep of Wait between two Checks (by default it sleeps the whole
// retry_after the server gave). Use it with CONCURRENCY policies, whose retry_after is the
// time until a held slot's TTL runs out while slots are usually released much sooner.
func MaxWaitStep(d time.Duration) LimiterOption {
	return func(l *Limiter) { l.maxWaitStep = d }
}

// Limiter decides rate limits for many keys under one policy — inline (NewLimiter) or
// stored on the cluster by name (NewNamedLimiter) — through the client's RateLimitService.
// Every decision is a replicated write made by the cluster, so a limit holds across all
// the processes that share it, and across failover. A Limiter holds no state of its own:
// it is safe for concurrent use, and cheap to create.
type Limiter struct {
	c           *Client
	name        string                      // a stored policy's name, when inline is nil
	inline      *conclavev1.RateLimitPolicy // read only once built
	maxWaitStep time.Duration               // 0: no cap
}

// NewLimiter returns a Limiter whose every request carries policy inline: no stored
// policy is needed. policy is copied; its name is ignored.
func (c *Client) NewLimiter(policy *conclavev1.RateLimitPolicy, opts ...LimiterOption) *Limiter {
	l := &Limiter{c: c, inline: proto.CloneOf(policy)}
	if l.inline == nil {
		l.inline = &conclavev1.RateLimitPolicy{}
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// NewNamedLimiter returns a Limiter for the stored policy name (PutPolicy): changing the
// policy on the cluster changes every Limiter that names it, at once. Decisions fail with
// ErrNotFound while no policy of that name is stored.
func (c *Client) NewNamedLimiter(name string, opts ...LimiterOption) *Limiter {
	l := &Limiter{c: c, name: name}
	for _, o := range opts {
		o(l)
	}
	return l
}

// key returns the request key for key and cost under the Limiter's policy.
func (l *Limiter) key(key string, cost uint64) *conclavev1.RateLimitKey {
	k := &conclavev1.RateLimitKey{Key: key, Cost: cost}
	if l.inline != nil {
		k.Limit = &conclavev1.RateLimitKey_Inline{Inline: l.inline}
	} else {
		k.Limit = &conclavev1.RateLimitKey_Policy{Policy: l.name}
	}
	return k
}

// Allow is AllowN(ctx, key, 1).
func (l *Limiter) Allow(ctx context.Context, key string) (Verdict, error) {
	return l.AllowN(ctx, key, 1)
}

// AllowN asks for n hits on key (n 0 counts as 1) with one Check and returns the
// verdict: consumed when Allowed, nothing consumed when not. The Check carries a request
// id, so a retry after a failover consumes once. An error means no verdict: the Check may
// or may not have been applied.
func (l *Limiter) AllowN(ctx context.Context, key string, n uint64) (Verdict, error) {
	n = max(n, 1)
	resp, err := l.c.limits.Check(ctx, &conclavev1.CheckRequest{Keys: []*conclavev1.RateLimitKey{l.key(key, n)}})
	if err != nil {
		return Verdict{Key: key, Cost: n}, err
	}
	return verdictFor(resp.GetVerdicts(), key, n)
}

// Peek says what AllowN would, consuming nothing. It is a linearizable read.
func (l *Limiter) Peek(ctx context.Context, key string, n uint64) (Verdict, error) {
	n = max(n, 1)
	resp, err := l.c.limits.Peek(ctx, &conclavev1.PeekRequest{Keys: []*conclavev1.RateLimitKey{l.key(key, n)}})
	if err != nil {
		return Verdict{Key: key, Cost: n}, err
	}
	return verdictFor(resp.GetVerdicts(), key, n)
}

// verdictFor picks key's verdict out of a response.
func verdictFor(vs []*conclavev1.KeyVerdict, key string, cost uint64) (Verdict, error) {
	for _, v := range vs {
		if v.GetKey() == key {
			return verdictOf(v, cost), nil
		}
	}
	return Verdict{Key: key, Cost: cost}, fmt.Errorf("client: rate limit key %q: no verdict in the response", key)
}

// Wait is WaitN(ctx, key, 1).
func (l *Limiter) Wait(ctx context.Context, key string) (Verdict, error) {
	return l.WaitN(ctx, key, 1)
}

// WaitN asks for n hits on key until they are allowed: after each denial it sleeps the
// verdict's RetryAfter (capped by MaxWaitStep) and asks again, until ctx ends. It returns
// the admitting verdict; ErrNeverAllowed at once when n is above the limit; or an error
// wrapping ctx's error when ctx ends first (nothing is then consumed by this call). Every
// attempt is a Check of its own.
func (l *Limiter) WaitN(ctx context.Context, key string, n uint64) (Verdict, error) {
	for {
		v, err := l.AllowN(ctx, key, n)
		if err != nil || v.Allowed {
			return v, err
		}
		if v.RetryAfter < 0 {
			return v, fmt.Errorf("%w: key %q, cost %d, limit %d", ErrNeverAllowed, key, v.Cost, v.Limit)
		}
		d := max(v.RetryAfter, minWaitStep)
		if l.maxWaitStep > 0 {
			d = min(d, l.maxWaitStep)
		}
		if !sleep(ctx, d) {
			return v, fmt.Errorf("client: rate limit key %q: still denied (retry after %v) when the wait ended: %w", key, v.RetryAfter, ctx.Err())
		}
	}
}

// Refund gives back what an admitting verdict took: its CONCURRENCY slots, or its cost
// for the other algorithms (a request that should not count after all, such as one that
// failed on the caller's side). It does nothing for a verdict that consumed nothing (not
// allowed, or allowed only by shadow mode). The Refund carries a request id, so a retry
// gives back once; refunding one verdict twice gives back twice.
func (l *Limiter) Refund(ctx context.Context, v Verdict) error {
	if !v.consumed() {
		return nil
	}
	k := l.key(v.Key, v.Cost)
	k.Slots = v.Slots
	_, err := l.c.limits.Refund(ctx, &conclavev1.RefundRequest{Keys: []*conclavev1.RateLimitKey{k}})
	return err
}
