package chaos

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Op is the kind of a recorded KV operation.
type Op uint8

const (
	// OpGet reads a key (LINEARIZABLE, or STALE when Input.Stale).
	OpGet Op = iota + 1
	// OpSet writes Input.Value unconditionally.
	OpSet
	// OpCAS writes Input.Value only if the key's mod_revision equals
	// Input.ExpectRevision (Set with if_revision; 0 means the key must not exist).
	OpCAS
	// OpDelete removes the key.
	OpDelete
	// OpIncrement adds Input.Delta to the key's base-10 integer value (absent = 0).
	OpIncrement
	// OpAcquire tries once (wait_timeout_ms 0) to take the EXCLUSIVE lock Input.Key for
	// session Input.Session.
	OpAcquire
	// OpRelease gives up the lock Input.Key held with fencing token Input.Token.
	OpRelease
	// OpInspect reads the holders of the lock Input.Key (LINEARIZABLE).
	OpInspect
	// OpLimitCheck is a rate-limit Check of Input.Cost (0 means 1) hits on the
	// FIXED_WINDOW limiter Input.Key with limit Input.Limit.
	OpLimitCheck
	// OpLimitPeek is a rate-limit Peek (LINEARIZABLE) of Input.Cost (0 means 1) hits on
	// the FIXED_WINDOW limiter Input.Key with limit Input.Limit: what a Check would say.
	OpLimitPeek
	// OpZsetIncrement is IncrementScore(member, delta) → the new score (zset.go says how
	// the sorted-set ops use Input and Output).
	OpZsetIncrement
	// OpZsetScore is a LINEARIZABLE Score(member) → found, score.
	OpZsetScore
	// OpZsetTop is a LINEARIZABLE Top(count): members highest score first, equal scores
	// by member descending (TIE_BREAK_LEX read from the top, as Redis's ZREVRANGE).
	OpZsetTop
	// OpZsetRemove is Remove(member) → whether it was removed.
	OpZsetRemove
)

var opNames = [...]string{OpGet: "get", OpSet: "set", OpCAS: "cas", OpDelete: "delete", OpIncrement: "increment",
	OpAcquire: "acquire", OpRelease: "release", OpInspect: "inspect", OpLimitCheck: "limit-check", OpLimitPeek: "limit-peek",
	OpZsetIncrement: "zset-increment", OpZsetScore: "zset-score", OpZsetTop: "zset-top", OpZsetRemove: "zset-remove"}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// MarshalText writes the op's name, so recorded histories read as text.
func (o Op) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads an op name written by MarshalText.
func (o *Op) UnmarshalText(b []byte) error {
	for i, name := range opNames {
		if name != "" && name == string(b) {
			*o = Op(i)
			return nil
		}
	}
	return fmt.Errorf("chaos: unknown op %q", b)
}

// Input is what a client asked, one key (or lock name) per operation.
type Input struct {
	Op    Op     `json:"op"`
	Key   string `json:"key"`
	Value string `json:"value,omitempty"` // OpSet, OpCAS
	Delta int64  `json:"delta,omitempty"` // OpIncrement
	// ExpectRevision is OpCAS's if_revision; 0 means the key must not exist.
	ExpectRevision uint64 `json:"expect-revision,omitempty"`
	// Stale marks an OpGet served with CONSISTENCY_STALE: Check leaves it out and
	// CheckStaleReads judges it.
	Stale bool `json:"stale,omitempty"`
	// Session is OpAcquire's session id: a session that already holds the lock is
	// granted its own hold again.
	Session uint64 `json:"session,omitempty"`
	// Token is OpRelease's fencing token.
	Token uint64 `json:"token,omitempty"`
	// Limit is the FIXED_WINDOW policy's limit of OpLimitCheck and OpLimitPeek; every
	// operation on one limiter key must carry the same limit.
	Limit uint64 `json:"limit,omitempty"`
	// Cost is the hits OpLimitCheck asks for (OpLimitPeek: would ask for); 0 means 1.
	Cost uint64 `json:"cost,omitempty"`
}

// Output is what the client saw. Fill only the fields the operation returns:
//
//	OpGet       Found, and when found Value (the stored bytes as a string; counters are
//	            base-10) and Revision (the entry's mod_revision)
//	OpSet       Revision (the written entry's mod_revision)
//	OpCAS       OK (the condition held) and, when OK, Revision
//	OpDelete    Found (deleted > 0) and, optionally, Revision (the response header's
//	            revision, the raft index of the delete; 0 = not known)
//	OpIncrement Counter (the new value) and Revision
//	OpAcquire   OK (granted) and, when granted, Token (the fencing token); OK false is
//	            LOCK_HELD
//	OpRelease   OK (released); OK false is a stale token (Aborted, FENCE_STALE)
//	OpInspect   Holders (how many), and when there is one or more the first holder's
//	            Token and Session
//	OpLimitCheck, OpLimitPeek
//	            OK (the verdict's allowed) and Remaining (the key's verdict's remaining)
//
// A failed condition (FailedPrecondition) is a known outcome with OK false. An operation
// whose outcome the client cannot know (a timeout or Unavailable after the request may
// have been sent) is recorded with Pending.Unknown, never with a guessed Output.
type Output struct {
	Found    bool   `json:"found,omitempty"`
	Value    string `json:"value,omitempty"`
	Revision uint64 `json:"revision,omitempty"`
	OK       bool   `json:"ok,omitempty"`
	Counter  int64  `json:"counter,omitempty"`
	Token    uint64 `json:"token,omitempty"`
	Session  uint64 `json:"session,omitempty"`
	Holders  int    `json:"holders,omitempty"`
	// Remaining is a rate-limit verdict's remaining: after the cost when allowed, as it
	// is when denied.
	Remaining uint64 `json:"remaining,omitempty"`
	// Unknown marks an operation that may or may not have taken effect, at any time
	// after its call; its return time is math.MaxInt64 and every other field is ignored.
	Unknown bool `json:"unknown,omitempty"`
}

// A Recorder collects a history of operations from concurrent clients, timed by a
// monotonic clock started when the Recorder was made. It is safe for concurrent use.
type Recorder struct {
	start time.Time

	mu   sync.Mutex
	ops  []porcupine.Operation
	done []bool
	gone []bool // discarded: definitely without effect
}

// NewRecorder starts an empty history whose clock reads 0 now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// now is nanoseconds since the Recorder started, from the monotonic clock.
func (r *Recorder) now() int64 { return int64(time.Since(r.start)) }

// A Pending is a called operation waiting for its outcome. Exactly one of Return,
// Unknown or Discard should be called; the first call wins and later ones do nothing.
type Pending struct {
	r *Recorder
	i int
}

// Call records that client clientID is about to send in; call it before the request
// leaves. clientID should be small and zero-based (it names a row in the visualisation);
// one client must not have two operations outstanding at once.
func (r *Recorder) Call(clientID int, in Input) *Pending {
	t := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: clientID, Input: in, Call: t})
	r.done = append(r.done, false)
	r.gone = append(r.gone, false)
	return &Pending{r: r, i: len(r.ops) - 1}
}

// Return records the operation's known outcome, timed now.
func (p *Pending) Return(out Output) {
	out.Unknown = false
	p.finish(out, p.r.now())
}

// Unknown records that the operation's outcome is unknown: it may have taken effect at
// any time after its call, or never.
func (p *Pending) Unknown() { p.finish(Output{Unknown: true}, math.MaxInt64) }

// Discard removes the operation from the history: use it only when the operation
// certainly had no effect (rejected before it reached raft, e.g. InvalidArgument, or a
// definite error such as WRONG_TYPE). When in doubt, use Unknown.
func (p *Pending) Discard() {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.r.done[p.i] {
		return
	}
	p.r.done[p.i] = true
	p.r.gone[p.i] = true
}

func (p *Pending) finish(out Output, t int64) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.r.done[p.i] {
		return
	}
	p.r.done[p.i] = true
	p.r.ops[p.i].Output = out
	p.r.ops[p.i].Return = t
}

// Operations is a copy of the history so far, in call order, without discarded
// operations. An operation still waiting for its outcome is reported as unknown.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := make([]porcupine.Operation, 0, len(r.ops))
	for i, op := range r.ops {
		switch {
		case r.gone[i]:
			continue
		case !r.done[i]:
			op.Output = Output{Unknown: true}
			op.Return = math.MaxInt64
		}
		ops = append(ops, op)
	}
	return ops
}

// Len is the number of operations called so far, discarded ones included.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// splitBy splits ops into those whose Op is not picked (rest) and those it is, keeping
// their order.
func splitBy(ops []porcupine.Operation, pick func(Op) bool) (rest, picked []porcupine.Operation) {
	for _, op := range ops {
		if pick(op.Input.(Input).Op) {
			picked = append(picked, op)
		} else {
			rest = append(rest, op)
		}
	}
	return rest, picked
}
