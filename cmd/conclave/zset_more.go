package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/server"
)

func newZsetCountCmd(o *clientOptions) *cobra.Command {
	var stale, byLex bool
	cmd := &cobra.Command{
		Use:   "count KEY MIN MAX",
		Short: "Print how many members a score interval holds (Redis ZCOUNT; ZLEXCOUNT with --by-lex)",
		Long: `Print how many members have a score from MIN to MAX, both included, or excluded after
"(": "(1.5"; -inf and +inf are open ends. With --by-lex, MIN and MAX are members: "[a"
included, "(a" excluded, "-" and "+" open ends. A missing key counts 0.`,
		Example: "  conclave zset count board 100 +inf\n  conclave zset count board '(0' 50\n  conclave zset count names '[a' '(c' --by-lex",
		Args:    cobra.ExactArgs(3),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.Flags().BoolVar(&byLex, "by-lex", false, "MIN and MAX are members")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		iv := &conclavev1.RangeRequest{}
		empty, err := rangeInterval(iv, args[1], args[2], !byLex, byLex, false)
		if err != nil {
			return err
		}
		req := &conclavev1.CountRequest{Key: []byte(args[0]), Consistency: consistency(stale)}
		if byLex {
			req.Interval = &conclavev1.CountRequest_Lex{Lex: iv.GetLex()}
		} else {
			req.Interval = &conclavev1.CountRequest_Score{Score: iv.GetScore()}
		}
		resp := &conclavev1.CountResponse{}
		if !empty {
			if resp, err = c.SortedSets().Count(ctx, req); err != nil {
				return err
			}
		}
		return o.printValue(cmd.OutOrStdout(), resp, resp.GetCount())
	})
	return negativeArgs(cmd)
}

func newZsetMultiScoreCmd(o *clientOptions) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:     "mscore KEY MEMBER...",
		Short:   "Print members' scores, (nil) for a member not in the set (Redis ZMSCORE)",
		Example: "  conclave zset mscore board ann bob nobody",
		Args:    cobra.MinimumNArgs(2),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		resp, err := c.SortedSets().MultiScore(ctx, &conclavev1.MultiScoreRequest{Key: []byte(args[0]), Members: args[1:],
			Consistency: consistency(stale)})
		if err != nil {
			return err
		}
		if o.json() {
			return printProtoAll(cmd.OutOrStdout(), resp)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMBER\tSCORE")
		for _, s := range resp.GetScores() {
			score := "(nil)"
			if s.GetFound() {
				score = formatScore(s.GetScore())
			}
			fmt.Fprintf(tw, "%s\t%s\n", display([]byte(s.GetMember())), score)
		}
		return tw.Flush()
	})
	return cmd
}

func newZsetRemoveRangeCmd(o *clientOptions) *cobra.Command {
	var byScore, byLex bool
	cmd := &cobra.Command{
		Use:   "remrange KEY START STOP",
		Short: "Remove a rank, score or member interval and print how many (Redis ZREMRANGEBY…)",
		Long: `Remove the members of an interval and print how many were removed. START and STOP are
read as range reads them without --rev: 0-based ranks by default, both included, a
negative rank counting from the end ("0 -1" is every member); with --by-score, scores
("(1.5" excluded, -inf and +inf open ends); with --by-lex, members ("[a" included, "(a"
excluded, "-" and "+" open ends).`,
		Example: "  conclave zset remrange board 0 -11\n  conclave zset remrange board -inf '(100' --by-score\n  conclave zset remrange names '[a' '(c' --by-lex",
		Args:    cobra.ExactArgs(3),
	}
	cmd.Flags().BoolVar(&byScore, "by-score", false, "START and STOP are scores")
	cmd.Flags().BoolVar(&byLex, "by-lex", false, "START and STOP are members")
	cmd.MarkFlagsMutuallyExclusive("by-score", "by-lex")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		iv := &conclavev1.RangeRequest{}
		empty, err := rangeInterval(iv, args[1], args[2], byScore, byLex, false)
		if err != nil {
			return err
		}
		req := &conclavev1.RemoveRangeRequest{Key: []byte(args[0])}
		switch {
		case byScore:
			req.Interval = &conclavev1.RemoveRangeRequest_Score{Score: iv.GetScore()}
		case byLex:
			req.Interval = &conclavev1.RemoveRangeRequest_Lex{Lex: iv.GetLex()}
		default:
			req.Interval = &conclavev1.RemoveRangeRequest_Rank{Rank: iv.GetRank()}
		}
		resp := &conclavev1.RemoveRangeResponse{}
		if !empty {
			if resp, err = c.SortedSets().RemoveRange(ctx, req); err != nil {
				return err
			}
		}
		return o.printValue(cmd.OutOrStdout(), resp, resp.GetRemoved())
	})
	return negativeArgs(cmd)
}

// zsetStoreFlags are the flags of unionstore, interstore and diffstore: --weights,
// --tie-break and, but for diffstore, --aggregate.
type zsetStoreFlags struct {
	weights, aggregate, tieBreak string
}

func (f *zsetStoreFlags) add(cmd *cobra.Command, aggregate bool) {
	cmd.Flags().StringVar(&f.weights, "weights", "", "comma-separated numbers, one per KEY, that multiply its scores (default: all 1)")
	if aggregate {
		cmd.Flags().StringVar(&f.aggregate, "aggregate", "sum", "how the scores of a member found in several KEYs combine: sum, min or max")
	}
	cmd.Flags().StringVar(&f.tieBreak, "tie-break", "lex",
		"how DEST orders equal scores: lex (by member), arrival (first to reach a score ranks first, highest first) or arrival-asc (the same, lowest first)")
}

// values returns the request's weights (nil for none), aggregate and tie_break for keys
// source KEYs.
func (f *zsetStoreFlags) values(keys int) ([]float64, conclavev1.Aggregate, conclavev1.TieBreak, error) {
	if keys > server.MaxZsetStoreKeys {
		return nil, 0, 0, fmt.Errorf("want 1 to %d KEYs, got %d", server.MaxZsetStoreKeys, keys)
	}
	var weights []float64
	if f.weights != "" {
		ws := strings.Split(f.weights, ",")
		if len(ws) != keys {
			return nil, 0, 0, fmt.Errorf("--weights %q: want one weight per KEY: %d weights for %d KEYs", f.weights, len(ws), keys)
		}
		for i, s := range ws {
			w, err := parseScore(fmt.Sprintf("--weights #%d", i+1), strings.TrimSpace(s))
			if err != nil {
				return nil, 0, 0, err
			}
			weights = append(weights, w)
		}
	}
	agg := conclavev1.Aggregate_AGGREGATE_SUM
	if f.aggregate != "" {
		var ok bool
		if agg, ok = zsetAggregates[strings.ToLower(f.aggregate)]; !ok {
			return nil, 0, 0, fmt.Errorf("--aggregate %q: want sum, min or max", f.aggregate)
		}
	}
	tie, err := parseTieBreak(f.tieBreak)
	if err != nil {
		return nil, 0, 0, err
	}
	return weights, agg, tie, nil
}

// zsetAggregates are the --aggregate values.
var zsetAggregates = map[string]conclavev1.Aggregate{
	"sum": conclavev1.Aggregate_AGGREGATE_SUM,
	"min": conclavev1.Aggregate_AGGREGATE_MIN,
	"max": conclavev1.Aggregate_AGGREGATE_MAX,
}

// storeNote ends the help of the store commands.
const storeNote = `DEST is replaced, its TTL and tie-break too; an empty result deletes it. A missing KEY
is an empty set. With an arrival --tie-break, members arrive KEY by KEY in the order DEST
is read, so members tied in a KEY keep their order.`

// zsetStore is what a store command asks: the response, and the count stored.
type zsetStore func(ctx context.Context, c *client.Client, dst []byte, keys [][]byte, weights []float64,
	agg conclavev1.Aggregate, tie conclavev1.TieBreak) (proto.Message, int64, error)

// newZsetStoreCmd builds a store command that asks store and prints the count stored.
func newZsetStoreCmd(o *clientOptions, cmd *cobra.Command, aggregate bool, store zsetStore) *cobra.Command {
	var f zsetStoreFlags
	cmd.Args = cobra.MinimumNArgs(2)
	f.add(cmd, aggregate)
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		weights, agg, tie, err := f.values(len(args) - 1)
		if err != nil {
			return err
		}
		keys := make([][]byte, 0, len(args)-1)
		for _, k := range args[1:] {
			keys = append(keys, []byte(k))
		}
		resp, count, err := store(ctx, c, []byte(args[0]), keys, weights, agg, tie)
		if err != nil {
			return err
		}
		return o.printValue(cmd.OutOrStdout(), resp, count)
	})
	return cmd
}

func newZsetUnionStoreCmd(o *clientOptions) *cobra.Command {
	return newZsetStoreCmd(o, &cobra.Command{
		Use:   "unionstore DEST KEY...",
		Short: "Store the union of sets in DEST and print its size (Redis ZUNIONSTORE)",
		Long: `Store in DEST every member of the KEYs, its score the --aggregate (default sum) of its
scores in them, each multiplied by its KEY's weight; print how many members DEST holds.
` + storeNote,
		Example: "  conclave zset unionstore week day1 day2 day3\n  conclave zset unionstore best a b --weights 1,2 --aggregate max",
	}, true, func(ctx context.Context, c *client.Client, dst []byte, keys [][]byte, weights []float64,
		agg conclavev1.Aggregate, tie conclavev1.TieBreak) (proto.Message, int64, error) {
		resp, err := c.SortedSets().UnionStore(ctx, &conclavev1.UnionStoreRequest{Destination: dst, Keys: keys, Weights: weights,
			Aggregate: agg, TieBreak: tie})
		return resp, resp.GetCount(), err
	})
}

func newZsetInterStoreCmd(o *clientOptions) *cobra.Command {
	return newZsetStoreCmd(o, &cobra.Command{
		Use:   "interstore DEST KEY...",
		Short: "Store the intersection of sets in DEST and print its size (Redis ZINTERSTORE)",
		Long: `Store in DEST the members found in every KEY, their score the --aggregate (default sum)
of their scores in them, each multiplied by its KEY's weight; print how many members DEST
holds. ` + storeNote,
		Example: "  conclave zset interstore both a b\n  conclave zset interstore both a b --weights 2,1 --aggregate min",
	}, true, func(ctx context.Context, c *client.Client, dst []byte, keys [][]byte, weights []float64,
		agg conclavev1.Aggregate, tie conclavev1.TieBreak) (proto.Message, int64, error) {
		resp, err := c.SortedSets().IntersectStore(ctx, &conclavev1.IntersectStoreRequest{Destination: dst, Keys: keys, Weights: weights,
			Aggregate: agg, TieBreak: tie})
		return resp, resp.GetCount(), err
	})
}

func newZsetDiffStoreCmd(o *clientOptions) *cobra.Command {
	return newZsetStoreCmd(o, &cobra.Command{
		Use:   "diffstore DEST KEY...",
		Short: "Store the first set less the others in DEST and print its size (Redis ZDIFFSTORE)",
		Long: `Store in DEST the members of the first KEY found in none of the others, with their
score in the first KEY multiplied by its weight; print how many members DEST holds.
` + storeNote,
		Example: "  conclave zset diffstore new today yesterday",
	}, false, func(ctx context.Context, c *client.Client, dst []byte, keys [][]byte, weights []float64,
		_ conclavev1.Aggregate, tie conclavev1.TieBreak) (proto.Message, int64, error) {
		resp, err := c.SortedSets().DiffStore(ctx, &conclavev1.DiffStoreRequest{Destination: dst, Keys: keys, Weights: weights, TieBreak: tie})
		return resp, resp.GetCount(), err
	})
}
