package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix starts the name of every environment variable that sets a flag.
const envPrefix = "CONCLAVE_"

// bindEnv sets every flag of cmd (its own and those it inherits) that was not given on
// the command line from the environment variable CONCLAVE_<NAME>, NAME being the flag's
// name in upper case with dashes as underscores (--grpc-addr ↔ CONCLAVE_GRPC_ADDR). A
// flag set this way counts as Changed. The help flag is never read from the
// environment. Calling bindEnv again is harmless: set flags are skipped.
func bindEnv(cmd *cobra.Command) error {
	fs := cmd.Flags()
	var unset []*pflag.Flag
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed && f.Name != "help" {
			unset = append(unset, f)
		}
	})
	var errs []error
	for _, f := range unset {
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			continue
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment %s=%q: %w", name, v, err))
		}
	}
	return errors.Join(errs...)
}

// envName returns the environment variable read for the flag named flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
