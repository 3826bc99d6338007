// Package cluster runs one Conclave node's raft machinery around the fsm package: raft
// setup on raft-boltdb (fsync always) under a log cache, the TCP transport, bootstrap of
// a static initial cluster and runtime membership, forwarding of writes from followers to
// the leader, batched ReadIndex for linearizable reads on any node, and the leader-only
// timers (TTL expiry).
//
// It must not know about gRPC services other than its own internal ForwardService, nor
// map errors to gRPC codes: that is server/'s job.
package cluster
