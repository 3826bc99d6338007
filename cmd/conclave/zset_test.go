package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/client"
	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/server"
)

// zsetTestNode is an fsmNode that also tells waiters (a pop with a wait) when it has
// applied an entry.
type zsetTestNode struct {
	*fsmNode

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after each Apply
}

func (n *zsetTestNode) Apply(ctx context.Context, cmd *fsmv1.Command) (*fsmv1.Result, error) {
	res, err := n.fsmNode.Apply(ctx, cmd)
	n.mu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
	return res, err
}

func (n *zsetTestNode) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

// startZsetServer serves the real services over one in-memory state machine on a
// loopback port and returns its address: the CLI is driven against the real sorted sets.
func startZsetServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	node := &zsetTestNode{fsmNode: &fsmNode{m: fsm.New(), lost: func(uint64) bool { return false }}, changed: make(chan struct{})}
	srv := server.New(server.Config{}, node, nil)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return lis.Addr().String()
}

// cliStep is one command of a scripted CLI session and what it must print.
type cliStep struct {
	args       []string
	wantCode   int
	wantOut    string // exact stdout, unless empty
	wantErrOut string // substring of stderr; "" means stderr must be empty
}

// runSteps runs steps in order against the endpoint ep; each step's args start with a
// group and a command ("zset add").
func runSteps(t *testing.T, ep string, steps []cliStep) {
	t.Helper()
	for _, s := range steps {
		// After the command's name, so that it comes before any "--".
		args := append(append(append([]string(nil), s.args[:2]...), "--endpoints="+ep), s.args[2:]...)
		code, out, errOut := runCLI(args...)
		name := strings.Join(s.args, " ")
		if code != s.wantCode {
			t.Fatalf("%s: exit %d, want %d; stdout %q stderr %q", name, code, s.wantCode, out, errOut)
		}
		if s.wantOut != "" && out != s.wantOut {
			t.Errorf("%s: stdout =\n%s\nwant\n%s", name, out, s.wantOut)
		}
		if !strings.Contains(errOut, s.wantErrOut) || (s.wantErrOut == "" && errOut != "") {
			t.Errorf("%s: stderr = %q, want %q", name, errOut, s.wantErrOut)
		}
	}
}

// table builds the expected "#  MEMBER  SCORE" table, aligned as tabwriter aligns it,
// from rows such as "3 cat 85".
func table(rows ...string) string {
	cells := [][]string{{"#", "MEMBER", "SCORE"}}
	for _, r := range rows {
		cells = append(cells, strings.Fields(r))
	}
	var width [2]int
	for _, c := range cells {
		width[0], width[1] = max(width[0], len(c[0])), max(width[1], len(c[1]))
	}
	var b strings.Builder
	for _, c := range cells {
		fmt.Fprintf(&b, "%-*s%-*s%s\n", width[0]+2, c[0], width[1]+2, c[1], c[2])
	}
	return b.String()
}

func TestCLI_Zset(t *testing.T) {
	ep := startZsetServer(t)
	runSteps(t, ep, []cliStep{
		{args: []string{"zset", "add", "board", "100", "ann", "85", "bob", "85", "cat", "120", "dan", "-3.5", "eve"}, wantOut: "5\n"},
		{args: []string{"zset", "add", "board", "90", "ann", "--gt"}, wantOut: "0\n"},
		{args: []string{"zset", "add", "board", "130", "ann", "--gt", "--ch"}, wantOut: "1\n"},
		{args: []string{"zset", "add", "board", "-5", "ann", "--incr"}, wantOut: "125\n"},
		{args: []string{"zset", "add", "board", "5", "zed", "--incr", "--xx"}, wantCode: 1, wantErrOut: `Error: member "zed" not changed: --xx did not hold`},
		{args: []string{"zset", "incr", "board", "-10", "bob"}, wantOut: "75\n"},
		{args: []string{"zset", "incr", "board", "1e6", "fay"}, wantOut: "1000000\n"},
		{args: []string{"zset", "score", "board", "ann"}, wantOut: "125\n"},
		{args: []string{"zset", "score", "board", "nobody"}, wantCode: 1, wantErrOut: "Error: member not found"},
		{args: []string{"zset", "rank", "board", "ann"}, wantOut: table("5 ann 125")},
		{args: []string{"zset", "rank", "board", "ann", "--rev", "--stale"}, wantOut: table("2 ann 125")},
		{args: []string{"zset", "range", "board", "0", "-1"},
			wantOut: table("1 eve -3.5", "2 bob 75", "3 cat 85", "4 dan 120", "5 ann 125", "6 fay 1000000")},
		{args: []string{"zset", "range", "board", "0", "1", "--rev"}, wantOut: table("1 fay 1000000", "2 ann 125")},
		{args: []string{"zset", "range", "board", "-2", "-1"}, wantOut: table("5 ann 125", "6 fay 1000000")},
		{args: []string{"zset", "range", "board", "(75", "+inf", "--by-score"},
			wantOut: table("3 cat 85", "4 dan 120", "5 ann 125", "6 fay 1000000")},
		{args: []string{"zset", "range", "board", "+inf", "(75", "--by-score", "--rev", "--offset", "1"},
			wantOut: table("2 ann 125", "3 dan 120", "4 cat 85")},
		{args: []string{"zset", "range", "board", "-inf", "0", "--by-score"}, wantOut: table("1 eve -3.5")},
		{args: []string{"zset", "top", "board", "3"}, wantOut: table("1 fay 1000000", "2 ann 125", "3 dan 120")},
		{args: []string{"zset", "top", "board", "2", "--lowest"}, wantOut: table("1 eve -3.5", "2 bob 75")},
		{args: []string{"zset", "around", "board", "cat", "1"}, wantOut: table("3 dan 120", "4 cat 85", "5 bob 75")},
		{args: []string{"zset", "around", "board", "cat", "1", "--lowest"}, wantOut: table("2 bob 75", "3 cat 85", "4 dan 120")},
		{args: []string{"zset", "around", "board", "nobody"}, wantCode: 1, wantErrOut: "Error: member not found"},
		{args: []string{"zset", "card", "board"}, wantOut: "6\n"},
		{args: []string{"zset", "rem", "board", "eve", "zzz"}, wantOut: "1\n"},
		{args: []string{"zset", "pop", "board"}, wantOut: "MEMBER  SCORE\nbob     75\n"},
		{args: []string{"zset", "pop", "board", "--max", "--count", "2"}, wantOut: "MEMBER  SCORE\nfay     1000000\nann     125\n"},
		{args: []string{"zset", "card", "board", "--stale"}, wantOut: "2\n"},
		{args: []string{"zset", "card", "missing"}, wantOut: "0\n"},
		{args: []string{"zset", "pop", "missing", "--wait", "1ms"}, wantOut: "MEMBER  SCORE\n"},
		{args: []string{"kv", "get", "board"}, wantCode: 1, wantErrOut: "sorted set"},
	})
}

func TestCLI_ZsetTiesAndRankModes(t *testing.T) {
	ep := startZsetServer(t)
	runSteps(t, ep, []cliStep{
		{args: []string{"zset", "add", "t", "10", "a", "--tie-break", "arrival", "--ttl", "1h"}, wantOut: "1\n"},
		{args: []string{"zset", "add", "t", "7", "c"}, wantOut: "1\n"},
		{args: []string{"zset", "add", "t", "7", "b"}, wantOut: "1\n"},
		{args: []string{"zset", "add", "t", "5", "d"}, wantOut: "1\n"},
		// c reached 7 before b: arrival ranks it ahead, where lex would not.
		{args: []string{"zset", "top", "t"}, wantOut: table("1 a 10", "2 c 7", "3 b 7", "4 d 5")},
		{args: []string{"zset", "top", "t", "--mode", "competition"}, wantOut: table("1 a 10", "2 c 7", "2 b 7", "4 d 5")},
		{args: []string{"zset", "top", "t", "--mode", "dense"}, wantOut: table("1 a 10", "2 c 7", "2 b 7", "3 d 5")},
		{args: []string{"zset", "rank", "t", "b", "--rev", "--mode", "competition"}, wantOut: table("2 b 7")},
	})
	code, out, errOut := runCLI("kv", "ttl", "t", "--endpoints", ep)
	if d, err := time.ParseDuration(strings.TrimSpace(out)); code != 0 || err != nil || d <= 59*time.Minute || d > time.Hour {
		t.Fatalf("kv ttl t: exit %d, %q %q; want about 1h (set by --ttl)", code, out, errOut)
	}

	// JSON keeps the API's 0-based ranks, zeros included.
	code, out, errOut = runCLI("zset", "top", "t", "--mode", "competition", "-o", "json", "--endpoints", ep)
	var top struct {
		Members []struct {
			Member string  `json:"member"`
			Score  float64 `json:"score"`
			Rank   string  `json:"rank"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &top); code != 0 || err != nil {
		t.Fatalf("top -o json: exit %d, %q %q (%v)", code, out, errOut, err)
	}
	var got []string
	for _, m := range top.Members {
		got = append(got, fmt.Sprintf("%s:%s", m.Member, m.Rank))
	}
	if strings.Join(got, " ") != "a:0 c:1 b:1 d:3" {
		t.Fatalf("top -o json ranks = %v, want a:0 c:1 b:1 d:3", got)
	}
	code, out, _ = runCLI("zset", "rank", "t", "a", "--rev", "-o", "json", "--endpoints", ep)
	if code != 0 || !strings.Contains(out, `"rank": "0"`) || !strings.Contains(out, `"found": true`) {
		t.Fatalf("rank -o json = %q: want found with rank 0", out)
	}
}

func TestCLI_ZsetRangePages(t *testing.T) {
	ep := startZsetServer(t)
	c, err := client.New(client.Config{Endpoints: []string{ep}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = zsetMaxPage + 500 // more than one page
	for i := 0; i < n; i += 1000 {
		req := &conclavev1.AddRequest{Key: []byte("big")}
		for j := i; j < min(i+1000, n); j++ {
			req.Members = append(req.Members, &conclavev1.ScoredMember{Member: fmt.Sprintf("m%05d", j), Score: float64(j)})
		}
		if _, err := c.SortedSets().Add(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	type page struct {
		Members []struct {
			Member string `json:"member"`
		} `json:"members"`
		NextPageToken string `json:"nextPageToken"`
	}
	rangeJSON := func(args ...string) page {
		t.Helper()
		code, out, errOut := runCLI(append([]string{"zset", "range", "big", "-o", "json", "--endpoints", ep}, args...)...)
		var p page
		if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil {
			t.Fatalf("range %v: exit %d, %v; stderr %q", args, code, err, errOut)
		}
		return p
	}
	all := rangeJSON("0", "-1")
	if len(all.Members) != n || all.Members[n-1].Member != fmt.Sprintf("m%05d", n-1) || all.NextPageToken != "" {
		t.Fatalf("range 0 -1: %d members, token %q; want all %d, in order, and no token", len(all.Members), all.NextPageToken, n)
	}
	first := rangeJSON("10", "-1", "--limit", "3")
	if len(first.Members) != 3 || first.Members[0].Member != "m00010" || first.NextPageToken == "" {
		t.Fatalf("range 10 -1 --limit 3 = %+v: want m00010… and a token", first)
	}
	next := rangeJSON("10", "-1", "--limit", "2", "--page-token", first.NextPageToken)
	if len(next.Members) != 2 || next.Members[0].Member != "m00013" {
		t.Fatalf("the page after = %+v: want m00013, m00014", next)
	}
	long := rangeJSON("-inf", "+inf", "--by-score", "--limit", fmt.Sprint(zsetMaxPage+100))
	if len(long.Members) != zsetMaxPage+100 || long.NextPageToken == "" {
		t.Fatalf("range --limit %d: %d members, token %q; want them all and a token", zsetMaxPage+100, len(long.Members), long.NextPageToken)
	}
	code, out, errOut := runCLI("zset", "range", "big", "+inf", "-inf", "--by-score", "--rev", "--limit", "1", "--endpoints", ep)
	if code != 0 || out != table(fmt.Sprintf("1 m%05d %d", n-1, n-1)) || !strings.Contains(errOut, "continue with --page-token ") {
		t.Fatalf("range --rev --limit 1: exit %d, %q, %q; want the last member and a page token on stderr", code, out, errOut)
	}
}

func TestCLI_ZsetPopWaitsForAMember(t *testing.T) {
	ep := startZsetServer(t)
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runCLI("zset", "pop", "jobs", "--wait", "1m", "--endpoints", ep)
		done <- result{code, out, errOut}
	}()
	// Whether the pop is already waiting or not, it gets this member.
	if code, _, errOut := runCLI("zset", "add", "jobs", "3", "job-1", "--endpoints", ep); code != 0 {
		t.Fatalf("add: exit %d: %s", code, errOut)
	}
	if r := <-done; r.code != 0 || r.out != "MEMBER  SCORE\njob-1   3\n" {
		t.Fatalf("pop --wait: exit %d, %q, %q; want job-1", r.code, r.out, r.err)
	}
}

func TestCLI_ZsetArgumentErrors(t *testing.T) {
	ep := startZsetServer(t)
	runSteps(t, ep, []cliStep{
		{args: []string{"zset", "add", "k", "1"}, wantCode: 1, wantErrOut: "Error: want KEY and SCORE MEMBER pairs, got 2 arguments"},
		{args: []string{"zset", "add", "k", "x", "a"}, wantCode: 1, wantErrOut: `Error: SCORE "x": not a number`},
		{args: []string{"zset", "add", "k", "1", "a", "nan", "b"}, wantCode: 1, wantErrOut: `Error: SCORE #2 "nan": not a number`},
		{args: []string{"zset", "add", "k", "1", "a", "2", "b", "--incr"}, wantCode: 1, wantErrOut: "Error: --incr takes one SCORE MEMBER pair, got 2"},
		{args: []string{"zset", "add", "k", "1", "a", "--nx", "--xx"}, wantCode: 1, wantErrOut: "Error: if any flags in the group [nx xx]"},
		{args: []string{"zset", "add", "k", "1", "a", "--gt", "--lt"}, wantCode: 1, wantErrOut: "Error: if any flags in the group [gt lt]"},
		{args: []string{"zset", "add", "k", "1", "-a"}, wantCode: 1, wantErrOut: `Error: unknown shorthand flag: 'a' in -a (put -- before arguments that start with "-")`},
		{args: []string{"zset", "add", "k", "--tie-break", "random", "1", "a"}, wantCode: 1, wantErrOut: `Error: --tie-break "random": want lex, arrival or arrival-asc`},
		{args: []string{"zset", "incr", "k", "x", "a"}, wantCode: 1, wantErrOut: `Error: DELTA "x": not a number`},
		{args: []string{"zset", "range", "k", "a", "1"}, wantCode: 1, wantErrOut: `Error: START "a": not a rank`},
		{args: []string{"zset", "range", "k", "0", "z"}, wantCode: 1, wantErrOut: `Error: STOP "z": not a rank`},
		{args: []string{"zset", "range", "k", "x", "1", "--by-score"}, wantCode: 1, wantErrOut: `Error: MIN "x": not a score bound`},
		{args: []string{"zset", "range", "k", "+inf", "[1", "--by-score", "--rev"}, wantCode: 1, wantErrOut: `Error: MIN "[1": not a score bound`},
		{args: []string{"zset", "range", "k", "a", "+", "--by-lex"}, wantCode: 1, wantErrOut: `Error: MIN "a": not a member bound`},
		{args: []string{"zset", "range", "k", "0", "-1", "--by-score", "--by-lex"}, wantCode: 1, wantErrOut: "Error: if any flags in the group [by-score by-lex]"},
		{args: []string{"zset", "range", "k", "0", "-1", "--limit", "-1"}, wantCode: 1, wantErrOut: "Error: --limit and --offset must not be negative"},
		{args: []string{"zset", "range", "k", "0", "-1", "--mode", "weird"}, wantCode: 1, wantErrOut: `Error: --mode "weird": want ordinal, dense or competition`},
		{args: []string{"zset", "range", "k", "0", "-1", "--page-token", "bogus"}, wantCode: 1, wantErrOut: "page_token"},
		{args: []string{"zset", "top", "k", "0"}, wantCode: 1, wantErrOut: `Error: N "0": want a whole number from 1 to 10000`},
		{args: []string{"zset", "around", "k", "m", "1001"}, wantCode: 1, wantErrOut: `Error: N "1001": want a whole number from 0 to 1000`},
		{args: []string{"zset", "pop", "k", "--wait", "6m"}, wantCode: 1, wantErrOut: "Error: --wait 6m0s: must be 0 to 5m0s"},
		{args: []string{"zset", "pop", "k", "--count", "0"}, wantCode: 1, wantErrOut: "Error: --count 0: must be 1 to 10000"},
		{args: []string{"zset", "rank", "k", "m", "-o", "yaml"}, wantCode: 1, wantErrOut: `Error: --output "yaml"`},
	})
}

func TestCLI_ZsetNegativeNumbersAreArguments(t *testing.T) {
	ep := startZsetServer(t)
	runSteps(t, ep, []cliStep{
		// Flags before, between and after; a flag's own value; members after --.
		{args: []string{"zset", "add", "-o", "json", "n", "-1", "minus-one", "--ch", "-2.5e1", "-25"}, wantOut: ""},
		{args: []string{"zset", "add", "n", "--", "-inf", "-bottom"}, wantOut: "1\n"},
		{args: []string{"zset", "range", "n", "-inf", "-1", "--by-score"}, wantOut: table("1 -bottom -inf", "2 -25 -25", "3 minus-one -1")},
		{args: []string{"zset", "range", "n", "--limit=1", "-2", "-1"}, wantOut: table("2 -25 -25"), wantErrOut: "continue with --page-token"},
		{args: []string{"zset", "incr", "n", "-1", "-25"}, wantOut: "-26\n"},
		{args: []string{"zset", "range", "--help"}, wantErrOut: ""},
	})
	if code, out, _ := runCLI("zset", "range", "-h"); code != 0 || !strings.Contains(out, "Usage:\n  conclave zset range KEY START STOP") {
		t.Fatalf("range -h: exit %d, %q; want the usage", code, out)
	}
}

// TestE2E_LeaderboardIncrementsSurviveALeaderKill: increments acknowledged through the
// client's Leaderboard, across a kill -9 of the leader, are each counted exactly once:
// a retry after the failover carries the first attempt's request id.
func TestE2E_LeaderboardIncrementsSurviveALeaderKill(t *testing.T) {
	c := startE2ECluster(t)
	c.leader()
	b := c.client(c.endpoints()...).Leaderboard("e2e/points")

	var acked, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := b.Increment(ctx, fmt.Sprintf("player-%d", (w+i)%16), 1)
				cancel()
				if err != nil {
					failed.Add(1)
				} else {
					acked.Add(1)
				}
			}
		})
	}
	waitAcked := func(n int64) {
		poll(t, 60*time.Second, func() error {
			if got := acked.Load(); got < n {
				return fmt.Errorf("%d increments acknowledged, want %d", got, n)
			}
			return nil
		})
	}
	waitAcked(200)
	c.kill(c.leader())
	waitAcked(acked.Load() + 200)
	close(stop)
	wg.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	top, err := b.Top(ctx, 16)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, e := range top {
		sum += e.Score
	}
	if n := int64(sum); n < acked.Load() || n > acked.Load()+failed.Load() {
		t.Fatalf("scores sum to %d after %d acknowledged and %d failed increments: want acknowledged ≤ sum ≤ acknowledged+failed",
			n, acked.Load(), failed.Load())
	}
	t.Logf("%d increments acknowledged, %d failed, scores sum to %g", acked.Load(), failed.Load(), sum)
}
