package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// leaderLoop runs the leader-only work for as long as this node leads: it proposes
// LeaderStart for the new term, then expires due keys and promotes caught-up non-voters.
// Followers never run timers that change state.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	stop := func() {}
	defer func() { stop() }()
	leaderCh := n.raft.LeaderCh() // keeps only the latest value, so restart on every signal
	for {
		select {
		case isLeader := <-leaderCh:
			n.leadership.notify()
			stop()
			stop = func() {}
			if isLeader {
				stop = n.startLeading()
			}
		case <-n.shutdownCh:
			return
		}
	}
}

// startLeading runs lead in a goroutine and returns a function that stops it and waits.
func (n *Node) startLeading() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.lead(ctx) }()
	return func() {
		cancel()
		<-done
	}
}

func (n *Node) lead(ctx context.Context) {
	term := n.raft.CurrentTerm()
	n.log.Info("became leader", zap.Uint64("raft-term", term))
	start := &fsmv1.Command{Op: &fsmv1.Command_LeaderStart{LeaderStart: &fsmv1.LeaderStart{
		Term:   term,
		Member: &fsmv1.Member{Id: n.cfg.ID, RaftAddress: n.cfg.RaftAddr, GrpcAddress: n.cfg.GRPCAddr},
	}}}
	for {
		if _, err := n.ApplyLocal(ctx, start); err == nil {
			break
		} else if !n.sleep(ctx, 50*time.Millisecond) {
			return
		}
	}
	n.sessions.start(n.machine, n.cfg.Clock())
	defer n.sessions.stop()
	expire := time.NewTicker(n.cfg.ExpireInterval)
	defer expire.Stop()
	promote := time.NewTicker(time.Second)
	defer promote.Stop()
	for {
		select {
		case <-expire.C:
			n.expireDue(ctx)
			n.expireSessions(ctx)
		case <-promote.C:
			n.promoteCaughtUp(ctx)
		case <-ctx.Done():
			return
		case <-n.shutdownCh:
			return
		}
	}
}

// expireDue proposes ExpireDue commands while keys are due, each deleting a bounded batch.
func (n *Node) expireDue(ctx context.Context) {
	for {
		due := 0
		n.machine.Read(n.cfg.Clock().UnixNano(), func(v *fsm.View) { due = v.DueCount(1) })
		if due == 0 {
			return
		}
		cmd := &fsmv1.Command{Op: &fsmv1.Command_ExpireDue{ExpireDue: &fsmv1.ExpireDue{Limit: n.cfg.ExpireBatch}}}
		if _, err := n.ApplyLocal(ctx, cmd); err != nil {
			return
		}
	}
}

// promoteCaughtUp makes a non-voter a voter once its applied index has reached the
// commit index the leader had when it asked.
func (n *Node) promoteCaughtUp(ctx context.Context) {
	f := n.raft.GetConfiguration()
	if n.futureErr(f) != nil {
		return
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		m := n.member(string(s.ID))
		if m == nil || m.GetGrpcAddress() == "" {
			continue
		}
		target := n.raft.CommitIndex()
		conn, err := n.conns.get(m.GetGrpcAddress())
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := conclavev1grpc.NewClusterServiceClient(conn).Status(sctx, &conclavev1.StatusRequest{})
		cancel()
		if err != nil || st.GetAppliedIndex() < target {
			continue
		}
		if err := n.futureErr(n.raft.AddVoter(s.ID, s.Address, f.Index(), 0)); err != nil {
			n.log.Warn("promote non-voter", zap.String("member-id", string(s.ID)), zap.Error(err))
			continue
		}
		n.log.Info("promoted non-voter", zap.String("member-id", string(s.ID)))
		return // the configuration changed; look again next tick
	}
}

// registerSelf puts this node's addresses in the replicated member table (forwarding
// to the leader) whenever the table lacks them while the node is in raft's
// configuration, so every node can be found by its id and a removed node does not
// write itself back.
func (n *Node) registerSelf() {
	defer n.wg.Done()
	self := &fsmv1.Member{Id: n.cfg.ID, RaftAddress: n.cfg.RaftAddr, GrpcAddress: n.cfg.GRPCAddr}
	ctx := n.ctx
	for {
		if m := n.member(n.cfg.ID); m == nil || m.GetGrpcAddress() != self.GrpcAddress || m.GetRaftAddress() != self.RaftAddress {
			if n.LeaderKnown() && n.inConfiguration(n.cfg.ID) {
				actx, acancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := n.Apply(actx, &fsmv1.Command{Op: &fsmv1.Command_MemberPut{MemberPut: &fsmv1.MemberPut{Member: self}}})
				acancel()
				if err != nil {
					n.log.Debug("register self in member table", zap.Error(err))
				}
			}
		}
		if !n.sleep(ctx, 500*time.Millisecond) {
			return
		}
	}
}

// inConfiguration reports whether id is a server in raft's latest configuration.
func (n *Node) inConfiguration(id string) bool {
	f := n.raft.GetConfiguration()
	if n.futureErr(f) != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}
