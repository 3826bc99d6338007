package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// Status describes this node and the cluster as it sees it. It asks no other node.
func (n *Node) Status(ctx context.Context) (*conclavev1.StatusResponse, error) {
	leaderAddr, leaderID := n.raft.LeaderWithID()
	st := &conclavev1.StatusResponse{
		NodeId:       n.cfg.ID,
		LeaderId:     string(leaderID),
		RaftState:    n.raft.State().String(),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.machine.AppliedIndex(),
	}
	if leaderID != "" {
		st.LeaderAddress = string(leaderAddr)
		if addr, err := n.leaderGRPCAddr(); err == nil {
			st.LeaderAddress = addr
		}
	}
	if !n.IsLeader() {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			st.LastLeaderContactMs = time.Since(lc).Milliseconds()
		}
	}
	n.machine.Read(time.Now().UnixNano(), func(v *fsm.View) { st.KeyCount = uint64(v.KeyCount()) })
	members, err := n.members()
	if err != nil {
		return nil, err
	}
	st.Members = members
	st.Header = n.Header(st.AppliedIndex)
	return st, nil
}

// StateHash is the SHA-256 of the machine's snapshot bytes and the applied index they
// cover: replicas at the same index hold byte-identical state.
func (n *Node) StateHash() ([]byte, uint64, error) {
	s := n.machine.Snapshot()
	h := sha256.New()
	if _, err := s.WriteTo(h); err != nil {
		return nil, 0, err
	}
	return h.Sum(nil), s.AppliedIndex(), nil
}

// members joins raft's configuration with the replicated member table.
func (n *Node) members() ([]*conclavev1.Member, error) {
	f := n.raft.GetConfiguration()
	if err := n.futureErr(f); err != nil {
		return nil, raftError(err)
	}
	_, leaderID := n.raft.LeaderWithID()
	var out []*conclavev1.Member
	for _, s := range f.Configuration().Servers {
		m := &conclavev1.Member{
			Id:          string(s.ID),
			RaftAddress: string(s.Address),
			Voter:       s.Suffrage == raft.Voter,
			Leader:      s.ID == leaderID,
		}
		if rec := n.member(string(s.ID)); rec != nil {
			m.GrpcAddress = rec.GetGrpcAddress()
		}
		out = append(out, m)
	}
	return out, nil
}

// Join adds a node as a non-voter (the leader promotes it once caught up) and records
// its addresses. Joining again with the same addresses is a no-op. Followers forward
// the request to the leader.
func (n *Node) Join(ctx context.Context, id, raftAddr, grpcAddr string) ([]*conclavev1.Member, error) {
	if !n.IsLeader() {
		return n.forwardMembership(ctx, func(c conclavev1grpc.ClusterServiceClient, ctx context.Context) ([]*conclavev1.Member, error) {
			r, err := c.Join(ctx, &conclavev1.JoinRequest{Id: id, RaftAddress: raftAddr, GrpcAddress: grpcAddr})
			return r.GetMembers(), err
		})
	}
	f := n.raft.GetConfiguration()
	if err := n.futureErr(f); err != nil {
		return nil, raftError(err)
	}
	known := false
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == id && string(s.Address) != raftAddr:
			return nil, fmt.Errorf("%w: %q joined with raft address %s; remove it first", ErrMemberConflict, id, s.Address)
		case string(s.ID) != id && string(s.Address) == raftAddr:
			return nil, fmt.Errorf("%w: raft address %s belongs to %q", ErrMemberConflict, raftAddr, s.ID)
		case string(s.ID) == id:
			known = true
		}
	}
	if !known {
		if err := n.futureErr(n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), f.Index(), 0)); err != nil {
			return nil, raftError(err)
		}
		n.log.Info("added non-voter", zap.String("member-id", id), zap.String("raft-addr", raftAddr))
	}
	put := &fsmv1.Command{Op: &fsmv1.Command_MemberPut{MemberPut: &fsmv1.MemberPut{
		Member: &fsmv1.Member{Id: id, RaftAddress: raftAddr, GrpcAddress: grpcAddr},
	}}}
	if _, err := n.ApplyLocal(ctx, put); err != nil {
		return nil, err
	}
	return n.members()
}

// Remove takes a member out of raft's configuration and the member table. Followers
// forward the request to the leader.
func (n *Node) Remove(ctx context.Context, id string) ([]*conclavev1.Member, error) {
	if !n.IsLeader() {
		return n.forwardMembership(ctx, func(c conclavev1grpc.ClusterServiceClient, ctx context.Context) ([]*conclavev1.Member, error) {
			r, err := c.Remove(ctx, &conclavev1.RemoveRequest{Id: id})
			return r.GetMembers(), err
		})
	}
	f := n.raft.GetConfiguration()
	if err := n.futureErr(f); err != nil {
		return nil, raftError(err)
	}
	known := false
	for _, s := range f.Configuration().Servers {
		known = known || string(s.ID) == id
	}
	if !known {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	// Leave raft's configuration first, so a member the table no longer knows is never
	// still a voter — except when the leader removes itself: it can propose nothing
	// afterwards, so it forgets its own row first.
	del := &fsmv1.Command{Op: &fsmv1.Command_MemberRemove{MemberRemove: &fsmv1.MemberRemove{Id: id}}}
	self := id == n.cfg.ID
	if self {
		if _, err := n.ApplyLocal(ctx, del); err != nil {
			return nil, err
		}
	}
	if err := n.futureErr(n.raft.RemoveServer(raft.ServerID(id), 0, 0)); err != nil {
		return nil, raftError(err)
	}
	if !self {
		if _, err := n.ApplyLocal(ctx, del); err != nil {
			return nil, err
		}
	}
	n.log.Info("removed member", zap.String("member-id", id))
	return n.members()
}

// TransferLeadership hands leadership to the voter id (any voter raft picks when id is
// empty) and returns the new leader's id once known.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	if !n.IsLeader() {
		if Forwarded(ctx) {
			return "", ErrNotLeader
		}
		conn, err := n.leaderConn(ctx)
		if err != nil {
			return "", err
		}
		r, err := conclavev1grpc.NewClusterServiceClient(conn).TransferLeadership(markForwarded(ctx), &conclavev1.TransferLeadershipRequest{ToId: id})
		return r.GetLeaderId(), err
	}
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		var addr raft.ServerAddress
		cf := n.raft.GetConfiguration()
		if err := n.futureErr(cf); err != nil {
			return "", raftError(err)
		}
		for _, s := range cf.Configuration().Servers {
			if string(s.ID) == id {
				addr = s.Address
			}
		}
		if addr == "" {
			return "", fmt.Errorf("%w: %q", ErrUnknownMember, id)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := n.futureErr(f); err != nil {
		return "", raftError(err)
	}
	for {
		if _, leader := n.raft.LeaderWithID(); leader != "" && string(leader) != n.cfg.ID {
			return string(leader), nil
		}
		if !n.sleep(ctx, 20*time.Millisecond) {
			return "", errors.Join(ErrNoLeader, ctx.Err())
		}
	}
}

// Snapshot takes a raft snapshot on this node and returns the index it covers.
func (n *Node) Snapshot(ctx context.Context) (uint64, error) {
	f := n.raft.Snapshot()
	err := n.futureErr(f)
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	}
	if err != nil {
		return 0, raftError(err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		return 0, err
	}
	rc.Close()
	return meta.Index, nil
}

// forwardMembership sends a membership change to the leader's ClusterService, once.
func (n *Node) forwardMembership(ctx context.Context, call func(conclavev1grpc.ClusterServiceClient, context.Context) ([]*conclavev1.Member, error)) ([]*conclavev1.Member, error) {
	if Forwarded(ctx) {
		return nil, ErrNotLeader
	}
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := n.withDefaultTimeout(ctx)
	defer cancel()
	return call(conclavev1grpc.NewClusterServiceClient(conn), markForwarded(ctx))
}

// joinThrough asks the member at addr to add this node, retrying until it succeeds.
func (n *Node) joinThrough(addr string) {
	defer n.wg.Done()
	ctx := n.ctx
	for {
		conn, err := n.conns.get(addr)
		if err == nil {
			jctx, jcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = conclavev1grpc.NewClusterServiceClient(conn).Join(jctx, &conclavev1.JoinRequest{
				Id: n.cfg.ID, RaftAddress: n.cfg.RaftAddr, GrpcAddress: n.cfg.GRPCAddr,
			})
			jcancel()
			if err == nil {
				n.log.Info("joined cluster", zap.String("through", addr))
				return
			}
		}
		n.log.Info("join failed, retrying", zap.String("through", addr), zap.Error(err))
		if !n.sleep(ctx, time.Second) {
			return
		}
	}
}
