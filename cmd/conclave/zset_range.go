package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// rankFlags are the flags of the reads that return ranks: --stale and --mode.
type rankFlags struct {
	stale bool
	mode  string
}

func (f *rankFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.Flags().StringVar(&f.mode, "mode", "ordinal",
		"how ranks count ties: ordinal (0 1 2 3 for scores 9 7 7 5: ties ordered by the set's tie-break), dense (0 1 1 2) or competition (0 1 1 3)")
}

func (f *rankFlags) consistency() conclavev1.Consistency { return consistency(f.stale) }

// ranksNote ends the help of the commands that print ranks.
const ranksNote = `Table output numbers members from 1 in its "#" column (rank+1); -o json keeps the API's
0-based "rank".`

// printRanked writes members as a leaderboard: "#" (rank+1), MEMBER, SCORE.
func printRanked(w io.Writer, ms []*conclavev1.RankedMember) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tMEMBER\tSCORE")
	for _, m := range ms {
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.GetRank()+1, display([]byte(m.GetMember())), formatScore(m.GetScore()))
	}
	return tw.Flush()
}

func newZsetRankCmd(o *clientOptions) *cobra.Command {
	var (
		f   rankFlags
		rev bool
	)
	cmd := &cobra.Command{
		Use:   "rank KEY MEMBER",
		Short: "Print a member's rank and score (Redis ZRANK; ZREVRANK with --rev)",
		Long: `Print a member's rank, counted from the lowest score, or from the highest with --rev,
and its score; fail (exit status 1) when it is not in the set. ` + ranksNote,
		Example: "  conclave zset rank board ann --rev\n  conclave zset rank board ann --rev --mode competition -o json",
		Args:    cobra.ExactArgs(2),
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&rev, "rev", false, "rank from the highest score")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		mode, err := parseRankMode(f.mode)
		if err != nil {
			return err
		}
		resp, err := c.SortedSets().Rank(ctx, &conclavev1.RankRequest{Key: []byte(args[0]), Member: args[1], Reverse: rev,
			Mode: mode, Consistency: f.consistency()})
		if err != nil {
			return err
		}
		if !resp.GetFound() {
			return errMemberNotFound
		}
		if o.json() {
			return printProtoAll(cmd.OutOrStdout(), resp)
		}
		return printRanked(cmd.OutOrStdout(), []*conclavev1.RankedMember{{Member: args[1], Score: resp.GetScore(), Rank: resp.GetRank()}})
	})
	return cmd
}

func newZsetRangeCmd(o *clientOptions) *cobra.Command {
	var (
		f                   rankFlags
		byScore, byLex, rev bool
		limit, offset       int64
		pageToken           string
	)
	cmd := &cobra.Command{
		Use:   "range KEY START STOP",
		Short: "List members by rank, score or member (Redis ZRANGE)",
		Long: `List the members of an interval, lowest score first, or highest first with --rev.

By rank (the default), START and STOP are 0-based ranks, both included; a negative rank
counts from the end (-1 is the last), so "0 -1" lists every member. With --rev, ranks
count from the highest score.

With --by-score, START and STOP are the lowest and highest scores, included, or excluded
after "(": "(1.5", and -inf and +inf are open ends. With --by-lex, they are members:
"[a" included, "(a" excluded, "-" and "+" open ends (meant for a set whose members share
one score, as in Redis). As in Redis, with --rev START is the high end and STOP the low
one: "range board +inf 100 --by-score --rev".

--offset skips members at the start of the interval. --limit N stops after N members and,
if more remain, prints a --page-token (on stderr; in -o json, as "nextPageToken") that
continues the listing where it stopped, even after the set changed. Without --limit,
every member of the interval is listed, a page at a time.

` + ranksNote,
		Example: `  conclave zset range board 0 -1
  conclave zset range board 0 9 --rev
  conclave zset range board '(1.5' +inf --by-score --limit 100
  conclave zset range board +inf -inf --by-score --rev --mode competition
  conclave zset range names '[a' '(c' --by-lex`,
		Args: cobra.ExactArgs(3),
	}
	f.add(cmd)
	fs := cmd.Flags()
	fs.BoolVar(&byScore, "by-score", false, "START and STOP are scores")
	fs.BoolVar(&byLex, "by-lex", false, "START and STOP are members")
	fs.BoolVar(&rev, "rev", false, "list from the highest score down")
	fs.Int64Var(&limit, "limit", 0, "most members to list (0: all)")
	fs.Int64Var(&offset, "offset", 0, "members to skip at the start of the interval")
	fs.StringVar(&pageToken, "page-token", "", "continue a listing after its last member (a token printed by --limit)")
	cmd.MarkFlagsMutuallyExclusive("by-score", "by-lex")
	cmd.MarkFlagsMutuallyExclusive("offset", "page-token")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		mode, err := parseRankMode(f.mode)
		if err != nil {
			return err
		}
		if limit < 0 || offset < 0 {
			return fmt.Errorf("--limit and --offset must not be negative")
		}
		req := &conclavev1.RangeRequest{Key: []byte(args[0]), Reverse: rev, Offset: offset, PageToken: pageToken,
			RankMode: mode, Consistency: f.consistency()}
		empty, err := rangeInterval(req, args[1], args[2], byScore, byLex, rev)
		if err != nil {
			return err
		}
		resp := &conclavev1.RangeResponse{}
		if !empty {
			if resp, err = rangeAll(ctx, c, req, limit); err != nil {
				return err
			}
		}
		if o.json() {
			return printProtoAll(cmd.OutOrStdout(), resp)
		}
		if err := printRanked(cmd.OutOrStdout(), resp.GetMembers()); err != nil {
			return err
		}
		if tok := resp.GetNextPageToken(); tok != "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "more members: continue with --page-token %s\n", tok)
		}
		return nil
	})
	return negativeArgs(cmd)
}

// rangeInterval sets req's interval from the START and STOP arguments. empty is true for
// a member interval that can hold nothing.
func rangeInterval(req *conclavev1.RangeRequest, start, stop string, byScore, byLex, rev bool) (empty bool, err error) {
	lo, hi := start, stop
	if rev && (byScore || byLex) { // Redis's order: from the high end to the low one
		lo, hi = stop, start
	}
	switch {
	case byScore:
		minB, err := parseScoreBound("MIN", lo)
		if err != nil {
			return false, err
		}
		maxB, err := parseScoreBound("MAX", hi)
		if err != nil {
			return false, err
		}
		req.Interval = &conclavev1.RangeRequest_Score{Score: &conclavev1.ScoreInterval{Min: minB, Max: maxB}}
	case byLex:
		iv, empty, err := parseLexInterval(lo, hi)
		if err != nil {
			return false, err
		}
		req.Interval = &conclavev1.RangeRequest_Lex{Lex: iv}
		return empty, nil
	default:
		s, err := parseRank("START", start)
		if err != nil {
			return false, err
		}
		e, err := parseRank("STOP", stop)
		if err != nil {
			return false, err
		}
		req.Interval = &conclavev1.RangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: s, Stop: e}}
	}
	return false, nil
}

// rangeAll asks req a page at a time until limit members (0: all of the interval) and
// returns them in one response, with the token of the page after them if more remain.
func rangeAll(ctx context.Context, c *client.Client, req *conclavev1.RangeRequest, limit int64) (*conclavev1.RangeResponse, error) {
	all := &conclavev1.RangeResponse{}
	for {
		req.Limit = zsetMaxPage
		if limit > 0 {
			req.Limit = min(zsetMaxPage, limit-int64(len(all.Members)))
		}
		resp, err := c.SortedSets().Range(ctx, req)
		if err != nil {
			return nil, err
		}
		all.Header = resp.GetHeader()
		all.Members = append(all.Members, resp.GetMembers()...)
		all.NextPageToken = resp.GetNextPageToken()
		if all.NextPageToken == "" || limit > 0 && int64(len(all.Members)) >= limit {
			return all, nil
		}
		req.PageToken, req.Offset = all.NextPageToken, 0
	}
}

func newZsetTopCmd(o *clientOptions) *cobra.Command {
	var (
		f      rankFlags
		lowest bool
	)
	cmd := &cobra.Command{
		Use:   "top KEY [N]",
		Short: "List the N best members, highest score first unless --lowest",
		Long: `List a leaderboard's N best members (default 10, at most 10000): the highest scores
first, or the lowest with --lowest (a race time, a golf score). ` + ranksNote,
		Example: "  conclave zset top board\n  conclave zset top board 3 --mode competition\n  conclave zset top 100m 10 --lowest",
		Args:    cobra.RangeArgs(1, 2),
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&lowest, "lowest", false, "the lowest scores are the best")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		mode, err := parseRankMode(f.mode)
		if err != nil {
			return err
		}
		n := int64(10)
		if len(args) == 2 {
			if n, err = parseCount("N", args[1], 1, zsetMaxPage); err != nil {
				return err
			}
		}
		resp, err := c.SortedSets().Top(ctx, &conclavev1.TopRequest{Key: []byte(args[0]), Count: n, Lowest: lowest,
			RankMode: mode, Consistency: f.consistency()})
		if err != nil {
			return err
		}
		if o.json() {
			return printProtoAll(cmd.OutOrStdout(), resp)
		}
		return printRanked(cmd.OutOrStdout(), resp.GetMembers())
	})
	return cmd
}

func newZsetAroundCmd(o *clientOptions) *cobra.Command {
	var (
		f      rankFlags
		lowest bool
	)
	cmd := &cobra.Command{
		Use:   "around KEY MEMBER [N]",
		Short: "List a member and its N neighbours on each side, in top's order",
		Long: `List a member and up to N members on each side of it (default 5, at most 1000), in
top's order: the highest scores first, or the lowest with --lowest. Fail (exit status 1)
when the member is not in the set. ` + ranksNote,
		Example: "  conclave zset around board ann\n  conclave zset around board ann 2 --mode dense",
		Args:    cobra.RangeArgs(2, 3),
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&lowest, "lowest", false, "the lowest scores are the best")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		mode, err := parseRankMode(f.mode)
		if err != nil {
			return err
		}
		n := int64(5)
		if len(args) == 3 {
			if n, err = parseCount("N", args[2], 0, zsetMaxAround); err != nil {
				return err
			}
		}
		resp, err := c.SortedSets().Around(ctx, &conclavev1.AroundRequest{Key: []byte(args[0]), Member: args[1], Count: n,
			Reverse: !lowest, RankMode: mode, Consistency: f.consistency()})
		if err != nil {
			return err
		}
		if !resp.GetFound() {
			return errMemberNotFound
		}
		if o.json() {
			return printProtoAll(cmd.OutOrStdout(), resp)
		}
		return printRanked(cmd.OutOrStdout(), resp.GetMembers())
	})
	return cmd
}
