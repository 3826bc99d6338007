package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newBenchCmd builds `conclave bench` and its subcommands.
func newBenchCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a cluster's throughput and latency",
	}
	o.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(newBenchKVCmd(o), newBenchSessionCmd(o), newBenchLockCmd(o), newBenchKeepAliveCmd(o), newBenchRateLimitCmd(o), newBenchZsetCmd(o))
	return cmd
}

// benchRunE returns a RunE that validates o, fills load from it, validates the run with
// validate, calls run and prints its result in o's format.
func benchRunE(o *clientOptions, load *benchLoad, validate func() error, run func(context.Context) (benchResult, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if err := o.validate(); err != nil {
			return err
		}
		load.endpoints = o.endpoints
		load.timeout = o.timeout
		if err := validate(); err != nil {
			return err
		}
		res, err := run(cmd.Context())
		if err != nil {
			return err
		}
		if o.json() {
			return printBenchJSON(cmd.OutOrStdout(), res)
		}
		return printBenchTable(cmd.OutOrStdout(), res)
	}
}

func newBenchKVCmd(o *clientOptions) *cobra.Command {
	cfg := benchKVConfig{}
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Load the KV service with concurrent clients",
		Long: `Load the KV service with --clients goroutines sharing --conns gRPC connections
spread round robin over --endpoints. Calls go straight to the generated client, without the
client package's failover and retries, so the numbers are the server's. --op mixed is 80%
get and 20% set. --timeout bounds each call.`,
		Args: cobra.NoArgs,
		RunE: benchRunE(o, &cfg.benchLoad, func() error { return cfg.validate() },
			func(ctx context.Context) (benchResult, error) { return runBenchKV(ctx, cfg) }),
	}
	fs := cmd.Flags()
	cfg.addFlags(fs, 64)
	fs.StringVar(&cfg.op, "op", opSet, "operation: set, get, incr or mixed (80% get, 20% set)")
	fs.IntVar(&cfg.valueSize, "value-size", 256, "bytes per value written")
	fs.IntVar(&cfg.keys, "keys", 10000, "number of distinct keys, chosen uniformly")
	fs.StringVar(&cfg.consistency, "consistency", "linearizable", "read consistency: linearizable or stale")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the clients' random key choice")
	return cmd
}

func newBenchSessionCmd(o *clientOptions) *cobra.Command {
	cfg := benchSessionConfig{}
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Create and revoke sessions with concurrent clients",
		Long: `Run --clients goroutines, sharing --conns gRPC connections spread round robin over
--endpoints, that each create a session and revoke it, back to back. One cycle (two raft
writes) is measured; the throughput is in cycles per second. Calls go straight to the
generated client, without failover or retries. --timeout bounds each cycle.`,
		Args: cobra.NoArgs,
		RunE: benchRunE(o, &cfg.benchLoad, func() error { return cfg.validate() },
			func(ctx context.Context) (benchResult, error) { return runBenchSession(ctx, cfg) }),
	}
	fs := cmd.Flags()
	cfg.addFlags(fs, 16)
	fs.DurationVar(&cfg.ttl, "ttl", 10*time.Second, "time to live of the sessions created")
	fs.StringVar(&cfg.owner, "owner", "bench", "owner of the sessions created")
	return cmd
}

// benchResult is what a bench run prints.
type benchResult struct {
	Op          string
	Unit        string // what one operation is called in the output; "" means "ops"
	Clients     int
	Conns       int
	Consistency string
	Elapsed     time.Duration
	Errors      int
	FirstError  string
	Latency     latencySummary
}

// unit returns what the output calls one operation.
func (r benchResult) unit() string {
	if r.Unit == "" {
		return "ops"
	}
	return r.Unit
}

// throughput returns successful operations per second.
func (r benchResult) throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Latency.Count) / r.Elapsed.Seconds()
}

func printBenchTable(w io.Writer, r benchResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "op:\t%s\n", r.Op)
	if r.Consistency != "" {
		fmt.Fprintf(tw, "consistency:\t%s\n", r.Consistency)
	}
	fmt.Fprintf(tw, "clients:\t%d\n", r.Clients)
	fmt.Fprintf(tw, "conns:\t%d\n", r.Conns)
	fmt.Fprintf(tw, "duration:\t%s\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "%s:\t%d\n", r.unit(), r.Latency.Count)
	fmt.Fprintf(tw, "errors:\t%d\n", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(tw, "first error:\t%s\n", r.FirstError)
	}
	fmt.Fprintf(tw, "throughput:\t%.1f %s/s\n", r.throughput(), r.unit())
	l := r.Latency
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"p50", l.P50}, {"p90", l.P90}, {"p99", l.P99}, {"p99.9", l.P999}, {"max", l.Max}} {
		fmt.Fprintf(tw, "latency %s:\t%s\n", p.name, p.d.Round(time.Microsecond))
	}
	return tw.Flush()
}

// benchJSON is the JSON form of a benchResult; latencies are in milliseconds. Ops and
// the throughput count operations of the named unit (ops, or cycles for session).
type benchJSON struct {
	Op          string  `json:"op"`
	Unit        string  `json:"unit"`
	Consistency string  `json:"consistency,omitempty"`
	Clients     int     `json:"clients"`
	Conns       int     `json:"conns"`
	DurationS   float64 `json:"duration_s"`
	Ops         int     `json:"ops"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	OpsPerSec   float64 `json:"throughput_ops_per_s"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	P999Ms      float64 `json:"p99_9_ms"`
	MaxMs       float64 `json:"max_ms"`
}

func printBenchJSON(w io.Writer, r benchResult) error {
	toMs := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(benchJSON{
		Op: r.Op, Unit: r.unit(), Consistency: r.Consistency, Clients: r.Clients, Conns: r.Conns,
		DurationS: r.Elapsed.Seconds(), Ops: r.Latency.Count, Errors: r.Errors,
		FirstError: r.FirstError, OpsPerSec: r.throughput(),
		P50Ms: toMs(r.Latency.P50), P90Ms: toMs(r.Latency.P90), P99Ms: toMs(r.Latency.P99),
		P999Ms: toMs(r.Latency.P999), MaxMs: toMs(r.Latency.Max),
	})
}
