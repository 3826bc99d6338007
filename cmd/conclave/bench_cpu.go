package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// processSample is one scrape of a node's metrics endpoint.
type processSample struct {
	addr   string
	cpu    float64 // process_cpu_seconds_total
	leader bool    // conclave_raft_is_leader
	at     time.Time
	err    error
}

// nodeCPU is the CPU one node used between two scrapes.
type nodeCPU struct {
	Addr                       string
	LeaderAtStart, LeaderAtEnd bool
	CPUSeconds                 float64
	Wall                       time.Duration
	Cores                      float64 // CPUSeconds / Wall
	Err                        string
}

func (n nodeCPU) role() string {
	switch {
	case n.LeaderAtStart && n.LeaderAtEnd:
		return "leader"
	case n.LeaderAtStart || n.LeaderAtEnd:
		return "leader for part of the run"
	default:
		return "follower"
	}
}

// scrapeNodes scrapes every address at once.
func scrapeNodes(ctx context.Context, addrs []string) []processSample {
	out := make([]processSample, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() { out[i] = scrapeProcess(ctx, a) })
	}
	wg.Wait()
	return out
}

// scrapeProcess reads process_cpu_seconds_total and conclave_raft_is_leader from
// http://addr/metrics. The sample's time is the middle of the request.
func scrapeProcess(ctx context.Context, addr string) processSample {
	s := processSample{addr: addr}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		s.err = err
		return s
	}
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.err = err
		return s
	}
	defer resp.Body.Close()
	s.at = t0.Add(time.Since(t0) / 2)
	if resp.StatusCode != http.StatusOK {
		s.err = fmt.Errorf("metrics: %s", resp.Status)
		return s
	}
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "process_cpu_seconds_total":
			s.cpu, found = v, true
		case "conclave_raft_is_leader":
			s.leader = v == 1
		}
	}
	if err := sc.Err(); err != nil {
		s.err = err
	} else if !found {
		s.err = fmt.Errorf("metrics: no process_cpu_seconds_total")
	}
	return s
}

// cpuUsed pairs the samples of each address taken before and after.
func cpuUsed(before, after []processSample) []nodeCPU {
	out := make([]nodeCPU, len(before))
	for i, b := range before {
		a := after[i]
		n := nodeCPU{Addr: b.addr, LeaderAtStart: b.leader, LeaderAtEnd: a.leader}
		switch {
		case b.err != nil:
			n.Err = b.err.Error()
		case a.err != nil:
			n.Err = a.err.Error()
		default:
			n.CPUSeconds, n.Wall = a.cpu-b.cpu, a.at.Sub(b.at)
			if n.Wall > 0 {
				n.Cores = n.CPUSeconds / n.Wall.Seconds()
			}
		}
		out[i] = n
	}
	return out
}

// selfCPU returns the CPU seconds (user and system) this process has used.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
