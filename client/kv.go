package client

import (
	"context"
	"time"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Get reads key linearizably. found is false when the key does not exist.
func (c *Client) Get(ctx context.Context, key string) (value []byte, found bool, err error) {
	resp, err := c.kv.Get(ctx, &conclavev1.GetRequest{Key: []byte(key)})
	if err != nil {
		return nil, false, err
	}
	return resp.GetKv().GetValue(), resp.GetFound(), nil
}

// SetOption changes a Set request.
type SetOption func(*conclavev1.SetRequest)

// WithTTL gives the key a time to live, rounded up to a whole millisecond.
func WithTTL(d time.Duration) SetOption {
	return func(r *conclavev1.SetRequest) { r.TtlMs = durationMs(d) }
}

// IfAbsent writes only if the key does not exist (Redis NX).
func IfAbsent() SetOption { return func(r *conclavev1.SetRequest) { r.IfAbsent = true } }

// IfPresent writes only if the key exists (Redis XX).
func IfPresent() SetOption { return func(r *conclavev1.SetRequest) { r.IfPresent = true } }

// IfRevision writes only if the key's mod_revision is rev; 0 means "does not exist".
func IfRevision(rev uint64) SetOption {
	return func(r *conclavev1.SetRequest) { r.IfRevision = &rev }
}

// KeepTTL keeps the key's existing time to live (Redis KEEPTTL).
func KeepTTL() SetOption { return func(r *conclavev1.SetRequest) { r.KeepTtl = true } }

// ReturnPrevious asks for the replaced entry in SetResponse.Prev.
func ReturnPrevious() SetOption { return func(r *conclavev1.SetRequest) { r.ReturnPrevious = true } }

// Set writes key. A condition that does not hold returns ErrConditionFailed.
func (c *Client) Set(ctx context.Context, key string, value []byte, opts ...SetOption) (*conclavev1.SetResponse, error) {
	req := &conclavev1.SetRequest{Key: []byte(key), Value: value}
	for _, o := range opts {
		o(req)
	}
	return c.kv.Set(ctx, req)
}

// Delete removes keys and returns how many existed.
func (c *Client) Delete(ctx context.Context, keys ...string) (int64, error) {
	req := &conclavev1.DeleteRequest{Keys: make([][]byte, len(keys))}
	for i, k := range keys {
		req.Keys[i] = []byte(k)
	}
	resp, err := c.kv.Delete(ctx, req)
	if err != nil {
		return 0, err
	}
	return resp.GetDeleted(), nil
}

// Increment adds delta to the integer at key (created at 0) and returns the new value.
// A non-integer value returns ErrWrongType.
func (c *Client) Increment(ctx context.Context, key string, delta int64) (int64, error) {
	resp, err := c.kv.Increment(ctx, &conclavev1.IncrementRequest{Key: []byte(key), Delta: delta})
	if err != nil {
		return 0, err
	}
	return resp.GetValue(), nil
}

// durationMs converts d to milliseconds, rounding a positive remainder up so that a
// small positive TTL never becomes 0 ("no TTL").
func durationMs(d time.Duration) int64 {
	ms := d.Milliseconds()
	if d > 0 && d%time.Millisecond != 0 {
		ms++
	}
	return ms
}
