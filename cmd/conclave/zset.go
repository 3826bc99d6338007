package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/client"
	"github.com/conclave-dev/conclave/fsm"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/server"
)

// Limits the CLI checks before asking (the server checks them too).
const (
	zsetMaxPage    = fsm.ZsetMaxPage   // a Range page, a Top, a Pop
	zsetMaxAround  = fsm.ZsetMaxAround // neighbours on each side of an Around
	zsetMaxPopWait = time.Duration(server.MaxPopWaitMs) * time.Millisecond
)

// errMemberNotFound is reported, with exit status 1, when a read finds no member.
var errMemberNotFound = errors.New("member not found")

// newZsetCmd builds `conclave zset` and its subcommands.
func newZsetCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "zset",
		Short: "Sorted sets and leaderboards (Redis ZADD, ZRANGE, ZRANK …)",
		Long: `Read and write sorted sets: members ordered by a float64 score, as Redis's, replicated.
A sorted set is a key of the shared keyspace: "kv ttl", "kv expire" and "kv del" apply.

Arguments come in Redis's order (ZADD KEY SCORE MEMBER). A score is a number, +inf or
-inf; negative numbers are taken as they are ("range board 0 -1"). Put -- before an
argument that starts with "-" and is not a number.

Ranks are 0-based, as Redis's: 0 is the first. -o json prints the API's answers, with
those 0-based ranks. Table output shows leaderboard places instead: its "#" column is
rank+1, so the first member is #1.

top and around read a set as a leaderboard, highest score first unless --lowest; rank
and range read it as Redis does, lowest score first unless --rev. count and remrange take
their intervals as range does; unionstore, interstore and diffstore replace DEST.`,
	}
	o.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(newZsetAddCmd(o), newZsetIncrCmd(o), newZsetScoreCmd(o), newZsetRankCmd(o), newZsetRangeCmd(o),
		newZsetTopCmd(o), newZsetAroundCmd(o), newZsetRemCmd(o), newZsetCardCmd(o), newZsetPopCmd(o),
		newZsetCountCmd(o), newZsetMultiScoreCmd(o), newZsetRemoveRangeCmd(o),
		newZsetUnionStoreCmd(o), newZsetInterStoreCmd(o), newZsetDiffStoreCmd(o))
	return cmd
}

// zsetCreateFlags are the flags of the writes that may create a set: --tie-break, --ttl.
type zsetCreateFlags struct {
	tieBreak string
	ttl      time.Duration
}

func (f *zsetCreateFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.tieBreak, "tie-break", "lex",
		"how a set created by this write orders equal scores: lex (by member), arrival (first to reach a score ranks first, highest first) or arrival-asc (the same, lowest first)")
	cmd.Flags().DurationVar(&f.ttl, "ttl", 0, "time to live of a set created by this write (0: none; an existing set keeps its own)")
}

// values returns the request's tie_break and ttl_ms.
func (f *zsetCreateFlags) values() (conclavev1.TieBreak, int64, error) {
	t, err := parseTieBreak(f.tieBreak)
	if err != nil {
		return 0, 0, err
	}
	if f.ttl < 0 {
		return 0, 0, fmt.Errorf("--ttl %v: must not be negative", f.ttl)
	}
	return t, durationMs(f.ttl), nil
}

func newZsetAddCmd(o *clientOptions) *cobra.Command {
	var (
		create                   zsetCreateFlags
		nx, xx, gt, lt, incr, ch bool
	)
	cmd := &cobra.Command{
		Use:   "add KEY SCORE MEMBER [SCORE MEMBER ...]",
		Short: "Set members' scores and print how many were added (Redis ZADD)",
		Long: `Set members' scores, creating the set if needed, and print how many members were
added; with --ch, how many were added or changed. With --incr, add SCORE to the one
member's score and print the new score; when --nx, --xx, --gt or --lt stops it, the
command fails (exit status 1) and nothing changes.

--gt and --lt only update an existing member to a greater (smaller) score: a player's
best score. New members are added whatever their score unless --xx.`,
		Example: `  conclave zset add board 100 ann 85 bob
  conclave zset add board 120 ann --gt
  conclave zset add board -5 ann --incr
  conclave zset add daily 1 ann --tie-break arrival --ttl 24h`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 3 || len(args)%2 != 1 {
				return fmt.Errorf("want KEY and SCORE MEMBER pairs, got %d arguments", len(args))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&nx, "nx", false, "only add new members; never update")
	fs.BoolVar(&xx, "xx", false, "only update existing members; never add")
	fs.BoolVar(&gt, "gt", false, "update an existing member only to a greater score")
	fs.BoolVar(&lt, "lt", false, "update an existing member only to a smaller score")
	fs.BoolVar(&incr, "incr", false, "add SCORE to the member's score and print the new score (one pair)")
	fs.BoolVar(&ch, "ch", false, "print how many members were added or changed")
	create.add(cmd)
	cmd.MarkFlagsMutuallyExclusive("nx", "xx")
	cmd.MarkFlagsMutuallyExclusive("gt", "lt")
	cmd.MarkFlagsMutuallyExclusive("nx", "gt")
	cmd.MarkFlagsMutuallyExclusive("nx", "lt")
	cmd.MarkFlagsMutuallyExclusive("incr", "ch")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		tie, ttl, err := create.values()
		if err != nil {
			return err
		}
		req := &conclavev1.AddRequest{Key: []byte(args[0]), IfAbsent: nx, IfPresent: xx, OnlyGreater: gt, OnlyLess: lt,
			Increment: incr, TieBreak: tie, TtlMs: ttl}
		for i := 1; i < len(args); i += 2 {
			name := "SCORE"
			if len(args) > 3 {
				name = fmt.Sprintf("SCORE #%d", (i+1)/2)
			}
			score, err := parseScore(name, args[i])
			if err != nil {
				return err
			}
			req.Members = append(req.Members, &conclavev1.ScoredMember{Member: args[i+1], Score: score})
		}
		if incr && len(req.Members) != 1 {
			return fmt.Errorf("--incr takes one SCORE MEMBER pair, got %d", len(req.Members))
		}
		resp, err := c.SortedSets().Add(ctx, req)
		if err != nil {
			return err
		}
		if incr && resp.Score == nil {
			return fmt.Errorf("member %q not changed: %s did not hold", args[2], conditionFlags(nx, xx, gt, lt))
		}
		if o.json() {
			return printProtoAll(cmd.OutOrStdout(), resp)
		}
		switch {
		case incr:
			fmt.Fprintln(cmd.OutOrStdout(), formatScore(resp.GetScore()))
		case ch:
			fmt.Fprintln(cmd.OutOrStdout(), resp.GetChanged())
		default:
			fmt.Fprintln(cmd.OutOrStdout(), resp.GetAdded())
		}
		return nil
	})
	return negativeArgs(cmd)
}

// conditionFlags names the condition flags given, for an error message.
func conditionFlags(nx, xx, gt, lt bool) string {
	var s []string
	for _, f := range []struct {
		on   bool
		name string
	}{{nx, "--nx"}, {xx, "--xx"}, {gt, "--gt"}, {lt, "--lt"}} {
		if f.on {
			s = append(s, f.name)
		}
	}
	return strings.Join(s, " and ")
}

func newZsetIncrCmd(o *clientOptions) *cobra.Command {
	var create zsetCreateFlags
	cmd := &cobra.Command{
		Use:     "incr KEY DELTA MEMBER",
		Short:   "Add DELTA to a member's score and print the new score (Redis ZINCRBY)",
		Long:    "Add DELTA to a member's score, a new member starting at 0, and print the new score.",
		Example: "  conclave zset incr board 10 ann\n  conclave zset incr board -2.5 ann",
		Args:    cobra.ExactArgs(3),
	}
	create.add(cmd)
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		tie, ttl, err := create.values()
		if err != nil {
			return err
		}
		delta, err := parseScore("DELTA", args[1])
		if err != nil {
			return err
		}
		resp, err := c.SortedSets().IncrementScore(ctx, &conclavev1.IncrementScoreRequest{
			Key: []byte(args[0]), Member: args[2], Delta: delta, TieBreak: tie, TtlMs: ttl})
		if err != nil {
			return err
		}
		return o.printValue(cmd.OutOrStdout(), resp, formatScore(resp.GetScore()))
	})
	return negativeArgs(cmd)
}

func newZsetScoreCmd(o *clientOptions) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "score KEY MEMBER",
		Short: "Print a member's score (Redis ZSCORE)",
		Long:  "Print a member's score; fail (exit status 1) when it is not in the set.",
		Args:  cobra.ExactArgs(2),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		resp, err := c.SortedSets().Score(ctx, &conclavev1.ScoreRequest{Key: []byte(args[0]), Member: args[1], Consistency: consistency(stale)})
		if err != nil {
			return err
		}
		if !resp.GetFound() {
			return errMemberNotFound
		}
		return o.printValue(cmd.OutOrStdout(), resp, formatScore(resp.GetScore()))
	})
	return cmd
}

func newZsetRemCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "rem KEY MEMBER...",
		Short: "Remove members and print how many were in the set (Redis ZREM)",
		Args:  cobra.MinimumNArgs(2),
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			resp, err := c.SortedSets().Remove(ctx, &conclavev1.SortedSetServiceRemoveRequest{Key: []byte(args[0]), Members: args[1:]})
			if err != nil {
				return err
			}
			return o.printValue(cmd.OutOrStdout(), resp, resp.GetRemoved())
		}),
	}
}

func newZsetCardCmd(o *clientOptions) *cobra.Command {
	return newReadCmd(o, "card KEY", "Print the number of members (Redis ZCARD; 0 for a missing key)",
		func(ctx context.Context, c *client.Client, key string, cons conclavev1.Consistency) (*conclavev1.CardinalityResponse, error) {
			return c.SortedSets().Cardinality(ctx, &conclavev1.CardinalityRequest{Key: []byte(key), Consistency: cons})
		}, func(w io.Writer, _ string, resp *conclavev1.CardinalityResponse) error {
			_, err := fmt.Fprintln(w, resp.GetCount())
			return err
		})
}

func newZsetPopCmd(o *clientOptions) *cobra.Command {
	var (
		highest bool
		count   int64
		wait    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pop KEY",
		Short: "Remove and print the lowest-scored members (Redis ZPOPMIN, ZPOPMAX, BZPOPMIN)",
		Long: `Remove and print up to --count members: the lowest scores first, or the highest with
--max. With --wait, an empty set is waited on, server-side, until a member is added or
the wait ends; nothing is printed but the header when it ends empty.`,
		Example: "  conclave zset pop jobs\n  conclave zset pop jobs --max --count 3\n  conclave zset pop jobs --wait 30s",
		Args:    cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&highest, "max", false, "pop the highest scores instead of the lowest")
	cmd.Flags().Int64Var(&count, "count", 1, fmt.Sprintf("most members to pop (1 to %d)", zsetMaxPage))
	cmd.Flags().DurationVar(&wait, "wait", 0, fmt.Sprintf("how long to wait for a member when the set is empty (0: not at all; at most %v)", zsetMaxPopWait))
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if count < 1 || count > zsetMaxPage {
			return fmt.Errorf("--count %d: must be 1 to %d", count, zsetMaxPage)
		}
		if wait < 0 || wait > zsetMaxPopWait {
			return fmt.Errorf("--wait %v: must be 0 to %v", wait, zsetMaxPopWait)
		}
		c, _, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		// The call may wait --wait server-side, on top of the time for the request.
		ctx, cancel := context.WithTimeout(cmd.Context(), wait+o.timeout)
		defer cancel()
		key, waitMs := []byte(args[0]), durationMs(wait)
		var (
			resp    proto.Message
			members []*conclavev1.ScoredMember
		)
		if highest {
			r, err := c.SortedSets().PopMax(ctx, &conclavev1.PopMaxRequest{Key: key, Count: count, WaitMs: waitMs})
			if err != nil {
				return err
			}
			resp, members = r, r.GetMembers()
		} else {
			r, err := c.SortedSets().PopMin(ctx, &conclavev1.PopMinRequest{Key: key, Count: count, WaitMs: waitMs})
			if err != nil {
				return err
			}
			resp, members = r, r.GetMembers()
		}
		if o.json() {
			return printProtoAll(cmd.OutOrStdout(), resp)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMBER\tSCORE")
		for _, m := range members {
			fmt.Fprintf(tw, "%s\t%s\n", display([]byte(m.GetMember())), formatScore(m.GetScore()))
		}
		return tw.Flush()
	}
	return cmd
}
