package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/conclave-dev/conclave/client"
)

func TestBenchZset_AgainstTheStateMachine(t *testing.T) {
	addr := startZsetServer(t)
	load := benchLoad{endpoints: []string{addr, addr}, timeout: 5 * time.Second, clients: 4, conns: 2, duration: 100 * time.Millisecond}
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	incr := benchZsetConfig{benchLoad: load, op: opZsetIncr, key: "bench/b", members: 20, top: 10, consistency: "linearizable", seed: 1}
	if err := incr.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := runBenchZset(ctx, incr)
	if err != nil || res.Errors != 0 || res.Latency.Count == 0 {
		t.Fatalf("incr: %+v, %v: want operations and no errors", res, err)
	}
	// Every acknowledged increment added 1 to one of the players.
	top, err := c.Leaderboard("bench/b").Top(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, e := range top {
		sum += e.Score
	}
	if len(top) == 0 || len(top) > 20 || int(sum) != res.Latency.Count {
		t.Fatalf("after %d increments: %d players summing %g", res.Latency.Count, len(top), sum)
	}

	topCfg := incr
	topCfg.op, topCfg.members, topCfg.top, topCfg.consistency = opZsetTop, 2500, 10, "stale"
	res, err = runBenchZset(ctx, topCfg)
	if err != nil || res.Errors != 0 || res.Latency.Count == 0 || res.Consistency != "stale" {
		t.Fatalf("top: %+v, %v: want operations, no errors, stale", res, err)
	}
	if n, err := c.Leaderboard("bench/b").Len(ctx); err != nil || n != 2500 {
		t.Fatalf("the board holds %d members (%v), want the 2500 filled in (the increments' set emptied)", n, err)
	}

	var buf bytes.Buffer
	if err := printBenchJSON(&buf, res); err != nil {
		t.Fatal(err)
	}
	var got benchJSON
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || got.Ops != res.Latency.Count || got.Op != "Top 10 of one set of 2500 members" {
		t.Fatalf("json %s: %+v, %v", buf.String(), got, err)
	}
}

func TestBenchZsetConfig_Validate(t *testing.T) {
	ok := benchZsetConfig{benchLoad: benchLoad{clients: 1, conns: 1, duration: time.Second}, op: opZsetIncr, key: "k",
		members: 1, top: 10, consistency: "linearizable"}
	tests := []struct {
		name    string
		change  func(*benchZsetConfig)
		wantErr bool
	}{
		{"valid", func(*benchZsetConfig) {}, false},
		{"top", func(c *benchZsetConfig) { c.op = opZsetTop }, false},
		{"bad op", func(c *benchZsetConfig) { c.op = "range" }, true},
		{"bad consistency", func(c *benchZsetConfig) { c.consistency = "eventual" }, true},
		{"no clients", func(c *benchZsetConfig) { c.clients = 0 }, true},
		{"no members", func(c *benchZsetConfig) { c.members = 0 }, true},
		{"no key", func(c *benchZsetConfig) { c.key = "" }, true},
		{"top too large", func(c *benchZsetConfig) { c.top = zsetMaxPage + 1 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			if err := c.validate(); (err != nil) != tt.wantErr {
				t.Fatalf("validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}
