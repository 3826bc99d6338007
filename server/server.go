package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// DefaultShutdownTimeout is how long Shutdown lets in-flight RPCs finish when
// Config.ShutdownTimeout is zero.
const DefaultShutdownTimeout = 5 * time.Second

// Config configures a Server. The addresses are where the caller (cmd/conclave) listens;
// the server itself serves whatever listeners it is handed.
type Config struct {
	// GRPCAddr is the gRPC listen address (KVService, ClusterService, health, reflection).
	GRPCAddr string
	// MetricsAddr is the HTTP listen address of /metrics; empty disables it.
	MetricsAddr string
	// ShutdownTimeout bounds the graceful part of Shutdown; zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// Server is the gRPC server of one node plus its metrics endpoint. Create it with New,
// register any extra services on GRPC(), then Serve (and ServeMetrics); Shutdown stops both.
type Server struct {
	cfg      Config
	node     Node
	log      *zap.Logger
	grpc     *grpc.Server
	health   *health.Server
	metrics  *rpcMetrics
	registry *prometheus.Registry

	stop       chan struct{} // closed by Shutdown
	healthDone chan struct{} // closed when watchHealth returns
	stopOnce   sync.Once

	mu   sync.Mutex
	http *http.Server // set by ServeMetrics
}

// New builds the server: interceptors, KVService, ClusterService, grpc.health.v1 ("" is
// SERVING while the server is up; conclave.v1.KVService is SERVING only while the node
// knows a leader) and reflection. It starts the goroutine that keeps health current;
// call Shutdown to stop it.
func New(cfg Config, node Node, log *zap.Logger) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{
		cfg:        cfg,
		node:       node,
		log:        log,
		health:     health.NewServer(),
		metrics:    newRPCMetrics(),
		stop:       make(chan struct{}),
		healthDone: make(chan struct{}),
	}
	s.registry = newRegistry(s.metrics, node, log)
	opts := append(s.interceptors(), grpc.MaxRecvMsgSize(maxRecvMsgBytes))
	s.grpc = grpc.NewServer(opts...)
	conclavev1grpc.RegisterKVServiceServer(s.grpc, &kvService{node: node})
	conclavev1grpc.RegisterClusterServiceServer(s.grpc, &clusterService{node: node})
	conclavev1grpc.RegisterSessionServiceServer(s.grpc, &sessionService{node: node})
	conclavev1grpc.RegisterLockServiceServer(s.grpc, &lockService{node: node})
	conclavev1grpc.RegisterElectionServiceServer(s.grpc, &electionService{node: node})
	conclavev1grpc.RegisterRateLimitServiceServer(s.grpc, &rateLimitService{node: node})
	conclavev1grpc.RegisterSortedSetServiceServer(s.grpc, &sortedSetService{node: node})
	registerEnvoy(s.grpc, node)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.setKVHealth()
	go s.watchHealth()
	return s
}

// stopping reports whether Shutdown has begun.
func (s *Server) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// Registry is the Prometheus registry /metrics serves, for collectors that live outside
// this package (raft's own go-metrics, bridged by the serve command).
func (s *Server) Registry() prometheus.Registerer { return s.registry }

// GRPC is the underlying gRPC server, for registering further services (cluster's
// internal ForwardService) before Serve is called.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Serve serves gRPC on lis until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	return s.grpc.Serve(lis)
}

// ServeMetrics serves /metrics over HTTP on lis until Shutdown; it returns nil after
// Shutdown.
func (s *Server) ServeMetrics(lis net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	// Profiles for finding where time goes (loopback metrics port; as etcd's --enable-pprof).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		lis.Close()
		return nil
	default:
	}
	s.http = hs
	s.mu.Unlock()
	if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown marks every health service NOT_SERVING, stops the health goroutine, ends open
// streams (they fail with Unavailable), lets in-flight unary RPCs finish for up to ShutdownTimeout (or until ctx ends) and then stops the
// gRPC server hard, and shuts the metrics server down. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		// NOT_SERVING first, so watchers hear it before their streams end.
		s.health.Shutdown()
		s.mu.Lock()
		close(s.stop)
		hs := s.http
		s.mu.Unlock()
		<-s.healthDone

		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		timer := time.NewTimer(s.cfg.ShutdownTimeout)
		defer timer.Stop()
		select {
		case <-stopped:
		case <-timer.C:
			s.log.Warn("graceful stop timed out; stopping", zap.Duration("timeout", s.cfg.ShutdownTimeout))
			s.grpc.Stop()
		case <-ctx.Done():
			s.grpc.Stop()
		}
		<-stopped

		if hs != nil {
			if herr := hs.Shutdown(ctx); herr != nil {
				err = herr
				hs.Close()
			}
		}
	})
	return err
}
