package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// maxScanPage is the largest page the server serves.
const maxScanPage = 1000

func newKVScanCmd(o *clientOptions) *cobra.Command {
	var (
		limit    int
		keysOnly bool
		stale    bool
	)
	cmd := &cobra.Command{
		Use:   "scan [PREFIX]",
		Short: "List keys with a prefix in key order",
		Args:  cobra.MaximumNArgs(1),
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "stop after N keys (0: all)")
	cmd.Flags().BoolVar(&keysOnly, "keys-only", false, "list keys without values")
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		if limit < 0 {
			return fmt.Errorf("--limit %d: must not be negative", limit)
		}
		req := &conclavev1.ScanRequest{KeysOnly: keysOnly, Consistency: consistency(stale)}
		if len(args) == 1 {
			req.Prefix = []byte(args[0])
		}
		kvs, err := scan(ctx, c, req, limit)
		if err != nil {
			return err
		}
		if o.json() {
			return printProtoList(cmd.OutOrStdout(), kvs)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		if keysOnly {
			fmt.Fprintln(tw, "KEY\tMOD_REV\tTTL")
		} else {
			fmt.Fprintln(tw, "KEY\tVALUE\tMOD_REV\tTTL")
		}
		for _, kv := range kvs {
			if keysOnly {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", display(kv.GetKey()), kv.GetModRevision(), formatTTL(kv.GetTtlMs()))
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", display(kv.GetKey()), display(kv.GetValue()),
					kv.GetModRevision(), formatTTL(kv.GetTtlMs()))
			}
		}
		return tw.Flush()
	})
	return cmd
}

// scan follows req's page tokens until the last page or until limit keys (0: no limit).
func scan(ctx context.Context, c *client.Client, req *conclavev1.ScanRequest, limit int) ([]*conclavev1.KeyValue, error) {
	var kvs []*conclavev1.KeyValue
	for {
		page := maxScanPage
		if limit > 0 {
			page = min(page, limit-len(kvs))
		}
		req.PageSize = uint32(page)
		resp, err := c.KV().Scan(ctx, req)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, resp.GetKvs()...)
		if limit > 0 && len(kvs) >= limit {
			return kvs[:limit], nil
		}
		if resp.GetNextPageToken() == "" {
			return kvs, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}
