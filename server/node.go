package server

import (
	"context"
	"time"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Node is what the services need from a cluster member; *cluster.Node implements it.
// Its methods are called concurrently from many RPCs and must be safe for that.
type Node interface {
	// ID is this node's raft server id.
	ID() string
	// Apply proposes cmd through raft (forwarding to the leader if needed) and waits for its result.
	// A domain failure is in Result.Error (use fsm.ErrorFromProto); a returned error is a cluster
	// error (cluster.Err*), a context error, or a gRPC status error relayed from the leader.
	// The returned Result may be shared (the state machine's dedup table keeps it): callers
	// must not modify it.
	Apply(ctx context.Context, cmd *fsmv1.Command) (*fsmv1.Result, error)
	// Read runs fn on local state once it is safe for the consistency level and returns the header.
	Read(ctx context.Context, c conclavev1.Consistency, fn func(v *fsm.View)) (*conclavev1.ResponseHeader, error)
	// Header returns a response header for a write applied at revision.
	Header(revision uint64) *conclavev1.ResponseHeader
	// Status describes the node; the caller fills nothing else.
	Status(ctx context.Context) (*conclavev1.StatusResponse, error)
	// StateHash is the SHA-256 of the node's state as snapshot bytes, and the applied
	// index it covers.
	StateHash() ([]byte, uint64, error)
	// Join adds a member (as a non-voter) and returns the membership afterwards.
	Join(ctx context.Context, id, raftAddr, grpcAddr string) ([]*conclavev1.Member, error)
	// Remove takes a member out of the cluster and returns the membership afterwards.
	Remove(ctx context.Context, id string) ([]*conclavev1.Member, error)
	// TransferLeadership hands leadership to id (any voter when empty) and returns the new leader's id.
	TransferLeadership(ctx context.Context, id string) (string, error)
	// Snapshot takes a raft snapshot and returns the index it covers.
	Snapshot(ctx context.Context) (uint64, error)
	// KeepAlive renews a session's deadline on the leader without a raft write and
	// returns how long the session now lives; a missing session is an fsm NotFound.
	KeepAlive(ctx context.Context, id uint64) (time.Duration, error)
	// WaitGrant waits until a queued lock request is granted and returns the hold (with
	// its fencing token); if ctx ends first the request is withdrawn (and released if granted).
	WaitGrant(ctx context.Context, name string, waiter uint64) (*fsmv1.LockHolder, error)
	// Changed returns a channel closed when the node next applies an entry.
	Changed() <-chan struct{}
	// MinSessionTTL is the shortest TTL a session is granted.
	MinSessionTTL() time.Duration
	// LeaderKnown reports whether this node currently knows a leader (for health).
	LeaderKnown() bool
}
