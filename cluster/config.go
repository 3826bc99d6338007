package cluster

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"
)

// Peer is one member of the static initial cluster.
type Peer struct {
	ID       string
	RaftAddr string
}

// Config configures one node. Build it with DefaultConfig and check it with Validate.
type Config struct {
	// ID is this node's raft server id (stable for the node's life).
	ID string
	// RaftAddr is the loopback or LAN address the raft TCP transport binds and advertises.
	RaftAddr string
	// GRPCAddr is the address clients and peers reach this node's gRPC server on.
	GRPCAddr string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// InitialCluster, when the node has no state yet and Join is empty, bootstraps the
	// cluster with exactly these voters. Every initial node must be given the same list.
	InitialCluster []Peer
	// Join is the gRPC address of a running member to join through when the node has no
	// state yet. The node enters as a non-voter and the leader promotes it once caught up.
	Join string
	// PeerAddrs overrides, per raft server id, the address this node dials to reach that
	// peer (a proxy or a NAT address); peers not listed are dialled at the address in the
	// replicated member table. Empty means dial every peer at its configured address.
	PeerAddrs map[string]string

	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout tune raft.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// SnapshotThreshold is how many log entries trigger a snapshot; TrailingLogs how
	// many entries a snapshot leaves in the log for slow followers.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	// ExpireInterval is how often the leader looks for due TTL deadlines; ExpireBatch is
	// the most keys one ExpireDue command deletes.
	ExpireInterval time.Duration
	ExpireBatch    uint32
	// ForwardTimeout bounds a forwarded request when the caller set no deadline.
	ForwardTimeout time.Duration
	// Clock is the wall clock the leader stamps commands and read points with (and a
	// STALE read judges TTLs by). Tests skew it; nil means time.Now.
	Clock func() time.Time
}

// DefaultConfig returns a configuration with raft's timing defaults and everything but
// the node's identity, addresses and data directory filled in.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		SnapshotInterval:   2 * time.Minute,
		ExpireInterval:     100 * time.Millisecond,
		ExpireBatch:        1000,
		ForwardTimeout:     10 * time.Second,
		Clock:              time.Now,
	}
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("cluster: config: id must not be empty")
	case c.DataDir == "":
		return errors.New("cluster: config: data dir must not be empty")
	case c.ExpireBatch == 0 || c.ExpireInterval <= 0:
		return errors.New("cluster: config: expire interval and batch must be positive")
	case c.Clock == nil:
		return errors.New("cluster: config: clock must be set (DefaultConfig sets time.Now)")
	}
	for _, a := range []struct{ name, addr string }{{"raft", c.RaftAddr}, {"grpc", c.GRPCAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("cluster: config: %s address %q: %v", a.name, a.addr, err)
		}
	}
	if len(c.InitialCluster) > 0 {
		found := false
		for _, p := range c.InitialCluster {
			if p.ID == c.ID {
				found = true
				if p.RaftAddr != c.RaftAddr {
					return fmt.Errorf("cluster: config: initial cluster gives %s raft address %s, but the node's is %s", p.ID, p.RaftAddr, c.RaftAddr)
				}
			}
		}
		if !found && c.Join == "" {
			return fmt.Errorf("cluster: config: initial cluster does not name this node %q", c.ID)
		}
	}
	return nil
}

// ParsePeerAddrs parses "n2=host:port,n3=host:port" into a map from id to address.
func ParsePeerAddrs(s string) (map[string]string, error) {
	peers, err := ParseInitialCluster(s)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(peers))
	for _, p := range peers {
		out[p.ID] = p.RaftAddr
	}
	return out, nil
}

// ParseInitialCluster parses "n1=host:port,n2=host:port" into peers sorted by id.
func ParseInitialCluster(s string) ([]Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("cluster: initial cluster entry %q: want id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("cluster: initial cluster entry %q: %v", part, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("cluster: initial cluster names %q twice", id)
		}
		seen[id] = true
		peers = append(peers, Peer{ID: id, RaftAddr: addr})
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	return peers, nil
}
