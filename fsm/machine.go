package fsm

import (
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
)

// Limits the machine enforces on its own bookkeeping.
const (
	// DedupWindow is how long a request id is remembered (by command time).
	DedupWindow int64 = 2 * 60 * 1_000_000_000
	// DedupMaxRecords bounds the dedup table; the oldest records go first.
	DedupMaxRecords = 200_000
	// dedupPrunePerApply bounds the pruning work one apply does.
	dedupPrunePerApply = 64
)

// Machine is the replicated state machine. Apply, Advance and Restore are called only
// from the raft apply goroutine, one at a time; reads may run concurrently with them.
// Two machines given the same sequence of Apply/Advance calls hold identical state and
// produce identical snapshot bytes.
type Machine struct {
	mu      sync.RWMutex
	st      *state
	clock   int64  // max now seen; guarded by mu
	leader  uint64 // term of the last LeaderStart applied; guarded by mu
	applied atomic.Uint64
}

// New returns an empty machine.
func New() *Machine {
	return &Machine{st: newState()}
}

// AppliedIndex is the last raft index handed to the machine.
func (m *Machine) AppliedIndex() uint64 { return m.applied.Load() }

// LeaderStartTerm is the term of the last LeaderStart command applied.
func (m *Machine) LeaderStartTerm() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.leader
}

// Clock is the machine's time: the largest command time applied so far.
func (m *Machine) Clock() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.clock
}

// Advance records index as applied without changing state: raft configuration entries
// and any other entry that carries no command.
func (m *Machine) Advance(index uint64) {
	m.applied.Store(index)
}

// Apply decodes and applies one log entry. It panics if data is not a Command: a replica
// that cannot read its log must stop rather than diverge.
func (m *Machine) Apply(index uint64, data []byte) *fsmv1.Result {
	cmd := &fsmv1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		panic(fmt.Sprintf("fsm: cannot decode command at index %d: %v", index, err))
	}
	return m.ApplyCommand(index, cmd)
}

// ApplyCommand applies one decoded command at the given raft index and returns its result.
// A domain failure is reported in Result.Error and changes nothing but the applied index,
// the clock and the dedup table.
func (m *Machine) ApplyCommand(index uint64, cmd *fsmv1.Command) *fsmv1.Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.applied.Store(index)

	if now := cmd.GetNowUnixNano(); now > m.clock {
		m.clock = now
	}
	now := m.clock
	m.pruneDedup(now)

	id := cmd.GetRequestId()
	if id != "" {
		if rec, ok := m.st.dedup.Get(&dedupRecord{id: id}); ok {
			return rec.result
		}
	}
	res := m.dispatch(index, now, cmd)
	res.Index = index
	// A pop that found nothing changed nothing; forgetting it lets a waiting PopMin try
	// again under the same request id once members arrive.
	if id != "" && !(res.GetZsetPop() != nil && len(res.GetZsetPop().GetMembers()) == 0) {
		m.remember(id, now, res)
	}
	return res
}

// dispatch runs the operation; it fills Result.Error instead of returning an error.
func (m *Machine) dispatch(index uint64, now int64, cmd *fsmv1.Command) *fsmv1.Result {
	res := &fsmv1.Result{}
	var err *Error
	switch op := cmd.GetOp().(type) {
	case *fsmv1.Command_LeaderStart:
		m.leader = max(m.leader, op.LeaderStart.GetTerm())
		if mem := op.LeaderStart.GetMember(); mem.GetId() != "" {
			m.st.members.Set(proto.CloneOf(mem))
		}
	case *fsmv1.Command_MemberPut:
		if op.MemberPut.GetMember().GetId() == "" {
			err = errInvalid(nil, "member id must not be empty")
			break
		}
		m.st.members.Set(proto.CloneOf(op.MemberPut.GetMember()))
	case *fsmv1.Command_MemberRemove:
		m.st.members.Delete(&fsmv1.Member{Id: op.MemberRemove.GetId()})
	case *fsmv1.Command_ExpireDue:
		m.expireDue(index, now, int(op.ExpireDue.GetLimit()))
	case *fsmv1.Command_Set:
		res.Value, err = m.set(m.st, index, now, op.Set)
	case *fsmv1.Command_MultiSet:
		res.Value, err = m.multiSet(index, now, op.MultiSet)
	case *fsmv1.Command_Delete:
		res.Value, err = m.delete(m.st, now, op.Delete)
	case *fsmv1.Command_Increment:
		res.Value, err = m.increment(m.st, index, now, op.Increment)
	case *fsmv1.Command_Expire:
		res.Value, err = m.expire(index, now, op.Expire)
	case *fsmv1.Command_Txn:
		res.Value, err = m.txn(index, now, op.Txn)
	case *fsmv1.Command_SessionCreate:
		res.Value, err = m.sessionCreate(index, now, op.SessionCreate)
	case *fsmv1.Command_SessionRevoke:
		res.Value, err = m.sessionRevoke(index, now, op.SessionRevoke)
	case *fsmv1.Command_SessionRevokeByOwner:
		res.Value = m.sessionRevokeByOwner(index, now, op.SessionRevokeByOwner)
	case *fsmv1.Command_SessionSetAttributes:
		res.Value, err = m.sessionSetAttributes(index, op.SessionSetAttributes)
	case *fsmv1.Command_SessionExpire:
		res.Value = m.sessionExpire(index, now, op.SessionExpire)
	case *fsmv1.Command_LockAcquire:
		res.Value, err = m.lockAcquire(index, now, op.LockAcquire)
	case *fsmv1.Command_LockRelease:
		res.Value, err = m.lockRelease(index, now, op.LockRelease)
	case *fsmv1.Command_LockProclaim:
		res.Value, err = m.lockProclaim(index, op.LockProclaim)
	case *fsmv1.Command_LockCancel:
		res.Value = m.lockCancel(index, now, op.LockCancel)
	case *fsmv1.Command_RateLimitCheck:
		res.Value, err = m.rateLimitCheck(index, now, op.RateLimitCheck)
	case *fsmv1.Command_RateLimitRefund:
		res.Value, err = m.rateLimitRefund(now, op.RateLimitRefund)
	case *fsmv1.Command_PolicyPut:
		res.Value, err = m.policyPut(op.PolicyPut)
	case *fsmv1.Command_PolicyDelete:
		res.Value, err = m.policyDelete(op.PolicyDelete)
	case *fsmv1.Command_ZsetAdd:
		res.Value, err = m.zsetAdd(index, now, op.ZsetAdd)
	case *fsmv1.Command_ZsetIncrement:
		res.Value, err = m.zsetIncrement(index, now, op.ZsetIncrement)
	case *fsmv1.Command_ZsetRemove:
		res.Value, err = m.zsetRemove(index, now, op.ZsetRemove)
	case *fsmv1.Command_ZsetRemoveRange:
		res.Value, err = m.zsetRemoveRange(index, now, op.ZsetRemoveRange)
	case *fsmv1.Command_ZsetPop:
		res.Value, err = m.zsetPop(index, now, op.ZsetPop)
	case *fsmv1.Command_ZsetStore:
		res.Value, err = m.zsetStore(index, now, op.ZsetStore)
	case nil:
		// An empty command only advances the clock.
	default:
		panic(fmt.Sprintf("fsm: unknown command %T at index %d", op, index))
	}
	if err != nil {
		// A failed operation's value (a typed nil) is dropped with res.
		return &fsmv1.Result{Error: err.Proto()}
	}
	return res
}

// remember records a request id's result for DedupWindow.
func (m *Machine) remember(id string, now int64, res *fsmv1.Result) {
	m.st.dedup.Set(&dedupRecord{id: id, at: now, result: res})
	m.st.dedupAges.Set(dedupAge{at: now, id: id})
}

// pruneDedup forgets records older than DedupWindow, and the oldest beyond
// DedupMaxRecords, doing a bounded amount of work per call.
func (m *Machine) pruneDedup(now int64) {
	for range dedupPrunePerApply {
		oldest, ok := m.st.dedupAges.Min()
		if !ok || (now-oldest.at < DedupWindow && m.st.dedupAges.Len() < DedupMaxRecords) {
			return
		}
		m.st.dedupAges.Delete(oldest)
		m.st.dedup.Delete(&dedupRecord{id: oldest.id})
	}
}
