package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-dev/conclave/client"
)

// killGrace is how long `lock run` waits after SIGTERM before it kills the command.
const killGrace = 5 * time.Second

// Environment `lock run` gives the command.
const (
	envFencingToken = "CONCLAVE_FENCING_TOKEN"
	envLockSession  = "CONCLAVE_LOCK_SESSION"
)

func newLockRunCmd(o *clientOptions) *cobra.Command {
	var ttl, wait time.Duration
	cmd := &cobra.Command{
		Use:   "run NAME -- COMMAND [ARGS...]",
		Short: "Run a command while holding a lock; exit with the command's status",
		Long: `Create a session of --ttl, kept alive while the command runs; acquire the lock
NAME for it, waiting up to --wait (0: until acquired); then run COMMAND with stdin, stdout
and stderr passed through and, in its environment, ` + envFencingToken + ` (the fencing
token) and ` + envLockSession + ` (the session id).

When COMMAND exits, the lock is released and the session closed, and conclave exits
with COMMAND's status (128+N when killed by signal N). If the session is lost first
(it could not be kept alive, so the lock may already be someone else's), COMMAND gets
SIGTERM, then SIGKILL ` + killGrace.String() + ` later, and conclave exits 1 with "lock lost".
An interrupt (Ctrl-C, SIGTERM) is passed on to COMMAND the same way.`,
		Args: cobra.MinimumNArgs(2),
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "time to live of the lock's session")
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to wait for the lock (0: until acquired)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, argv, err := lockRunArgs(cmd, args)
		if err != nil {
			return err
		}
		if err := checkLockWait(wait); err != nil {
			return err
		}
		if ttl <= 0 {
			return fmt.Errorf("--ttl %v: must be positive", ttl)
		}
		c, _, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		return lockRun(cmd, o, c, name, argv, ttl, wait)
	}
	return cmd
}

// lockRun is `lock run` once the arguments are checked.
func lockRun(cmd *cobra.Command, o *clientOptions, c *client.Client, name string, argv []string, ttl, wait time.Duration) error {
	ctx := cmd.Context()
	sess, closeSession, err := commandSession(cmd, o, c, ttl)
	if err != nil {
		return err
	}
	defer closeSession()

	m := client.NewMutex(sess, name)
	if err := acquireForRun(ctx, sess, m, wait); err != nil {
		return err
	}
	defer func() {
		if sess.Err() != nil {
			return // the hold ended with the session
		}
		cctx, ccancel := o.cleanup(ctx)
		defer ccancel()
		if err := m.Unlock(cctx); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "conclave: releasing lock %q: %s\n", name, errorMessage(err))
		}
	}()

	child := exec.Command(argv[0], argv[1:]...)
	child.Stdin, child.Stdout, child.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	child.Env = append(os.Environ(),
		envFencingToken+"="+strconv.FormatUint(m.Token(), 10),
		envLockSession+"="+strconv.FormatUint(sess.ID(), 10))
	if err := child.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()

	var lost error
	select {
	case err = <-exited:
	case <-sess.Done():
		// Not %w: errorMessage would print only the wrapped call's message.
		lost = fmt.Errorf("lock lost: lock %q: session %d: %s", name, sess.ID(), errorMessage(sess.Err()))
		_ = stop(child, exited)
	case <-ctx.Done():
		err = stop(child, exited)
	}
	if lost != nil {
		return lost
	}
	return commandStatus(err)
}

// commandSession creates the session of ttl a command holds something with for as long
// as it runs; closeSession ends it, with --timeout even after an interrupt.
func commandSession(cmd *cobra.Command, o *clientOptions, c *client.Client, ttl time.Duration) (sess *client.Session, closeSession func(), err error) {
	sctx, scancel := context.WithTimeout(cmd.Context(), o.timeout)
	sess, err = c.NewSession(sctx, ttl)
	scancel()
	if err != nil {
		return nil, nil, err
	}
	return sess, func() {
		cctx, ccancel := o.cleanup(cmd.Context())
		defer ccancel()
		if err := sess.Close(cctx); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "conclave: closing session %d: %s\n", sess.ID(), errorMessage(err))
		}
	}, nil
}

// whileSession runs fn with a context that also ends when sess ends; if fn fails after
// the session ended, the session's error is returned.
func whileSession(ctx context.Context, sess *client.Session, what string, fn func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := fn(ctx)
	if err != nil && sess.Err() != nil {
		return fmt.Errorf("%s: %w", what, sess.Err())
	}
	return err
}

// acquireForRun locks m, waiting up to wait (0: until acquired, in rounds of
// client.MaxLockWait), and gives up when the session ends or ctx does.
func acquireForRun(ctx context.Context, sess *client.Session, m *client.Mutex, wait time.Duration) error {
	return whileSession(ctx, sess, fmt.Sprintf("lock %q", m.Name()), func(ctx context.Context) error { return lockForRun(ctx, m, wait) })
}

func lockForRun(ctx context.Context, m *client.Mutex, wait time.Duration) error {
	for {
		lctx, lcancel := ctx, context.CancelFunc(func() {})
		if wait > 0 {
			lctx, lcancel = context.WithTimeout(ctx, wait)
		}
		err := m.Lock(lctx)
		lcancel()
		if wait == 0 && errors.Is(err, client.ErrLockHeld) && ctx.Err() == nil {
			continue // waited client.MaxLockWait; wait again
		}
		return err
	}
}

// stop sends the command SIGTERM, then SIGKILL after killGrace, and returns its Wait error.
func stop(child *exec.Cmd, exited <-chan error) error {
	_ = child.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(killGrace)
	defer t.Stop()
	select {
	case err := <-exited:
		return err
	case <-t.C:
		_ = child.Process.Kill()
		return <-exited
	}
}

// commandStatus turns the command's Wait error into run's result: nil for status 0,
// exitStatus for another status (128+N when killed by signal N), the error otherwise.
func commandStatus(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitStatus(128 + int(ws.Signal()))
	}
	return exitStatus(ee.ExitCode())
}
