package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// errKeyNotFound is reported, with exit status 1, when a read finds no key.
var errKeyNotFound = errors.New("key not found")

// newKVCmd builds `conclave kv` and its subcommands.
func newKVCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Read and write keys",
	}
	o.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newKVGetCmd(o), newKVSetCmd(o), newKVDelCmd(o), newKVIncrCmd(o),
		newKVExpireCmd(o), newKVTTLCmd(o), newKVScanCmd(o),
	)
	return cmd
}

// consistency returns the read consistency chosen by a --stale flag.
func consistency(stale bool) conclavev1.Consistency {
	if stale {
		return conclavev1.Consistency_CONSISTENCY_STALE
	}
	return conclavev1.Consistency_CONSISTENCY_LINEARIZABLE
}

func newKVGetCmd(o *clientOptions) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		resp, err := c.KV().Get(ctx, &conclavev1.GetRequest{Key: []byte(args[0]), Consistency: consistency(stale)})
		if err != nil {
			return err
		}
		if !resp.GetFound() {
			return errKeyNotFound
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		w := cmd.OutOrStdout()
		if _, err := w.Write(resp.GetKv().GetValue()); err != nil {
			return err
		}
		_, err = fmt.Fprintln(w)
		return err
	})
	return cmd
}

func newKVSetCmd(o *clientOptions) *cobra.Command {
	var (
		ttl                   time.Duration
		nx, xx, keepTTL, prev bool
		ifRevision            uint64
	)
	cmd := &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Write a key",
		Args:  cobra.ExactArgs(2),
	}
	fs := cmd.Flags()
	fs.DurationVar(&ttl, "ttl", 0, "time to live (0: none)")
	fs.BoolVar(&nx, "nx", false, "write only if the key does not exist")
	fs.BoolVar(&xx, "xx", false, "write only if the key exists")
	fs.Uint64Var(&ifRevision, "if-revision", 0, "write only if the key's mod revision is N (0: does not exist)")
	fs.BoolVar(&keepTTL, "keep-ttl", false, "keep the key's existing time to live")
	fs.BoolVar(&prev, "prev", false, "print the value replaced")
	cmd.MarkFlagsMutuallyExclusive("nx", "xx")
	cmd.MarkFlagsMutuallyExclusive("ttl", "keep-ttl")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		var opts []client.SetOption
		if ttl > 0 {
			opts = append(opts, client.WithTTL(ttl))
		}
		if nx {
			opts = append(opts, client.IfAbsent())
		}
		if xx {
			opts = append(opts, client.IfPresent())
		}
		if cmd.Flags().Changed("if-revision") {
			opts = append(opts, client.IfRevision(ifRevision))
		}
		if keepTTL {
			opts = append(opts, client.KeepTTL())
		}
		if prev {
			opts = append(opts, client.ReturnPrevious())
		}
		resp, err := c.Set(ctx, args[0], []byte(args[1]), opts...)
		if err != nil {
			return err
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		fmt.Fprintln(cmd.OutOrStdout(), "OK")
		if prev && resp.GetPrev() != nil {
			fmt.Fprintln(cmd.OutOrStdout(), display(resp.GetPrev().GetValue()))
		}
		return nil
	})
	return cmd
}

func newKVDelCmd(o *clientOptions) *cobra.Command {
	var (
		ifRevision uint64
		prev       bool
	)
	cmd := &cobra.Command{
		Use:   "del KEY...",
		Short: "Delete keys and print how many existed",
		Args:  cobra.MinimumNArgs(1),
	}
	cmd.Flags().Uint64Var(&ifRevision, "if-revision", 0, "delete only if the (single) key's mod revision is N")
	cmd.Flags().BoolVar(&prev, "prev", false, "print the deleted keys and values")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		req := &conclavev1.DeleteRequest{ReturnPrevious: prev}
		for _, k := range args {
			req.Keys = append(req.Keys, []byte(k))
		}
		if cmd.Flags().Changed("if-revision") {
			req.IfRevision = &ifRevision
		}
		resp, err := c.KV().Delete(ctx, req)
		if err != nil {
			return err
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		w := cmd.OutOrStdout()
		fmt.Fprintln(w, resp.GetDeleted())
		for _, kv := range resp.GetPrev() {
			fmt.Fprintln(w, display(kv.GetKey()))
			fmt.Fprintln(w, display(kv.GetValue()))
		}
		return nil
	})
	return cmd
}

func newKVIncrCmd(o *clientOptions) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:     "incr KEY [DELTA]",
		Short:   "Add DELTA (default 1) to an integer key and print the new value",
		Example: "  conclave kv incr hits\n  conclave kv incr stock -- -3",
		Args:    cobra.RangeArgs(1, 2),
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "time to live if the key is created")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		delta := int64(1)
		if len(args) == 2 {
			d, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("DELTA %q: not an integer", args[1])
			}
			delta = d
		}
		resp, err := c.KV().Increment(ctx, &conclavev1.IncrementRequest{
			Key: []byte(args[0]), Delta: delta, TtlMs: durationMs(ttl),
		})
		if err != nil {
			return err
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		fmt.Fprintln(cmd.OutOrStdout(), resp.GetValue())
		return nil
	})
	return cmd
}

// durationMs converts d to whole milliseconds, rounding a positive remainder up.
func durationMs(d time.Duration) int64 {
	ms := d.Milliseconds()
	if d > 0 && d%time.Millisecond != 0 {
		ms++
	}
	return ms
}
