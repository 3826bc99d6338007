package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestBenchKV_MixedAgainstFake(t *testing.T) {
	f, addr := startFakeKV(t)
	cfg := benchKVConfig{
		benchLoad: benchLoad{endpoints: []string{addr, addr}, timeout: 5 * time.Second,
			clients: 4, conns: 2, duration: 100 * time.Millisecond},
		op: opMixed, valueSize: 16, keys: 50, consistency: "stale", seed: 1,
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := runBenchKV(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Latency.Count == 0 {
		t.Fatalf("result = %+v: want operations and no errors", res)
	}
	f.mu.Lock()
	n := len(f.data)
	f.mu.Unlock()
	if n < cfg.keys {
		t.Fatalf("fake holds %d keys, want the %d pre-populated", n, cfg.keys)
	}

	var buf bytes.Buffer
	if err := printBenchJSON(&buf, res); err != nil {
		t.Fatal(err)
	}
	var got benchJSON
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || got.Ops != res.Latency.Count || got.Op != opMixed {
		t.Fatalf("json %s: %+v, %v", buf.String(), got, err)
	}
	buf.Reset()
	if err := printBenchTable(&buf, res); err != nil || !bytes.Contains(buf.Bytes(), []byte("latency p99.9:")) {
		t.Fatalf("table %q, %v", buf.String(), err)
	}
}

func TestBenchKVConfig_Validate(t *testing.T) {
	ok := benchKVConfig{benchLoad: benchLoad{clients: 1, conns: 1, duration: time.Second}, op: opSet, keys: 1, consistency: "linearizable"}
	tests := []struct {
		name    string
		change  func(*benchKVConfig)
		wantErr bool
	}{
		{"valid", func(*benchKVConfig) {}, false},
		{"bad op", func(c *benchKVConfig) { c.op = "scan" }, true},
		{"bad consistency", func(c *benchKVConfig) { c.consistency = "eventual" }, true},
		{"no clients", func(c *benchKVConfig) { c.clients = 0 }, true},
		{"no keys", func(c *benchKVConfig) { c.keys = 0 }, true},
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
