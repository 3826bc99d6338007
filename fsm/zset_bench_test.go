package fsm

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// Benchmarks over one sorted set of zsetBenchN members, built once. Run them with
//
//	go test ./fsm/ -run '^$' -bench Zset -benchtime 2000000x -count 3
const zsetBenchN = 1_000_000

var (
	zsetBenchOnce    sync.Once
	zsetBench        *zset
	zsetBenchMembers []string
)

func zsetBenchSet(b *testing.B) (*zset, []string) {
	zsetBenchOnce.Do(func() {
		zsetBenchMembers = zsetMembers(zsetBenchN)
		r := rand.New(rand.NewPCG(1, 2))
		zsetBench = newZset()
		for _, m := range zsetBenchMembers {
			zsetBench.Add(m, float64(r.IntN(10_000_000)), 0)
		}
	})
	return zsetBench, zsetBenchMembers
}

func zsetMembers(n int) []string {
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf("player:%08d", i)
	}
	return members
}

func BenchmarkZset_ScoreChange(b *testing.B) {
	z, members := zsetBenchSet(b)
	r := rand.New(rand.NewPCG(3, 4))
	b.ResetTimer()
	for b.Loop() {
		z.Add(members[r.IntN(len(members))], float64(r.IntN(10_000_000)), 0)
	}
}

func BenchmarkZset_AddNew(b *testing.B) {
	z, _ := zsetBenchSet(b)
	r := rand.New(rand.NewPCG(5, 6))
	fresh := make([]string, 0, 1<<16)
	for i := range cap(fresh) {
		fresh = append(fresh, fmt.Sprintf("new:%08d", i))
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i == len(fresh) { // keep the set at about a million
			b.StopTimer()
			for _, m := range fresh {
				z.Remove(m)
			}
			i = 0
			b.StartTimer()
		}
		z.Add(fresh[i], float64(r.IntN(10_000_000)), 0)
		i++
	}
	b.StopTimer()
	for _, m := range fresh[:i] {
		z.Remove(m)
	}
}

func BenchmarkZset_Rank(b *testing.B) {
	z, members := zsetBenchSet(b)
	r := rand.New(rand.NewPCG(7, 8))
	b.ResetTimer()
	for b.Loop() {
		if _, ok := z.Rank(members[r.IntN(len(members))]); !ok {
			b.Fatal("member missing")
		}
	}
}

func BenchmarkZset_Top10(b *testing.B) {
	z, _ := zsetBenchSet(b)
	top := make([]zsetEntry, 0, 10)
	b.ResetTimer()
	for b.Loop() {
		top = top[:0]
		z.byRank.descend(z.Len()-1, func(e zsetEntry) bool { top = append(top, e); return len(top) < 10 })
	}
	if len(top) != 10 {
		b.Fatal(len(top))
	}
}

// BenchmarkZset_RangeAtRank is a page of 10 from the middle: at a rank, then ascend.
func BenchmarkZset_RangeAtRank(b *testing.B) {
	z, _ := zsetBenchSet(b)
	r := rand.New(rand.NewPCG(9, 10))
	page := make([]zsetEntry, 0, 10)
	b.ResetTimer()
	for b.Loop() {
		page = page[:0]
		z.byRank.ascend(r.IntN(z.Len()-10), func(e zsetEntry) bool { page = append(page, e); return len(page) < 10 })
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkZset_Memory reports the heap a million members cost beyond their strings
// (which are allocated before the baseline), for the whole set and for each half, with
// random scores and with scores that arrive in increasing order. It measures one build
// whatever b.N is; run it with -benchtime 1x.
func BenchmarkZset_Memory(b *testing.B) {
	for _, order := range []string{"random", "increasing"} {
		b.Run(order, func(b *testing.B) {
			members := zsetMembers(zsetBenchN)
			scores := make([]float64, zsetBenchN)
			r := rand.New(rand.NewPCG(11, 12))
			for i := range scores {
				scores[i] = float64(i)
				if order == "random" {
					scores[i] = float64(r.IntN(10_000_000))
				}
			}
			base := heapInUse()
			z := newZset()
			for i, m := range members {
				z.Add(m, scores[i], 0)
			}
			whole := float64(heapInUse()-base) / zsetBenchN
			z.byMember = nil
			rank := float64(heapInUse()-base) / zsetBenchN
			runtime.KeepAlive(z)
			runtime.KeepAlive(members) // the strings' headers are in the baseline
			runtime.KeepAlive(scores)
			b.ReportMetric(whole, "B/member")
			b.ReportMetric(rank, "rank-B/member")
			b.ReportMetric(whole-rank, "member-B/member")
		})
	}
}

// BenchmarkZset_MemberLookup and BenchmarkZset_SeekEntry split Rank into its two halves:
// finding the member's entry, and the entry's rank.
func BenchmarkZset_MemberLookup(b *testing.B) {
	z, members := zsetBenchSet(b)
	r := rand.New(rand.NewPCG(7, 8))
	b.ResetTimer()
	for b.Loop() {
		if _, ok := z.Entry(members[r.IntN(len(members))]); !ok {
			b.Fatal("member missing")
		}
	}
}

func BenchmarkZset_SeekEntry(b *testing.B) {
	z, _ := zsetBenchSet(b)
	r := rand.New(rand.NewPCG(7, 8))
	entries := make([]zsetEntry, 1<<16)
	for i := range entries {
		entries[i], _ = z.byRank.at(r.IntN(z.Len()))
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		z.byRank.seek(entries[i&(len(entries)-1)])
		i++
	}
}
