package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// newElectionCmd builds `conclave election` and its subcommands.
func newElectionCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "election",
		Short: "Campaign in, observe and inspect leader elections",
	}
	o.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(newElectionCampaignCmd(o), newElectionLeaderCmd(o), newElectionObserveCmd(o),
		newElectionProclaimCmd(o), newElectionResignCmd(o))
	return cmd
}

func newElectionCampaignCmd(o *clientOptions) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "campaign NAME VALUE",
		Short: "Campaign until elected, print the leadership, and lead until interrupted",
		Long: `Create a session of --ttl, kept alive while this command runs, and campaign in the
election NAME with VALUE, waiting (FIFO among candidates) until elected. Then print
"elected name=NAME session=S token=T" (or the leadership as JSON with -o json) and lead
until interrupted (Ctrl-C, SIGTERM): then resign and exit 0. If the session is lost
first, exit 1 with "leadership lost". As etcdctl elect.`,
		Args: cobra.ExactArgs(2),
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "time to live of the candidate's session")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if ttl <= 0 {
			return fmt.Errorf("--ttl %v: must be positive", ttl)
		}
		c, _, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		ctx := cmd.Context()
		sess, closeSession, err := commandSession(cmd, o, c, ttl)
		if err != nil {
			return err
		}
		defer closeSession()
		e := client.NewElection(sess, args[0])
		err = whileSession(ctx, sess, fmt.Sprintf("election %q", args[0]), func(ctx context.Context) error { return e.Campaign(ctx, []byte(args[1])) })
		if err != nil {
			return err
		}
		if o.json() {
			if err := printProto(cmd.OutOrStdout(), e.Leadership()); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(cmd.OutOrStdout(), "elected name=%s session=%d token=%d\n", args[0], sess.ID(), e.Token())
		}
		select {
		case <-sess.Done():
			return fmt.Errorf("leadership lost: election %q: session %d: %s", args[0], sess.ID(), errorMessage(sess.Err()))
		case <-ctx.Done():
			cctx, ccancel := o.cleanup(ctx)
			defer ccancel()
			return e.Resign(cctx)
		}
	}
	return cmd
}

func newElectionLeaderCmd(o *clientOptions) *cobra.Command {
	return newReadCmd(o, "leader NAME", "Print an election's leader (exit 1 when it has none)",
		func(ctx context.Context, c *client.Client, name string, cons conclavev1.Consistency) (*conclavev1.LeaderResponse, error) {
			return c.Elections().Leader(ctx, &conclavev1.LeaderRequest{Name: name, Consistency: cons})
		}, func(w io.Writer, name string, resp *conclavev1.LeaderResponse) error {
			if resp.GetLeader() == nil {
				return fmt.Errorf("election %q has no leader", name)
			}
			return printLeaderTable(w, resp.GetLeader())
		})
}

func printLeaderTable(w io.Writer, l *conclavev1.Leadership) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tTOKEN\tREVISION\tSINCE\tVALUE")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\n", l.GetSessionId(), l.GetToken(), l.GetRevision(), formatUnixMs(l.GetSinceUnixMs()), display(l.GetValue()))
	return tw.Flush()
}

func newElectionObserveCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "observe NAME",
		Short: "Print the leader now and on every change, until interrupted",
		Long: `Print a line for the leader now and one for every change of leader or value:
"leader session=S token=T value=V", or "no leader". With -o json, one JSON object per
line (the Leadership; {} when there is none). Runs until interrupted; a broken stream is
re-opened on another endpoint.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, done, err := o.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			for l := range client.ObserveElection(cmd.Context(), c, args[0]) {
				if err := printLeaderLine(out, l, o.json()); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func printLeaderLine(w io.Writer, l *conclavev1.Leadership, asJSON bool) error {
	if asJSON {
		b, err := protojson.Marshal(l)
		if err != nil {
			return err
		}
		var line bytes.Buffer
		if err := json.Compact(&line, b); err != nil {
			return err
		}
		line.WriteByte('\n')
		_, err = w.Write(line.Bytes())
		return err
	}
	if l == nil {
		_, err := fmt.Fprintln(w, "no leader")
		return err
	}
	_, err := fmt.Fprintf(w, "leader session=%d token=%d value=%s\n", l.GetSessionId(), l.GetToken(), display(l.GetValue()))
	return err
}

func newElectionProclaimCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "proclaim NAME TOKEN VALUE",
		Short: "Replace the leader's value; fails unless TOKEN still leads",
		Args:  cobra.ExactArgs(3),
		RunE: withToken(o, func(ctx context.Context, c *client.Client, name string, token uint64, rest []string) (proto.Message, error) {
			return c.Elections().Proclaim(ctx, &conclavev1.ProclaimRequest{Name: name, Token: token, Value: []byte(rest[0])})
		}),
	}
}

func newElectionResignCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "resign NAME TOKEN",
		Short: "Give up leadership; the next candidate is elected",
		Args:  cobra.ExactArgs(2),
		RunE: withToken(o, func(ctx context.Context, c *client.Client, name string, token uint64, _ []string) (proto.Message, error) {
			return c.Elections().Resign(ctx, &conclavev1.ResignRequest{Name: name, Token: token})
		}),
	}
}
