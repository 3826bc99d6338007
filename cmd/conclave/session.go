package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// newSessionCmd builds `conclave session` and its subcommands.
func newSessionCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Create, renew, inspect and revoke sessions (leases)",
	}
	o.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newSessionCreateCmd(o), newSessionKeepAliveCmd(o), newSessionRevokeCmd(o),
		newSessionGetCmd(o), newSessionListCmd(o), newSessionRevokeOwnerCmd(o),
		newSessionAttrsCmd(o),
	)
	return cmd
}

// parseSessionID parses a session id argument.
func parseSessionID(arg string) (uint64, error) {
	id, err := strconv.ParseUint(arg, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("ID %q: want a session id (a positive integer)", arg)
	}
	return id, nil
}

// parseAttrs parses k=v flag values; the value may contain '=' and be empty.
func parseAttrs(flag string, kvs []string) (map[string][]byte, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string][]byte, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want key=value", flag, kv)
		}
		m[k] = []byte(v)
	}
	return m, nil
}

func newSessionCreateCmd(o *clientOptions) *cobra.Command {
	var (
		ttl   time.Duration
		owner string
		attrs []string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a session and print its id",
		Long: `Create a session and print its id. The session lives --ttl after its creation and
after each keep-alive (the server raises a TTL below its minimum); nothing keeps it alive
after this command: renew it with "session keepalive".`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.DurationVar(&ttl, "ttl", 10*time.Second, "time to live after each keep-alive")
	fs.StringVar(&owner, "owner", "", "owner of the session")
	fs.StringArrayVar(&attrs, "attr", nil, "attribute key=value (repeatable)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
		if ttl <= 0 {
			return fmt.Errorf("--ttl %v: must be positive", ttl)
		}
		m, err := parseAttrs("attr", attrs)
		if err != nil {
			return err
		}
		resp, err := c.Sessions().CreateSession(ctx, &conclavev1.CreateSessionRequest{
			TtlMs: durationMs(ttl), Owner: owner, Attributes: m,
		})
		if err != nil {
			return err
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		fmt.Fprintln(cmd.OutOrStdout(), resp.GetId())
		return nil
	})
	return cmd
}

func newSessionKeepAliveCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "keepalive ID",
		Short: "Renew a session once and print its time to live",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			id, err := parseSessionID(args[0])
			if err != nil {
				return err
			}
			resp, err := c.Sessions().KeepAlive(ctx, &conclavev1.KeepAliveRequest{Id: id})
			if err != nil {
				return err
			}
			if o.json() {
				return printProto(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintln(cmd.OutOrStdout(), formatTTL(resp.GetTtlMs()))
			return nil
		}),
	}
}

func newSessionRevokeCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "End a session now and print how many attached keys were deleted",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			id, err := parseSessionID(args[0])
			if err != nil {
				return err
			}
			resp, err := c.Sessions().RevokeSession(ctx, &conclavev1.RevokeSessionRequest{Id: id})
			if err != nil {
				return err
			}
			if o.json() {
				return printProto(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.GetKeysDeleted())
			return nil
		}),
	}
}

func newSessionGetCmd(o *clientOptions) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Describe a session and its attached keys",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		id, err := parseSessionID(args[0])
		if err != nil {
			return err
		}
		resp, err := c.Sessions().GetSession(ctx, &conclavev1.GetSessionRequest{Id: id, Consistency: consistency(stale)})
		if err != nil {
			return err
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		s := resp.GetSession()
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "id:\t%d\n", s.GetId())
		fmt.Fprintf(tw, "owner:\t%s\n", s.GetOwner())
		fmt.Fprintf(tw, "ttl:\t%s\n", formatTTL(s.GetTtlMs()))
		fmt.Fprintf(tw, "created:\t%s\n", formatUnixMs(s.GetCreatedAtUnixMs()))
		if s.GetMaxLifetimeMs() > 0 {
			fmt.Fprintf(tw, "max lifetime:\t%s\n", formatTTL(s.GetMaxLifetimeMs()))
		}
		fmt.Fprintf(tw, "attributes:\t%s\n", formatAttrs(s.GetAttributes()))
		keys := make([]string, len(s.GetKeys()))
		for i, k := range s.GetKeys() {
			keys[i] = display(k)
		}
		fmt.Fprintf(tw, "keys:\t%s\n", strings.Join(keys, " "))
		return tw.Flush()
	})
	return cmd
}

func newSessionListCmd(o *clientOptions) *cobra.Command {
	var (
		owner string
		limit int
		stale bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List sessions, optionally of one owner",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&owner, "owner", "", "list only this owner's sessions")
	cmd.Flags().IntVar(&limit, "limit", 0, "stop after N sessions (0: all)")
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
		if limit < 0 {
			return fmt.Errorf("--limit %d: must not be negative", limit)
		}
		req := &conclavev1.ListSessionsRequest{Owner: owner, Consistency: consistency(stale)}
		ss, err := listSessions(ctx, c, req, limit)
		if err != nil {
			return err
		}
		if o.json() {
			return printProtoList(cmd.OutOrStdout(), ss)
		}
		return printSessionTable(cmd.OutOrStdout(), ss)
	})
	return cmd
}

// listSessions follows req's page tokens until the last page or until limit sessions
// (0: no limit).
func listSessions(ctx context.Context, c *client.Client, req *conclavev1.ListSessionsRequest, limit int) ([]*conclavev1.Session, error) {
	var ss []*conclavev1.Session
	for {
		page := maxScanPage
		if limit > 0 {
			page = min(page, limit-len(ss))
		}
		req.PageSize = uint32(page)
		resp, err := c.Sessions().ListSessions(ctx, req)
		if err != nil {
			return nil, err
		}
		ss = append(ss, resp.GetSessions()...)
		if limit > 0 && len(ss) >= limit {
			return ss[:limit], nil
		}
		if resp.GetNextPageToken() == "" {
			return ss, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func printSessionTable(w io.Writer, ss []*conclavev1.Session) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tTTL\tCREATED\tATTRIBUTES")
	for _, s := range ss {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", s.GetId(), s.GetOwner(), formatTTL(s.GetTtlMs()),
			formatUnixMs(s.GetCreatedAtUnixMs()), formatAttrs(s.GetAttributes()))
	}
	return tw.Flush()
}

func newSessionRevokeOwnerCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-owner OWNER",
		Short: "End every session of an owner",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			resp, err := c.Sessions().RevokeByOwner(ctx, &conclavev1.RevokeByOwnerRequest{Owner: args[0]})
			if err != nil {
				return err
			}
			if o.json() {
				return printProto(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %d sessions, deleted %d keys\n", resp.GetRevoked(), resp.GetKeysDeleted())
			return nil
		}),
	}
}

func newSessionAttrsCmd(o *clientOptions) *cobra.Command {
	var set, del []string
	cmd := &cobra.Command{
		Use:   "attrs ID --set k=v... --delete k...",
		Short: "Set and delete a session's attributes atomically; print the new revision",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().StringArrayVar(&set, "set", nil, "attribute key=value to set (repeatable)")
	cmd.Flags().StringArrayVar(&del, "delete", nil, "attribute key to delete (repeatable)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		id, err := parseSessionID(args[0])
		if err != nil {
			return err
		}
		m, err := parseAttrs("set", set)
		if err != nil {
			return err
		}
		if len(m) == 0 && len(del) == 0 {
			return fmt.Errorf("nothing to change: give --set or --delete")
		}
		resp, err := c.Sessions().UpdateAttributes(ctx, &conclavev1.UpdateAttributesRequest{Id: id, Set: m, Delete: del})
		if err != nil {
			return err
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		fmt.Fprintln(cmd.OutOrStdout(), resp.GetAttributesRevision())
		return nil
	})
	return cmd
}

// formatUnixMs returns a Unix time in milliseconds as local RFC 3339, or "-" for 0.
func formatUnixMs(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format(time.RFC3339)
}

// formatAttrs returns attributes as "k=v k=v" in key order, values as display shows them.
func formatAttrs(m map[string][]byte) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, display([]byte(k))+"="+display(m[k]))
	}
	return strings.Join(parts, " ")
}
