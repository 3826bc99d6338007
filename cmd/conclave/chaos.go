package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/conclave-dev/conclave/client"
	"github.com/conclave-dev/conclave/cluster/chaos"
)

type chaosOptions struct {
	duration time.Duration
	seed     uint64
	faults   []string
	clients  int
	rate     int
	keys     int
	locks    int
	limiters int
	zsets    int
	dir      string
	timeout  time.Duration
}

// newChaosCmd is `conclave chaos`: a fault-injection run against three local processes,
// checked for linearizability with porcupine. scripts/chaos.sh calls it.
func newChaosCmd() *cobra.Command {
	var o chaosOptions
	var faults string
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run three local nodes under injected faults and check the history",
		Long: `Start three conclave serve processes on free loopback ports, with every raft link
routed through a proxy the harness controls; run concurrent clients against all nodes
(KV operations; on --locks locks, try-once lock operations through sessions of their
own; on --limiters keys, FIXED_WINDOW rate-limit Checks and Peeks; on --zsets
leaderboard keys, sorted-set IncrementScore, Score, Top and Remove) while injecting
faults on a schedule drawn from --seed (kill: SIGKILL and restart; pause: SIGSTOP for
longer than the election timeout, then SIGCONT; partition: cut every link to one node,
then heal); then heal, check that the replicas converged, that every acknowledged
write is present, and that the history is linearizable (porcupine).
Ends with one line: ops=N faults=F violations=V lost=L, and a non-zero exit when V or L
is not zero.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.faults = splitList(faults)
			for _, f := range o.faults {
				if f != "kill" && f != "pause" && f != "partition" {
					return fmt.Errorf("--faults: unknown fault %q (want kill, pause, partition)", f)
				}
			}
			return runChaos(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.duration, "duration", time.Minute, "how long to inject faults")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the fault schedule and the workload")
	f.StringVar(&faults, "faults", "kill,pause,partition", "faults to inject: kill, pause, partition")
	f.IntVar(&o.clients, "clients", 6, "concurrent clients (spread over the nodes)")
	f.IntVar(&o.rate, "rate", 100, "operations a second, all clients together")
	f.IntVar(&o.keys, "keys", 8, "register keys")
	f.IntVar(&o.locks, "locks", 3, "lock names (0: no lock operations)")
	f.IntVar(&o.limiters, "limiters", 2, "rate-limiter keys (0: no rate-limit operations)")
	f.IntVar(&o.zsets, "zsets", 2, "sorted-set (leaderboard) keys of three members each (0: no sorted-set operations)")
	f.StringVar(&o.dir, "dir", "", "directory for data, logs and reports (default: a new temporary one)")
	f.DurationVar(&o.timeout, "check-timeout", 2*time.Minute, "time the linearizability check may take")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runChaos(ctx context.Context, o chaosOptions, stdout interface{ Write([]byte) (int, error) }) error {
	if o.dir == "" {
		d, err := os.MkdirTemp("", "conclave-chaos-")
		if err != nil {
			return err
		}
		o.dir = d
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { fmt.Fprintf(stdout, "chaos: "+format+"\n", args...) }
	say("seed=%d duration=%v faults=%s dir=%s", o.seed, o.duration, strings.Join(o.faults, ","), o.dir)

	c, err := newChaosCluster(bin, o.dir)
	if err != nil {
		return err
	}
	defer c.stop()
	if err := c.waitLeader(ctx, 30*time.Second); err != nil {
		return err
	}
	var conns []*grpc.ClientConn
	var endpoints []string
	for _, n := range c.nodes {
		conns = append(conns, n.conn)
		endpoints = append(endpoints, n.grpcAddr)
	}
	sessions, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		return err
	}
	defer sessions.Close()

	w := newWorkload(o.keys, o.locks, chaosLimits(o), sessions)
	w.addBoards(o.zsets)
	if len(w.limiters) > 0 {
		var lims []string
		for i, key := range w.limiters {
			lims = append(lims, fmt.Sprintf("%s limit %d", key, w.limits[i]))
		}
		say("rate limiters (FIXED_WINDOW, one window of %v): %s", time.Duration(chaosLimitPeriodMs)*time.Millisecond, strings.Join(lims, ", "))
	}
	wctx, stopWorkload := context.WithCancel(ctx)
	clients := w.run(wctx, conns, o.clients, o.rate, o.seed)
	injected := injectFaults(ctx, c, o, say)
	stopWorkload()
	clients.Wait()

	var violations []string
	say("healing")
	if err := c.healAll(); err != nil {
		return err
	}
	if err := c.waitLeader(ctx, 60*time.Second); err != nil {
		violations = append(violations, err.Error())
	}
	if err := w.finalReads(conns, o.clients); err != nil {
		violations = append(violations, err.Error())
	}
	skipped, lostSessions := w.endSessions()
	for _, s := range lostSessions {
		say("%s", s)
	}
	if err := c.waitConverged(ctx, 60*time.Second); err != nil {
		violations = append(violations, err.Error())
	}
	lost, err := w.lost(conns)
	if err != nil {
		violations = append(violations, err.Error())
	}
	for _, k := range lost[:min(len(lost), 10)] {
		say("lost acknowledged write %s", k)
	}
	violations = append(violations, c.failures()...)

	ops := w.rec.Operations()
	rest, zsetOps := chaos.SplitZsets(ops)
	rest, limitOps := chaos.SplitLimits(rest)
	kvOps, lockOps := chaos.SplitLocks(rest)
	regs, ctrs := chaos.SplitCounters(kvOps)
	type check struct {
		name  string
		model porcupine.Model
		ops   []porcupine.Operation
	}
	checks := []check{{"register", chaos.RegisterModel, regs}, {"counter", chaos.CounterModel, ctrs}}
	if len(w.locks) > 0 {
		drop := map[string]bool{}
		for _, name := range w.locks {
			if why, ok := skipped[name]; ok {
				drop[name] = true
				say("lock history of %s skipped, not checked: %s, so its holds may have been released without a Release in the history", name, why)
			}
		}
		say("lock operations: %s; sessions lost=%d, locks skipped=%d of %d", lockSummary(lockOps), len(lostSessions), len(drop), len(w.locks))
		checks = append(checks, check{"lock", chaos.LockModel, chaos.WithoutKeys(lockOps, drop)})
	}
	if len(w.limiters) > 0 {
		drop, problems := w.limitCheckPlan(say)
		say("rate-limit operations: %s; keys skipped=%d of %d", w.limitSummary(limitOps), len(drop), len(w.limiters))
		violations = append(violations, problems...)
		checks = append(checks, check{"ratelimit", chaos.RateLimitModel, chaos.WithoutKeys(limitOps, drop)})
	}
	if len(w.boards) > 0 {
		say("zset operations: %s", w.zsetSummary(zsetOps))
		violations = append(violations, w.zsetProblemsSeen()...)
		checks = append(checks, check{"zset", chaos.ZsetModel, zsetOps})
	}
	for _, chk := range checks {
		res, err := chaos.Check(chk.model, chk.ops, o.timeout, filepath.Join(o.dir, chk.name+"-violation.html"))
		if err != nil {
			return err
		}
		switch {
		case res.Violation():
			violations = append(violations, fmt.Sprintf("%s history is not linearizable: see %s and %s", chk.name, res.Visualization, res.History))
		case res.TimedOut:
			say("%s history: %d operations checked, check timed out (neither proven nor refuted)", chk.name, res.Ops)
		default:
			say("%s history: %d operations checked, linearizable", chk.name, res.Ops)
		}
	}
	for _, v := range chaos.CheckStaleReads(regs) {
		violations = append(violations, "stale read returned a value never written: "+v)
	}
	for _, v := range violations {
		say("VIOLATION: %s", v)
	}
	fmt.Fprintf(stdout, "ops=%d faults=%d violations=%d lost=%d\n", len(ops), injected, len(violations), len(lost))
	if len(violations) > 0 || len(lost) > 0 {
		return fmt.Errorf("chaos: %d violations, %d acknowledged writes lost (logs and reports in %s)", len(violations), len(lost), o.dir)
	}
	return nil
}

// injectFaults runs faults one after another until the duration ends and returns how
// many it injected. Each picks its target from the seed: the leader half the time.
func injectFaults(ctx context.Context, c *chaosCluster, o chaosOptions, say func(string, ...any)) int {
	if len(o.faults) == 0 {
		sleepCtx(ctx, o.duration)
		return 0
	}
	rng := rand.New(rand.NewPCG(o.seed, 0xc4a05))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	end := time.Now().Add(o.duration)
	count := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		sleepCtx(ctx, between(500*time.Millisecond, 2*time.Second))
		target := c.nodes[rng.IntN(len(c.nodes))]
		if rng.IntN(2) == 0 {
			if l := c.leader(ctx); l != nil {
				target = l
			}
		}
		fault := o.faults[rng.IntN(len(o.faults))]
		count++
		switch fault {
		case "kill":
			say("fault %d: kill -9 %s", count, target.id)
			c.kill(target)
			sleepCtx(ctx, between(500*time.Millisecond, 3*time.Second))
			if err := c.start(target); err != nil {
				say("restart %s: %v", target.id, err)
			}
		case "pause":
			d := between(1500*time.Millisecond, 4*time.Second)
			say("fault %d: pause %s for %v", count, target.id, d.Round(time.Millisecond))
			c.pause(target)
			sleepCtx(ctx, d)
			c.resume(target)
		case "partition":
			d := between(1500*time.Millisecond, 5*time.Second)
			say("fault %d: isolate %s for %v", count, target.id, d.Round(time.Millisecond))
			c.net.Isolate(target.id)
			sleepCtx(ctx, d)
			c.net.HealAll()
		}
	}
	return count
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
