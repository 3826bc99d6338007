package chaos

import (
	"cmp"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func zincr(k, m string, d int64) Input { return Input{Op: OpZsetIncrement, Key: k, Value: m, Delta: d} }
func zscore(k, m string) Input         { return Input{Op: OpZsetScore, Key: k, Value: m} }
func ztop(k string, n uint64) Input    { return Input{Op: OpZsetTop, Key: k, Limit: n} }
func zrem(k, m string) Input           { return Input{Op: OpZsetRemove, Key: k, Value: m} }

func zis(n int64) Output    { return Output{Counter: n} }
func zfound(n int64) Output { return Output{Found: true, Counter: n} }

var (
	zabsent  = Output{}
	zremoved = Output{Found: true}
)

// zlist is a Top's output from member, score pairs: zlist("b", 3, "a", 3).
func zlist(pairs ...any) Output {
	var es []ZsetEntry
	for i := 0; i < len(pairs); i += 2 {
		es = append(es, ZsetEntry{Member: pairs[i].(string), Score: int64(pairs[i+1].(int))})
	}
	return ZsetTopOutput(es)
}

func TestZsetModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"empty", nil, true},
		{"sequential increments, scores and tops", []porcupine.Operation{
			op(0, 0, 1, ztop("z", 3), zlist()),
			op(0, 2, 3, zincr("z", "a", 3), zis(3)),
			op(0, 4, 5, zincr("z", "b", 3), zis(3)),
			op(0, 6, 7, zincr("z", "c", 1), zis(1)),
			op(0, 8, 9, ztop("z", 3), zlist("b", 3, "a", 3, "c", 1)), // ties: member descending
			op(0, 10, 11, ztop("z", 2), zlist("b", 3, "a", 3)),
			op(0, 12, 13, ztop("z", 1), zlist("b", 3)),
			op(0, 14, 15, ztop("z", 5), zlist("b", 3, "a", 3, "c", 1)),
			op(0, 16, 17, zscore("z", "a"), zfound(3)),
			op(0, 18, 19, zscore("z", "d"), zabsent),
			op(0, 20, 21, zincr("z", "c", 4), zis(5)),
			op(0, 22, 23, ztop("z", 0), zlist("c", 5, "b", 3, "a", 3)), // 0 means 10
		}, true},
		{"concurrent increments ordered by their results", []porcupine.Operation{
			op(0, 0, 10, zincr("z", "a", 2), zis(5)),
			op(1, 0, 10, zincr("z", "a", 3), zis(3)),
			op(2, 1, 2, zscore("z", "a"), zabsent), // before both
			op(3, 3, 9, ztop("z", 2), zlist("a", 3)),
			op(2, 11, 12, zscore("z", "a"), zfound(5)),
		}, true},
		{"remove, then an increment starts from zero", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 5), zis(5)),
			op(0, 2, 3, zrem("z", "a"), zremoved),
			op(1, 4, 5, zscore("z", "a"), zabsent),
			op(1, 6, 7, zrem("z", "a"), zabsent),
			op(0, 8, 9, zincr("z", "a", 1), zis(1)),
			op(1, 10, 11, ztop("z", 2), zlist("a", 1)),
		}, true},
		{"keys are independent", []porcupine.Operation{
			op(0, 0, 1, zincr("x", "a", 2), zis(2)),
			op(1, 2, 3, zincr("y", "a", 1), zis(1)),
			op(0, 4, 5, ztop("x", 3), zlist("a", 2)),
		}, true},
		{"a lost acknowledged increment", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(0, 2, 3, zincr("z", "a", 2), zis(5)),
			op(1, 4, 5, zscore("z", "a"), zfound(3)),
		}, false},
		{"an acknowledged increment of a new member lost", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(1, 2, 3, ztop("z", 3), zlist()),
		}, false},
		{"a stale score after an acknowledged increment", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 1), zis(1)),
			op(0, 2, 3, zincr("z", "a", 1), zis(2)),
			op(1, 4, 5, zscore("z", "a"), zfound(1)),
		}, false},
		{"a stale top after an acknowledged increment", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 1), zis(1)),
			op(0, 2, 3, zincr("z", "b", 2), zis(2)),
			op(0, 4, 5, zincr("z", "a", 2), zis(3)),
			op(1, 6, 7, ztop("z", 2), zlist("b", 2, "a", 1)),
		}, false},
		{"a top in the wrong order", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 5), zis(5)),
			op(0, 2, 3, zincr("z", "b", 3), zis(3)),
			op(1, 4, 5, ztop("z", 2), zlist("b", 3, "a", 5)),
		}, false},
		{"a tie in the wrong order", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(0, 2, 3, zincr("z", "b", 3), zis(3)),
			op(1, 4, 5, ztop("z", 2), zlist("a", 3, "b", 3)),
		}, false},
		{"a top with a wrong score", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 5), zis(5)),
			op(0, 2, 3, zincr("z", "b", 3), zis(3)),
			op(1, 4, 5, ztop("z", 2), zlist("a", 6, "b", 3)),
		}, false},
		{"a top missing a member", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 5), zis(5)),
			op(0, 2, 3, zincr("z", "b", 3), zis(3)),
			op(1, 4, 5, ztop("z", 3), zlist("a", 5)),
		}, false},
		{"a truncated top without the best", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 5), zis(5)),
			op(0, 2, 3, zincr("z", "b", 3), zis(3)),
			op(1, 4, 5, ztop("z", 1), zlist("b", 3)),
		}, false},
		{"a top longer than asked", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 5), zis(5)),
			op(0, 2, 3, zincr("z", "b", 3), zis(3)),
			op(1, 4, 5, ztop("z", 1), zlist("a", 5, "b", 3)),
		}, false},
		{"a member listed twice", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 5), zis(5)),
			op(1, 2, 3, ztop("z", 2), zlist("a", 5, "a", 5)),
		}, false},
		{"an increment applied twice", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(1, 2, 3, zscore("z", "a"), zfound(6)),
		}, false},
		{"an increment applied twice, seen by the next", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(0, 2, 3, zincr("z", "a", 1), zis(7)),
		}, false},
		{"an increment answering a score it did not make", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(4)),
		}, false},
		{"a remove of an absent member that removed", []porcupine.Operation{
			op(0, 0, 1, zrem("z", "a"), zremoved),
		}, false},
		{"a removed member still scored", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(0, 2, 3, zrem("z", "a"), zremoved),
			op(1, 4, 5, zscore("z", "a"), zfound(3)),
		}, false},
		{"a register op is not a sorted-set op", []porcupine.Operation{
			op(0, 0, 1, set("z", "a"), at(1)),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkModel(t, ZsetModel, tt.ops); got != tt.want {
				t.Fatalf("linearizable = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestZsetModel_UnknownOutcomes(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"an unknown increment that did not take effect", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "a", 3), unknown),
			op(1, 5, 6, zscore("z", "a"), zabsent),
			op(1, 7, 8, ztop("z", 3), zlist()),
		}, true},
		{"an unknown increment that took effect", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "a", 3), unknown),
			op(1, 5, 6, zscore("z", "a"), zfound(3)),
			op(1, 7, 8, zincr("z", "a", 1), zis(4)),
		}, true},
		{"an unknown increment that took effect late", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "a", 3), unknown),
			op(1, 5, 6, zscore("z", "a"), zabsent),
			op(1, 7, 8, zincr("z", "a", 1), zis(1)),
			op(1, 9, 10, ztop("z", 1), zlist("a", 4)),
		}, true},
		{"an unknown increment takes effect once", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "a", 3), unknown),
			op(1, 5, 6, zscore("z", "a"), zfound(6)),
		}, false},
		{"an unknown increment cannot be undone", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "a", 3), unknown),
			op(1, 5, 6, zscore("z", "a"), zfound(3)),
			op(1, 7, 8, zscore("z", "a"), zabsent),
		}, false},
		{"an unknown increment does not take effect before its call", []porcupine.Operation{
			op(1, 0, 1, zscore("z", "a"), zfound(3)),
			op(0, 2, 0, zincr("z", "a", 3), unknown),
		}, false},
		{"two unknown increments, one took effect", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "a", 1), unknown),
			op(1, 0, 0, zincr("z", "a", 2), unknown),
			op(2, 5, 6, zscore("z", "a"), zfound(2)),
			op(2, 7, 8, zscore("z", "a"), zfound(3)),
		}, true},
		{"two unknown increments, neither can make it", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "a", 1), unknown),
			op(1, 0, 0, zincr("z", "a", 2), unknown),
			op(2, 5, 6, zscore("z", "a"), zfound(2)),
			op(2, 7, 8, zscore("z", "a"), zfound(4)),
		}, false},
		{"an unknown increment under a truncated top", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "c", 1), unknown),
			op(1, 1, 2, zincr("z", "a", 5), zis(5)),
			op(1, 3, 4, zincr("z", "b", 4), zis(4)),
			op(1, 5, 6, ztop("z", 2), zlist("a", 5, "b", 4)),
			op(1, 7, 8, ztop("z", 3), zlist("a", 5, "b", 4, "c", 1)),
		}, true},
		{"an unknown increment above a truncated top", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "c", 9), unknown),
			op(1, 1, 2, zincr("z", "a", 5), zis(5)),
			op(1, 3, 4, ztop("z", 1), zlist("c", 9)),
			op(1, 5, 6, ztop("z", 1), zlist("a", 5)),
		}, false},
		{"an unknown remove that took effect", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(0, 2, 0, zrem("z", "a"), unknown),
			op(1, 3, 4, zscore("z", "a"), zfound(3)),
			op(1, 5, 6, zscore("z", "a"), zabsent),
			op(1, 7, 8, zincr("z", "a", 1), zis(1)),
		}, true},
		{"an unknown remove takes effect once", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(0, 2, 0, zrem("z", "a"), unknown),
			op(1, 3, 4, zscore("z", "a"), zabsent),
			op(1, 5, 6, zincr("z", "a", 1), zis(1)),
			op(1, 7, 8, zscore("z", "a"), zabsent),
		}, false},
		{"a remove after an unknown increment took effect", []porcupine.Operation{
			op(0, 0, 0, zincr("z", "a", 3), unknown),
			op(1, 1, 2, zrem("z", "a"), zremoved),
			op(1, 3, 4, zscore("z", "a"), zabsent),
		}, true},
		{"unknown reads are not judged", []porcupine.Operation{
			op(0, 0, 1, zincr("z", "a", 3), zis(3)),
			op(1, 2, 0, zscore("z", "a"), unknown),
			op(1, 3, 0, ztop("z", 2), unknown),
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkModel(t, ZsetModel, tt.ops); got != tt.want {
				t.Fatalf("linearizable = %t, want %t", got, tt.want)
			}
		})
	}
}

// zsetBoard is a sequential sorted set of integer scores with TIE_BREAK_LEX: the
// reference the tests below derive outputs from.
type zsetBoard map[string]int64

// do applies in and returns its output.
func (b zsetBoard) do(in Input) Output {
	switch in.Op {
	case OpZsetIncrement:
		b[in.Value] += in.Delta
		return Output{Counter: b[in.Value]}
	case OpZsetScore:
		v, ok := b[in.Value]
		return Output{Found: ok, Counter: v}
	case OpZsetRemove:
		_, ok := b[in.Value]
		delete(b, in.Value)
		return Output{Found: ok}
	}
	return ZsetTopOutput(b.top(zsetTopCount(in)))
}

func (b zsetBoard) top(n int) []ZsetEntry {
	var es []ZsetEntry
	for m, s := range b {
		es = append(es, ZsetEntry{Member: m, Score: s})
	}
	slices.SortFunc(es, func(x, y ZsetEntry) int {
		return cmp.Or(cmp.Compare(y.Score, x.Score), cmp.Compare(y.Member, x.Member))
	})
	return es[:min(n, len(es))]
}

// naiveZsetModel is the plain formulation of ZsetModel, kept as its reference: the state
// is the board itself and the checker places each unknown operation anywhere after its
// call (taking effect there, or not at all). It is exponential in unknown outcomes, so
// it is only for small histories.
var naiveZsetModel = (&porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		var kept []porcupine.Operation
		for _, op := range h {
			if in := op.Input.(Input); !op.Output.(Output).Unknown || (in.Op != OpZsetScore && in.Op != OpZsetTop) {
				kept = append(kept, op)
			}
		}
		return partitionByKey(kept)
	},
	Init: func() []any { return []any{""} }, // the board as ZsetTopOutput's encoding
	Step: func(state, input, output any) []any {
		in, out := input.(Input), output.(Output)
		if !isZsetOp(in.Op) {
			return nil
		}
		es, _ := zsetTopEntries(Output{Value: state.(string)})
		b := zsetBoard{}
		for _, e := range es {
			b[e.Member] = e.Score
		}
		if out.Unknown {
			if in.Op == OpZsetScore || in.Op == OpZsetTop {
				return []any{state}
			}
			b.do(in)
			return []any{state, ZsetTopOutput(b.top(len(b) + 1)).Value}
		}
		if b.do(in) != out {
			return nil
		}
		return []any{ZsetTopOutput(b.top(len(b) + 1)).Value}
	},
}).ToModel()

// randomZsetHistory is a history of n operations on one key over members a, b and c with
// random overlapping intervals, each taking effect at a random point inside its interval;
// a quarter of the increments and removes have unknown outcomes (taking effect or not,
// maybe after their return). With corrupt, one known output is then changed, which
// usually makes the history not linearizable.
func randomZsetHistory(rng *rand.Rand, n int, corrupt bool) []porcupine.Operation {
	members := []string{"a", "b", "c"}
	type pending struct {
		op    porcupine.Operation
		at    int64
		apply bool
	}
	ps := make([]pending, n)
	for i := range ps {
		m := members[rng.IntN(len(members))]
		var in Input
		switch p := rng.IntN(10); {
		case p < 5:
			in = zincr("k", m, int64(1+rng.IntN(3)))
		case p < 7:
			in = zscore("k", m)
		case p < 9:
			in = ztop("k", uint64(1+rng.IntN(3)))
		default:
			in = zrem("k", m)
		}
		call := int64(rng.IntN(100))
		ret := call + 1 + int64(rng.IntN(30))
		ps[i] = pending{op: porcupine.Operation{ClientId: i, Call: call, Return: ret, Input: in}, at: call + rng.Int64N(ret-call)}
		if (in.Op == OpZsetIncrement || in.Op == OpZsetRemove) && rng.IntN(4) == 0 {
			ps[i].op.Output, ps[i].op.Return = Output{Unknown: true}, math.MaxInt64
			ps[i].at += int64(rng.IntN(50))
			ps[i].apply = rng.IntN(2) == 0
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ps[a].at, ps[b].at) })
	b := zsetBoard{}
	for _, i := range order {
		in := ps[i].op.Input.(Input)
		if ps[i].op.Output != nil {
			if ps[i].apply {
				b.do(in)
			}
			continue
		}
		ps[i].op.Output = b.do(in)
	}
	ops := make([]porcupine.Operation, n)
	for i := range ps {
		ops[i] = ps[i].op
	}
	if corrupt {
		for _, i := range rng.Perm(n) {
			out := ops[i].Output.(Output)
			if out.Unknown {
				continue
			}
			switch in := ops[i].Input.(Input); in.Op {
			case OpZsetTop:
				es, _ := zsetTopEntries(out)
				if len(es) == 0 {
					es = append(es, ZsetEntry{Member: "a", Score: 1})
				} else if j := rng.IntN(len(es)); len(es) > 1 && rng.IntN(2) == 0 {
					es[j], es[(j+1)%len(es)] = es[(j+1)%len(es)], es[j]
				} else {
					es[j].Score += int64(1 + rng.IntN(2))
				}
				out = ZsetTopOutput(es)
			case OpZsetRemove:
				out.Found = !out.Found
			case OpZsetScore:
				switch {
				case !out.Found:
					out = zfound(int64(1 + rng.IntN(3)))
				case rng.IntN(3) == 0:
					out = zabsent
				default:
					out.Counter += int64(1 + rng.IntN(3))
				}
			default:
				out.Counter += int64(1 + rng.IntN(3))
			}
			ops[i].Output = out
			break
		}
	}
	return ops
}

// TestZsetModel_AgreesWithTheNaiveModel: pinning unknown increments to their calls,
// keeping their deltas pending and keeping each member's possibilities apart accepts
// exactly the histories the plain formulation does.
func TestZsetModel_AgreesWithTheNaiveModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	var legal, illegal int
	for i := range 3000 {
		ops := randomZsetHistory(rng, 4+rng.IntN(7), i%2 == 1)
		want := porcupine.CheckOperations(naiveZsetModel, checkable(ops))
		got := porcupine.CheckOperations(ZsetModel, checkable(ops))
		if got != want {
			for _, op := range ops {
				t.Logf("client %d [%d, %d] %s", op.ClientId, op.Call, op.Return, DescribeOperation(op.Input, op.Output))
			}
			t.Fatalf("history %d: ZsetModel says %t, the naive model %t", i, got, want)
		}
		if want {
			legal++
		} else {
			illegal++
		}
	}
	if legal < 500 || illegal < 500 {
		t.Fatalf("%d linearizable and %d not: too few of one kind to compare", legal, illegal)
	}
	t.Logf("%d linearizable, %d not", legal, illegal)
}

// memZsets is an in-memory sorted set per key. With stale, Tops are served from a copy
// refreshed only every fourth increment, as a read served by a lagging replica would be.
type memZsets struct {
	mu     sync.Mutex
	boards map[string]zsetBoard
	copies map[string]zsetBoard
	writes int
	stale  bool
}

func newMemZsets(stale bool) *memZsets {
	return &memZsets{boards: map[string]zsetBoard{}, copies: map[string]zsetBoard{}, stale: stale}
}

func (s *memZsets) do(in Input) Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.boards[in.Key]
	if b == nil {
		b = zsetBoard{}
		s.boards[in.Key] = b
	}
	if in.Op == OpZsetTop && s.stale && s.copies[in.Key] != nil {
		return s.copies[in.Key].do(in)
	}
	out := b.do(in)
	if in.Op == OpZsetIncrement {
		if s.writes++; s.writes%4 == 0 || s.copies[in.Key] == nil {
			s.copies[in.Key] = zsetBoard{}
			for m, v := range b {
				s.copies[in.Key][m] = v
			}
		}
	}
	return out
}

// runZsetClients drives store with clients goroutines of n random operations over two
// keys of members a, b and c (half increments of 1 to 3, one in twenty a remove, the
// rest scores and tops); with unknowns, about one increment in eight has its outcome
// recorded as unknown (whether or not it was applied).
func runZsetClients(store *memZsets, clients, n int, seed uint64, unknowns bool) []porcupine.Operation {
	rec := NewRecorder()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for range n {
				key, m := []string{"z0", "z1"}[rng.IntN(2)], []string{"a", "b", "c"}[rng.IntN(3)]
				var in Input
				switch p := rng.IntN(20); {
				case p < 10:
					in = zincr(key, m, int64(1+rng.IntN(3)))
				case p < 14:
					in = zscore(key, m)
				case p < 19:
					in = ztop(key, uint64(1+rng.IntN(3)))
				default:
					in = zrem(key, m)
				}
				p := rec.Call(c, in)
				if unknowns && in.Op == OpZsetIncrement && rng.IntN(8) == 0 {
					if rng.IntN(2) == 0 {
						store.do(in)
					}
					p.Unknown()
					continue
				}
				p.Return(store.do(in))
			}
		}()
	}
	wg.Wait()
	return rec.Operations()
}

func TestCheck_RecordedZsetHistoryIsLinearizable(t *testing.T) {
	ops := runZsetClients(newMemZsets(false), 4, 80, 1, true)
	rest, zsets := SplitZsets(ops)
	if len(rest) != 0 || len(zsets) != len(ops) {
		t.Fatalf("SplitZsets: %d other, %d sorted-set operations of %d", len(rest), len(zsets), len(ops))
	}
	kinds := map[Op]int{}
	unknowns := 0
	for _, op := range zsets {
		kinds[op.Input.(Input).Op]++
		if op.Output.(Output).Unknown {
			unknowns++
		}
	}
	if len(kinds) != 4 || unknowns == 0 {
		t.Fatalf("ops by kind %v, %d unknown: the history does not cover the model", kinds, unknowns)
	}
	res, err := Check(ZsetModel, zsets, 0, filepath.Join(t.TempDir(), "zset.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Linearizable || res.Ops != len(ops) {
		t.Fatalf("%+v; see %s", res, res.Visualization)
	}
}

func TestCheck_StaleZsetTopIsCaughtAndVisualised(t *testing.T) {
	store := newMemZsets(true)
	rec := NewRecorder()
	ins := []Input{zincr("other", "a", 1), zincr("z", "a", 1), zincr("z", "b", 2), ztop("z", 2)}
	for i, in := range ins {
		rec.Call(i%2, in).Return(store.do(in))
	}
	viz := filepath.Join(t.TempDir(), "out", "zset.html")
	res, err := Check(ZsetModel, rec.Operations(), 0, viz)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Violation() || res.Ops != len(ins) {
		t.Fatalf("result %+v, want a violation over %d ops", res, len(ins))
	}
	html, err := os.ReadFile(res.Visualization)
	if err != nil || !strings.Contains(string(html), `zset-top(\"z\", 2) -\u003e [a 1]`) {
		t.Fatalf("visualisation %s: %v", res.Visualization, err)
	}
	if strings.Contains(string(html), `\"other\"`) {
		t.Fatal("visualisation shows a key that did not fail")
	}
}

// Without unknown outcomes: a stale Top could hide behind unknown increments that
// never took effect.
func TestCheck_StaleZsetTopsUnderConcurrencyAreCaught(t *testing.T) {
	ops := runZsetClients(newMemZsets(true), 4, 80, 1, false)
	res, err := Check(ZsetModel, ops, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Violation() {
		t.Fatalf("%+v: stale Tops passed", res)
	}
}

func TestSplitZsets(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, 0, 1, set("r", "a"), at(1)),
		op(0, 2, 3, zincr("z", "a", 2), zis(2)),
		op(1, 4, 5, limitCheck("k"), allowed(2)),
		op(1, 6, 7, ztop("z", 1), zlist("a", 2)),
	}
	rest, zsets := SplitZsets(ops)
	if len(rest) != 2 || len(zsets) != 2 {
		t.Fatalf("rest %d, zsets %d", len(rest), len(zsets))
	}
	if !checkModel(t, ZsetModel, zsets) {
		t.Fatal("split history not linearizable")
	}
	if checkModel(t, ZsetModel, ops) {
		t.Fatal("a history with KV and rate-limit operations passes the sorted-set model")
	}
}

// lostIncrementHistory is a long history on one key of members a, b and c: 100 rounds
// of six operations, each lasting overlap (rounds are 10 apart): increments of delta
// (one in five with an unknown outcome, taking effect or not), scores and tops; then a
// Score of a that misses its last acknowledged increment, which makes it not
// linearizable whatever the unknown increments did.
func lostIncrementHistory(delta func(*rand.Rand) int64, overlap int64) []porcupine.Operation {
	rng := rand.New(rand.NewPCG(5, 5))
	var ops []porcupine.Operation
	b := zsetBoard{}
	for r := range int64(100) {
		for c := range 6 { // taking effect in client order, inside overlapping intervals
			call, m := 10*r+int64(c), []string{"a", "b", "c"}[rng.IntN(3)]
			in := zincr("k", m, delta(rng))
			switch rng.IntN(4) {
			case 0:
				in = zscore("k", m)
			case 1:
				in = ztop("k", uint64(1+rng.IntN(3)))
			}
			if in.Op == OpZsetIncrement && rng.IntN(5) == 0 {
				if rng.IntN(2) == 0 {
					b.do(in)
				}
				ops = append(ops, op(c, call, 0, in, unknown))
				continue
			}
			ops = append(ops, op(c, call, call+overlap, in, b.do(in)))
		}
	}
	ops = append(ops, op(0, 2000, 2001, zincr("k", "a", 1), b.do(zincr("k", "a", 1))))
	ops = append(ops, op(1, 2002, 2003, zscore("k", "a"), zfound(b["a"]-1)))
	return ops
}

// TestZsetModel_ManyUnknownsStayQuick: with unknown increments pinned to their calls and
// each member's possibilities kept apart, a long history with many unknown increments
// that loses one acknowledged increment is refuted within the timeout.
func TestZsetModel_ManyUnknownsStayQuick(t *testing.T) {
	ops := lostIncrementHistory(func(r *rand.Rand) int64 { return int64(1 + r.IntN(3)) }, 6)
	unknowns := 0
	for _, op := range ops {
		if op.Output.(Output).Unknown {
			unknowns++
		}
	}
	if unknowns < 40 {
		t.Fatalf("%d unknown outcomes in %d operations", unknowns, len(ops))
	}
	res, err := Check(ZsetModel, ops, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Violation() {
		t.Fatalf("%+v: want a violation found within the timeout", res)
	}
	ops = ops[:len(ops)-1] // without the bad read
	if res, err = Check(ZsetModel, ops, time.Minute, ""); err != nil || !res.Linearizable {
		t.Fatalf("%+v, %v: want the history without the bad read linearizable", res, err)
	}
}
