package server

import (
	"context"
	"crypto/sha256"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// localNode is a single-node stand-in for cluster.Node: it applies commands straight to
// an fsm.Machine with an incrementing index and the wall clock as the command time.
type localNode struct {
	m           *fsm.Machine
	mu          sync.Mutex // serialises Apply, as raft's apply goroutine does
	index       uint64
	applies     atomic.Int64 // Apply calls, to prove bad input never reached the node
	reads       atomic.Int64 // Read calls
	leaderKnown atomic.Bool
	panicApply  atomic.Bool // Apply panics, to exercise recovery

	membersMu sync.Mutex
	members   []*conclavev1.Member

	changedMu sync.Mutex
	changed   chan struct{} // closed after each apply
}

var _ Node = (*localNode)(nil)

func newLocalNode() *localNode {
	n := &localNode{m: fsm.New(), changed: make(chan struct{})}
	n.leaderKnown.Store(true)
	n.members = []*conclavev1.Member{{Id: "local", RaftAddress: "127.0.0.1:7000", GrpcAddress: "127.0.0.1:8000", Voter: true, Leader: true}}
	return n
}

func (n *localNode) ID() string { return "local" }

func (n *localNode) Apply(ctx context.Context, cmd *fsmv1.Command) (*fsmv1.Result, error) {
	n.applies.Add(1)
	if n.panicApply.Load() {
		panic("localNode: apply panics")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.index++
	stamped := proto.CloneOf(cmd)
	stamped.NowUnixNano = time.Now().UnixNano()
	// Like raft, hand the machine the command as decoded from the log.
	data, err := proto.Marshal(stamped)
	if err != nil {
		return nil, err
	}
	res := n.m.Apply(n.index, data)
	n.changedMu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.changedMu.Unlock()
	return res, nil
}

func (n *localNode) Changed() <-chan struct{} {
	n.changedMu.Lock()
	defer n.changedMu.Unlock()
	return n.changed
}

func (n *localNode) Read(ctx context.Context, c conclavev1.Consistency, fn func(v *fsm.View)) (*conclavev1.ResponseHeader, error) {
	n.reads.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := &conclavev1.ResponseHeader{NodeId: n.ID(), RaftTerm: 1}
	n.m.Read(time.Now().UnixNano(), func(v *fsm.View) {
		h.Revision = v.Revision()
		fn(v)
	})
	h.AppliedIndex = h.Revision
	return h, nil
}

func (n *localNode) Header(revision uint64) *conclavev1.ResponseHeader {
	return &conclavev1.ResponseHeader{Revision: revision, NodeId: n.ID(), RaftTerm: 1, AppliedIndex: n.m.AppliedIndex()}
}

// WaitGrant follows the machine until the request is granted, gone, or ctx ends (then
// it withdraws the request).
func (n *localNode) WaitGrant(ctx context.Context, name string, waiter uint64) (*fsmv1.LockHolder, error) {
	for {
		changed := n.Changed()
		var hold *fsmv1.LockHolder
		waiting := false
		n.m.Read(0, func(v *fsm.View) {
			l, _ := v.Lock(name)
			for _, h := range l.GetHolders() {
				if h.GetRequest() == waiter {
					hold = h
				}
			}
			for _, w := range l.GetWaiters() {
				waiting = waiting || w.GetId() == waiter
			}
		})
		switch {
		case hold != nil:
			return hold, nil
		case !waiting:
			return nil, fsm.ErrorFromProto(&fsmv1.Error{Code: fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: "lock request gone"})
		}
		select {
		case <-ctx.Done():
			_, _ = n.Apply(context.Background(), &fsmv1.Command{Op: &fsmv1.Command_LockCancel{LockCancel: &fsmv1.LockCancel{Name: name, Waiter: waiter}}})
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

func (n *localNode) MinSessionTTL() time.Duration { return 3 * time.Second }

// KeepAlive has no leader timers to move here: it reports the session's full TTL.
func (n *localNode) KeepAlive(_ context.Context, id uint64) (time.Duration, error) {
	var rec *fsmv1.SessionRecord
	n.m.Read(time.Now().UnixNano(), func(v *fsm.View) { rec, _, _ = v.Session(id) })
	if rec == nil {
		return 0, fsm.ErrorFromProto(&fsmv1.Error{Code: fsmv1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: "session does not exist"})
	}
	return time.Duration(rec.GetTtlMs()) * time.Millisecond, nil
}

func (n *localNode) StateHash() ([]byte, uint64, error) {
	s := n.m.Snapshot()
	h := sha256.New()
	if _, err := s.WriteTo(h); err != nil {
		return nil, 0, err
	}
	return h.Sum(nil), s.AppliedIndex(), nil
}

func (n *localNode) Status(ctx context.Context) (*conclavev1.StatusResponse, error) {
	st := &conclavev1.StatusResponse{
		NodeId:       n.ID(),
		LeaderId:     n.ID(),
		RaftState:    "Leader",
		Term:         1,
		CommitIndex:  n.m.AppliedIndex(),
		AppliedIndex: n.m.AppliedIndex(),
		Members:      n.memberList(),
	}
	n.m.Read(time.Now().UnixNano(), func(v *fsm.View) { st.KeyCount = uint64(v.KeyCount()) })
	st.Header = n.Header(st.AppliedIndex)
	return st, nil
}

func (n *localNode) memberList() []*conclavev1.Member {
	n.membersMu.Lock()
	defer n.membersMu.Unlock()
	out := make([]*conclavev1.Member, len(n.members))
	for i, m := range n.members {
		out[i] = proto.CloneOf(m)
	}
	return out
}

func (n *localNode) Join(ctx context.Context, id, raftAddr, grpcAddr string) ([]*conclavev1.Member, error) {
	n.membersMu.Lock()
	if !slices.ContainsFunc(n.members, func(m *conclavev1.Member) bool { return m.GetId() == id }) {
		n.members = append(n.members, &conclavev1.Member{Id: id, RaftAddress: raftAddr, GrpcAddress: grpcAddr})
	}
	n.membersMu.Unlock()
	return n.memberList(), nil
}

func (n *localNode) Remove(ctx context.Context, id string) ([]*conclavev1.Member, error) {
	n.membersMu.Lock()
	i := slices.IndexFunc(n.members, func(m *conclavev1.Member) bool { return m.GetId() == id })
	if i < 0 {
		n.membersMu.Unlock()
		return nil, cluster.ErrUnknownMember
	}
	n.members = slices.Delete(n.members, i, i+1)
	n.membersMu.Unlock()
	return n.memberList(), nil
}

func (n *localNode) TransferLeadership(ctx context.Context, id string) (string, error) {
	if id == "" || id == n.ID() {
		return "", cluster.ErrNoLeader
	}
	return id, nil
}

func (n *localNode) Snapshot(ctx context.Context) (uint64, error) { return n.m.AppliedIndex(), nil }

func (n *localNode) LeaderKnown() bool { return n.leaderKnown.Load() }

// The real node must satisfy the interface the services are written against.
var _ Node = (*cluster.Node)(nil)
