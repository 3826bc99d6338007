package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func newKVExpireCmd(o *clientOptions) *cobra.Command {
	var nx, xx, gt, lt, persist bool
	cmd := &cobra.Command{
		Use:   "expire KEY TTL | expire KEY --persist",
		Short: "Set or clear a key's time to live",
		Args:  cobra.RangeArgs(1, 2),
	}
	fs := cmd.Flags()
	fs.BoolVar(&nx, "nx", false, "only if the key has no TTL")
	fs.BoolVar(&xx, "xx", false, "only if the key has a TTL")
	fs.BoolVar(&gt, "gt", false, "only if the new TTL is greater (no TTL counts as infinite)")
	fs.BoolVar(&lt, "lt", false, "only if the new TTL is less (no TTL counts as infinite)")
	fs.BoolVar(&persist, "persist", false, "clear the TTL")
	cmd.MarkFlagsMutuallyExclusive("nx", "xx", "gt", "lt", "persist")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		req := &conclavev1.ExpireRequest{Key: []byte(args[0]), Persist: persist}
		switch {
		case persist && len(args) == 2:
			return errors.New("--persist takes no TTL")
		case !persist && len(args) == 1:
			return errors.New("TTL is required (or --persist)")
		case !persist:
			ttl, err := time.ParseDuration(args[1])
			if err != nil || ttl <= 0 {
				return fmt.Errorf("TTL %q: want a positive duration such as 10s", args[1])
			}
			req.TtlMs = durationMs(ttl)
		}
		switch {
		case nx:
			req.Condition = conclavev1.ExpireCondition_EXPIRE_CONDITION_NX
		case xx:
			req.Condition = conclavev1.ExpireCondition_EXPIRE_CONDITION_XX
		case gt:
			req.Condition = conclavev1.ExpireCondition_EXPIRE_CONDITION_GT
		case lt:
			req.Condition = conclavev1.ExpireCondition_EXPIRE_CONDITION_LT
		}
		resp, err := c.KV().Expire(ctx, req)
		if err != nil {
			return err
		}
		return o.printOK(cmd.OutOrStdout(), resp)
	})
	return cmd
}

func newKVTTLCmd(o *clientOptions) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "ttl KEY",
		Short: `Print a key's remaining time to live ("9.5s" or "no ttl")`,
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		resp, err := c.KV().TTL(ctx, &conclavev1.TTLRequest{Key: []byte(args[0]), Consistency: consistency(stale)})
		if err != nil {
			return err
		}
		if !resp.GetFound() || resp.GetTtlMs() == -2 {
			return errKeyNotFound
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		if resp.GetTtlMs() < 0 {
			fmt.Fprintln(cmd.OutOrStdout(), "no ttl")
			return nil
		}
		fmt.Fprintln(cmd.OutOrStdout(), (time.Duration(resp.GetTtlMs()) * time.Millisecond).String())
		return nil
	})
	return cmd
}
