package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// newLockCmd builds `conclave lock` and its subcommands.
func newLockCmd() *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Acquire, release and inspect locks; run a command holding a lock",
	}
	o.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(newLockAcquireCmd(o), newLockReleaseCmd(o), newLockInspectCmd(o), newLockRunCmd(o))
	return cmd
}

// parseToken parses a fencing token argument.
func parseToken(arg string) (uint64, error) {
	t, err := strconv.ParseUint(arg, 10, 64)
	if err != nil || t == 0 {
		return 0, fmt.Errorf("TOKEN %q: want a fencing token (a positive integer)", arg)
	}
	return t, nil
}

// checkLockWait validates a --wait value.
func checkLockWait(wait time.Duration) error {
	if wait < 0 || wait > client.MaxLockWait {
		return fmt.Errorf("--wait %v: must be 0 to %v", wait, client.MaxLockWait)
	}
	return nil
}

func newLockAcquireCmd(o *clientOptions) *cobra.Command {
	var (
		session uint64
		ttl     time.Duration
		wait    time.Duration
		shared  bool
		limit   uint32
	)
	cmd := &cobra.Command{
		Use:   "acquire NAME",
		Short: "Acquire a lock for a session and print the session and the fencing token",
		Long: `Acquire a lock for --session, or for a new session of --ttl, and print
"session=ID token=T". The hold lasts until "lock release" or until the session ends.
Nothing keeps a session alive after this command: a session it created expires --ttl
later (releasing the lock) unless renewed with "session keepalive". To hold a lock for
the life of a command, use "lock run".

--wait waits server-side, in FIFO order, for the lock to be free; 0 tries once.
--shared takes a shared hold: a semaphore's slot with --limit N, or a read/write lock's
reader with --limit 0.`,
		Args: cobra.ExactArgs(1),
	}
	fs := cmd.Flags()
	fs.Uint64Var(&session, "session", 0, "session that holds the lock (default: create one of --ttl)")
	fs.DurationVar(&ttl, "ttl", 10*time.Second, "time to live of the session created when --session is absent")
	fs.DurationVar(&wait, "wait", 0, "how long to wait for the lock (0: try once)")
	fs.BoolVar(&shared, "shared", false, "take a shared hold (semaphore slot or reader)")
	fs.Uint32Var(&limit, "limit", 0, "with --shared, the most holders (0: no limit, a reader)")
	cmd.MarkFlagsMutuallyExclusive("session", "ttl")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkLockWait(wait); err != nil {
			return err
		}
		if limit != 0 && !shared {
			return fmt.Errorf("--limit applies only with --shared")
		}
		if session == 0 && ttl <= 0 {
			return fmt.Errorf("--ttl %v: must be positive", ttl)
		}
		c, _, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		// The call may wait --wait server-side, on top of the time for the request.
		ctx, cancel := context.WithTimeout(cmd.Context(), wait+o.timeout)
		defer cancel()
		created := session == 0
		if created {
			resp, err := c.Sessions().CreateSession(ctx, &conclavev1.CreateSessionRequest{TtlMs: durationMs(ttl)})
			if err != nil {
				return err
			}
			session = resp.GetId()
		}
		req := &conclavev1.AcquireRequest{Name: args[0], SessionId: session, WaitTimeoutMs: wait.Milliseconds(),
			Mode: conclavev1.LockMode_LOCK_MODE_EXCLUSIVE}
		if shared {
			req.Mode, req.Limit = conclavev1.LockMode_LOCK_MODE_SHARED, limit
		}
		resp, err := c.Locks().Acquire(ctx, req)
		if err != nil {
			if created { // do not leave an unused session behind
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), o.timeout)
				_, _ = c.Sessions().RevokeSession(rctx, &conclavev1.RevokeSessionRequest{Id: session})
				rcancel()
			}
			return err
		}
		if o.json() {
			return writeIndented(cmd.OutOrStdout(),
				fmt.Appendf(nil, `{"session":"%d","token":"%d"}`, session, resp.GetToken()))
		}
		fmt.Fprintf(cmd.OutOrStdout(), "session=%d token=%d\n", session, resp.GetToken())
		return nil
	}
	return cmd
}

func newLockReleaseCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "release NAME TOKEN",
		Short: "Release the hold of a lock with its fencing token",
		Args:  cobra.ExactArgs(2),
		RunE: withToken(o, func(ctx context.Context, c *client.Client, name string, token uint64, _ []string) (proto.Message, error) {
			return c.Locks().Release(ctx, &conclavev1.ReleaseRequest{Name: name, Token: token})
		}),
	}
}

// withToken returns the RunE of a command "NAME TOKEN [ARGS...]" that makes one call
// with the fencing token and prints "OK", or the response with -o json.
func withToken(o *clientOptions, call func(ctx context.Context, c *client.Client, name string, token uint64, rest []string) (proto.Message, error)) func(*cobra.Command, []string) error {
	return withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		token, err := parseToken(args[1])
		if err != nil {
			return err
		}
		resp, err := call(ctx, c, args[0], token, args[2:])
		if err != nil {
			return err
		}
		return o.printOK(cmd.OutOrStdout(), resp)
	})
}

func newLockInspectCmd(o *clientOptions) *cobra.Command {
	return newReadCmd(o, "inspect NAME", "List a lock's holders, then its waiters in FIFO order",
		func(ctx context.Context, c *client.Client, name string, cons conclavev1.Consistency) (*conclavev1.InspectResponse, error) {
			return c.Locks().Inspect(ctx, &conclavev1.InspectRequest{Name: name, Consistency: cons})
		}, func(w io.Writer, _ string, resp *conclavev1.InspectResponse) error { return printLockTable(w, resp) })
}

// printLockTable writes a lock's holders, then its waiters in order, one a row.
func printLockTable(w io.Writer, resp *conclavev1.InspectResponse) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tSESSION\tTOKEN\tMODE\tSINCE")
	for _, h := range resp.GetHolders() {
		fmt.Fprintf(tw, "holder\t%d\t%d\t%s\t%s\n", h.GetSessionId(), h.GetToken(),
			formatLockMode(h.GetMode(), resp.GetLimit()), formatUnixMs(h.GetSinceUnixMs()))
	}
	for _, x := range resp.GetWaiters() {
		fmt.Fprintf(tw, "waiter\t%d\t-\t%s\t%s\n", x.GetSessionId(),
			formatLockMode(x.GetMode(), resp.GetLimit()), formatUnixMs(x.GetSinceUnixMs()))
	}
	return tw.Flush()
}

// formatLockMode returns "exclusive", "shared" or "shared/N" for a semaphore of limit N.
func formatLockMode(m conclavev1.LockMode, limit uint32) string {
	if m != conclavev1.LockMode_LOCK_MODE_SHARED {
		return "exclusive"
	}
	if limit > 0 {
		return "shared/" + strconv.FormatUint(uint64(limit), 10)
	}
	return "shared"
}

// exitStatus is an error that makes run exit with that status and print nothing: the
// status of the command `lock run` ran.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// isExitStatus reports whether err carries a command's exit status, and which.
func isExitStatus(err error) (int, bool) {
	var es exitStatus
	if errors.As(err, &es) {
		return int(es), true
	}
	return 0, false
}

// lockRunArgs splits `lock run`'s arguments into the lock name and the command.
func lockRunArgs(cmd *cobra.Command, args []string) (string, []string, error) {
	if dash := cmd.ArgsLenAtDash(); (dash != -1 && dash != 1) || len(args) < 2 {
		return "", nil, fmt.Errorf("want NAME -- COMMAND [ARGS...], got %q", strings.Join(args, " "))
	}
	return args[0], args[1:], nil
}
