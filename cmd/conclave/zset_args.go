package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// negativeArgs lets cmd take negative numbers as arguments, as Redis users type them:
// "range board 0 -1", "range board -inf +inf --by-score", "incr board -5 ann". pflag
// would read "-1" as a shorthand flag. So cobra is told not to parse cmd's flags, and
// cmd parses them itself before anything else runs: every argument that is a negative
// number, and not the value of the flag before it, is kept as an argument. cmd's Args
// then checks the arguments, and the PersistentPreRunE of its nearest ancestor that has
// one runs, as it would have; after that, cobra checks cmd's flag groups as usual.
func negativeArgs(cmd *cobra.Command) *cobra.Command {
	validate, run := cmd.Args, cmd.RunE
	var args []string // the arguments, once parsed
	cmd.Args = cobra.ArbitraryArgs
	cmd.DisableFlagParsing = true
	cmd.PersistentPreRunE = func(cmd *cobra.Command, raw []string) error {
		cmd.DisableFlagParsing = false // so that cobra's required-flag and group checks run
		masked, restore := maskNegatives(cmd, raw)
		if err := cmd.ParseFlags(masked); err != nil {
			if strings.HasPrefix(err.Error(), "unknown") {
				err = fmt.Errorf("%w (put -- before arguments that start with \"-\")", err)
			}
			return cmd.FlagErrorFunc()(cmd, err)
		}
		if help, _ := cmd.Flags().GetBool("help"); help {
			return pflag.ErrHelp
		}
		args = restore(cmd.Flags().Args())
		if validate != nil {
			if err := validate(cmd, args); err != nil {
				return err
			}
		}
		for p := cmd.Parent(); p != nil; p = p.Parent() {
			if p.PersistentPreRunE != nil {
				return p.PersistentPreRunE(cmd, args)
			}
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return run(cmd, args) }
	return cmd
}

// maskNegatives returns raw with each negative number that is an argument (before any
// "--") replaced by a placeholder pflag takes for an argument, and a function that puts
// the numbers back into the arguments pflag returns.
func maskNegatives(cmd *cobra.Command, raw []string) (masked []string, restore func([]string) []string) {
	orig := map[string]string{}
	masked = append([]string(nil), raw...)
	for i, a := range raw {
		if a == "--" {
			break
		}
		if isNegativeNumber(a) && (i == 0 || !takesValue(cmd, raw[i-1])) {
			p := fmt.Sprintf("\x00%d", i)
			orig[p], masked[i] = a, p
		}
	}
	return masked, func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			if o, ok := orig[a]; ok {
				a = o
			}
			out[i] = a
		}
		return out
	}
}

// isNegativeNumber reports whether s is a number starting with "-": "-1", "-2.5e3", "-inf".
func isNegativeNumber(s string) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil || errors.Is(err, strconv.ErrRange)
}

// takesValue reports whether tok is a flag of cmd that takes the next argument as its
// value ("--limit", "-o"; not "--rev", nor "--limit=5").
func takesValue(cmd *cobra.Command, tok string) bool {
	var f *pflag.Flag
	switch {
	case strings.HasPrefix(tok, "--") && !strings.Contains(tok, "="):
		f = cmd.Flag(tok[2:])
	case len(tok) == 2 && tok[0] == '-' && tok[1] != '-':
		if f = cmd.Flags().ShorthandLookup(tok[1:]); f == nil {
			f = cmd.InheritedFlags().ShorthandLookup(tok[1:])
		}
	}
	return f != nil && f.NoOptDefVal == ""
}

// scoreSyntax is what a score argument may be, for error messages.
const scoreSyntax = "want a number such as 10, -2.5, 1e6, +inf or -inf"

// parseScore parses the score argument named name: a float64, +inf or -inf; not NaN, nor
// a finite number too large for a float64.
func parseScore(name, s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) {
		return 0, fmt.Errorf("%s %q: not a number; %s", name, s, scoreSyntax)
	}
	return f, nil
}

// formatScore writes a score as the commands take it: plain decimals for everyday
// magnitudes (1500000, not 1.5e+06), exponents beyond, +inf and -inf.
func formatScore(f float64) string {
	switch a := math.Abs(f); {
	case math.IsInf(f, 1):
		return "+inf"
	case math.IsInf(f, -1):
		return "-inf"
	case a == 0 || a >= 1e-6 && a < 1e21:
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// parseScoreBound parses one end of a score interval in Redis's syntax: "1.5" (included),
// "(1.5" (excluded), "-inf", "+inf".
func parseScoreBound(name, s string) (*conclavev1.ScoreBound, error) {
	b := &conclavev1.ScoreBound{}
	v := s
	if strings.HasPrefix(v, "(") {
		b.Exclusive, v = true, v[1:]
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) {
		return nil, fmt.Errorf("%s %q: not a score bound; want a number (included), ( and a number (excluded), -inf or +inf", name, s)
	}
	b.Score = f
	return b, nil
}

// parseLexBound parses one end of a member interval in Redis's syntax: "[a" (included),
// "(a" (excluded), "-" (before every member) or "+" (after every member). open is "-" or
// "+" and b is nil for it.
func parseLexBound(name, s string) (b *conclavev1.LexBound, open string, err error) {
	switch {
	case s == "-" || s == "+":
		return nil, s, nil
	case strings.HasPrefix(s, "["):
		return &conclavev1.LexBound{Member: s[1:]}, "", nil
	case strings.HasPrefix(s, "("):
		return &conclavev1.LexBound{Member: s[1:], Exclusive: true}, "", nil
	}
	return nil, "", fmt.Errorf("%s %q: not a member bound; want [member (included), (member (excluded), - or +", name, s)
}

// parseLexInterval parses the MIN and MAX of a member interval. empty is true when the
// interval can hold no member ("+" as MIN or "-" as MAX).
func parseLexInterval(minArg, maxArg string) (iv *conclavev1.LexInterval, empty bool, err error) {
	lo, loOpen, err := parseLexBound("MIN", minArg)
	if err != nil {
		return nil, false, err
	}
	hi, hiOpen, err := parseLexBound("MAX", maxArg)
	if err != nil {
		return nil, false, err
	}
	return &conclavev1.LexInterval{Min: lo, Max: hi}, loOpen == "+" || hiOpen == "-", nil
}

// parseCount parses the whole-number argument named name, from lo to hi.
func parseCount(name, s string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s %q: want a whole number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

// parseRank parses the rank argument named name: a whole number, negative from the end.
func parseRank(name, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: not a rank; want a whole number, 0 for the first, -1 for the last (or --by-score, --by-lex)", name, s)
	}
	return n, nil
}

// zsetTieBreaks are the --tie-break values.
var zsetTieBreaks = map[string]conclavev1.TieBreak{
	"lex":         conclavev1.TieBreak_TIE_BREAK_LEX,
	"arrival":     conclavev1.TieBreak_TIE_BREAK_ARRIVAL,
	"arrival-asc": conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING,
}

func parseTieBreak(s string) (conclavev1.TieBreak, error) {
	t, ok := zsetTieBreaks[strings.ToLower(s)]
	if !ok {
		return 0, fmt.Errorf("--tie-break %q: want lex, arrival or arrival-asc", s)
	}
	return t, nil
}

// zsetRankModes are the --mode values.
var zsetRankModes = map[string]conclavev1.RankMode{
	"ordinal":     conclavev1.RankMode_RANK_MODE_ORDINAL,
	"dense":       conclavev1.RankMode_RANK_MODE_DENSE,
	"competition": conclavev1.RankMode_RANK_MODE_COMPETITION,
}

func parseRankMode(s string) (conclavev1.RankMode, error) {
	m, ok := zsetRankModes[strings.ToLower(s)]
	if !ok {
		return 0, fmt.Errorf("--mode %q: want ordinal, dense or competition", s)
	}
	return m, nil
}
