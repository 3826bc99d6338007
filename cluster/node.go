package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Node is one member of a Conclave cluster: a raft instance around an fsm.Machine, plus
// the pieces that make any node able to serve any request (forwarding, ReadIndex).
// Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	log     *zap.Logger
	raft    *raft.Raft
	machine *fsm.Machine
	applied *notifier // after each apply
	// leadership is notified whenever raft reports this node gained or lost leadership.
	leadership *notifier
	store      *raftboltdb.BoltStore
	trans      *raft.NetworkTransport

	leaderReads   *batcher[struct{}, ReadPoint]
	followerReads *batcher[struct{}, ReadPoint]
	forwards      *batcher[*fsmv1.Command, *fsmv1.Result]
	sessions      sessionTracker
	conns         *connPool

	shutdownOnce sync.Once
	shutdownCh   chan struct{}
	// ctx is cancelled at shutdown; the node's own outgoing calls derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens (or creates) the node's storage, starts raft, and bootstraps or joins as the
// configuration says. A node that already has raft state never bootstraps again.
func New(cfg Config, log *zap.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With(zap.String("node-id", cfg.ID))
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	n := &Node{
		cfg:        cfg,
		log:        log,
		machine:    fsm.New(),
		applied:    newNotifier(),
		leadership: newNotifier(),
		conns:      newConnPool(),
		shutdownCh: make(chan struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.leaderReads = newBatcher(n, 1, 0, readBatch(n.leaderReadRound))
	n.followerReads = newBatcher(n, 1, 0, readBatch(n.askLeaderReadIndex))
	n.forwards = newBatcher(n, maxForwardsInFlight, maxForwardBatch, n.forwardBatch)
	if err := n.startRaft(); err != nil {
		n.conns.close()
		return nil, err
	}
	n.wg.Add(5)
	go n.forwards.run()
	go n.leaderReads.run()
	go n.followerReads.run()
	go n.leaderLoop()
	go n.registerSelf()
	return n, nil
}

func (n *Node) startRaft() error {
	rlog := newRaftLogger(n.log)
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(n.cfg.ID)
	conf.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	conf.ElectionTimeout = n.cfg.ElectionTimeout
	conf.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	conf.SnapshotThreshold = n.cfg.SnapshotThreshold
	conf.TrailingLogs = n.cfg.TrailingLogs
	conf.SnapshotInterval = n.cfg.SnapshotInterval
	conf.Logger = rlog
	// Group commit: the leader takes up to MaxAppendEntries waiting proposals into one
	// append (one fsync), and a follower stores each AppendEntries batch with one fsync.
	conf.MaxAppendEntries = 512
	conf.BatchApplyCh = true

	// fsync on every commit (NoSync stays false). The freelist is not written with each
	// commit but rebuilt when the file is opened, as etcd does: one page less per append.
	store, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(n.cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{
			Timeout:        time.Second,
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
	if err != nil {
		return fmt.Errorf("cluster: open raft.db: %w", err)
	}
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		store.Close()
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, 2, rlog)
	if err != nil {
		store.Close()
		return fmt.Errorf("cluster: snapshot store: %w", err)
	}
	tconf := &raft.NetworkTransportConfig{MaxPool: 3, Timeout: 10 * time.Second, Logger: rlog}
	if len(n.cfg.PeerAddrs) > 0 {
		tconf.ServerAddressProvider = peerAddrs{n}
	}
	trans, err := raft.NewTCPTransportWithConfig(n.cfg.RaftAddr, nil, tconf)
	if err != nil {
		store.Close()
		return fmt.Errorf("cluster: raft transport on %s: %w", n.cfg.RaftAddr, err)
	}
	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		store.Close()
		trans.Close()
		return err
	}
	r, err := raft.NewRaft(conf, &raftFSM{m: n.machine, applied: n.applied}, logs, store, snaps, trans)
	if err != nil {
		store.Close()
		trans.Close()
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft, n.store, n.trans = r, store, trans

	switch {
	case existing:
		n.log.Info("recovering from existing raft state")
	case n.cfg.Join != "":
		n.wg.Add(1)
		go n.joinThrough(n.cfg.Join)
	case len(n.cfg.InitialCluster) > 0:
		var servers []raft.Server
		for _, p := range n.cfg.InitialCluster {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.Close()
			return fmt.Errorf("cluster: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped initial cluster", zap.Int("voters", len(servers)))
	default:
		n.log.Warn("no state, no initial cluster and nothing to join: waiting to be added")
	}
	return nil
}

// ID is this node's raft server id.
func (n *Node) ID() string { return n.cfg.ID }

// Machine is the node's state machine, for tests and tools that compare replicas.
func (n *Node) Machine() *fsm.Machine { return n.machine }

// LeaderKnown reports whether this node currently knows a leader.
func (n *Node) LeaderKnown() bool {
	_, id := n.raft.LeaderWithID()
	return id != ""
}

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Header returns a response header for a write applied at revision.
func (n *Node) Header(revision uint64) *conclavev1.ResponseHeader {
	return &conclavev1.ResponseHeader{
		Revision:     revision,
		NodeId:       n.cfg.ID,
		RaftTerm:     n.raft.CurrentTerm(),
		AppliedIndex: n.machine.AppliedIndex(),
	}
}

// Close stops the node's goroutines, raft and storage. It is safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.shutdownOnce.Do(func() {
		close(n.shutdownCh)
		n.cancel()
		err = n.raft.Shutdown().Error()
		n.wg.Wait()
		n.conns.close()
		if cerr := n.trans.Close(); err == nil {
			err = cerr
		}
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// sleep waits for d or until shutdown/ctx, reporting whether to go on.
func (n *Node) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-n.shutdownCh:
		return false
	}
}

// connPool keeps one gRPC connection per peer address.
type connPool struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newConnPool() *connPool { return &connPool{conns: map[string]*grpc.ClientConn{}} }

func (p *connPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}

// peerAddrs is the raft transport's ServerAddressProvider when Config.PeerAddrs is set:
// a listed peer is dialled at its override, any other at the member table's address.
type peerAddrs struct{ n *Node }

func (p peerAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if addr, ok := p.n.cfg.PeerAddrs[string(id)]; ok {
		return raft.ServerAddress(addr), nil
	}
	if m := p.n.member(string(id)); m != nil && m.GetRaftAddress() != "" {
		return raft.ServerAddress(m.GetRaftAddress()), nil
	}
	return "", fmt.Errorf("cluster: no address for peer %q", id)
}
