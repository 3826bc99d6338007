package main

import (
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// rangeMs returns the latencies from..to milliseconds in descending order.
func rangeMs(from, to int) []time.Duration {
	var d []time.Duration
	for i := to; i >= from; i-- {
		d = append(d, ms(i))
	}
	return d
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name  string
		parts [][]time.Duration
		want  latencySummary
	}{
		{"empty", nil, latencySummary{}},
		{"one sample", [][]time.Duration{{ms(7)}}, latencySummary{1, ms(7), ms(7), ms(7), ms(7), ms(7)}},
		{"1..1000 ms", [][]time.Duration{rangeMs(1, 1000)},
			latencySummary{1000, ms(500), ms(900), ms(990), ms(999), ms(1000)}},
		{"merged parts", [][]time.Duration{rangeMs(501, 1000), rangeMs(1, 500)},
			latencySummary{1000, ms(500), ms(900), ms(990), ms(999), ms(1000)}},
		{"1..10 ms", [][]time.Duration{rangeMs(1, 10)},
			latencySummary{10, ms(5), ms(9), ms(10), ms(10), ms(10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.parts...); got != tt.want {
				t.Fatalf("summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSummarize_LeavesPartsUnsorted(t *testing.T) {
	part := []time.Duration{ms(3), ms(1), ms(2)}
	summarize(part)
	if part[0] != ms(3) || part[1] != ms(1) {
		t.Fatalf("summarize changed its input: %v", part)
	}
}
