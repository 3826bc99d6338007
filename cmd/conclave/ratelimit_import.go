package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/conclave-dev/conclave/client"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
	"github.com/conclave-dev/conclave/server/envoyrl"
)

// newRateLimitImportCmd builds `conclave ratelimit import FILE...`.
func newRateLimitImportCmd(o *clientOptions) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Load envoyproxy/ratelimit YAML configuration as the policies of Envoy's rate-limit service",
		Long: `Load envoyproxy/ratelimit configuration files (one domain each, "-" for standard
input) as stored policies, so Envoy and Istio can use Conclave as their rate-limit
service (envoy.service.ratelimit.v3.RateLimitService on the gRPC port).

Each descriptor with a rate_limit becomes a fixed-window policy named
envoy/<domain>/<key>=<value>/..., a descriptor without a value envoy/<domain>/<key>
(see docs/rate-limiting-envoy.md). An import replaces the domain: policies of the domain
that the file no longer has are deleted. Every file is read and checked before anything
is written. --dry-run prints the changes and writes nothing.`,
		Args: cobra.MinimumNArgs(1),
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the changes without writing them")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		configs, err := readEnvoyConfigs(cmd.InOrStdin(), args)
		if err != nil {
			return err
		}
		return withClient(o, func(ctx context.Context, cmd *cobra.Command, c *client.Client, _ []string) error {
			rl := conclavev1grpc.NewRateLimitServiceClient(c.Conn())
			var results []importResult
			for _, cfg := range configs {
				changes, err := envoyrl.Import(ctx, rl, cfg, dryRun)
				results = append(results, importResult{domain: cfg.Domain, changes: changes})
				if err != nil {
					_ = printImport(cmd.OutOrStdout(), o.json(), dryRun, results)
					return fmt.Errorf("import domain %q: %w (run the import again to finish it)", cfg.Domain, err)
				}
			}
			return printImport(cmd.OutOrStdout(), o.json(), dryRun, results)
		})(cmd, args)
	}
	return cmd
}

// readEnvoyConfigs reads and checks every file ("-" is stdin); two files of one domain
// are refused, since each import replaces its domain.
func readEnvoyConfigs(stdin io.Reader, files []string) ([]*envoyrl.Config, error) {
	var out []*envoyrl.Config
	seen := map[string]string{}
	for _, f := range files {
		var (
			data []byte
			err  error
		)
		if f == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, err
		}
		cfg, err := envoyrl.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if prev, ok := seen[cfg.Domain]; ok {
			return nil, fmt.Errorf("%s: domain %q is also in %s: one file per domain", f, cfg.Domain, prev)
		}
		seen[cfg.Domain] = f
		out = append(out, cfg)
	}
	return out, nil
}

// importResult is what the import of one domain did (or, in a dry run, would do).
type importResult struct {
	domain  string
	changes []envoyrl.Change
}

// printImport writes the changes: a table of what changed and a summary line per domain,
// or with asJSON one object {"dry_run", "domains": [{"domain", "changes": [{"op", "policy"}]}]}.
func printImport(w io.Writer, asJSON, dryRun bool, results []importResult) error {
	if asJSON {
		type change struct {
			Op     envoyrl.Op      `json:"op"`
			Policy json.RawMessage `json:"policy"`
		}
		type domain struct {
			Domain  string   `json:"domain"`
			Changes []change `json:"changes"`
		}
		out := struct {
			DryRun  bool     `json:"dry_run"`
			Domains []domain `json:"domains"`
		}{DryRun: dryRun, Domains: []domain{}}
		for _, r := range results {
			d := domain{Domain: r.domain, Changes: []change{}}
			for _, c := range r.changes {
				b, err := protojson.Marshal(c.Policy)
				if err != nil {
					return err
				}
				d.Changes = append(d.Changes, change{Op: c.Op, Policy: b})
			}
			out.Domains = append(out.Domains, d)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		return writeIndented(w, b)
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	for _, r := range results {
		counts := map[envoyrl.Op]int{}
		for _, c := range r.changes {
			counts[c.Op]++
			if c.Op != envoyrl.OpKeep {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Op, c.Policy.GetName(), describeEnvoyPolicy(c.Policy))
			}
		}
		verb := "imported"
		if dryRun {
			verb = "would import (dry run, nothing written)"
		}
		fmt.Fprintf(tw, "domain %q %s: %d created, %d updated, %d deleted, %d unchanged\n", r.domain, verb,
			counts[envoyrl.OpCreate], counts[envoyrl.OpUpdate], counts[envoyrl.OpDelete], counts[envoyrl.OpKeep])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// describeEnvoyPolicy says what a policy limits, in the configuration's words:
// "10/minute", "5/day shadow", "unlimited".
func describeEnvoyPolicy(p *conclavev1.RateLimitPolicy) string {
	if envoyrl.IsUnlimited(p) {
		return "unlimited"
	}
	unit, mult := envoyrl.PeriodUnit(p.GetPeriodMs())
	s := fmt.Sprintf("%d/%s", p.GetLimit(), strings.ToLower(unit.String()))
	if mult != 1 {
		s = fmt.Sprintf("%d/%d%s", p.GetLimit(), mult, strings.ToLower(unit.String()))
	}
	if p.GetAlgorithm() != conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW {
		s += " " + p.GetAlgorithm().String()
	}
	if p.GetShadowMode() {
		s += " shadow"
	}
	return s
}
