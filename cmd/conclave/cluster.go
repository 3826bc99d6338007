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

// newClusterCmd builds `conclave cluster` and its subcommands.
func newClusterCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change cluster membership",
	}
	o.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newClusterStatusCmd(o), newClusterJoinCmd(o), newClusterRemoveCmd(o),
		newClusterTransferCmd(o), newClusterSnapshotCmd(o),
	)
	return cmd
}

func newClusterStatusCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Describe the serving node and the cluster as it sees it",
		Args:  cobra.NoArgs,
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
			resp, err := c.Cluster().Status(ctx, &conclavev1.StatusRequest{})
			if err != nil {
				return err
			}
			if o.json() {
				return printProto(cmd.OutOrStdout(), resp)
			}
			w := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			leader := resp.GetLeaderId()
			if leader == "" {
				leader = "(none)"
			} else if resp.GetLeaderAddress() != "" {
				leader += " (" + resp.GetLeaderAddress() + ")"
			}
			fmt.Fprintf(tw, "node:\t%s\n", resp.GetNodeId())
			fmt.Fprintf(tw, "state:\t%s\n", resp.GetRaftState())
			fmt.Fprintf(tw, "leader:\t%s\n", leader)
			fmt.Fprintf(tw, "term:\t%d\n", resp.GetTerm())
			fmt.Fprintf(tw, "commit/applied:\t%d/%d\n", resp.GetCommitIndex(), resp.GetAppliedIndex())
			fmt.Fprintf(tw, "keys:\t%d\n", resp.GetKeyCount())
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(w)
			return printMembers(w, resp.GetMembers())
		}),
	}
}

func newClusterJoinCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "join ID RAFT_ADDR GRPC_ADDR",
		Short: "Add a node as a non-voter (promoted once caught up)",
		Args:  cobra.ExactArgs(3),
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			resp, err := c.Cluster().Join(ctx, &conclavev1.JoinRequest{Id: args[0], RaftAddress: args[1], GrpcAddress: args[2]})
			if err != nil {
				return err
			}
			if o.json() {
				return printProto(cmd.OutOrStdout(), resp)
			}
			return printMembers(cmd.OutOrStdout(), resp.GetMembers())
		}),
	}
}

func newClusterRemoveCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Take a node out of the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			resp, err := c.Cluster().Remove(ctx, &conclavev1.RemoveRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if o.json() {
				return printProto(cmd.OutOrStdout(), resp)
			}
			return printMembers(cmd.OutOrStdout(), resp.GetMembers())
		}),
	}
}

func newClusterTransferCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer [ID]",
		Short: "Hand leadership to another voter (raft chooses when ID is omitted)",
		Args:  cobra.MaximumNArgs(1),
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			req := &conclavev1.TransferLeadershipRequest{}
			if len(args) == 1 {
				req.ToId = args[0]
			}
			resp, err := c.Cluster().TransferLeadership(ctx, req)
			if err != nil {
				return err
			}
			if o.json() {
				return printProto(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "leader:", resp.GetLeaderId())
			return nil
		}),
	}
}

func newClusterSnapshotCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "snapshot",
		Short: "Take a raft snapshot on the serving node",
		Args:  cobra.NoArgs,
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
			resp, err := c.Cluster().Snapshot(ctx, &conclavev1.SnapshotRequest{})
			if err != nil {
				return err
			}
			if o.json() {
				return printProto(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "snapshot at index", resp.GetIndex())
			return nil
		}),
	}
}

// printMembers writes the member table: ID RAFT GRPC VOTER LEADER.
func printMembers(w io.Writer, members []*conclavev1.Member) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAFT\tGRPC\tVOTER\tLEADER")
	for _, m := range members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%t\n", m.GetId(), m.GetRaftAddress(), m.GetGrpcAddress(), m.GetVoter(), m.GetLeader())
	}
	return tw.Flush()
}
