package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// benchKeepAliveConfig is a `conclave bench keepalive` run. Of the embedded load, clients
// is the create concurrency and duration the measured keep-alive phase.
type benchKeepAliveConfig struct {
	benchLoad
	sessions   int
	ttl        time.Duration
	streams    int
	metrics    []string // metrics addresses; empty means derived from the members
	leaderOnly bool
	progress   io.Writer // where the phases are announced; nil means nowhere
}

// metricsPortOffset is where scripts/cluster.sh puts a node's metrics port: its gRPC
// port plus 200.
const metricsPortOffset = 200

func newBenchKeepAliveCmd(o *clientOptions) *cobra.Command {
	cfg := benchKeepAliveConfig{}
	cmd := &cobra.Command{
		Use:   "keepalive",
		Short: "Keep many sessions alive and measure what it costs the leader",
		Long: `Create --sessions sessions with --ttl (--create-clients concurrent calls, not
measured), then keep every one alive once per TTL/3, the keep-alives spread evenly over
time, over --streams KeepAliveStream streams (sessions multiplexed round robin, as etcd's
lease keep-alive does) sharing --conns connections spread over --endpoints. Keep-alives
start as soon as the first sessions exist; the measured phase is the --duration after the
last one is created.

It reports keep-alives sent and answered per second, their round-trip latency, sessions
lost (a keep-alive answered NotFound or with TTL 0) and, for every node, the CPU it used
during the measured phase (process_cpu_seconds_total scraped from its metrics endpoint
at both ends). --metrics lists those endpoints; by default they are the members' gRPC
ports plus 200, the layout of scripts/cluster.sh. --leader-only sends everything to the
current leader. At the end every session of the run is revoked with one RevokeByOwner.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			cfg.endpoints, cfg.timeout, cfg.progress = o.endpoints, o.timeout, cmd.ErrOrStderr()
			if err := cfg.validate(); err != nil {
				return err
			}
			res, err := runBenchKeepAlive(cmd.Context(), cfg)
			if err != nil && res.Sessions == 0 {
				return err
			}
			if o.json() {
				_ = printKeepAliveJSON(cmd.OutOrStdout(), res)
			} else {
				_ = printKeepAliveTable(cmd.OutOrStdout(), res)
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&cfg.sessions, "sessions", 100000, "sessions to create and keep alive")
	fs.DurationVar(&cfg.ttl, "ttl", 30*time.Second, "TTL of the sessions; each is kept alive every TTL/3")
	fs.IntVar(&cfg.clients, "create-clients", 64, "concurrent CreateSession calls")
	fs.IntVar(&cfg.streams, "streams", 100, "KeepAliveStream streams the sessions are multiplexed over")
	fs.IntVar(&cfg.conns, "conns", 8, "gRPC connections shared by the streams and the creates")
	fs.DurationVar(&cfg.duration, "duration", time.Minute, "how long to measure once every session exists")
	fs.StringSliceVar(&cfg.metrics, "metrics", nil, "comma-separated metrics addresses (host:port) of the nodes; default: each member's gRPC port + 200")
	fs.BoolVar(&cfg.leaderOnly, "leader-only", false, "send everything to the current leader instead of spreading over --endpoints")
	return cmd
}

func (c benchKeepAliveConfig) validate() error {
	switch {
	case c.sessions < 1:
		return errors.New("--sessions: must be at least 1")
	case c.ttl < 3*time.Millisecond:
		return fmt.Errorf("--ttl %v: must be at least 3ms", c.ttl)
	case c.clients < 1:
		return errors.New("--create-clients: must be at least 1")
	case c.streams < 1 || c.streams > c.sessions:
		return fmt.Errorf("--streams %d: must be from 1 to --sessions (%d)", c.streams, c.sessions)
	case c.conns < 1:
		return errors.New("--conns: must be at least 1")
	case c.duration <= 0:
		return errors.New("--duration: must be positive")
	}
	for _, a := range c.metrics {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("--metrics %q: want host:port", a)
		}
	}
	return nil
}

// keepAliveResult is what a keepalive run prints. Sent, Answered, Unanswered and the
// latencies count keep-alives scheduled inside the measured phase; Lost and Errors
// count the whole run.
type keepAliveResult struct {
	Endpoints     []string
	Owner         string
	Sessions      int
	TTL, Period   time.Duration
	Streams       int
	Conns         int
	CreateElapsed time.Duration
	CreateRetries int
	Elapsed       time.Duration
	Sent          int
	Answered      int
	Unanswered    int
	Lost          int
	Errors        int
	FirstError    string
	MaxLag        time.Duration // how late the generator sent a keep-alive, at worst
	Latency       latencySummary
	Nodes         []nodeCPU
	BenchCores    float64 // CPU of this process over the phase
	Revoked       int64
	RevokeError   string
}

func (r keepAliveResult) rate(n int) float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(n) / r.Elapsed.Seconds()
}

// runBenchKeepAlive creates the sessions, keeps them alive, measures the phase after the
// last create and revokes them. On an error after the sessions were created it returns
// the partial result with the error.
func runBenchKeepAlive(ctx context.Context, cfg benchKeepAliveConfig) (res keepAliveResult, err error) {
	progress := cfg.progress
	if progress == nil {
		progress = io.Discard
	}
	if cfg.leaderOnly {
		leader, err := leaderEndpoint(ctx, cfg.benchLoad)
		if err != nil {
			return keepAliveResult{}, err
		}
		cfg.endpoints = []string{leader}
	}
	conns, err := dialBench(ctx, cfg.benchLoad)
	if err != nil {
		return keepAliveResult{}, err
	}
	defer closeBench(conns)
	metrics := cfg.metrics
	if len(metrics) == 0 {
		if metrics, err = membersMetrics(ctx, conns[0], cfg.timeout); err != nil {
			return keepAliveResult{}, err
		}
	}
	res = keepAliveResult{
		Endpoints: cfg.endpoints, Owner: fmt.Sprintf("bench-keepalive-%d", time.Now().UnixNano()),
		Sessions: cfg.sessions, TTL: cfg.ttl, Period: cfg.ttl / 3, Streams: cfg.streams, Conns: cfg.conns,
	}
	defer func() { res.Revoked, res.RevokeError = revokeOwner(conns[0], res.Owner, progress) }()

	sched := &kaSchedule{start: time.Now(), period: res.Period, n: cfg.sessions}
	ids := make([]atomic.Uint64, cfg.sessions)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	streams := make([]*kaStream, cfg.streams)
	var wg sync.WaitGroup
	for j := range streams {
		s := &kaStream{j: j, of: cfg.streams, ids: ids, timeout: cfg.timeout,
			sc: conclavev1grpc.NewSessionServiceClient(conns[j%len(conns)])}
		s.lost = make([]bool, s.slots(cfg.sessions))
		streams[j] = s
		wg.Go(func() { s.run(runCtx, sched) })
	}

	fmt.Fprintf(progress, "creating %d sessions (owner %s, ttl %v) over %v\n", cfg.sessions, res.Owner, cfg.ttl, cfg.endpoints)
	retries, err := createSessions(runCtx, conns, cfg, res.Owner, ids)
	res.CreateElapsed, res.CreateRetries = time.Since(sched.start), retries
	if err != nil {
		stop()
		wg.Wait()
		return res, err
	}
	fmt.Fprintf(progress, "created in %v; measuring keep-alives for %v (cpu from %v)\n", res.CreateElapsed.Round(time.Millisecond), cfg.duration, metrics)

	before := scrapeNodes(ctx, metrics)
	cpu0, t0 := selfCPU(), time.Now()
	sched.measure(t0, t0.Add(cfg.duration))
	timer := time.NewTimer(cfg.duration)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	after := scrapeNodes(ctx, metrics)
	res.Elapsed = time.Since(t0)
	res.BenchCores = (selfCPU() - cpu0) / res.Elapsed.Seconds()
	res.Nodes = cpuUsed(before, after)
	wg.Wait()

	lat := make([][]time.Duration, len(streams))
	for i, s := range streams {
		res.Sent += s.sent
		res.Answered += s.answered
		res.Unanswered += s.unanswered
		res.Lost += s.lostN
		res.Errors += s.errors
		res.MaxLag = max(res.MaxLag, s.maxLag)
		if res.FirstError == "" && s.firstErr != nil {
			res.FirstError = s.firstErr.Error()
		}
		lat[i] = s.latencies
	}
	res.Latency = summarize(lat...)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: interrupted: %w", err)
	}
	return res, nil
}

// createSessions creates cfg.sessions sessions with cfg.clients concurrent calls; slot k
// gets the k-th request's id. A failed create is retried with the same request id (so
// the cluster's dedup table answers a create that did happen) a few times.
func createSessions(ctx context.Context, conns []*grpc.ClientConn, cfg benchKeepAliveConfig, owner string, ids []atomic.Uint64) (int, error) {
	var next, retries atomic.Int64
	errs := make([]error, cfg.clients)
	var wg sync.WaitGroup
	for w := range cfg.clients {
		sc := conclavev1grpc.NewSessionServiceClient(conns[w%len(conns)])
		wg.Go(func() {
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= int64(len(ids)) {
					return
				}
				req := &conclavev1.CreateSessionRequest{TtlMs: durationMs(cfg.ttl), Owner: owner, RequestId: owner + "/" + strconv.FormatInt(k, 10)}
				id, err := createOne(ctx, sc, req, cfg.timeout, &retries)
				if err != nil {
					errs[w] = fmt.Errorf("bench: create session %d: %w", k, err)
					return
				}
				ids[k].Store(id)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return int(retries.Load()), err
	}
	return int(retries.Load()), ctx.Err()
}

// createOne makes one CreateSession call, retrying what may succeed on a second try.
func createOne(ctx context.Context, sc conclavev1grpc.SessionServiceClient, req *conclavev1.CreateSessionRequest, timeout time.Duration, retries *atomic.Int64) (uint64, error) {
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := sc.CreateSession(cctx, req)
		cancel()
		if err == nil {
			return resp.GetId(), nil
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		default:
			return 0, err
		}
		if attempt == 5 || ctx.Err() != nil {
			return 0, err
		}
		retries.Add(1)
		t := time.NewTimer(time.Duration(attempt) * 100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// revokeOwner ends every session of the run in one RevokeByOwner (one raft entry).
func revokeOwner(cc *grpc.ClientConn, owner string, progress io.Writer) (int64, string) {
	fmt.Fprintf(progress, "revoking the sessions of %s\n", owner)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := conclavev1grpc.NewSessionServiceClient(cc).RevokeByOwner(ctx, &conclavev1.RevokeByOwnerRequest{Owner: owner, RequestId: owner + "/revoke"})
	if err != nil {
		return 0, err.Error() + " (the sessions expire after their TTL)"
	}
	return resp.GetRevoked(), ""
}

// leaderEndpoint asks the first endpoint that answers for the leader's gRPC address.
func leaderEndpoint(ctx context.Context, l benchLoad) (string, error) {
	var errs []error
	for _, ep := range l.endpoints {
		st, err := clusterStatus(ctx, benchLoad{endpoints: []string{ep}, timeout: l.timeout, conns: 1})
		if err == nil && st.GetLeaderAddress() != "" {
			return st.GetLeaderAddress(), nil
		}
		errs = append(errs, fmt.Errorf("%s: no leader known (%v)", ep, err))
	}
	return "", fmt.Errorf("bench: --leader-only: %w", errors.Join(errs...))
}

func clusterStatus(ctx context.Context, l benchLoad) (*conclavev1.StatusResponse, error) {
	conns, err := dialBench(ctx, l)
	if err != nil {
		return nil, err
	}
	defer closeBench(conns)
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	return conclavev1grpc.NewClusterServiceClient(conns[0]).Status(ctx, &conclavev1.StatusRequest{})
}

// membersMetrics returns the metrics address of every member: its gRPC port plus
// metricsPortOffset.
func membersMetrics(ctx context.Context, cc *grpc.ClientConn, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := conclavev1grpc.NewClusterServiceClient(cc).Status(ctx, &conclavev1.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("bench: cluster status, to find the metrics endpoints (or give --metrics): %w", err)
	}
	var out []string
	for _, m := range st.GetMembers() {
		host, port, err := net.SplitHostPort(m.GetGrpcAddress())
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			return nil, fmt.Errorf("bench: member %s has gRPC address %q; give --metrics", m.GetId(), m.GetGrpcAddress())
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(p+metricsPortOffset)))
	}
	return out, nil
}

func printKeepAliveTable(w io.Writer, r keepAliveResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "endpoints:\t%v\n", r.Endpoints)
	fmt.Fprintf(tw, "sessions:\t%d (ttl %v, a keep-alive each every %v)\n", r.Sessions, r.TTL, r.Period)
	fmt.Fprintf(tw, "streams:\t%d over %d conns\n", r.Streams, r.Conns)
	fmt.Fprintf(tw, "create:\t%s (%.0f sessions/s, %d retries)\n", r.CreateElapsed.Round(time.Millisecond),
		float64(r.Sessions)/max(r.CreateElapsed.Seconds(), 1e-9), r.CreateRetries)
	fmt.Fprintf(tw, "measured:\t%s\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "sent:\t%d (%.1f/s)\n", r.Sent, r.rate(r.Sent))
	fmt.Fprintf(tw, "answered:\t%d (%.1f/s)\n", r.Answered, r.rate(r.Answered))
	fmt.Fprintf(tw, "unanswered:\t%d\n", r.Unanswered)
	fmt.Fprintf(tw, "lost sessions:\t%d\n", r.Lost)
	fmt.Fprintf(tw, "stream errors:\t%d\n", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(tw, "first error:\t%s\n", r.FirstError)
	}
	fmt.Fprintf(tw, "schedule lag max:\t%s\n", r.MaxLag.Round(time.Microsecond))
	l := r.Latency
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"p50", l.P50}, {"p90", l.P90}, {"p99", l.P99}, {"p99.9", l.P999}, {"max", l.Max}} {
		fmt.Fprintf(tw, "latency %s:\t%s\n", p.name, p.d.Round(time.Microsecond))
	}
	for _, n := range r.Nodes {
		if n.Err != "" {
			fmt.Fprintf(tw, "cpu %s:\t%s\n", n.Addr, n.Err)
			continue
		}
		fmt.Fprintf(tw, "cpu %s (%s):\t%.3f cores (%.2f s over %s)\n", n.Addr, n.role(), n.Cores, n.CPUSeconds, n.Wall.Round(time.Millisecond))
	}
	fmt.Fprintf(tw, "cpu bench process:\t%.3f cores\n", r.BenchCores)
	if r.RevokeError != "" {
		fmt.Fprintf(tw, "revoke:\t%s\n", r.RevokeError)
	} else {
		fmt.Fprintf(tw, "revoked:\t%d (owner %s)\n", r.Revoked, r.Owner)
	}
	return tw.Flush()
}

// keepAliveJSON is the JSON form of a keepAliveResult; durations are in milliseconds
// unless named _s.
type keepAliveJSON struct {
	Endpoints      []string      `json:"endpoints"`
	Owner          string        `json:"owner"`
	Sessions       int           `json:"sessions"`
	TTLMs          float64       `json:"ttl_ms"`
	PeriodMs       float64       `json:"period_ms"`
	Streams        int           `json:"streams"`
	Conns          int           `json:"conns"`
	CreateS        float64       `json:"create_s"`
	CreateRetries  int           `json:"create_retries"`
	DurationS      float64       `json:"duration_s"`
	Sent           int           `json:"sent"`
	SentPerSec     float64       `json:"sent_per_s"`
	Answered       int           `json:"answered"`
	AnsweredPerSec float64       `json:"answered_per_s"`
	Unanswered     int           `json:"unanswered"`
	Lost           int           `json:"lost"`
	Errors         int           `json:"errors"`
	FirstError     string        `json:"first_error,omitempty"`
	MaxLagMs       float64       `json:"max_lag_ms"`
	P50Ms          float64       `json:"p50_ms"`
	P90Ms          float64       `json:"p90_ms"`
	P99Ms          float64       `json:"p99_ms"`
	P999Ms         float64       `json:"p99_9_ms"`
	MaxMs          float64       `json:"max_ms"`
	Nodes          []nodeCPUJSON `json:"nodes"`
	BenchCores     float64       `json:"bench_cores"`
	Revoked        int64         `json:"revoked"`
	RevokeError    string        `json:"revoke_error,omitempty"`
}

type nodeCPUJSON struct {
	Addr       string  `json:"metrics_addr"`
	Role       string  `json:"role"`
	CPUSeconds float64 `json:"cpu_s"`
	WallS      float64 `json:"wall_s"`
	Cores      float64 `json:"cores"`
	Error      string  `json:"error,omitempty"`
}

func printKeepAliveJSON(w io.Writer, r keepAliveResult) error {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	out := keepAliveJSON{
		Endpoints: r.Endpoints, Owner: r.Owner, Sessions: r.Sessions, TTLMs: ms(r.TTL), PeriodMs: ms(r.Period),
		Streams: r.Streams, Conns: r.Conns, CreateS: r.CreateElapsed.Seconds(), CreateRetries: r.CreateRetries,
		DurationS: r.Elapsed.Seconds(), Sent: r.Sent, SentPerSec: r.rate(r.Sent), Answered: r.Answered,
		AnsweredPerSec: r.rate(r.Answered), Unanswered: r.Unanswered, Lost: r.Lost, Errors: r.Errors,
		FirstError: r.FirstError, MaxLagMs: ms(r.MaxLag),
		P50Ms: ms(r.Latency.P50), P90Ms: ms(r.Latency.P90), P99Ms: ms(r.Latency.P99), P999Ms: ms(r.Latency.P999), MaxMs: ms(r.Latency.Max),
		BenchCores: r.BenchCores, Revoked: r.Revoked, RevokeError: r.RevokeError,
	}
	for _, n := range r.Nodes {
		out.Nodes = append(out.Nodes, nodeCPUJSON{Addr: n.Addr, Role: n.role(), CPUSeconds: n.CPUSeconds, WallS: n.Wall.Seconds(), Cores: n.Cores, Error: n.Err})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
