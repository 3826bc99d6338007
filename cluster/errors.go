package cluster

import "errors"

// Errors a node returns besides the state machine's domain errors. All but
// ErrUnknownMember and ErrMemberConflict mean "try again, perhaps elsewhere": server/ maps them to Unavailable.
var (
	// ErrNoLeader: the cluster has no known leader right now (election in progress, or
	// this node is cut off from a majority).
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrNotLeader: the operation must run on the leader and this node is not it, and the
	// request was already forwarded once.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrNotReady: this node leads but has not yet applied its LeaderStart entry.
	ErrNotReady = errors.New("cluster: leader not ready")
	// ErrLeadershipLost: leadership was lost while the command was in flight, so whether
	// it was applied is unknown. Retrying with the same request id is safe.
	ErrLeadershipLost = errors.New("cluster: leadership lost, outcome unknown")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("cluster: shutting down")
	// ErrUnknownMember: no member has the given id.
	ErrUnknownMember = errors.New("cluster: unknown member")
	// ErrMemberConflict: a member with the id exists with another raft address.
	ErrMemberConflict = errors.New("cluster: member id in use with another address")
)
