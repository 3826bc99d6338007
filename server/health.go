package server

import (
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// healthPollInterval is how often the KVService health status follows node.LeaderKnown.
const healthPollInterval = 250 * time.Millisecond

// kvServiceName is the health service name that reports whether KV requests can be served.
var kvServiceName = conclavev1grpc.KVService_ServiceDesc.ServiceName

// setKVHealth reports KVService SERVING exactly while the node knows a leader.
func (s *Server) setKVHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if s.node.LeaderKnown() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(kvServiceName, st)
}

// watchHealth keeps the KVService health status current until Shutdown. The health
// server only notifies watchers when a status changes, so setting it every tick is cheap.
func (s *Server) watchHealth() {
	defer close(s.healthDone)
	t := time.NewTicker(healthPollInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.setKVHealth()
		case <-s.stop:
			return
		}
	}
}
