package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/conclave-dev/conclave/client"
	"github.com/conclave-dev/conclave/cluster/chaos"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// workload drives concurrent clients against every node and records what they saw.
type workload struct {
	rec       *chaos.Recorder
	registers []string
	counters  []string
	locks     []string
	limiters  []string // rate-limiter keys, FIXED_WINDOW with limits[i] per window
	limits    []uint64
	boards    []string       // sorted-set (leaderboard) keys, members chaosZsetMembers
	sessions  *client.Client // creates the lock sessions and keeps them alive, on any node
	opTimeout time.Duration

	mu            sync.Mutex
	durable       []string        // write-once keys whose Set was acknowledged
	lockSessions  []*chaosSession // every session the clients made, in creation order
	limitWindows  map[string]*limitWindow
	limitProblems []string // malformed rate-limit answers
	limitRetried  int      // Checks answered on the retry with the same request id
	zsetProblems  []string // malformed or refused sorted-set answers
	zsetRetried   int      // sorted-set writes answered on the retry with the same request id
}

// newWorkload returns a workload over keys registers, two counters, locks locks (none:
// no lock operations) and one rate-limiter key per limit (none: no rate-limit
// operations); sessions makes the lock clients' sessions.
func newWorkload(keys, locks int, limits []uint64, sessions *client.Client) *workload {
	w := &workload{rec: chaos.NewRecorder(), sessions: sessions, opTimeout: 2 * time.Second,
		limits: limits, limitWindows: map[string]*limitWindow{}}
	for i := range keys {
		w.registers = append(w.registers, fmt.Sprintf("reg/%d", i))
	}
	w.counters = []string{"ctr/0", "ctr/1"}
	for i := range locks {
		w.locks = append(w.locks, fmt.Sprintf("lock/%d", i))
	}
	for i := range limits {
		w.limiters = append(w.limiters, fmt.Sprintf("rl/%d", i))
	}
	return w
}

// run starts one goroutine per client until ctx ends; client i talks to conns[i%len],
// and all of them together start about rate operations a second (few enough that
// porcupine can check the history): one in five a lock operation when there are locks,
// one in four of the rest a rate-limit operation when there are limiters, and one in
// four of the rest a sorted-set operation when there are boards (writes of both retried
// through conns[(i+1)%len]).
func (w *workload) run(ctx context.Context, conns []*grpc.ClientConn, clients, rate int, seed uint64) *sync.WaitGroup {
	var wg sync.WaitGroup
	interval := time.Duration(clients) * time.Second / time.Duration(rate)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv := conclavev1grpc.NewKVServiceClient(conns[i%len(conns)])
			locks := conclavev1grpc.NewLockServiceClient(conns[i%len(conns)])
			rl := conclavev1grpc.NewRateLimitServiceClient(conns[i%len(conns)])
			rlRetry := conclavev1grpc.NewRateLimitServiceClient(conns[(i+1)%len(conns)])
			zs := conclavev1grpc.NewSortedSetServiceClient(conns[i%len(conns)])
			zsRetry := conclavev1grpc.NewSortedSetServiceClient(conns[(i+1)%len(conns)])
			lc := &lockClient{}
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			revs := map[string]uint64{} // last revision this client saw per key, for CAS
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				switch {
				case len(w.locks) > 0 && rng.IntN(5) == 0:
					w.lockStep(locks, lc, i, seq, rng)
				case len(w.limiters) > 0 && rng.IntN(4) == 0:
					w.limitStep(rl, rlRetry, i, seq, rng)
				case len(w.boards) > 0 && rng.IntN(4) == 0:
					w.zsetStep(zs, zsRetry, i, seq, rng)
				default:
					w.step(kv, i, seq, rng, revs)
				}
			}
		}()
	}
	return &wg
}

func (w *workload) step(kv conclavev1grpc.KVServiceClient, client, seq int, rng *rand.Rand, revs map[string]uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
	defer cancel()
	reg := w.registers[rng.IntN(len(w.registers))]
	switch p := rng.IntN(100); {
	case p < 25:
		w.get(ctx, kv, client, reg, false, revs)
	case p < 35:
		w.get(ctx, kv, client, reg, true, revs)
	case p < 60:
		val := fmt.Sprintf("c%d-%d", client, seq)
		pend := w.rec.Call(client, chaos.Input{Op: chaos.OpSet, Key: reg, Value: val})
		resp, err := kv.Set(ctx, &conclavev1.SetRequest{Key: []byte(reg), Value: []byte(val)})
		if err != nil {
			unknownUnlessRefused(pend, err)
			return
		}
		revs[reg] = resp.GetKv().GetModRevision()
		pend.Return(chaos.Output{OK: true, Revision: resp.GetKv().GetModRevision()})
	case p < 70:
		val := fmt.Sprintf("c%d-%d", client, seq)
		expect := revs[reg]
		pend := w.rec.Call(client, chaos.Input{Op: chaos.OpCAS, Key: reg, Value: val, ExpectRevision: expect})
		resp, err := kv.Set(ctx, &conclavev1.SetRequest{Key: []byte(reg), Value: []byte(val), IfRevision: &expect})
		switch {
		case err == nil:
			revs[reg] = resp.GetKv().GetModRevision()
			pend.Return(chaos.Output{OK: true, Revision: resp.GetKv().GetModRevision()})
		case status.Code(err) == codes.FailedPrecondition:
			pend.Return(chaos.Output{OK: false})
		default:
			unknownUnlessRefused(pend, err)
		}
	case p < 75:
		pend := w.rec.Call(client, chaos.Input{Op: chaos.OpDelete, Key: reg})
		resp, err := kv.Delete(ctx, &conclavev1.DeleteRequest{Keys: [][]byte{[]byte(reg)}})
		if err != nil {
			unknownUnlessRefused(pend, err)
			return
		}
		pend.Return(chaos.Output{OK: true, Found: resp.GetDeleted() > 0, Revision: resp.GetHeader().GetRevision()})
	case p < 90:
		ctr := w.counters[rng.IntN(len(w.counters))]
		if rng.IntN(3) == 0 {
			w.get(ctx, kv, client, ctr, false, revs)
			return
		}
		delta := int64(rng.IntN(5) + 1)
		pend := w.rec.Call(client, chaos.Input{Op: chaos.OpIncrement, Key: ctr, Delta: delta})
		resp, err := kv.Increment(ctx, &conclavev1.IncrementRequest{Key: []byte(ctr), Delta: delta})
		if err != nil {
			unknownUnlessRefused(pend, err)
			return
		}
		pend.Return(chaos.Output{OK: true, Counter: resp.GetValue(), Revision: resp.GetKv().GetModRevision()})
	default:
		key := fmt.Sprintf("dur/%d/%d", client, seq)
		if _, err := kv.Set(ctx, &conclavev1.SetRequest{Key: []byte(key), Value: []byte(key)}); err == nil {
			w.mu.Lock()
			w.durable = append(w.durable, key)
			w.mu.Unlock()
		}
	}
}

// unknownUnlessRefused records a failed write as of unknown outcome, unless the server
// said it never reached the log (refused): then it is left out of the history.
func unknownUnlessRefused(pend *chaos.Pending, err error) {
	if refused(err) {
		pend.Discard()
		return
	}
	pend.Unknown()
}

// refused reports whether a failed write certainly never reached the log: no leader, or
// a node that was not the leader refused it before proposing.
func refused(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			switch info.GetReason() {
			case "NO_LEADER", "NOT_LEADER", "NOT_READY":
				return true
			}
		}
	}
	return false
}

// get records a read and reports whether it succeeded; a read that failed changed
// nothing and is left out of the history.
func (w *workload) get(ctx context.Context, kv conclavev1grpc.KVServiceClient, client int, key string, stale bool, revs map[string]uint64) bool {
	c := conclavev1.Consistency_CONSISTENCY_LINEARIZABLE
	if stale {
		c = conclavev1.Consistency_CONSISTENCY_STALE
	}
	pend := w.rec.Call(client, chaos.Input{Op: chaos.OpGet, Key: key, Stale: stale})
	resp, err := kv.Get(ctx, &conclavev1.GetRequest{Key: []byte(key), Consistency: c})
	if err != nil {
		pend.Discard()
		return false
	}
	out := chaos.Output{OK: true, Found: resp.GetFound(), Value: string(resp.GetKv().GetValue()), Revision: resp.GetKv().GetModRevision()}
	if !stale {
		revs[key] = out.Revision
	}
	pend.Return(out)
	return true
}

// finalReads reads every register and counter, inspects every lock, peeks at every
// rate limiter and lists every board whole (a Top of every member), linearizably
// through every node, after the faults healed, and adds the reads to the history (as clients firstID, firstID+1, …): the last word on each.
func (w *workload) finalReads(conns []*grpc.ClientConn, firstID int) error {
	revs := map[string]uint64{}
	for i, conn := range conns {
		kv := conclavev1grpc.NewKVServiceClient(conn)
		locks := conclavev1grpc.NewLockServiceClient(conn)
		rl := conclavev1grpc.NewRateLimitServiceClient(conn)
		zs := conclavev1grpc.NewSortedSetServiceClient(conn)
		for _, key := range slices.Concat(w.registers, w.counters, w.locks, w.limiters, w.boards) {
			read := func(ctx context.Context) bool { return w.get(ctx, kv, firstID+i, key, false, revs) }
			if slices.Contains(w.locks, key) {
				read = func(ctx context.Context) bool { _, ok := w.inspect(ctx, locks, firstID+i, key); return ok }
			}
			if j := slices.Index(w.limiters, key); j >= 0 {
				read = func(ctx context.Context) bool { return w.peekLimit(ctx, rl, firstID+i, j) }
			}
			if slices.Contains(w.boards, key) {
				read = func(ctx context.Context) bool { return w.zsetTop(ctx, zs, firstID+i, key, len(chaosZsetMembers)) }
			}
			// A node just restarted may still be catching up: retry (failed reads are
			// left out of the history) until a deadline.
			deadline := time.Now().Add(30 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				ok := read(ctx)
				cancel()
				if ok {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("chaos: final read of %s through node %d failed for 30s", key, i+1)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	return nil
}

// lost returns the acknowledged write-once keys missing from any node's local state.
func (w *workload) lost(conns []*grpc.ClientConn) ([]string, error) {
	w.mu.Lock()
	keys := append([]string(nil), w.durable...)
	w.mu.Unlock()
	var missing []string
	for i, conn := range conns {
		kv := conclavev1grpc.NewKVServiceClient(conn)
		for start := 0; start < len(keys); start += 1000 {
			batch := keys[start:min(start+1000, len(keys))]
			req := &conclavev1.MultiGetRequest{Consistency: conclavev1.Consistency_CONSISTENCY_STALE}
			for _, k := range batch {
				req.Keys = append(req.Keys, []byte(k))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := kv.MultiGet(ctx, req)
			cancel()
			if err != nil {
				return nil, errors.Join(fmt.Errorf("chaos: reading durable keys on node %d", i+1), err)
			}
			for _, r := range resp.GetResults() {
				if !r.GetFound() {
					missing = append(missing, fmt.Sprintf("n%d:%s", i+1, r.GetKey()))
				}
			}
		}
	}
	return missing, nil
}
