// Package client is the Go client of Conclave.
//
// A Client holds one gRPC connection per endpoint and exposes the generated service
// clients (KV, Cluster, Sessions, Locks, Elections, RateLimits, SortedSets) over a connection that fails over between endpoints: a
// call is sent to the endpoint that last worked, and a call that is safe to repeat is
// retried on the next endpoint, with capped exponential backoff, when it fails with
// Unavailable, until its context ends. Safe calls are reads, KeepAlive (idempotent) and
// mutations carrying a request_id; the client fills a random request_id into every mutation that has none, so the server's
// dedup table makes the retry idempotent.
//
// A Session (NewSession) is a session kept alive in the background by unary KeepAlive
// calls; its Done channel closes when it can no longer be relied on. A Mutex (NewMutex)
// is a LockService lock held by a Session, with its fencing token; a Semaphore
// (NewSemaphore) one of N holders; an Election (NewElection) a candidacy in a leader
// election. A Limiter (NewLimiter, NewNamedLimiter) makes rate-limit decisions, and
// RateLimitMiddleware applies one to net/http handlers. A Leaderboard (Leaderboard) is a
// sorted set used as a game's high-score table: best scores, top N, ranks, neighbours.
//
// Every error a Client returns for a failed call is an *Error, comparable with the
// sentinels (ErrConditionFailed, ErrNotFound, …) through errors.Is.
//
// This package depends only on proto/ and grpc; it never imports fsm/, cluster/ or server/.
package client
