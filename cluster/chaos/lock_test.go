package chaos

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/anishathalye/porcupine"
)

func acquire(l string, session uint64) Input { return Input{Op: OpAcquire, Key: l, Session: session} }
func release(l string, token uint64) Input   { return Input{Op: OpRelease, Key: l, Token: token} }
func inspect(l string) Input                 { return Input{Op: OpInspect, Key: l} }

func grant(token uint64) Output { return Output{OK: true, Token: token} }
func holder(session, token uint64) Output {
	return Output{Holders: 1, Session: session, Token: token}
}

var (
	lockHeld   = Output{}
	releasedOK = Output{OK: true}
	staleToken = Output{}
	free       = Output{}
)

func TestLockModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"empty", nil, true},
		{"sequential", []porcupine.Operation{
			op(0, 0, 1, inspect("l"), free),
			op(0, 2, 3, acquire("l", 1), grant(3)),
			op(1, 4, 5, acquire("l", 2), lockHeld),
			op(1, 6, 7, inspect("l"), holder(1, 3)),
			op(0, 8, 9, release("l", 3), releasedOK),
			op(0, 10, 11, inspect("l"), free),
			op(0, 12, 13, release("l", 3), staleToken),
			op(1, 14, 15, acquire("l", 2), grant(9)),
			op(0, 16, 17, release("l", 3), staleToken),
			op(1, 18, 19, release("l", 9), releasedOK),
		}, true},
		{"concurrent linearizable", []porcupine.Operation{
			op(0, 0, 10, acquire("l", 1), grant(4)),
			op(1, 0, 10, acquire("l", 2), lockHeld), // after the grant
			op(2, 1, 2, inspect("l"), free),         // before the grant
			op(2, 11, 12, inspect("l"), holder(1, 4)),
			op(0, 20, 30, release("l", 4), releasedOK),
			op(1, 21, 31, acquire("l", 2), grant(8)), // after the release
			op(2, 22, 23, inspect("l"), holder(1, 4)),
			op(2, 32, 33, inspect("l"), holder(2, 8)),
		}, true},
		{"the holder asks again and gets its own token", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 3, acquire("l", 1), grant(3)),
		}, true},
		{"locks are independent", []porcupine.Operation{
			op(0, 0, 1, acquire("a", 1), grant(5)),
			op(1, 2, 3, acquire("b", 2), grant(3)),
			op(1, 4, 5, acquire("a", 2), lockHeld),
		}, true},
		{"two overlapping holders", []porcupine.Operation{
			op(0, 0, 10, acquire("l", 1), grant(3)),
			op(1, 0, 10, acquire("l", 2), grant(4)),
		}, false},
		{"a second holder granted before the first released", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(1, 2, 3, acquire("l", 2), grant(4)),
			op(0, 4, 5, release("l", 3), releasedOK),
		}, false},
		{"token repeats", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(5)),
			op(0, 2, 3, release("l", 5), releasedOK),
			op(1, 4, 5, acquire("l", 2), grant(5)),
		}, false},
		{"token goes backwards", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(5)),
			op(0, 2, 3, release("l", 5), releasedOK),
			op(1, 4, 5, acquire("l", 2), grant(4)),
		}, false},
		{"release succeeded for a non-holder", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(1, 2, 3, release("l", 4), releasedOK),
		}, false},
		{"release of a free lock succeeded", []porcupine.Operation{
			op(0, 0, 1, release("l", 3), releasedOK),
		}, false},
		{"release succeeded twice", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 3, release("l", 3), releasedOK),
			op(1, 4, 5, release("l", 3), releasedOK),
		}, false},
		{"the holder's release refused as stale", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 3, release("l", 3), staleToken),
		}, false},
		{"held while free", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), lockHeld),
		}, false},
		{"held for its own holder", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 3, acquire("l", 1), lockHeld),
		}, false},
		{"the holder asks again and gets another token", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 3, acquire("l", 1), grant(4)),
		}, false},
		{"inspect sees a free lock while held", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(1, 2, 3, inspect("l"), free),
		}, false},
		{"inspect sees another token", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(1, 2, 3, inspect("l"), holder(1, 4)),
		}, false},
		{"inspect sees another session", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(1, 2, 3, inspect("l"), holder(2, 3)),
		}, false},
		{"inspect sees two holders", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(1, 2, 3, inspect("l"), Output{Holders: 2, Session: 1, Token: 3}),
		}, false},
		{"inspect sees the old holder after a release", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 3, release("l", 3), releasedOK),
			op(1, 4, 5, inspect("l"), holder(1, 3)),
		}, false},
		{"a register op is not a lock op", []porcupine.Operation{
			op(0, 0, 1, set("l", "a"), at(1)),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkModel(t, LockModel, tt.ops); got != tt.want {
				t.Fatalf("linearizable = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestLockModel_UnknownOutcomes(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"an unknown acquire that did not take effect", []porcupine.Operation{
			op(0, 0, 0, acquire("l", 1), unknown),
			op(1, 5, 6, acquire("l", 2), grant(5)),
			op(1, 7, 8, release("l", 5), releasedOK),
		}, true},
		{"an unknown acquire that took effect, revealed by inspect", []porcupine.Operation{
			op(0, 0, 0, acquire("l", 1), unknown),
			op(1, 5, 6, acquire("l", 2), lockHeld),
			op(0, 7, 8, inspect("l"), holder(1, 4)),
			op(0, 9, 10, release("l", 4), releasedOK),
			op(1, 11, 12, acquire("l", 2), grant(6)),
		}, true},
		{"an unknown acquire that took effect, released without being seen", []porcupine.Operation{
			op(0, 0, 0, acquire("l", 1), unknown),
			op(1, 5, 6, acquire("l", 2), lockHeld),
			op(0, 7, 8, release("l", 4), releasedOK),
			op(1, 9, 10, acquire("l", 2), grant(6)),
		}, true},
		{"the token of an unknown grant is greater than every earlier one", []porcupine.Operation{
			op(1, 0, 1, acquire("l", 2), grant(5)),
			op(1, 2, 3, release("l", 5), releasedOK),
			op(0, 4, 0, acquire("l", 1), unknown),
			op(2, 6, 7, inspect("l"), holder(1, 4)),
		}, false},
		{"the next grant's token exceeds a released unknown grant's", []porcupine.Operation{
			op(0, 0, 0, acquire("l", 1), unknown),
			op(0, 5, 6, release("l", 8), releasedOK),
			op(1, 7, 8, acquire("l", 2), grant(7)),
		}, false},
		{"an unknown acquire that took effect late; its session asks again", []porcupine.Operation{
			op(0, 0, 0, acquire("l", 1), unknown),
			op(0, 1, 2, inspect("l"), free),
			op(0, 3, 4, acquire("l", 1), grant(7)),
			op(0, 5, 6, inspect("l"), holder(1, 7)),
		}, true},
		{"an unknown acquire makes no second holder", []porcupine.Operation{
			op(0, 0, 0, acquire("l", 1), unknown),
			op(1, 5, 6, acquire("l", 2), grant(5)),
			op(0, 7, 8, acquire("l", 1), grant(6)),
		}, false},
		{"an unknown acquire by the holder changes nothing", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 0, acquire("l", 1), unknown),
			op(1, 5, 6, inspect("l"), holder(1, 3)),
		}, true},
		{"an unknown release that took effect", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 0, release("l", 3), unknown),
			op(1, 5, 6, inspect("l"), holder(1, 3)),
			op(1, 7, 8, inspect("l"), free),
			op(1, 9, 10, acquire("l", 2), grant(9)),
		}, true},
		{"an unknown release does not take effect twice", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(0, 2, 0, release("l", 3), unknown),
			op(1, 5, 6, inspect("l"), free),
			op(1, 7, 8, inspect("l"), holder(1, 3)),
		}, false},
		{"an unknown release of a stale token frees nothing", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(2, 2, 0, release("l", 2), unknown),
			op(1, 5, 6, inspect("l"), free),
		}, false},
		{"unknown inspects are not judged", []porcupine.Operation{
			op(0, 0, 1, acquire("l", 1), grant(3)),
			op(1, 2, 0, inspect("l"), unknown),
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkModel(t, LockModel, tt.ops); got != tt.want {
				t.Fatalf("linearizable = %t, want %t", got, tt.want)
			}
		})
	}
}

// memLocks is an in-memory lock service with raft-like tokens: one global index, bumped
// by every operation. With broken, Acquire grants a lock held by another session too.
type memLocks struct {
	mu      sync.Mutex
	index   uint64
	holders map[string][]memHold
	broken  bool
}

type memHold struct{ session, token uint64 }

func newMemLocks(broken bool) *memLocks {
	return &memLocks{holders: map[string][]memHold{}, broken: broken}
}

// do applies in and returns what a client would see.
func (s *memLocks) do(in Input) Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	hs := s.holders[in.Key]
	switch in.Op {
	case OpAcquire:
		for _, h := range hs {
			if h.session == in.Session {
				return Output{OK: true, Token: h.token}
			}
		}
		if len(hs) > 0 && !s.broken {
			return Output{}
		}
		s.holders[in.Key] = append(hs, memHold{in.Session, s.index})
		return Output{OK: true, Token: s.index}
	case OpRelease:
		for i, h := range hs {
			if h.token == in.Token {
				s.holders[in.Key] = append(hs[:i:i], hs[i+1:]...)
				return Output{OK: true}
			}
		}
		return Output{}
	case OpInspect:
		if len(hs) == 0 {
			return Output{}
		}
		return Output{Holders: len(hs), Session: hs[0].session, Token: hs[0].token}
	}
	panic("memLocks: not a lock op")
}

// runLockClients drives store with clients goroutines of n random lock operations each
// over two locks, client c holding with session c+1; about one acquire or release in
// eight has its outcome recorded as unknown (whether or not it was applied), after which
// the client inspects the lock to learn whether it holds it.
func runLockClients(store *memLocks, clients, n int, seed uint64) []porcupine.Operation {
	rec := NewRecorder()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			session := uint64(c + 1)
			held := map[string]uint64{}
			unsure := map[string]bool{}
			for range n {
				l := "l" + strconv.Itoa(rng.IntN(2))
				var in Input
				switch {
				case unsure[l] || rng.IntN(4) == 0:
					in = inspect(l)
				case held[l] != 0:
					in = release(l, held[l])
				default:
					in = acquire(l, session)
				}
				p := rec.Call(c, in)
				if in.Op != OpInspect && rng.IntN(8) == 0 {
					if rng.IntN(2) == 0 {
						store.do(in)
					}
					p.Unknown()
					unsure[l] = true
					continue
				}
				out := store.do(in)
				p.Return(out)
				switch in.Op {
				case OpAcquire:
					if out.OK {
						held[l] = out.Token
					}
				case OpRelease:
					delete(held, l)
				case OpInspect:
					if unsure[l] {
						delete(held, l)
						if out.Holders > 0 && out.Session == session {
							held[l] = out.Token
						}
						delete(unsure, l)
					}
				}
			}
		}()
	}
	wg.Wait()
	return rec.Operations()
}

func TestCheck_RecordedLockHistoryIsLinearizable(t *testing.T) {
	ops := runLockClients(newMemLocks(false), 4, 60, 1)
	kv, locks := SplitLocks(ops)
	if len(kv) != 0 || len(locks) != len(ops) {
		t.Fatalf("SplitLocks: %d kv, %d lock operations of %d", len(kv), len(locks), len(ops))
	}
	res, err := Check(LockModel, locks, 0, filepath.Join(t.TempDir(), "lock.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Linearizable || res.Ops == 0 {
		t.Fatalf("%+v; see %s", res, res.Visualization)
	}
}

func TestCheck_SecondLockHolderIsCaughtAndVisualised(t *testing.T) {
	store := newMemLocks(true)
	rec := NewRecorder()
	for i, in := range []Input{
		acquire("other", 1),
		acquire("l", 1),
		acquire("l", 2), // the broken store grants it too
		inspect("l"),
	} {
		rec.Call(i%2, in).Return(store.do(in))
	}
	viz := filepath.Join(t.TempDir(), "out", "lock.html")
	res, err := Check(LockModel, rec.Operations(), 0, viz)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Violation() || res.Ops != 4 {
		t.Fatalf("result %+v, want a violation over 4 ops", res)
	}
	html, err := os.ReadFile(res.Visualization)
	if err != nil || !strings.Contains(string(html), `acquire(\"l\", session 2)`) {
		t.Fatalf("visualisation %s: %v", res.Visualization, err)
	}
	if strings.Contains(string(html), `\"other\"`) {
		t.Fatal("visualisation shows a lock that did not fail")
	}
	if _, err := os.Stat(res.History); err != nil {
		t.Fatal(err)
	}
}

func TestSplitLocks_WithoutKeys(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, 0, 1, set("r", "a"), at(1)),
		op(0, 2, 3, acquire("l", 1), grant(2)),
		op(1, 4, 5, acquire("m", 2), grant(3)),
		op(1, 6, 7, inspect("l"), free), // l's history is wrong: leave it out
		op(0, 8, 9, incr("c", 1), counter(1, 4)),
	}
	kv, locks := SplitLocks(ops)
	if len(kv) != 2 || len(locks) != 3 {
		t.Fatalf("kv %d, locks %d", len(kv), len(locks))
	}
	if checkModel(t, LockModel, locks) {
		t.Fatal("history with a vanished holder is linearizable")
	}
	kept := WithoutKeys(locks, map[string]bool{"l": true})
	if len(kept) != 1 || !checkModel(t, LockModel, kept) {
		t.Fatalf("without l: %d operations", len(kept))
	}
}
