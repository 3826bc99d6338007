package main

import (
	"slices"
	"time"
)

// latencySummary is the distribution of one run's latencies.
type latencySummary struct {
	Count                    int
	P50, P90, P99, P999, Max time.Duration
}

// summarize merges the per-goroutine samples and returns their distribution. It sorts
// a merged copy; parts are not changed.
func summarize(parts ...[]time.Duration) latencySummary {
	all := slices.Concat(parts...)
	slices.Sort(all)
	s := latencySummary{Count: len(all)}
	if len(all) == 0 {
		return s
	}
	s.P50 = percentile(all, 5000)
	s.P90 = percentile(all, 9000)
	s.P99 = percentile(all, 9900)
	s.P999 = percentile(all, 9990)
	s.Max = all[len(all)-1]
	return s
}

// percentile returns the nearest-rank percentile of sorted samples, q being in parts per
// ten thousand (9990 is p99.9): the smallest sample not exceeded by q/10000 of them.
// Integer arithmetic keeps p99.9 of 1000 samples at the 999th, not the 1000th.
func percentile(sorted []time.Duration, q int) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := (q*n + 9999) / 10000 // ceil(q*n/10000)
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}
