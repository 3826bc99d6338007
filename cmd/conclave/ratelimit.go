package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// deniedExitStatus is the exit status of check and peek with --exit-code when the
// request is (or would be) denied: distinct from 1, a failed command, so that a script
// can fail open on errors.
const deniedExitStatus = 2

// newRateLimitCmd builds `conclave ratelimit` and its subcommands.
func newRateLimitCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Check, peek and refund rate limits; manage stored policies",
		Long: `Make cluster-wide rate-limit decisions. Every check is one replicated write, so a
limit holds across every client of the cluster and across failover.

A limit is either a stored policy (--policy NAME, see "ratelimit policy put") or given
inline: --rate N/PERIOD (at most N per PERIOD, e.g. 5/1m, 100/1s, 10/500ms, 1000/h)
with --algorithm gcra (default), sliding, fixed or concurrency, and --burst for gcra
(default N: up to N at once).`,
	}
	o.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(newRateLimitCheckCmd(o), newRateLimitPeekCmd(o), newRateLimitRefundCmd(o), newRateLimitPolicyCmd(o),
		newRateLimitImportCmd(o))
	return cmd
}

// rateLimitAlgorithms are the --algorithm values, with the long names accepted too.
var rateLimitAlgorithms = map[string]conclavev1.RateLimitAlgorithm{
	"gcra":           conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA,
	"token-bucket":   conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA,
	"sliding":        conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_SLIDING_WINDOW,
	"sliding-window": conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_SLIDING_WINDOW,
	"fixed":          conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW,
	"fixed-window":   conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW,
	"concurrency":    conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY,
}

// formatRateLimitAlgorithm returns the short --algorithm name of a.
func formatRateLimitAlgorithm(a conclavev1.RateLimitAlgorithm) string {
	switch a {
	case conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_UNSPECIFIED, conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA:
		return "gcra"
	case conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_SLIDING_WINDOW:
		return "sliding"
	case conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW:
		return "fixed"
	case conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY:
		return "concurrency"
	}
	return a.String()
}

// parseRateSpec parses --rate N/PERIOD: N hits per PERIOD, a Go duration of whole
// milliseconds ("1m", "500ms"), or a bare unit meaning one of it ("s", "m", "h").
func parseRateSpec(s string) (limit uint64, period time.Duration, err error) {
	bad := func(why string) error {
		return fmt.Errorf("--rate %q: %s; want N/PERIOD, e.g. 5/1m, 100/1s, 10/500ms", s, why)
	}
	n, p, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, bad("no /")
	}
	limit, err = strconv.ParseUint(strings.TrimSpace(n), 10, 64)
	if err != nil || limit == 0 {
		return 0, 0, bad("N must be a positive integer")
	}
	p = strings.TrimSpace(p)
	if p != "" && (p[0] < '0' || p[0] > '9') && p[0] != '.' {
		p = "1" + p
	}
	period, err = time.ParseDuration(p)
	switch {
	case err != nil:
		return 0, 0, bad("PERIOD is not a duration")
	case period < time.Millisecond || period%time.Millisecond != 0:
		return 0, 0, bad("PERIOD must be a positive whole number of milliseconds")
	}
	return limit, period, nil
}

// formatRate returns a policy's limit and period as --rate takes them ("5/1m").
func formatRate(limit uint64, periodMs int64) string {
	p := (time.Duration(periodMs) * time.Millisecond).String()
	if strings.HasSuffix(p, "m0s") { // "1m0s" → "1m", "1h0m0s" → "1h0m"
		p = strings.TrimSuffix(p, "0s")
	}
	if strings.HasSuffix(p, "h0m") { // "1h0m" → "1h"
		p = strings.TrimSuffix(p, "0m")
	}
	return strconv.FormatUint(limit, 10) + "/" + p
}

// limitFlags are the flags that say which limit applies: a stored policy, or an inline
// one built from --rate, --algorithm, --burst and --shadow.
type limitFlags struct {
	policy    string
	rate      string
	algorithm string
	burst     uint64
	shadow    bool
}

// add declares the flags on cmd; named adds --policy, exclusive with the inline ones.
func (f *limitFlags) add(cmd *cobra.Command, named bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.rate, "rate", "", "at most N per PERIOD, e.g. 5/1m, 100/1s, 10/500ms")
	fs.StringVar(&f.algorithm, "algorithm", "gcra", "gcra, sliding, fixed or concurrency")
	fs.Uint64Var(&f.burst, "burst", 0, "gcra: most hits at once (default N of --rate)")
	fs.BoolVar(&f.shadow, "shadow", false, "shadow mode: report decisions but allow everything")
	if !named {
		return
	}
	fs.StringVar(&f.policy, "policy", "", "name of a stored policy (instead of --rate)")
	for _, inline := range []string{"rate", "algorithm", "burst", "shadow"} {
		cmd.MarkFlagsMutuallyExclusive("policy", inline)
	}
	cmd.MarkFlagsOneRequired("policy", "rate")
}

// inline returns the policy the inline flags describe, named name.
func (f *limitFlags) inline(name string) (*conclavev1.RateLimitPolicy, error) {
	alg, ok := rateLimitAlgorithms[strings.ToLower(f.algorithm)]
	if !ok {
		return nil, fmt.Errorf("--algorithm %q: want gcra, sliding, fixed or concurrency", f.algorithm)
	}
	limit, period, err := parseRateSpec(f.rate)
	if err != nil {
		return nil, err
	}
	if f.burst != 0 && alg != conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA {
		return nil, fmt.Errorf("--burst applies only to --algorithm gcra")
	}
	return &conclavev1.RateLimitPolicy{Name: name, Algorithm: alg, Limit: limit, PeriodMs: period.Milliseconds(),
		Burst: f.burst, ShadowMode: f.shadow}, nil
}

// keys returns the request keys for names, each with cost, under the chosen limit.
func (f *limitFlags) keys(names []string, cost uint64) ([]*conclavev1.RateLimitKey, error) {
	var limit func(*conclavev1.RateLimitKey)
	if f.policy != "" {
		limit = func(k *conclavev1.RateLimitKey) { k.Limit = &conclavev1.RateLimitKey_Policy{Policy: f.policy} }
	} else {
		p, err := f.inline("")
		if err != nil {
			return nil, err
		}
		limit = func(k *conclavev1.RateLimitKey) { k.Limit = &conclavev1.RateLimitKey_Inline{Inline: p} }
	}
	keys := make([]*conclavev1.RateLimitKey, len(names))
	for i, n := range names {
		keys[i] = &conclavev1.RateLimitKey{Key: n, Cost: cost}
		limit(keys[i])
	}
	return keys, nil
}

// decisionFlags are check's and peek's: the limit, the cost and --exit-code.
type decisionFlags struct {
	limitFlags
	cost     uint64
	exitCode bool
}

func (f *decisionFlags) add(cmd *cobra.Command) {
	f.limitFlags.add(cmd, true)
	cmd.Flags().Uint64Var(&f.cost, "cost", 1, "hits asked for each key")
	cmd.Flags().BoolVar(&f.exitCode, "exit-code", false,
		fmt.Sprintf("exit with status %d when denied (1 stays for errors)", deniedExitStatus))
}

// finish prints a decision and returns the command's result: exit status 2 when denied
// and --exit-code.
func (f *decisionFlags) finish(o *clientOptions, w io.Writer, resp proto.Message, allowed bool, verdicts []*conclavev1.KeyVerdict, how string) error {
	var err error
	if o.json() {
		err = printProtoAll(w, resp)
	} else {
		err = printVerdictTable(w, verdicts, allowed, how)
	}
	if err == nil && f.exitCode && !allowed {
		return exitStatus(deniedExitStatus)
	}
	return err
}

const rateLimitKeyUsage = `KEY... names limiter keys (a client IP, a user, a tenant); with several, all share the
limit flags and are decided in one raft entry.`

func newRateLimitCheckCmd(o *clientOptions) *cobra.Command {
	var (
		f       decisionFlags
		partial bool
	)
	cmd := &cobra.Command{
		Use:   "check KEY... (--rate N/PERIOD | --policy NAME)",
		Short: "Consume --cost hits on keys and print whether they were allowed",
		Long: rateLimitKeyUsage + `

Prints one row per key: ALLOWED, the LIMIT, what REMAINS, the time until the limiter
is full again (RESET_AFTER) and, when denied, until the cost would fit (RETRY_AFTER;
"never" when the cost is above the limit). With several keys nothing is consumed
unless every key is allowed, unless --partial. -o json prints the CheckResponse, with
"allowed" for the whole request.

The exit status is 0 whenever the decision was made, allowed or not; with --exit-code
it is 2 when denied. 1 always means the command failed (no decision).`,
		Example: `  conclave ratelimit check ip:10.0.0.7 --rate 5/1m
  conclave ratelimit check user:42 --rate 100/1s --burst 20 --cost 3
  conclave ratelimit check tenant:acme --policy api -o json
  conclave ratelimit check ip:10.0.0.7 --rate 5/1m --exit-code && curl …`,
		Args: cobra.MinimumNArgs(1),
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&partial, "partial", false, "with several keys, consume on those allowed even if others are not")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		keys, err := f.keys(args, f.cost)
		if err != nil {
			return err
		}
		resp, err := c.RateLimits().Check(ctx, &conclavev1.CheckRequest{Keys: keys, Partial: partial})
		if err != nil {
			return err
		}
		how := "nothing consumed"
		if partial {
			how = "allowed keys consumed"
		}
		return f.finish(o, cmd.OutOrStdout(), resp, resp.GetAllowed(), resp.GetVerdicts(), how)
	})
	return cmd
}

func newRateLimitPeekCmd(o *clientOptions) *cobra.Command {
	var (
		f     decisionFlags
		stale bool
	)
	cmd := &cobra.Command{
		Use:   "peek KEY... (--rate N/PERIOD | --policy NAME)",
		Short: "Print what check would say, consuming nothing",
		Long:  rateLimitKeyUsage + "\n\nOutput and exit status as check's.",
		Args:  cobra.MinimumNArgs(1),
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		keys, err := f.keys(args, f.cost)
		if err != nil {
			return err
		}
		resp, err := c.RateLimits().Peek(ctx, &conclavev1.PeekRequest{Keys: keys, Consistency: consistency(stale)})
		if err != nil {
			return err
		}
		return f.finish(o, cmd.OutOrStdout(), resp, resp.GetAllowed(), resp.GetVerdicts(), "nothing consumed")
	})
	return cmd
}

func newRateLimitRefundCmd(o *clientOptions) *cobra.Command {
	var (
		f     limitFlags
		cost  uint64
		slots []uint
	)
	cmd := &cobra.Command{
		Use:   "refund KEY... (--rate N/PERIOD | --policy NAME)",
		Short: "Give back --cost hits on keys (or release concurrency --slots)",
		Long: rateLimitKeyUsage + `

Gives back hits a check consumed — for a request that should not count after all — or,
under a concurrency limit, releases the --slots a check acquired. The limit flags must
be those of the check. Prints each key's state after the refund.`,
		Args: cobra.MinimumNArgs(1),
	}
	f.add(cmd, true)
	cmd.Flags().Uint64Var(&cost, "cost", 1, "hits to give back on each key")
	cmd.Flags().UintSliceVar(&slots, "slots", nil, "concurrency slots to release (comma-separated ids)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		keys, err := f.keys(args, cost)
		if err != nil {
			return err
		}
		for _, k := range keys {
			for _, s := range slots {
				k.Slots = append(k.Slots, uint64(s))
			}
		}
		resp, err := c.RateLimits().Refund(ctx, &conclavev1.RefundRequest{Keys: keys})
		if err != nil {
			return err
		}
		if o.json() {
			return printProtoAll(cmd.OutOrStdout(), resp)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tLIMIT\tREMAINING\tRESET_AFTER")
		for _, v := range resp.GetVerdicts() {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", display([]byte(v.GetKey())), v.GetLimit(), v.GetRemaining(), formatTTL(v.GetResetAfterMs()))
		}
		return tw.Flush()
	})
	return cmd
}

// printVerdictTable writes one row per key and, for several keys, the whole request's
// verdict; how says what a denied request of several keys consumed.
func printVerdictTable(w io.Writer, verdicts []*conclavev1.KeyVerdict, allowed bool, how string) error {
	withSlots := false
	for _, v := range verdicts {
		withSlots = withSlots || len(v.GetSlots()) > 0
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "KEY\tALLOWED\tLIMIT\tREMAINING\tRESET_AFTER\tRETRY_AFTER"
	if withSlots {
		header += "\tSLOTS"
	}
	fmt.Fprintln(tw, header)
	for _, v := range verdicts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s", display([]byte(v.GetKey())), formatAllowed(v), v.GetLimit(),
			v.GetRemaining(), formatTTL(v.GetResetAfterMs()), formatRetryAfter(v.GetRetryAfterMs()))
		if withSlots {
			fmt.Fprintf(tw, "\t%s", formatSlots(v.GetSlots()))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(verdicts) > 1 {
		if allowed {
			_, err := fmt.Fprintln(w, "request: allowed")
			return err
		}
		_, err := fmt.Fprintf(w, "request: denied (%s)\n", how)
		return err
	}
	return nil
}

// formatAllowed returns "yes", "no", or for shadow mode "yes (shadow: would deny)".
func formatAllowed(v *conclavev1.KeyVerdict) string {
	switch {
	case v.GetShadow() && !v.GetWouldAllow():
		return "yes (shadow: would deny)"
	case v.GetAllowed():
		return "yes"
	}
	return "no"
}

// formatRetryAfter returns a retry_after_ms as a duration, "-" for 0 and "never" for -1.
func formatRetryAfter(ms int64) string {
	if ms < 0 {
		return "never"
	}
	return formatTTL(ms)
}

func formatSlots(slots []uint64) string {
	if len(slots) == 0 {
		return "-"
	}
	s := make([]string, len(slots))
	for i, id := range slots {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ",")
}

// printProtoAll is printProto with every field, false and zero included: a verdict's
// "allowed": false is its point.
func printProtoAll(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	return writeIndented(w, b)
}

func newRateLimitPolicyCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Store, read, list and delete named rate-limit policies",
		Long: `A stored policy is a limit with a name, kept in the replicated state: every check that
names it (--policy NAME) is decided by it, and changing it changes them all at once.`,
	}
	cmd.AddCommand(newRateLimitPolicyPutCmd(o), newRateLimitPolicyGetCmd(o), newRateLimitPolicyListCmd(o), newRateLimitPolicyDelCmd(o))
	return cmd
}

func newRateLimitPolicyPutCmd(o *clientOptions) *cobra.Command {
	var f limitFlags
	cmd := &cobra.Command{
		Use:     "put NAME --rate N/PERIOD",
		Short:   "Create or replace a stored policy",
		Example: "  conclave ratelimit policy put api --rate 100/1s --burst 20\n  conclave ratelimit policy put login --rate 5/15m --algorithm sliding",
		Args:    cobra.ExactArgs(1),
	}
	f.add(cmd, false)
	_ = cmd.MarkFlagRequired("rate")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		p, err := f.inline(args[0])
		if err != nil {
			return err
		}
		resp, err := c.RateLimits().PutPolicy(ctx, &conclavev1.PutPolicyRequest{Policy: p})
		if err != nil {
			return err
		}
		return o.printOK(cmd.OutOrStdout(), resp)
	})
	return cmd
}

func newRateLimitPolicyGetCmd(o *clientOptions) *cobra.Command {
	return newReadCmd(o, "get NAME", "Print a stored policy",
		func(ctx context.Context, c *client.Client, name string, cons conclavev1.Consistency) (*conclavev1.GetPolicyResponse, error) {
			return c.RateLimits().GetPolicy(ctx, &conclavev1.GetPolicyRequest{Name: name, Consistency: cons})
		}, func(w io.Writer, _ string, resp *conclavev1.GetPolicyResponse) error {
			return printPolicyTable(w, []*conclavev1.RateLimitPolicy{resp.GetPolicy()})
		})
}

func newRateLimitPolicyListCmd(o *clientOptions) *cobra.Command {
	var (
		stale bool
		limit int
	)
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "List stored policies in name order",
		Args:  cobra.MaximumNArgs(1),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.Flags().IntVar(&limit, "limit", 0, "stop after N policies (0: all)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		if limit < 0 {
			return fmt.Errorf("--limit %d: must not be negative", limit)
		}
		req := &conclavev1.ListPoliciesRequest{Consistency: consistency(stale)}
		if len(args) == 1 {
			req.Prefix = args[0]
		}
		var ps []*conclavev1.RateLimitPolicy
		for {
			req.PageSize = maxScanPage
			if limit > 0 {
				req.PageSize = uint32(min(maxScanPage, limit-len(ps)))
			}
			resp, err := c.RateLimits().ListPolicies(ctx, req)
			if err != nil {
				return err
			}
			ps = append(ps, resp.GetPolicies()...)
			if limit > 0 && len(ps) >= limit {
				ps = ps[:limit]
				break
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if o.json() {
			return printProtoList(cmd.OutOrStdout(), ps)
		}
		return printPolicyTable(cmd.OutOrStdout(), ps)
	})
	return cmd
}

// printPolicyTable writes one policy a row; BURST is the effective burst of a GCRA
// policy and "-" for the other algorithms.
func printPolicyTable(w io.Writer, ps []*conclavev1.RateLimitPolicy) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tALGORITHM\tRATE\tBURST\tSHADOW")
	for _, p := range ps {
		alg := formatRateLimitAlgorithm(p.GetAlgorithm())
		burst := "-"
		if alg == "gcra" {
			b := p.GetBurst()
			if b == 0 {
				b = p.GetLimit()
			}
			burst = strconv.FormatUint(b, 10)
		}
		shadow := "no"
		if p.GetShadowMode() {
			shadow = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", display([]byte(p.GetName())), alg, formatRate(p.GetLimit(), p.GetPeriodMs()), burst, shadow)
	}
	return tw.Flush()
}

func newRateLimitPolicyDelCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "del NAME",
		Short: "Delete a stored policy and print how many existed (1 or 0)",
		Long: `Delete a stored policy and print 1, or 0 when there was none. Checks that name it fail
with NOT_FOUND from then on; the state of its keys expires by itself.`,
		Args: cobra.ExactArgs(1),
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			resp, err := c.RateLimits().DeletePolicy(ctx, &conclavev1.DeletePolicyRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if o.json() {
				return printProtoAll(cmd.OutOrStdout(), resp)
			}
			n := 0
			if resp.GetDeleted() {
				n = 1
			}
			fmt.Fprintln(cmd.OutOrStdout(), n)
			return nil
		}),
	}
}
