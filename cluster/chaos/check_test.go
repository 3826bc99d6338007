package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/anishathalye/porcupine"
)

// memStore is a linearizable in-memory KV with raft-like revisions: one global index,
// bumped by every write. lagging makes Gets read a copy that is refreshed only every
// other write, which is not linearizable.
type memStore struct {
	mu      sync.Mutex
	index   uint64
	data    map[string]memEntry
	replica map[string]memEntry
	lagging bool
}

type memEntry struct {
	value string
	rev   uint64
}

func newMemStore(lagging bool) *memStore {
	return &memStore{data: map[string]memEntry{}, replica: map[string]memEntry{}, lagging: lagging}
}

// do applies in and returns what a client would see.
func (s *memStore) do(in Input) Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++ // reads take an index too; revisions still strictly increase per key
	e, ok := s.data[in.Key]
	var out Output
	switch in.Op {
	case OpGet:
		if s.lagging {
			e, ok = s.replica[in.Key]
		}
		out = Output{Found: ok, Value: e.value, Revision: e.rev}
		if !ok {
			out = Output{}
		}
		return out
	case OpSet:
		s.data[in.Key] = memEntry{in.Value, s.index}
		out = Output{Revision: s.index}
	case OpCAS:
		cur := uint64(0)
		if ok {
			cur = e.rev
		}
		if cur != in.ExpectRevision {
			return Output{}
		}
		s.data[in.Key] = memEntry{in.Value, s.index}
		out = Output{OK: true, Revision: s.index}
	case OpDelete:
		delete(s.data, in.Key)
		out = Output{Found: ok, Revision: s.index}
	case OpIncrement:
		n, _ := strconv.ParseInt(e.value, 10, 64)
		n += in.Delta
		s.data[in.Key] = memEntry{strconv.FormatInt(n, 10), s.index}
		out = Output{Counter: n, Revision: s.index}
	}
	if s.index%2 == 0 {
		for k := range s.replica {
			delete(s.replica, k)
		}
		for k, v := range s.data {
			s.replica[k] = v
		}
	}
	return out
}

// runClients drives store with clients goroutines of n random operations each over a
// few register and counter keys, recording everything; about one write in ten has its
// outcome recorded as unknown (whether or not it was applied).
func runClients(t *testing.T, store *memStore, clients, n int, seed uint64) []porcupine.Operation {
	t.Helper()
	rec := NewRecorder()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			lastRev := map[string]uint64{}
			for i := range n {
				var in Input
				if rng.IntN(3) == 0 {
					key := "c" + strconv.Itoa(rng.IntN(2))
					in = Input{Op: OpIncrement, Key: key, Delta: int64(rng.IntN(5))}
					if rng.IntN(3) == 0 {
						in = Input{Op: OpGet, Key: key}
					}
				} else {
					key := "r" + strconv.Itoa(rng.IntN(3))
					value := fmt.Sprintf("%d-%d", c, i)
					switch rng.IntN(6) {
					case 0, 1:
						in = Input{Op: OpGet, Key: key, Stale: rng.IntN(4) == 0}
					case 2:
						in = Input{Op: OpSet, Key: key, Value: value}
					case 3, 4:
						in = Input{Op: OpCAS, Key: key, Value: value, ExpectRevision: lastRev[key]}
					case 5:
						in = Input{Op: OpDelete, Key: key}
					}
				}
				p := rec.Call(c, in)
				if in.Op != OpGet && rng.IntN(10) == 0 {
					if rng.IntN(2) == 0 {
						store.do(in)
					}
					p.Unknown()
					continue
				}
				out := store.do(in)
				if in.Op == OpGet && out.Found {
					lastRev[in.Key] = out.Revision
				}
				p.Return(out)
			}
		}()
	}
	wg.Wait()
	return rec.Operations()
}

func TestCheck_RecordedConcurrentHistoryIsLinearizable(t *testing.T) {
	ops := runClients(t, newMemStore(false), 4, 60, 1)
	registers, counters := SplitCounters(ops)
	for name, part := range map[string]struct {
		model porcupine.Model
		ops   []porcupine.Operation
	}{"registers": {RegisterModel, registers}, "counters": {CounterModel, counters}} {
		viz := filepath.Join(t.TempDir(), name+".html")
		res, err := Check(part.model, part.ops, 0, viz)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Linearizable || res.Ops == 0 {
			t.Fatalf("%s: %+v; see %s", name, res, res.Visualization)
		}
	}
	if v := CheckStaleReads(ops); len(v) != 0 {
		t.Fatalf("stale reads: %v", v)
	}
}

func TestCheck_LaggingReadsAreCaughtAndVisualised(t *testing.T) {
	store := newMemStore(true)
	rec := NewRecorder()
	for i, in := range []Input{
		{Op: OpSet, Key: "k", Value: "a"}, // index 1: replica not refreshed
		{Op: OpGet, Key: "k"},             // index 2: reads the old replica: absent
		{Op: OpSet, Key: "other", Value: "x"},
	} {
		rec.Call(i%2, in).Return(store.do(in))
	}
	ops := rec.Operations()
	viz := filepath.Join(t.TempDir(), "out", "viz.html")
	res, err := Check(RegisterModel, ops, 0, viz)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Violation() || res.Ops != 3 {
		t.Fatalf("result %+v, want a violation over 3 ops", res)
	}
	html, err := os.ReadFile(res.Visualization)
	if err != nil || !strings.Contains(string(html), `get(\"k\")`) {
		t.Fatalf("visualisation %s: %v", res.Visualization, err)
	}
	if strings.Contains(string(html), `\"other\"`) {
		t.Fatal("visualisation shows a key that did not fail")
	}
	f, err := os.Open(res.History)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type line struct {
		Client int
		Call   int64
		Return *int64
		Input  Input
		Output Output
	}
	var lines []line
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 3 || lines[1].Input.Op != OpGet || lines[1].Return == nil || lines[1].Output.Found {
		t.Fatalf("history %+v", lines)
	}
}

func TestCheck_NoFilesWhenLinearizable(t *testing.T) {
	viz := filepath.Join(t.TempDir(), "viz.html")
	res, err := Check(RegisterModel, []porcupine.Operation{op(0, 0, 1, set("k", "a"), at(1))}, 0, viz)
	if err != nil || !res.Linearizable || res.Visualization != "" {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, err := os.Stat(viz); !os.IsNotExist(err) {
		t.Fatalf("visualisation written for a linearizable history: %v", err)
	}
}

func TestRecorder(t *testing.T) {
	rec := NewRecorder()
	a := rec.Call(0, set("k", "a"))
	b := rec.Call(1, get("k"))
	c := rec.Call(2, del("k"))
	d := rec.Call(3, set("k", "never"))
	a.Return(at(1))
	a.Unknown() // ignored: the first outcome wins
	b.Return(found("a", 1))
	d.Discard()
	ops := rec.Operations()
	if len(ops) != 3 || rec.Len() != 4 {
		t.Fatalf("%d operations (%d called), want 3 (4)", len(ops), rec.Len())
	}
	if ops[0].Output.(Output) != at(1) || ops[0].Return < ops[0].Call {
		t.Fatalf("first op %+v", ops[0])
	}
	if ops[1].Call < ops[0].Call || ops[1].Return < ops[0].Return {
		t.Fatalf("clock went backwards: %+v then %+v", ops[0], ops[1])
	}
	if !ops[2].Output.(Output).Unknown || ops[2].Return != math.MaxInt64 {
		t.Fatalf("outstanding op %+v, want unknown", ops[2])
	}
	c.Return(deleted)
	if got := rec.Operations()[2]; got.Output.(Output) != deleted {
		t.Fatalf("after Return: %+v", got)
	}
}

func TestCheckStaleReads(t *testing.T) {
	writes := []porcupine.Operation{
		op(0, 0, 1, set("k", "a"), at(1)),
		op(0, 2, 3, set("k", "b"), at(2)),
		op(1, 2, 0, set("k", "maybe"), unknown),
		op(1, 4, 5, cas("k", "refused", 9), failed),
		op(0, 6, 7, incr("n", 2), counter(2, 3)),
		op(0, 8, 0, incr("n", 3), unknown),
	}
	tests := []struct {
		name string
		read porcupine.Operation
		bad  bool
	}{
		{"old value", op(2, 10, 11, staleGet("k"), found("a", 1)), false},
		{"absent", op(2, 10, 11, staleGet("k"), absent), false},
		{"value of an unknown write", op(2, 10, 11, staleGet("k"), found("maybe", 4)), false},
		{"value of a refused swap", op(2, 10, 11, staleGet("k"), found("refused", 5)), false},
		{"never written", op(2, 10, 11, staleGet("k"), found("z", 1)), true},
		{"value of another key", op(2, 10, 11, staleGet("k"), found("2", 3)), true},
		{"revision of another write", op(2, 10, 11, staleGet("k"), found("b", 1)), true},
		{"counter value returned", op(2, 10, 11, staleGet("n"), found("2", 3)), false},
		{"counter value reachable by the unknown increment", op(2, 10, 11, staleGet("n"), found("5", 6)), false},
		{"counter value out of reach", op(2, 10, 11, staleGet("n"), found("6", 6)), true},
		{"linearizable reads are not judged here", op(2, 10, 11, get("k"), found("z", 1)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := CheckStaleReads(append(append([]porcupine.Operation{}, writes...), tt.read))
			if (len(v) > 0) != tt.bad {
				t.Fatalf("violations %q, want bad=%t", v, tt.bad)
			}
		})
	}
}

func TestOp_TextRoundTrip(t *testing.T) {
	for _, o := range []Op{OpGet, OpSet, OpCAS, OpDelete, OpIncrement, OpAcquire, OpRelease, OpInspect} {
		b, _ := o.MarshalText()
		var back Op
		if err := back.UnmarshalText(b); err != nil || back != o {
			t.Fatalf("%v → %s → %v, %v", o, b, back, err)
		}
	}
	var o Op
	if err := o.UnmarshalText([]byte("nope")); err == nil {
		t.Fatal("unknown op name accepted")
	}
}
