package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/conclave-dev/conclave/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the process's exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if code, ok := isExitStatus(err); ok { // `lock run`'s command failed and said why
			return code
		}
		fmt.Fprintln(stderr, "Error:", errorMessage(err))
		return 1
	}
	return 0
}

// newRootCmd builds the conclave command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "conclave",
		Short:         "Conclave: a Raft-replicated key-value and coordination service",
		SilenceErrors: true,
		// A command that reached its Run has valid arguments: its errors are runtime
		// errors, reported without the usage text.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			return bindEnv(cmd)
		},
	}
	root.AddCommand(newServeCmd(), newKVCmd(), newClusterCmd(), newSessionCmd(), newLockCmd(), newElectionCmd(), newRateLimitCmd(), newZsetCmd(), newBenchCmd(), newChaosCmd())
	return root
}

// errorMessage returns what the user is told about err: the server's message for a
// failed call, the error itself otherwise.
func errorMessage(err error) string {
	var e *client.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	msg := e.Message
	if msg == "" {
		msg = e.Code.String()
	}
	if e.Code != codes.DeadlineExceeded && errors.Is(err, context.DeadlineExceeded) {
		msg += " (timed out)"
	}
	return msg
}
