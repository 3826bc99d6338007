package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Output formats of the client commands.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// clientOptions are the persistent flags of the client command groups (kv, cluster,
// session, bench).
type clientOptions struct {
	endpoints []string
	output    string
	timeout   time.Duration
}

// addFlags declares the options as flags of fs.
func (o *clientOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.endpoints, "endpoints", client.DefaultConfig().Endpoints,
		"comma-separated gRPC addresses of the cluster's nodes")
	fs.StringVarP(&o.output, "output", "o", outputTable, "output format: table or json")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "time allowed for the command's requests")
}

// validate checks the option values; it is the group's PersistentPreRunE work.
func (o *clientOptions) validate() error {
	if o.output != outputTable && o.output != outputJSON {
		return fmt.Errorf("--output %q: want table or json", o.output)
	}
	if len(o.endpoints) == 0 {
		return fmt.Errorf("--endpoints: none given")
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %v: must be positive", o.timeout)
	}
	return nil
}

// json reports whether output is JSON.
func (o *clientOptions) json() bool { return o.output == outputJSON }

// connect validates the options and returns a client and a context bounded by --timeout;
// done closes both.
func (o *clientOptions) connect(cmd *cobra.Command) (c *client.Client, ctx context.Context, done func(), err error) {
	if err := o.validate(); err != nil {
		return nil, nil, nil, err
	}
	cfg := client.DefaultConfig()
	cfg.Endpoints = o.endpoints
	c, err = client.New(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	return c, ctx, func() { cancel(); _ = c.Close() }, nil
}

// cleanup returns a context for cleaning up after ctx ended (an interrupt): --timeout
// from now, not cancelled with ctx.
func (o *clientOptions) cleanup(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
}

// withClient returns a RunE that connects with o and calls fn.
func withClient(o *clientOptions, fn func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, ctx, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		return fn(ctx, cmd, c, args)
	}
}

// newReadCmd builds a command "VERB NAME" that reads one thing — linearizable, or the
// serving node's local state with --stale — and prints it with table, or as JSON with
// -o json.
func newReadCmd[R proto.Message](o *clientOptions, use, short string,
	read func(ctx context.Context, c *client.Client, name string, cons conclavev1.Consistency) (R, error),
	table func(w io.Writer, name string, resp R) error) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1)}
	cmd.Flags().BoolVar(&stale, "stale", false, "read the serving node's local state (may be stale)")
	cmd.RunE = withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
		resp, err := read(ctx, c, args[0], consistency(stale))
		if err != nil {
			return err
		}
		if o.json() {
			return printProto(cmd.OutOrStdout(), resp)
		}
		return table(cmd.OutOrStdout(), args[0], resp)
	})
	return cmd
}

// printOK prints a write's answer: "OK", or the response as JSON with -o json.
func (o *clientOptions) printOK(w io.Writer, resp proto.Message) error {
	if o.json() {
		return printProto(w, resp)
	}
	_, err := fmt.Fprintln(w, "OK")
	return err
}

// printValue prints resp in full with -o json, or else the one value v that answers the
// command.
func (o *clientOptions) printValue(w io.Writer, resp proto.Message, v any) error {
	if o.json() {
		return printProtoAll(w, resp)
	}
	_, err := fmt.Fprintln(w, v)
	return err
}

// printProto writes m as indented protojson followed by a newline.
func printProto(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	return writeIndented(w, b)
}

// printProtoList writes ms as one indented JSON array.
func printProtoList[M proto.Message](w io.Writer, ms []M) error {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, m := range ms {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	return writeIndented(w, buf.Bytes())
}

// writeIndented re-indents JSON b (protojson's spacing is deliberately unstable) and
// writes it with a trailing newline.
func writeIndented(w io.Writer, b []byte) error {
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return err
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// display returns b as text for a table cell: as is when it is printable UTF-8 without
// tabs or newlines, Go-quoted otherwise.
func display(b []byte) string {
	if utf8.Valid(b) && !strings.ContainsFunc(string(b), func(r rune) bool { return !unicode.IsPrint(r) }) {
		return string(b)
	}
	return strconv.Quote(string(b))
}

// formatTTL returns a remaining time to live in milliseconds as a duration ("9.5s"), or
// "-" for 0 (no TTL).
func formatTTL(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}
