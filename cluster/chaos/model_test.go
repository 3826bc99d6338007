package chaos

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

// op builds one history entry tersely; an unknown output gets return time +infinity.
func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	if out.Unknown {
		ret = math.MaxInt64
	}
	return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out}
}

func get(k string) Input      { return Input{Op: OpGet, Key: k} }
func staleGet(k string) Input { return Input{Op: OpGet, Key: k, Stale: true} }
func set(k, v string) Input   { return Input{Op: OpSet, Key: k, Value: v} }
func cas(k, v string, expect uint64) Input {
	return Input{Op: OpCAS, Key: k, Value: v, ExpectRevision: expect}
}
func del(k string) Input           { return Input{Op: OpDelete, Key: k} }
func incr(k string, d int64) Input { return Input{Op: OpIncrement, Key: k, Delta: d} }

func found(v string, rev uint64) Output  { return Output{Found: true, Value: v, Revision: rev} }
func at(rev uint64) Output               { return Output{Revision: rev} }
func casOK(rev uint64) Output            { return Output{OK: true, Revision: rev} }
func counter(n int64, rev uint64) Output { return Output{Counter: n, Revision: rev} }

var (
	absent  = Output{}
	deleted = Output{Found: true}
	failed  = Output{}
	unknown = Output{Unknown: true}
)

func checkModel(t *testing.T, model porcupine.Model, ops []porcupine.Operation) bool {
	t.Helper()
	res, err := Check(model, ops, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.TimedOut {
		t.Fatal("check timed out without a timeout")
	}
	return res.Linearizable
}

func TestRegisterModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"empty", nil, true},
		{"sequential", []porcupine.Operation{
			op(0, 0, 1, get("k"), absent),
			op(0, 2, 3, set("k", "a"), at(5)),
			op(0, 4, 5, get("k"), found("a", 5)),
			op(0, 6, 7, set("k", "b"), at(9)),
			op(0, 8, 9, get("k"), found("b", 9)),
			op(0, 10, 11, del("k"), deleted),
			op(0, 12, 13, get("k"), absent),
			op(0, 14, 15, del("k"), absent),
			op(0, 16, 17, set("k", "c"), at(12)),
			op(0, 18, 19, get("k"), found("c", 12)),
		}, true},
		{"concurrent linearizable", []porcupine.Operation{
			op(0, 0, 10, set("k", "a"), at(3)),
			op(1, 1, 2, get("k"), absent),          // before the set
			op(2, 2, 12, get("k"), found("a", 3)),  // overlaps the set
			op(3, 5, 6, get("k"), absent),          // overlaps, set not yet applied
			op(1, 11, 13, get("k"), found("a", 3)), // after
			op(3, 12, 20, set("k", "b"), at(7)),    // concurrent with the next two
			op(0, 13, 14, get("k"), found("a", 3)), //
			op(2, 15, 16, get("k"), found("b", 7)), //
			op(1, 17, 18, get("k"), found("b", 7)), // once b is seen, never a again
		}, true},
		{"read goes back in time", []porcupine.Operation{
			op(0, 0, 10, set("k", "a"), at(3)),
			op(3, 12, 20, set("k", "b"), at(7)),
			op(2, 15, 16, get("k"), found("b", 7)),
			op(1, 17, 18, get("k"), found("a", 3)),
		}, false},
		{"stale read after a later set returned", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(1)),
			op(0, 2, 3, set("k", "b"), at(2)),
			op(1, 4, 5, get("k"), found("a", 1)),
		}, false},
		{"lost write", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(1)),
			op(1, 2, 3, get("k"), absent),
		}, false},
		{"read of a value never written", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(1)),
			op(1, 2, 3, get("k"), found("z", 1)),
		}, false},
		{"read with the wrong revision", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(5)),
			op(1, 2, 3, get("k"), found("a", 6)),
		}, false},
		{"revision goes backwards", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(5)),
			op(0, 2, 3, set("k", "b"), at(4)),
		}, false},
		{"revision repeats", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(5)),
			op(1, 2, 3, set("k", "b"), at(5)),
		}, false},
		{"revision after a delete at a later index", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(5)),
			op(0, 2, 3, del("k"), Output{Found: true, Revision: 9}),
			op(0, 4, 5, set("k", "b"), at(8)),
		}, false},
		{"delete of an absent key said deleted", []porcupine.Operation{
			op(0, 0, 1, del("k"), deleted),
		}, false},
		{"keys are independent", []porcupine.Operation{
			op(0, 0, 1, set("x", "a"), at(5)),
			op(0, 2, 3, set("y", "b"), at(2)),
			op(0, 4, 5, get("x"), found("a", 5)),
			op(0, 6, 7, get("y"), found("b", 2)),
		}, true},
		{"stale and unknown reads are not judged", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(1)),
			op(0, 2, 3, set("k", "b"), at(2)),
			op(1, 4, 5, staleGet("k"), found("a", 1)),
			op(1, 6, 0, get("k"), unknown),
		}, true},
		{"increment is not a register op", []porcupine.Operation{
			op(0, 0, 1, incr("k", 1), counter(1, 1)),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkModel(t, RegisterModel, tt.ops); got != tt.want {
				t.Fatalf("linearizable = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestRegisterModel_CAS(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"create, swap, refuse stale expectations", []porcupine.Operation{
			op(0, 0, 1, cas("k", "a", 0), casOK(3)),
			op(0, 2, 3, cas("k", "x", 0), failed), // exists now
			op(0, 4, 5, cas("k", "b", 3), casOK(4)),
			op(0, 6, 7, cas("k", "x", 3), failed), // revision moved on
			op(0, 8, 9, get("k"), found("b", 4)),
			op(0, 10, 11, del("k"), deleted),
			op(0, 12, 13, cas("k", "x", 4), failed), // gone
			op(0, 14, 15, cas("k", "c", 0), casOK(8)),
			op(0, 16, 17, get("k"), found("c", 8)),
		}, true},
		{"two concurrent swaps from the same revision, one wins", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(2)),
			op(1, 2, 10, cas("k", "b", 2), casOK(3)),
			op(2, 2, 10, cas("k", "c", 2), failed),
			op(0, 11, 12, get("k"), found("b", 3)),
		}, true},
		{"two swaps from the same revision both win", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(2)),
			op(1, 2, 10, cas("k", "b", 2), casOK(3)),
			op(2, 2, 10, cas("k", "c", 2), casOK(4)),
		}, false},
		{"swap fails although the revision matched", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(2)),
			op(0, 2, 3, cas("k", "b", 2), failed),
		}, false},
		{"create succeeds over an existing key", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(2)),
			op(0, 2, 3, cas("k", "b", 0), casOK(3)),
		}, false},
		{"swap reveals the revision of an unknown write", []porcupine.Operation{
			op(0, 0, 0, set("k", "a"), unknown),
			op(1, 5, 6, cas("k", "b", 4), casOK(6)),
			op(1, 7, 8, get("k"), found("b", 6)),
		}, true},
		{"swap expects a revision older than the last known", []porcupine.Operation{
			op(0, 0, 1, set("k", "a"), at(5)),
			op(1, 2, 0, set("k", "b"), unknown),
			op(1, 10, 11, cas("k", "c", 4), casOK(12)),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkModel(t, RegisterModel, tt.ops); got != tt.want {
				t.Fatalf("linearizable = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestRegisterModel_UnknownOutcomes(t *testing.T) {
	base := []porcupine.Operation{
		op(0, 0, 1, set("k", "a"), at(1)),
		op(1, 2, 0, set("k", "b"), unknown),
		op(2, 3, 0, cas("k", "c", 1), unknown),
		op(3, 4, 0, del("k"), unknown),
	}
	tests := []struct {
		name  string
		after []porcupine.Operation
		want  bool
	}{
		{"none took effect", []porcupine.Operation{
			op(0, 10, 11, get("k"), found("a", 1)),
		}, true},
		{"the set took effect", []porcupine.Operation{
			op(0, 10, 11, get("k"), found("b", 7)),
		}, true},
		{"the swap took effect", []porcupine.Operation{
			op(0, 10, 11, get("k"), found("c", 3)),
		}, true},
		{"the delete took effect", []porcupine.Operation{
			op(0, 10, 11, get("k"), absent),
		}, true},
		{"the set took effect late", []porcupine.Operation{
			op(0, 10, 11, get("k"), found("a", 1)),
			op(0, 12, 13, get("k"), found("b", 9)),
		}, true},
		{"a value seen, then an older one", []porcupine.Operation{
			op(0, 10, 11, get("k"), found("b", 7)),
			op(0, 12, 13, get("k"), found("a", 1)),
		}, false},
		{"an unknown write with a revision not above the last", []porcupine.Operation{
			op(0, 10, 11, get("k"), found("b", 1)),
		}, false},
		{"a value nobody wrote", []porcupine.Operation{
			op(0, 10, 11, get("k"), found("z", 8)),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := append(append([]porcupine.Operation{}, base...), tt.after...)
			if got := checkModel(t, RegisterModel, ops); got != tt.want {
				t.Fatalf("linearizable = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestCounterModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"sequential", []porcupine.Operation{
			op(0, 0, 1, get("c"), absent),
			op(0, 2, 3, incr("c", 1), counter(1, 2)),
			op(0, 4, 5, incr("c", 5), counter(6, 3)),
			op(0, 6, 7, get("c"), found("6", 3)),
			op(0, 8, 9, incr("c", -7), counter(-1, 4)),
			op(0, 10, 11, del("c"), deleted),
			op(0, 12, 13, incr("c", 2), counter(2, 6)),
		}, true},
		{"concurrent increments", []porcupine.Operation{
			op(0, 0, 10, incr("c", 1), counter(2, 5)),
			op(1, 0, 10, incr("c", 1), counter(1, 4)),
			op(2, 0, 0, incr("c", 10), unknown),
			op(0, 11, 12, get("c"), found("2", 5)),
			op(0, 13, 14, get("c"), found("12", 9)), // the unknown one landed late
		}, true},
		{"lost increment", []porcupine.Operation{
			op(0, 0, 1, incr("c", 1), counter(1, 1)),
			op(1, 2, 3, incr("c", 1), counter(2, 2)),
			op(0, 4, 5, get("c"), found("1", 1)),
		}, false},
		{"two increments see the same value", []porcupine.Operation{
			op(0, 0, 10, incr("c", 1), counter(1, 1)),
			op(1, 0, 10, incr("c", 1), counter(1, 2)),
		}, false},
		{"increment revision goes backwards", []porcupine.Operation{
			op(0, 0, 1, incr("c", 1), counter(1, 5)),
			op(0, 2, 3, incr("c", 1), counter(2, 3)),
		}, false},
		{"unknown increment read as applied twice", []porcupine.Operation{
			op(0, 0, 0, incr("c", 1), unknown),
			op(1, 5, 6, get("c"), found("2", 3)),
		}, false},
		{"set is not a counter op", []porcupine.Operation{
			op(0, 0, 1, set("c", "1"), at(1)),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkModel(t, CounterModel, tt.ops); got != tt.want {
				t.Fatalf("linearizable = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestSplitCounters(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, 0, 1, set("r", "a"), at(1)),
		op(0, 2, 3, get("c"), absent),
		op(0, 4, 5, incr("c", 1), counter(1, 2)),
		op(0, 6, 7, get("r"), found("a", 1)),
	}
	registers, counters := SplitCounters(ops)
	if len(registers) != 2 || len(counters) != 2 {
		t.Fatalf("registers %d, counters %d", len(registers), len(counters))
	}
	if !checkModel(t, RegisterModel, registers) || !checkModel(t, CounterModel, counters) {
		t.Fatal("split history not linearizable")
	}
}
