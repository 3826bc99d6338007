package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/conclave-dev/conclave/client"
	"github.com/conclave-dev/conclave/cluster/chaos"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// chaosSessionTTL is the TTL of the workload's sessions, kept alive by client.Session:
// far longer than any fault (at most 5 s), so that a session survives every fault and the
// only way a hold ends is a Release in the history.
const chaosSessionTTL = 60 * time.Second

// chaosSession is one session of a workload client and what the client knows of the
// session's locks. Only the client's goroutine uses the maps while the session is in
// use (endSessions reads them once the clients stopped); lost is set under workload.mu.
type chaosSession struct {
	client int
	s      *client.Session
	held   map[string]uint64 // lock → fencing token the client believes the session holds
	unsure map[string]bool   // an acquire or release of unknown outcome: inspect first
	// mayHold lists the locks the session may hold: granted, or asked for with an
	// unknown outcome, and not since released by a Release that succeeded. A hold that
	// seemed to end otherwise (a Release refused as stale, an Inspect showing another
	// holder) may have ended with the session. If the session is lost, the server
	// releases these locks without an operation in the history, so their histories
	// cannot be judged.
	mayHold map[string]bool
	// unknownAcquire lists the locks the session asked for with an unknown outcome: such
	// an acquire may take effect at any later time, so the lock stays in mayHold.
	unknownAcquire map[string]bool
	lost           error // why the client gave the session up; nil while in use
}

// lockClient is one workload client's lock state. Only its goroutine uses it.
type lockClient struct {
	cur *chaosSession // nil until a session is created, and after one is lost
}

// lockStep runs one lock operation of client id: a try-once Acquire of a lock it does
// not hold, a Release of one it does, or a linearizable Inspect (always first after an
// operation of unknown outcome, to learn whether it holds the lock).
func (w *workload) lockStep(locks conclavev1grpc.LockServiceClient, lc *lockClient, id, seq int, rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
	defer cancel()
	if lc.cur != nil {
		if err := lc.cur.s.Err(); err != nil {
			w.loseSession(lc, err)
		}
	}
	if lc.cur == nil {
		s, err := w.sessions.NewSession(ctx, chaosSessionTTL, client.WithOwner(fmt.Sprintf("chaos-%d", id)))
		if err != nil {
			return // no session now: the next lock step tries again
		}
		lc.cur = &chaosSession{client: id, s: s, held: map[string]uint64{}, unsure: map[string]bool{},
			mayHold: map[string]bool{}, unknownAcquire: map[string]bool{}}
		w.mu.Lock()
		w.lockSessions = append(w.lockSessions, lc.cur)
		w.mu.Unlock()
	}
	cs := lc.cur
	name := w.locks[rng.IntN(len(w.locks))]
	sid := cs.s.ID()
	reqID := fmt.Sprintf("chaos-%d-%d", id, seq)
	switch {
	case cs.unsure[name] || rng.IntN(4) == 0:
		out, ok := w.inspect(ctx, locks, id, name)
		if ok && cs.unsure[name] {
			delete(cs.unsure, name)
			delete(cs.held, name)
			if out.Holders > 0 && out.Session == sid {
				cs.held[name] = out.Token
			}
		}
	case cs.held[name] != 0:
		token := cs.held[name]
		pend := w.rec.Call(id, chaos.Input{Op: chaos.OpRelease, Key: name, Token: token})
		_, err := locks.Release(ctx, &conclavev1.ReleaseRequest{Name: name, Token: token, RequestId: reqID})
		switch {
		case err == nil:
			pend.Return(chaos.Output{OK: true})
			delete(cs.held, name)
			if !cs.unknownAcquire[name] {
				delete(cs.mayHold, name)
			}
		case status.Code(err) == codes.Aborted:
			pend.Return(chaos.Output{OK: false})
			delete(cs.held, name)
		default:
			unknownUnlessRefused(pend, err)
			cs.unsure[name] = true
		}
	default:
		pend := w.rec.Call(id, chaos.Input{Op: chaos.OpAcquire, Key: name, Session: sid})
		resp, err := locks.Acquire(ctx, &conclavev1.AcquireRequest{Name: name, SessionId: sid, WaitTimeoutMs: 0,
			Mode: conclavev1.LockMode_LOCK_MODE_EXCLUSIVE, RequestId: reqID})
		switch {
		case err == nil:
			pend.Return(chaos.Output{OK: true, Token: resp.GetToken()})
			cs.held[name] = resp.GetToken()
			cs.mayHold[name] = true
		case errorReason(err) == "LOCK_HELD":
			pend.Return(chaos.Output{OK: false})
		case status.Code(err) == codes.NotFound:
			pend.Discard() // the session does not exist: nothing changed
			w.loseSession(lc, err)
		default:
			unknownUnlessRefused(pend, err)
			cs.unknownAcquire[name] = true
			cs.mayHold[name] = true
			cs.unsure[name] = true
		}
	}
}

// errorReason is the google.rpc.ErrorInfo reason of a gRPC error, or "".
func errorReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// inspect records a linearizable Inspect of lock name and returns what it saw; a failed
// Inspect changed nothing and is left out of the history.
func (w *workload) inspect(ctx context.Context, locks conclavev1grpc.LockServiceClient, id int, name string) (chaos.Output, bool) {
	pend := w.rec.Call(id, chaos.Input{Op: chaos.OpInspect, Key: name})
	resp, err := locks.Inspect(ctx, &conclavev1.InspectRequest{Name: name, Consistency: conclavev1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		pend.Discard()
		return chaos.Output{}, false
	}
	out := chaos.Output{Holders: len(resp.GetHolders())}
	if h := resp.GetHolders(); len(h) > 0 {
		out.Token, out.Session = h[0].GetToken(), h[0].GetSessionId()
	}
	pend.Return(out)
	return out, true
}

// loseSession gives up the client's session: it expired (its keep-alives failed for a
// whole TTL) or the server no longer knows it. It is revoked, in case only the client
// gave up on it, and the client makes a new one at its next lock step.
func (w *workload) loseSession(lc *lockClient, why error) {
	cs := lc.cur
	w.mu.Lock()
	cs.lost = why
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
	_ = cs.s.Close(ctx)
	cancel()
	lc.cur = nil
}

// endSessions ends the workload's sessions once the clients stopped and the final reads
// are done. A session that ended on its own before (Done closed) is lost too. It
// returns the locks whose histories must be left out of the check (every lock a lost
// session may have held when it ended), each with the reason, and a line per lost
// session.
func (w *workload) endSessions() (skipped map[string]string, lost []string) {
	w.mu.Lock()
	sessions := slices.Clone(w.lockSessions)
	w.mu.Unlock()
	skipped = map[string]string{}
	for _, cs := range sessions {
		w.mu.Lock()
		why := cs.lost
		w.mu.Unlock()
		if why == nil {
			why = cs.s.Err() // before Close, which ends it too
		}
		if why == nil {
			continue
		}
		names := make([]string, 0, len(cs.mayHold))
		for name := range cs.mayHold {
			names = append(names, name)
		}
		sort.Strings(names)
		lost = append(lost, fmt.Sprintf("session %d of client %d lost (%v); locks it may have held: %v", cs.s.ID(), cs.client, why, names))
		for _, name := range names {
			if _, ok := skipped[name]; !ok {
				skipped[name] = fmt.Sprintf("session %d of client %d was lost", cs.s.ID(), cs.client)
			}
		}
	}
	for _, cs := range sessions {
		ctx, cancel := context.WithTimeout(context.Background(), w.opTimeout)
		_ = cs.s.Close(ctx)
		cancel()
	}
	return skipped, lost
}

// lockSummary counts the lock operations of a history by outcome, for the run's report.
func lockSummary(ops []porcupine.Operation) string {
	var granted, held, acqUnknown, released, stale, relUnknown, inspects int
	for _, op := range ops {
		in, out := op.Input.(chaos.Input), op.Output.(chaos.Output)
		switch {
		case in.Op == chaos.OpInspect:
			inspects++
		case in.Op == chaos.OpAcquire && out.Unknown:
			acqUnknown++
		case in.Op == chaos.OpAcquire && out.OK:
			granted++
		case in.Op == chaos.OpAcquire:
			held++
		case out.Unknown:
			relUnknown++
		case out.OK:
			released++
		default:
			stale++
		}
	}
	return fmt.Sprintf("acquire granted=%d held=%d unknown=%d, release ok=%d stale=%d unknown=%d, inspect=%d",
		granted, held, acqUnknown, released, stale, relUnknown, inspects)
}
