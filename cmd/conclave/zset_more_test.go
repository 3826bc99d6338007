package main

import (
	"strings"
	"testing"

	"github.com/conclave-dev/conclave/server"
)

func TestCLI_ZsetCountAndMultiScore(t *testing.T) {
	ep := startZsetServer(t)
	runSteps(t, ep, []cliStep{
		{args: []string{"zset", "add", "board", "100", "ann", "85", "bob", "85", "cat", "120", "dan", "-3.5", "eve"}, wantOut: "5\n"},
		{args: []string{"zset", "count", "board", "-inf", "+inf"}, wantOut: "5\n"},
		{args: []string{"zset", "count", "board", "85", "100"}, wantOut: "3\n"},
		{args: []string{"zset", "count", "board", "(85", "+inf", "--stale"}, wantOut: "2\n"},
		{args: []string{"zset", "count", "board", "-5", "(0"}, wantOut: "1\n"},
		{args: []string{"zset", "count", "board", "(100", "(100"}, wantOut: "0\n"},
		{args: []string{"zset", "count", "missing", "-inf", "+inf"}, wantOut: "0\n"},
		{args: []string{"zset", "add", "names", "0", "a", "0", "b", "0", "c", "0", "d"}, wantOut: "4\n"},
		{args: []string{"zset", "count", "names", "[b", "+", "--by-lex"}, wantOut: "3\n"},
		{args: []string{"zset", "count", "names", "(a", "[c", "--by-lex"}, wantOut: "2\n"},
		{args: []string{"zset", "count", "names", "-", "+", "--by-lex"}, wantOut: "4\n"},
		{args: []string{"zset", "count", "names", "+", "-", "--by-lex"}, wantOut: "0\n"},
		{args: []string{"zset", "mscore", "board", "ann", "nobody", "eve"}, wantOut: "MEMBER  SCORE\nann     100\nnobody  (nil)\neve     -3.5\n"},
		{args: []string{"zset", "mscore", "missing", "a", "--stale"}, wantOut: "MEMBER  SCORE\na       (nil)\n"},
	})
	code, out, errOut := runCLI("zset", "count", "board", "85", "100", "-o", "json", "--endpoints", ep)
	if code != 0 || !strings.Contains(out, `"count": "3"`) {
		t.Fatalf("count -o json: exit %d, %q, %q; want count 3", code, out, errOut)
	}
	code, out, errOut = runCLI("zset", "mscore", "board", "nobody", "-o", "json", "--endpoints", ep)
	if code != 0 || !strings.Contains(out, `"member": "nobody"`) || !strings.Contains(out, `"found": false`) {
		t.Fatalf("mscore -o json: exit %d, %q, %q; want nobody not found", code, out, errOut)
	}
}

func TestCLI_ZsetRemoveRange(t *testing.T) {
	ep := startZsetServer(t)
	runSteps(t, ep, []cliStep{
		{args: []string{"zset", "add", "r", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "6", "f"}, wantOut: "6\n"},
		{args: []string{"zset", "remrange", "r", "0", "-5"}, wantOut: "2\n"},
		{args: []string{"zset", "range", "r", "0", "-1"}, wantOut: table("1 c 3", "2 d 4", "3 e 5", "4 f 6")},
		{args: []string{"zset", "remrange", "r", "(3", "5", "--by-score"}, wantOut: "2\n"},
		{args: []string{"zset", "range", "r", "0", "-1"}, wantOut: table("1 c 3", "2 f 6")},
		{args: []string{"zset", "remrange", "r", "-inf", "3", "--by-score"}, wantOut: "1\n"},
		{args: []string{"zset", "remrange", "r", "5", "9"}, wantOut: "0\n"},
		{args: []string{"zset", "remrange", "r", "0", "-1"}, wantOut: "1\n"},
		{args: []string{"zset", "card", "r"}, wantOut: "0\n"},
		{args: []string{"zset", "add", "l", "0", "a", "0", "b", "0", "c", "0", "d"}, wantOut: "4\n"},
		{args: []string{"zset", "remrange", "l", "[b", "(d", "--by-lex"}, wantOut: "2\n"},
		{args: []string{"zset", "remrange", "l", "+", "-", "--by-lex"}, wantOut: "0\n"},
		{args: []string{"zset", "range", "l", "0", "-1"}, wantOut: table("1 a 0", "2 d 0")},
		{args: []string{"zset", "remrange", "missing", "0", "-1"}, wantOut: "0\n"},
	})
}

func TestCLI_ZsetStores(t *testing.T) {
	ep := startZsetServer(t)
	runSteps(t, ep, []cliStep{
		{args: []string{"zset", "add", "a", "1", "x", "2", "y", "3", "z"}, wantOut: "3\n"},
		{args: []string{"zset", "add", "b", "10", "y", "20", "z", "30", "w"}, wantOut: "3\n"},
		{args: []string{"zset", "unionstore", "u", "a", "b"}, wantOut: "4\n"},
		{args: []string{"zset", "range", "u", "0", "-1"}, wantOut: table("1 x 1", "2 y 12", "3 z 23", "4 w 30")},
		{args: []string{"zset", "unionstore", "u", "a", "b", "--weights", "2,1", "--aggregate", "max"}, wantOut: "4\n"},
		{args: []string{"zset", "range", "u", "0", "-1"}, wantOut: table("1 x 2", "2 y 10", "3 z 20", "4 w 30")},
		{args: []string{"zset", "interstore", "i", "a", "b", "--aggregate", "min"}, wantOut: "2\n"},
		{args: []string{"zset", "range", "i", "0", "-1"}, wantOut: table("1 y 2", "2 z 3")},
		{args: []string{"zset", "interstore", "i", "a", "b", "--weights", "-1,1"}, wantOut: "2\n"},
		{args: []string{"zset", "range", "i", "0", "-1"}, wantOut: table("1 y 8", "2 z 17")},
		// An empty result deletes DEST.
		{args: []string{"zset", "interstore", "i", "a", "missing"}, wantOut: "0\n"},
		{args: []string{"zset", "card", "i"}, wantOut: "0\n"},
		{args: []string{"zset", "diffstore", "d", "b", "a"}, wantOut: "1\n"},
		{args: []string{"zset", "diffstore", "d", "b", "a", "--weights", "0.5,1"}, wantOut: "1\n"},
		{args: []string{"zset", "score", "d", "w"}, wantOut: "15\n"},
		{args: []string{"zset", "unionstore", "t", "a", "--tie-break", "arrival-asc"}, wantOut: "3\n"},
	})
	code, out, errOut := runCLI("zset", "unionstore", "u", "a", "b", "-o", "json", "--endpoints", ep)
	if code != 0 || !strings.Contains(out, `"count": "4"`) {
		t.Fatalf("unionstore -o json: exit %d, %q, %q; want count 4", code, out, errOut)
	}
}

func TestCLI_ZsetMoreArgumentErrors(t *testing.T) {
	ep := startZsetServer(t)
	many := []string{"zset", "unionstore", "d"}
	for range server.MaxZsetStoreKeys + 1 {
		many = append(many, "k")
	}
	runSteps(t, ep, []cliStep{
		{args: []string{"zset", "count", "k", "x", "1"}, wantCode: 1, wantErrOut: `Error: MIN "x": not a score bound`},
		{args: []string{"zset", "count", "k", "0", "[1"}, wantCode: 1, wantErrOut: `Error: MAX "[1": not a score bound`},
		{args: []string{"zset", "count", "k", "a", "+", "--by-lex"}, wantCode: 1, wantErrOut: `Error: MIN "a": not a member bound`},
		{args: []string{"zset", "count", "k", "0"}, wantCode: 1, wantErrOut: "Error: accepts 3 arg(s), received 2"},
		{args: []string{"zset", "mscore", "k"}, wantCode: 1, wantErrOut: "Error: requires at least 2 arg(s), only received 1"},
		{args: []string{"zset", "remrange", "k", "a", "1"}, wantCode: 1, wantErrOut: `Error: START "a": not a rank`},
		{args: []string{"zset", "remrange", "k", "0", "z"}, wantCode: 1, wantErrOut: `Error: STOP "z": not a rank`},
		{args: []string{"zset", "remrange", "k", "x", "1", "--by-score"}, wantCode: 1, wantErrOut: `Error: MIN "x": not a score bound`},
		{args: []string{"zset", "remrange", "k", "[a", "b", "--by-lex"}, wantCode: 1, wantErrOut: `Error: MAX "b": not a member bound`},
		{args: []string{"zset", "remrange", "k", "0", "-1", "--by-score", "--by-lex"}, wantCode: 1, wantErrOut: "Error: if any flags in the group [by-score by-lex]"},
		{args: []string{"zset", "unionstore", "d"}, wantCode: 1, wantErrOut: "Error: requires at least 2 arg(s), only received 1"},
		{args: many, wantCode: 1, wantErrOut: "Error: want 1 to 64 KEYs, got 65"},
		{args: []string{"zset", "unionstore", "d", "a", "b", "--weights", "1"}, wantCode: 1, wantErrOut: `Error: --weights "1": want one weight per KEY: 1 weights for 2 KEYs`},
		{args: []string{"zset", "unionstore", "d", "a", "b", "--weights", "1,x"}, wantCode: 1, wantErrOut: `Error: --weights #2 "x": not a number`},
		{args: []string{"zset", "interstore", "d", "a", "--weights", "nan"}, wantCode: 1, wantErrOut: `Error: --weights #1 "nan": not a number`},
		{args: []string{"zset", "unionstore", "d", "a", "--aggregate", "avg"}, wantCode: 1, wantErrOut: `Error: --aggregate "avg": want sum, min or max`},
		{args: []string{"zset", "interstore", "d", "a", "--tie-break", "random"}, wantCode: 1, wantErrOut: `Error: --tie-break "random": want lex, arrival or arrival-asc`},
		{args: []string{"zset", "diffstore", "d", "a", "--aggregate", "sum"}, wantCode: 1, wantErrOut: "Error: unknown flag: --aggregate"},
		{args: []string{"zset", "count", "k", "0", "1", "-o", "yaml"}, wantCode: 1, wantErrOut: `Error: --output "yaml"`},
	})
}
