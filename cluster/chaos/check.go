package chaos

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

// Result is the outcome of Check.
type Result struct {
	// Linearizable is true only when porcupine proved the history linearizable.
	Linearizable bool
	// TimedOut is true when the check ran out of time without finding a violation: the
	// history is neither proven linearizable nor shown not to be.
	TimedOut bool
	// Ops is the number of operations checked (stale and unknown-outcome reads are left
	// out).
	Ops int
	// Visualization and History name the files written on a violation (empty otherwise).
	Visualization string
	History       string
}

// Violation reports whether the check found the history not linearizable.
func (r Result) Violation() bool { return !r.Linearizable && !r.TimedOut }

// Check checks ops for linearizability against model within timeout (0 = none). Reads
// with Input.Stale, and reads (Get, Inspect, rate-limit Peek) whose outcome is unknown,
// are left out: the first are judged by CheckStaleReads, the second constrain nothing.
//
// On a violation, when vizPath is not empty, it writes porcupine's HTML visualisation of
// the failing partitions (keys) to vizPath and the whole history, one JSON object per
// line, to vizPath+".history.jsonl", and names both in the Result.
func Check(model porcupine.Model, ops []porcupine.Operation, timeout time.Duration, vizPath string) (Result, error) {
	checked := checkable(ops)
	res := Result{Ops: len(checked)}
	switch porcupine.CheckOperationsTimeout(model, checked, timeout) {
	case porcupine.Ok:
		res.Linearizable = true
		return res, nil
	case porcupine.Unknown:
		res.TimedOut = true
		return res, nil
	}
	if vizPath == "" {
		return res, nil
	}
	if err := os.MkdirAll(filepath.Dir(vizPath), 0o755); err != nil {
		return res, err
	}
	res.History = vizPath + ".history.jsonl"
	if err := WriteHistory(res.History, ops); err != nil {
		return res, err
	}
	_, info := porcupine.CheckOperationsVerbose(model, failing(model, checked, timeout), timeout)
	if err := porcupine.VisualizePath(model, info, vizPath); err != nil {
		return res, fmt.Errorf("chaos: visualise: %w", err)
	}
	res.Visualization = vizPath
	return res, nil
}

// checkable drops the operations Check does not judge: stale reads and reads (Get,
// Inspect, rate-limit Peek) with an unknown outcome.
func checkable(ops []porcupine.Operation) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if in, ok := op.Input.(Input); ok && (in.Op == OpGet || in.Op == OpInspect || in.Op == OpLimitPeek) {
			if in.Stale || op.Output.(Output).Unknown {
				continue
			}
		}
		out = append(out, op)
	}
	return out
}

// failing returns the operations of the model's partitions that are not linearizable
// on their own, so the visualisation shows only what failed. If the model has no
// partition function, or none fails alone within timeout (all partitions together), it
// returns ops.
func failing(model porcupine.Model, ops []porcupine.Operation, timeout time.Duration) []porcupine.Operation {
	if model.Partition == nil {
		return ops
	}
	deadline := time.Now().Add(timeout)
	var bad []porcupine.Operation
	for _, part := range model.Partition(ops) {
		left := time.Duration(0) // none: no timeout
		if timeout > 0 {
			if left = time.Until(deadline); left <= 0 {
				break
			}
		}
		if porcupine.CheckOperationsTimeout(model, part, left) == porcupine.Illegal {
			bad = append(bad, part...)
		}
	}
	if len(bad) == 0 {
		return ops
	}
	return bad
}

// historyLine is one operation in a written history; Return is absent for unknown
// outcomes.
type historyLine struct {
	Client int    `json:"client"`
	Call   int64  `json:"call"`
	Return *int64 `json:"return,omitempty"`
	Input  any    `json:"input"`
	Output any    `json:"output"`
}

// WriteHistory writes ops to path as JSON lines in call order, times in nanoseconds
// since the recorder started.
func WriteHistory(path string, ops []porcupine.Operation) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	sorted := slices.Clone(ops)
	slices.SortStableFunc(sorted, func(a, b porcupine.Operation) int {
		return cmp.Compare(a.Call, b.Call)
	})
	for _, op := range sorted {
		line := historyLine{Client: op.ClientId, Call: op.Call, Input: op.Input, Output: op.Output}
		if op.Return != math.MaxInt64 {
			line.Return = &op.Return
		}
		if err := enc.Encode(line); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SplitCounters splits a history by key into registers (keys never incremented) and
// counters (keys with at least one Increment), for RegisterModel and CounterModel.
func SplitCounters(ops []porcupine.Operation) (registers, counters []porcupine.Operation) {
	isCounter := make(map[string]bool)
	for _, op := range ops {
		if in := op.Input.(Input); in.Op == OpIncrement {
			isCounter[in.Key] = true
		}
	}
	for _, op := range ops {
		if isCounter[op.Input.(Input).Key] {
			counters = append(counters, op)
		} else {
			registers = append(registers, op)
		}
	}
	return registers, counters
}

// CheckStaleReads checks the reads marked Input.Stale, which need not be linearizable
// but must never invent data: a stale read that found a value must return one that some
// Set or CAS on that key wrote (whatever its outcome, unknown included) or that some
// Increment could have produced, and when a write with a known outcome got the read's
// revision, the read's value must be that write's. It returns one description per
// violation; none means the stale reads are sound.
func CheckStaleReads(ops []porcupine.Operation) []string {
	type keyWrites struct {
		values     map[string]bool   // values some Set/CAS/Increment wrote
		byRev      map[uint64]string // known revision → value written
		lo, hi     int64             // bounds of any sum of increment deltas
		unknownInc bool              // an Increment's outcome is unknown
	}
	keys := make(map[string]*keyWrites)
	get := func(key string) *keyWrites {
		k, ok := keys[key]
		if !ok {
			k = &keyWrites{values: make(map[string]bool), byRev: make(map[uint64]string)}
			keys[key] = k
		}
		return k
	}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		k := get(in.Key)
		switch in.Op {
		case OpSet, OpCAS:
			k.values[in.Value] = true
			if !out.Unknown && (in.Op == OpSet || out.OK) && out.Revision != 0 {
				k.byRev[out.Revision] = in.Value
			}
		case OpIncrement:
			if in.Delta < 0 {
				k.lo = satAdd(k.lo, in.Delta)
			} else {
				k.hi = satAdd(k.hi, in.Delta)
			}
			if out.Unknown {
				k.unknownInc = true
				continue
			}
			v := strconv.FormatInt(out.Counter, 10)
			k.values[v] = true
			if out.Revision != 0 {
				k.byRev[out.Revision] = v
			}
		}
	}
	var violations []string
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Op != OpGet || !in.Stale || out.Unknown || !out.Found {
			continue
		}
		k := get(in.Key)
		desc := DescribeOperation(in, out)
		if v, ok := k.byRev[out.Revision]; ok && v != out.Value {
			violations = append(violations, fmt.Sprintf("%s (client %d): revision %d wrote %q", desc, op.ClientId, out.Revision, v))
			continue
		}
		if k.values[out.Value] {
			continue
		}
		if n, err := strconv.ParseInt(out.Value, 10, 64); err == nil && k.unknownInc && n >= k.lo && n <= k.hi {
			continue
		}
		violations = append(violations, fmt.Sprintf("%s (client %d): value never written", desc, op.ClientId))
	}
	return violations
}

// satAdd is a + b, saturating at the int64 bounds.
func satAdd(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}
