package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// rpcMetrics counts and times every RPC by full method name.
type rpcMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newRPCMetrics() *rpcMetrics {
	return &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conclave_grpc_requests_total",
			Help: "gRPC requests handled, by full method name and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "conclave_grpc_request_duration_seconds",
			Help:    "Time to handle a gRPC request (for streams, the stream's lifetime), by full method name.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18), // 100µs .. ~13s
		}, []string{"method"}),
	}
}

func (m *rpcMetrics) observe(method string, start time.Time, err error) {
	m.requests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

func (m *rpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

func (m *rpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}

// raftStates are the values of StatusResponse.raft_state; conclave_raft_state has one
// series per state, 1 for the current one.
var raftStates = []string{"Follower", "Candidate", "Leader", "Shutdown"}

// nodeCollector reads node.Status at scrape time and reports raft and FSM gauges.
type nodeCollector struct {
	node    Node
	log     *zap.Logger
	term    *prometheus.Desc
	commit  *prometheus.Desc
	applied *prometheus.Desc
	leader  *prometheus.Desc
	state   *prometheus.Desc
	keys    *prometheus.Desc
}

func newNodeCollector(node Node, log *zap.Logger) *nodeCollector {
	return &nodeCollector{
		node:    node,
		log:     log,
		term:    prometheus.NewDesc("conclave_raft_term", "Current raft term of this node.", nil, nil),
		commit:  prometheus.NewDesc("conclave_raft_commit_index", "Raft commit index known to this node.", nil, nil),
		applied: prometheus.NewDesc("conclave_raft_applied_index", "Last raft index applied to this node's state machine.", nil, nil),
		leader:  prometheus.NewDesc("conclave_raft_is_leader", "1 if this node is the raft leader, else 0.", nil, nil),
		state:   prometheus.NewDesc("conclave_raft_state", "1 for this node's current raft state, 0 for the others.", []string{"state"}, nil),
		keys:    prometheus.NewDesc("conclave_fsm_keys", "Keys stored in the state machine, including expired keys not yet deleted.", nil, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.term, c.commit, c.applied, c.leader, c.state, c.keys} {
		ch <- d
	}
}

// Collect asks the node for its status; a node that cannot answer contributes no series.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.node.Status(ctx)
	if err != nil {
		c.log.Debug("metrics: node status unavailable", zap.Error(err))
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.term, float64(st.GetTerm()))
	gauge(c.commit, float64(st.GetCommitIndex()))
	gauge(c.applied, float64(st.GetAppliedIndex()))
	gauge(c.leader, boolFloat(st.GetRaftState() == "Leader"))
	gauge(c.keys, float64(st.GetKeyCount()))
	known := false
	for _, s := range raftStates {
		known = known || s == st.GetRaftState()
		gauge(c.state, boolFloat(s == st.GetRaftState()), s)
	}
	if !known && st.GetRaftState() != "" {
		gauge(c.state, 1, st.GetRaftState())
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newRegistry is the server's own Prometheus registry: Go runtime and process
// collectors, the RPC metrics and the node gauges.
func newRegistry(m *rpcMetrics, node Node, log *zap.Logger) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests,
		m.duration,
		newNodeCollector(node, log),
	)
	return reg
}
