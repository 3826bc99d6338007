package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	gometricsprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/conclave-dev/conclave/cluster"
	"github.com/conclave-dev/conclave/server"
)

// newServeCmd is `conclave serve`: one node of a cluster, serving the public API, the
// internal forwarding service and /metrics until SIGINT or SIGTERM.
func newServeCmd() *cobra.Command {
	cfg := cluster.DefaultConfig()
	var initial, peerAddrs, metricsAddr, logLevel string
	var shutdownTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one Conclave node",
		Long: `Run one Conclave node. Every flag can also be set with a CONCLAVE_* environment
variable (--grpc-addr is CONCLAVE_GRPC_ADDR). Start each node of a new cluster with the
same --initial-cluster; a node that already has data recovers it and never bootstraps
again. A new node joins a running cluster with --join ADDR (the gRPC address of a member).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			peers, err := cluster.ParseInitialCluster(initial)
			if err != nil {
				return err
			}
			cfg.InitialCluster = peers
			if cfg.PeerAddrs, err = cluster.ParsePeerAddrs(peerAddrs); err != nil {
				return err
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			defer log.Sync()
			return serve(cmd.Context(), cfg, metricsAddr, shutdownTimeout, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "this node's raft server id (required)")
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:7001", "gRPC listen address (clients and peers)")
	f.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7101", "raft transport listen address")
	f.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:7201", "HTTP address for /metrics (empty: off)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the raft log and snapshots (required)")
	f.StringVar(&initial, "initial-cluster", "", "static initial cluster: n1=raft-addr,n2=raft-addr,...")
	f.StringVar(&cfg.Join, "join", "", "gRPC address of a member to join through, for a new node")
	f.StringVar(&peerAddrs, "raft-peer-addrs", "", "dial these raft addresses for these peers instead of their configured ones: n2=host:port,... (a proxy or NAT)")
	f.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", cfg.HeartbeatTimeout, "raft heartbeat timeout")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", cfg.ElectionTimeout, "raft election timeout")
	f.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", cfg.SnapshotThreshold, "log entries between snapshots")
	f.Uint64Var(&cfg.TrailingLogs, "trailing-logs", cfg.TrailingLogs, "log entries kept after a snapshot")
	f.DurationVar(&shutdownTimeout, "shutdown-timeout", 5*time.Second, "graceful shutdown limit")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	zc.EncoderConfig.TimeKey = "time"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return zc.Build()
}

func serve(ctx context.Context, cfg cluster.Config, metricsAddr string, shutdownTimeout time.Duration, log *zap.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.GRPCAddr, err)
	}
	node, err := cluster.New(cfg, log)
	if err != nil {
		lis.Close()
		return err
	}
	srv := server.New(server.Config{GRPCAddr: cfg.GRPCAddr, MetricsAddr: metricsAddr, ShutdownTimeout: shutdownTimeout}, node, log)
	node.RegisterForwardService(srv.GRPC())
	if err := bridgeRaftMetrics(srv.Registry()); err != nil {
		log.Warn("raft metrics not exported", zap.Error(err))
	}

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()
	if metricsAddr != "" {
		mlis, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			srv.Shutdown(context.Background())
			node.Close()
			return fmt.Errorf("listen on %s: %w", metricsAddr, err)
		}
		go func() { errc <- srv.ServeMetrics(mlis) }()
	}
	log.Info("serving", zap.String("grpc-addr", cfg.GRPCAddr), zap.String("raft-addr", cfg.RaftAddr), zap.String("metrics-addr", metricsAddr))

	sig, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-sig.Done():
		log.Info("shutting down")
	case err = <-errc:
		log.Error("server stopped", zap.Error(err))
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout+time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if cerr := node.Close(); cerr != nil && !errors.Is(cerr, cluster.ErrShutdown) {
		log.Warn("closing node", zap.Error(cerr))
	}
	return err
}

// bridgeRaftMetrics sends what hashicorp/raft reports through go-metrics (commit and
// apply times, replication, snapshot timings …) to the node's Prometheus registry as
// conclave_raft_* series. go-metrics is process-global, so serve calls it once.
func bridgeRaftMetrics(reg prometheus.Registerer) error {
	sink, err := gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{
		Registerer: reg,
		Expiration: time.Minute,
		Name:       "conclave_raft_go_metrics",
	})
	if err != nil {
		return err
	}
	conf := gometrics.DefaultConfig("conclave")
	conf.EnableHostname = false
	conf.EnableRuntimeMetrics = false // the Go collector already reports these
	_, err = gometrics.NewGlobal(conf, sink)
	return err
}
