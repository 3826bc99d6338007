package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// defaultSeed is used unless SEED is set; every test that uses it logs the seed.
const defaultSeed = 20260417

func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(defaultSeed)
	if v := os.Getenv("SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("SEED=%d (set SEED to replay)", seed)
	return seed
}

// logEntry is one raft log entry: a command, or (cmd == nil) a configuration entry that
// the machine only records with Advance.
type logEntry struct {
	index uint64
	cmd   *fsmv1.Command
	data  []byte
}

// apply hands e to m the way the cluster does; it returns nil for a configuration entry.
func (e logEntry) apply(m *fsm.Machine) *fsmv1.Result {
	if e.cmd == nil {
		m.Advance(e.index)
		return nil
	}
	return m.Apply(e.index, e.data)
}

// opKind names a command's operation for statistics.
func opKind(c *fsmv1.Command) string {
	if c == nil {
		return "config"
	}
	if c.GetOp() == nil {
		return "empty"
	}
	if c.GetSet().GetSessionId() != 0 {
		return "SetInSession"
	}
	return fmt.Sprintf("%T", c.GetOp())[len("*fsmv1.Command_"):]
}

// gen produces a random but reproducible log over a small key space: every op kind, times
// that sometimes go backwards or jump past the dedup window, repeated request ids, and
// conditions that refer to recent revisions so that they sometimes hold.
type gen struct {
	r        *rand.Rand
	index    uint64
	now      int64
	ids      []string
	sessions []uint64  // indexes of valid SessionCreate commands (retried ones never existed)
	acquires []lockRef // LockAcquire commands: their index is the token of those granted at once
	// followUp is an acquire whose hold, if granted at once, the next lock command
	// proclaims (or, with release set, releases): pairs that succeed often enough.
	followUp *lockRef
	release  bool
	checks   []uint64 // indexes of rate-limit Checks: the slots they may have acquired
}

type lockRef struct {
	name  string
	index uint64
}

func genLog(seed uint64, n int) []logEntry {
	g := &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: t0}
	out := make([]logEntry, 0, n)
	for range n {
		g.index += 1 + uint64(g.r.IntN(2)) // raft indexes may skip (entries of other kinds)
		if g.r.IntN(25) == 0 {
			out = append(out, logEntry{index: g.index})
			continue
		}
		c := g.command()
		data, err := proto.Marshal(c)
		if err != nil {
			panic(err)
		}
		out = append(out, logEntry{index: g.index, cmd: c, data: data})
	}
	return out
}

func (g *gen) key() string {
	if g.r.IntN(4) == 0 {
		return "c" + strconv.Itoa(g.r.IntN(3)) // counters
	}
	return "k" + strconv.Itoa(g.r.IntN(10))
}

func (g *gen) value() []byte {
	values := []string{"", "0", "1", "-7", "42", "v", "abc", "9223372036854775807", "-9223372036854775808"}
	return []byte(values[g.r.IntN(len(values))])
}

func (g *gen) ttl() int64 {
	switch g.r.IntN(10) {
	case 0, 1, 2:
		return 1 + g.r.Int64N(3000)
	case 3:
		if g.r.IntN(5) == 0 {
			return -1 // invalid
		}
	}
	return 0
}

func (g *gen) revision() *uint64 {
	if g.r.IntN(3) != 0 {
		return nil
	}
	rev := uint64(0)
	if g.r.IntN(4) != 0 && g.index > 1 {
		rev = g.index - 1 - uint64(g.r.IntN(int(min(g.index-1, 30))))
	}
	return &rev
}

func (g *gen) delta() int64 {
	switch g.r.IntN(12) {
	case 0:
		return math.MaxInt64
	case 1:
		return math.MinInt64
	}
	return g.r.Int64N(21) - 10
}

func (g *gen) command() *fsmv1.Command {
	// Time mostly moves forward a little; sometimes a command carries an earlier time
	// (another leader's clock), and sometimes time jumps past the dedup window.
	switch g.r.IntN(400) {
	case 0:
		g.now += fsm.DedupWindow / 2
	default:
		g.now += g.r.Int64N(300 * ms)
	}
	now := g.now
	if g.r.IntN(8) == 0 {
		now -= g.r.Int64N(2 * s)
	}
	c := &fsmv1.Command{NowUnixNano: now}
	if g.r.IntN(10) < 3 {
		if len(g.ids) > 0 && g.r.IntN(3) == 0 {
			// mostly a recent id (a retry), sometimes one long forgotten
			recent := g.ids[max(0, len(g.ids)-20):]
			c.RequestId = recent[g.r.IntN(len(recent))]
			if g.r.IntN(10) == 0 {
				c.RequestId = g.ids[g.r.IntN(len(g.ids))]
			}
		} else {
			c.RequestId = "req-" + strconv.FormatUint(g.index, 10)
			g.ids = append(g.ids, c.RequestId)
		}
	}
	if g.r.IntN(100) < 14 {
		g.session(c)
		return c
	}
	if g.r.IntN(100) < 14 {
		g.rateLimit(c)
		return c
	}
	if g.r.IntN(100) < 16 {
		g.zset(c)
		return c
	}
	switch w := g.r.IntN(100); {
	case w < 22:
		c.Op = &fsmv1.Command_Set{Set: g.set()}
	case w < 27:
		req := &conclavev1.MultiSetRequest{}
		for range 1 + g.r.IntN(3) {
			req.Entries = append(req.Entries, &conclavev1.KeyValueInput{Key: []byte(g.key()), Value: g.value(), TtlMs: g.ttl()})
		}
		if g.r.IntN(15) == 0 {
			req.Entries = append(req.Entries, &conclavev1.KeyValueInput{Value: g.value()}) // invalid
		}
		c.Op = &fsmv1.Command_MultiSet{MultiSet: req}
	case w < 37:
		c.Op = &fsmv1.Command_Delete{Delete: g.delete()}
	case w < 52:
		c.Op = &fsmv1.Command_Increment{Increment: g.increment()}
	case w < 62:
		req := &conclavev1.ExpireRequest{Key: []byte(g.key()), Condition: conclavev1.ExpireCondition(g.r.IntN(5))}
		if g.r.IntN(6) == 0 {
			req.Persist = true
		} else {
			req.TtlMs = g.r.Int64N(5000) + 1
			if g.r.IntN(15) == 0 {
				req.TtlMs = -g.r.Int64N(2) // invalid
			}
		}
		c.Op = &fsmv1.Command_Expire{Expire: req}
	case w < 78:
		c.Op = &fsmv1.Command_Txn{Txn: g.txn()}
	case w < 88:
		c.Op = &fsmv1.Command_ExpireDue{ExpireDue: &fsmv1.ExpireDue{Limit: uint32(g.r.IntN(6))}}
	case w < 91:
		c.Op = &fsmv1.Command_LeaderStart{LeaderStart: &fsmv1.LeaderStart{Term: uint64(g.r.IntN(10)), Member: g.member()}}
	case w < 95:
		c.Op = &fsmv1.Command_MemberPut{MemberPut: &fsmv1.MemberPut{Member: g.member()}}
	case w < 98:
		c.Op = &fsmv1.Command_MemberRemove{MemberRemove: &fsmv1.MemberRemove{Id: g.member().GetId()}}
	default:
		// an empty command: only the clock moves
	}
	return c
}

// zset makes a sorted-set command, mostly on keys z0..z2, sometimes on a string key.
func (g *gen) zset(c *fsmv1.Command) {
	key := func() []byte {
		if g.r.IntN(8) == 0 {
			return []byte(g.key())
		}
		return []byte("z" + strconv.Itoa(g.r.IntN(3)))
	}
	member := func() string { return "m" + strconv.Itoa(g.r.IntN(8)) }
	score := func() float64 {
		switch g.r.IntN(30) {
		case 0:
			return math.Inf(1)
		case 1:
			return math.Inf(-1)
		case 2:
			return math.Copysign(0, -1)
		case 3:
			return math.NaN() // invalid
		}
		return float64(g.r.IntN(7)) - 2
	}
	score2 := func() *conclavev1.ScoreBound {
		if g.r.IntN(4) == 0 {
			return nil
		}
		return &conclavev1.ScoreBound{Score: float64(g.r.IntN(7)) - 2, Exclusive: g.r.IntN(2) == 0}
	}
	lex := func() *conclavev1.LexBound {
		if g.r.IntN(4) == 0 {
			return nil
		}
		return &conclavev1.LexBound{Member: member(), Exclusive: g.r.IntN(2) == 0}
	}
	tie := conclavev1.TieBreak(g.r.IntN(4))
	switch w := g.r.IntN(100); {
	case w < 40:
		req := &conclavev1.AddRequest{Key: key(), TieBreak: tie, TtlMs: g.ttl()}
		for range 1 + g.r.IntN(3) {
			req.Members = append(req.Members, &conclavev1.ScoredMember{Member: member(), Score: score()})
		}
		switch g.r.IntN(8) {
		case 0:
			req.IfAbsent = true
		case 1:
			req.IfPresent = true
		case 2:
			req.OnlyGreater = true
		case 3:
			req.OnlyLess = true
		case 4:
			req.Increment = true
			req.Members = req.Members[:1+g.r.IntN(len(req.Members))] // sometimes invalid
		}
		c.Op = &fsmv1.Command_ZsetAdd{ZsetAdd: req}
	case w < 60:
		c.Op = &fsmv1.Command_ZsetIncrement{ZsetIncrement: &conclavev1.IncrementScoreRequest{
			Key: key(), Member: member(), Delta: score(), TieBreak: tie, TtlMs: g.ttl()}}
	case w < 70:
		c.Op = &fsmv1.Command_ZsetRemove{ZsetRemove: &conclavev1.SortedSetServiceRemoveRequest{Key: key(), Members: []string{member(), member()}}}
	case w < 80:
		req := &conclavev1.RemoveRangeRequest{Key: key()}
		switch g.r.IntN(3) {
		case 0:
			req.Interval = &conclavev1.RemoveRangeRequest_Rank{Rank: &conclavev1.RankInterval{Start: g.r.Int64N(7) - 3, Stop: g.r.Int64N(7) - 3}}
		case 1:
			req.Interval = &conclavev1.RemoveRangeRequest_Score{Score: &conclavev1.ScoreInterval{Min: score2(), Max: score2()}}
		default:
			req.Interval = &conclavev1.RemoveRangeRequest_Lex{Lex: &conclavev1.LexInterval{Min: lex(), Max: lex()}}
		}
		c.Op = &fsmv1.Command_ZsetRemoveRange{ZsetRemoveRange: req}
	case w < 90:
		c.Op = &fsmv1.Command_ZsetPop{ZsetPop: &fsmv1.ZsetPop{Key: key(), Count: g.r.Int64N(4), Max: g.r.IntN(2) == 0}}
	default:
		req := &fsmv1.ZsetStore{Op: fsmv1.ZsetStoreOp(1 + g.r.IntN(3)), Destination: key(), Aggregate: conclavev1.Aggregate(g.r.IntN(4)), TieBreak: tie}
		for range 1 + g.r.IntN(3) {
			req.Keys = append(req.Keys, key())
		}
		if g.r.IntN(2) == 0 {
			for range req.Keys {
				req.Weights = append(req.Weights, score())
			}
		}
		c.Op = &fsmv1.Command_ZsetStore{ZsetStore: req}
	}
}

func (g *gen) member() *fsmv1.Member {
	if g.r.IntN(8) == 0 {
		return &fsmv1.Member{} // no id
	}
	n := strconv.Itoa(g.r.IntN(4))
	return &fsmv1.Member{Id: "n" + n, RaftAddress: "10.0.0." + n + ":7000", GrpcAddress: "10.0.0." + n + ":" + strconv.Itoa(8000+g.r.IntN(3))}
}

func (g *gen) set() *conclavev1.SetRequest {
	req := &conclavev1.SetRequest{
		Key: []byte(g.key()), Value: g.value(), TtlMs: g.ttl(),
		IfAbsent: g.r.IntN(8) == 0, IfPresent: g.r.IntN(8) == 0, IfRevision: g.revision(),
		KeepTtl: g.r.IntN(4) == 0, ReturnPrevious: g.r.IntN(2) == 0,
	}
	if g.r.IntN(3) == 0 {
		req.SessionId = g.sessionID()
	}
	return req
}

// sessionID is mostly a recently created session (which may since have ended), sometimes
// an id that was never a session.
func (g *gen) sessionID() uint64 {
	if len(g.sessions) > 0 && g.r.IntN(5) != 0 {
		recent := g.sessions[max(0, len(g.sessions)-8):]
		return recent[g.r.IntN(len(recent))]
	}
	return g.index + 1 + uint64(g.r.IntN(3)) // a future index: never a session yet
}

func (g *gen) owner() string { return "o" + strconv.Itoa(g.r.IntN(3)) }

func (g *gen) attributes() []*fsmv1.Attribute {
	var out []*fsmv1.Attribute
	for range g.r.IntN(3) {
		out = append(out, &fsmv1.Attribute{Name: string(rune('a' + g.r.IntN(4))), Value: g.value()})
	}
	return out // sometimes a repeated name: invalid
}

// lock makes c a lock acquire, release or cancel, on a few names, with tokens and
// waiter ids drawn from recent indexes (so sometimes valid, sometimes stale).
func (g *gen) lock(c *fsmv1.Command) {
	name := string(rune('A' + g.r.IntN(3)))
	recent := func() uint64 { return g.index - uint64(g.r.IntN(int(min(g.index, 40)))) }
	if ref := g.followUp; ref != nil {
		g.followUp = nil
		if g.release {
			c.Op = &fsmv1.Command_LockRelease{LockRelease: &fsmv1.LockRelease{Name: ref.name, Token: ref.index}}
		} else {
			c.Op = &fsmv1.Command_LockProclaim{LockProclaim: &fsmv1.LockProclaim{Name: ref.name, Token: ref.index, Value: g.value()}}
		}
		return
	}
	switch w := g.r.IntN(100); {
	case w < 55:
		op := &fsmv1.LockAcquire{Name: name, SessionId: g.sessionID(), Wait: g.r.IntN(2) == 0, Value: g.value()}
		if name == "C" { // a semaphore of 2, sometimes asked with the wrong limit
			op.Mode, op.Limit = fsmv1.LockMode_LOCK_MODE_SHARED, 2
			if g.r.IntN(10) == 0 {
				op.Limit = 3
			}
		} else if g.r.IntN(3) == 0 {
			op.Mode = fsmv1.LockMode_LOCK_MODE_SHARED
		}
		ref := lockRef{name, g.index}
		g.acquires = append(g.acquires, ref)
		if w := g.r.IntN(8); w < 4 {
			g.followUp, g.release = &ref, w == 0
		}
		c.Op = &fsmv1.Command_LockAcquire{LockAcquire: op}
	case w < 85:
		token := recent()
		if n := len(g.acquires); n > 0 && g.r.IntN(4) > 0 {
			ref := g.acquires[n-1] // the latest acquire is the likeliest still held
			if g.r.IntN(3) == 0 {
				ref = g.acquires[g.r.IntN(n)]
			}
			name, token = ref.name, ref.index
		}
		c.Op = &fsmv1.Command_LockRelease{LockRelease: &fsmv1.LockRelease{Name: name, Token: token}}
	case w < 90:
		c.Op = &fsmv1.Command_LockProclaim{LockProclaim: &fsmv1.LockProclaim{Name: name, Token: recent(), Value: g.value()}}
	default:
		c.Op = &fsmv1.Command_LockCancel{LockCancel: &fsmv1.LockCancel{Name: name, Waiter: recent()}}
	}
}

// session makes c one of the five session commands, or (two times in five) a lock
// command.
func (g *gen) session(c *fsmv1.Command) {
	if g.r.IntN(5) < 2 {
		g.lock(c)
		return
	}
	switch w := g.r.IntN(100); {
	case w < 35:
		op := &fsmv1.SessionCreate{Owner: g.owner(), TtlMs: 1 + g.r.Int64N(10_000), Attributes: g.attributes()}
		if g.r.IntN(3) == 0 {
			op.LockDelayMs = g.r.Int64N(5_000)
		}
		if g.r.IntN(4) == 0 {
			op.MaxLifetimeMs = g.r.Int64N(60_000)
		}
		switch g.r.IntN(20) {
		case 0:
			op.TtlMs = -g.r.Int64N(2) // invalid
		case 1:
			op.MaxLifetimeMs = -1 // invalid
		}
		g.sessions = append(g.sessions, g.index)
		c.Op = &fsmv1.Command_SessionCreate{SessionCreate: op}
	case w < 55:
		c.Op = &fsmv1.Command_SessionRevoke{SessionRevoke: &fsmv1.SessionRevoke{Id: g.sessionID()}}
	case w < 62:
		c.Op = &fsmv1.Command_SessionRevokeByOwner{SessionRevokeByOwner: &fsmv1.SessionRevokeByOwner{Owner: g.owner()}}
	case w < 85:
		op := &fsmv1.SessionSetAttributes{Id: g.sessionID(), Set: g.attributes()}
		for range g.r.IntN(3) {
			op.Delete = append(op.Delete, string(rune('a'+g.r.IntN(5))))
		}
		c.Op = &fsmv1.Command_SessionSetAttributes{SessionSetAttributes: op}
	default:
		op := &fsmv1.SessionExpire{}
		for range g.r.IntN(4) {
			op.Ids = append(op.Ids, g.sessionID())
		}
		c.Op = &fsmv1.Command_SessionExpire{SessionExpire: op}
	}
}

// rateLimit makes c a rate-limit command — mostly Checks, some Refunds (releasing slots
// of recent Checks), policy puts and deletes — on six keys and three policy names, with
// limits low enough that Checks are often denied.
func (g *gen) rateLimit(c *fsmv1.Command) {
	switch w := g.r.IntN(100); {
	case w < 60:
		g.checks = append(g.checks, g.index)
		c.Op = &fsmv1.Command_RateLimitCheck{RateLimitCheck: &conclavev1.CheckRequest{Keys: g.rlKeys(false), Partial: g.r.IntN(3) == 0}}
	case w < 75:
		c.Op = &fsmv1.Command_RateLimitRefund{RateLimitRefund: &conclavev1.RefundRequest{Keys: g.rlKeys(true)}}
	case w < 92:
		p := g.rlPolicy()
		p.Name = "p" + strconv.Itoa(g.r.IntN(3))
		if g.r.IntN(25) == 0 {
			p.Name = "" // invalid
		}
		c.Op = &fsmv1.Command_PolicyPut{PolicyPut: &conclavev1.PutPolicyRequest{Policy: p}}
	default:
		c.Op = &fsmv1.Command_PolicyDelete{PolicyDelete: &conclavev1.DeletePolicyRequest{Name: "p" + strconv.Itoa(g.r.IntN(4))}}
	}
}

func (g *gen) rlPolicy() *conclavev1.RateLimitPolicy {
	p := &conclavev1.RateLimitPolicy{
		Algorithm: conclavev1.RateLimitAlgorithm(g.r.IntN(5)),
		Limit:     1 + uint64(g.r.IntN(4)),
		PeriodMs:  500 + int64(g.r.IntN(3))*1000,
	}
	if g.r.IntN(3) == 0 {
		p.Burst = uint64(g.r.IntN(5))
	}
	p.ShadowMode = g.r.IntN(8) == 0
	if g.r.IntN(30) == 0 {
		p.Limit = 0 // invalid
	}
	return p
}

// rlKeys picks one to three of the keys r0…r5, mostly distinct, each with a cost of 0 to
// 2 and mostly its own named policy (r0 and r3 share p0, …); a refund sometimes releases
// a slot a recent Check may have acquired.
func (g *gen) rlKeys(refund bool) []*conclavev1.RateLimitKey {
	var keys []*conclavev1.RateLimitKey
	used := map[int]bool{}
	for range 1 + g.r.IntN(3) {
		i := g.r.IntN(6)
		if used[i] && g.r.IntN(10) != 0 {
			continue // a repeated key is invalid: only sometimes
		}
		used[i] = true
		k := &conclavev1.RateLimitKey{Key: "r" + strconv.Itoa(i), Cost: uint64(g.r.IntN(3))}
		if g.r.IntN(4) == 0 {
			k.Limit = &conclavev1.RateLimitKey_Inline{Inline: g.rlPolicy()}
		} else {
			k.Limit = &conclavev1.RateLimitKey_Policy{Policy: "p" + strconv.Itoa(i%3)}
		}
		if refund && len(g.checks) > 0 && g.r.IntN(3) == 0 {
			recent := g.checks[max(0, len(g.checks)-10):]
			k.Slots = []uint64{recent[g.r.IntN(len(recent))]<<16 | uint64(g.r.IntN(2))}
		}
		keys = append(keys, k)
	}
	return keys
}

func (g *gen) delete() *conclavev1.DeleteRequest {
	req := &conclavev1.DeleteRequest{ReturnPrevious: g.r.IntN(2) == 0}
	for range 1 + g.r.IntN(3) {
		req.Keys = append(req.Keys, []byte(g.key()))
	}
	if g.r.IntN(3) == 0 {
		req.Keys = req.Keys[:1]
		req.IfRevision = g.revision()
	}
	return req
}

func (g *gen) increment() *conclavev1.IncrementRequest {
	return &conclavev1.IncrementRequest{Key: []byte(g.key()), Delta: g.delta(), TtlMs: g.ttl()}
}

func (g *gen) txn() *conclavev1.TxnRequest {
	req := &conclavev1.TxnRequest{}
	for range g.r.IntN(3) {
		c := &conclavev1.Compare{Key: []byte(g.key()), Operator: conclavev1.CompareOperator(1 + g.r.IntN(4))}
		switch g.r.IntN(5) {
		case 0:
			c.Target = &conclavev1.Compare_Value{Value: g.value()}
		case 1:
			c.Target = &conclavev1.Compare_ModRevision{ModRevision: *cmpOr(g.revision(), 0)}
		case 2:
			c.Target = &conclavev1.Compare_CreateRevision{CreateRevision: *cmpOr(g.revision(), 0)}
		case 3:
			c.Target = &conclavev1.Compare_Version{Version: g.r.Int64N(4)}
		case 4:
			c.Target = &conclavev1.Compare_Exists{Exists: g.r.IntN(2) == 0}
			c.Operator = conclavev1.CompareOperator(1 + g.r.IntN(2))
		}
		req.Compares = append(req.Compares, c)
	}
	ops := func() []*conclavev1.TxnOp {
		var out []*conclavev1.TxnOp
		for range g.r.IntN(4) {
			switch g.r.IntN(3) {
			case 0:
				out = append(out, &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Set{Set: g.set()}})
			case 1:
				out = append(out, &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Delete{Delete: g.delete()}})
			case 2:
				out = append(out, &conclavev1.TxnOp{Op: &conclavev1.TxnOp_Increment{Increment: g.increment()}})
			}
		}
		return out
	}
	req.Success, req.Failure = ops(), ops()
	return req
}

func cmpOr(p *uint64, v uint64) *uint64 {
	if p == nil {
		return &v
	}
	return p
}

// TestRandom_Replicas feeds one random log to two machines and, at checkpoints, to
// machines restored from a snapshot: every result and every snapshot must be identical,
// Snapshot→Restore→Snapshot must be the identity, and a failed command or a retried
// request id must leave the visible state unchanged.
func TestRandom_Replicas(t *testing.T) {
	seed := testSeed(t)
	n := 4000
	if testing.Short() {
		n = 1000
	}
	entries := genLog(seed, n)
	a, b := fsm.New(), fsm.New()
	var late []*fsm.Machine // restored at checkpoints, then fed the rest of the log
	type counts struct{ ok, failed, retried int }
	stats := map[string]*counts{}
	var admitted, refused int // rate-limit Checks applied (not retried)

	for i, e := range entries {
		var at int64
		var before string
		if e.cmd != nil {
			at = max(e.cmd.GetNowUnixNano(), a.Clock())
			before = dump(a, at)
		}
		ra, rb := e.apply(a), e.apply(b)
		if !proto.Equal(ra, rb) {
			t.Fatalf("entry %d (index %d, %s): replicas returned\n%v\nand\n%v", i, e.index, opKind(e.cmd), ra, rb)
		}
		for j, r := range late {
			if rr := e.apply(r); !proto.Equal(rr, ra) {
				t.Fatalf("entry %d (index %d, %s): machine restored at checkpoint %d returned\n%v\nwant\n%v", i, e.index, opKind(e.cmd), j, rr, ra)
			}
		}
		if a.AppliedIndex() != e.index {
			t.Fatalf("entry %d: AppliedIndex = %d, want %d", i, a.AppliedIndex(), e.index)
		}
		if e.cmd != nil {
			c := stats[opKind(e.cmd)]
			if c == nil {
				c = &counts{}
				stats[opKind(e.cmd)] = c
			}
			retried := ra.GetIndex() != e.index
			if r := ra.GetRateLimitCheck(); r != nil && !retried {
				if r.GetAllowed() {
					admitted++
				} else {
					refused++
				}
			}
			switch {
			case retried:
				c.retried++
			case ra.GetError() != nil:
				c.failed++
			default:
				c.ok++
			}
			if retried || ra.GetError() != nil {
				if after := dump(a, at); after != before {
					t.Fatalf("entry %d (index %d, %s, result %v) changed state\nbefore:\n%s\nafter:\n%s",
						i, e.index, opKind(e.cmd), ra, before, after)
				}
			}
		}
		if (i+1)%500 == 0 || i == len(entries)-1 {
			sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
			if !bytes.Equal(sa, sb) {
				t.Fatalf("entry %d: replicas' snapshots differ", i)
			}
			r := fsm.New()
			if err := r.Restore(bytes.NewReader(sa)); err != nil {
				t.Fatalf("entry %d: Restore: %v", i, err)
			}
			if sr := snapshotBytes(t, r); !bytes.Equal(sr, sa) {
				t.Fatalf("entry %d: Snapshot→Restore→Snapshot is not the identity (%d vs %d bytes)", i, len(sr), len(sa))
			}
			if r.AppliedIndex() != a.AppliedIndex() || r.Clock() != a.Clock() || dump(r, a.Clock()) != dump(a, a.Clock()) {
				t.Fatalf("entry %d: restored machine reads differently", i)
			}
			late = append(late, r)
		}
	}
	final := snapshotBytes(t, a)
	for j, r := range late {
		if !bytes.Equal(snapshotBytes(t, r), final) {
			t.Errorf("machine restored at checkpoint %d ends different from one that never restored", j)
		}
	}

	t.Logf("final snapshot %d bytes, clock %+dms", len(final), (a.Clock()-t0)/ms)
	for _, k := range []string{"Set", "MultiSet", "Delete", "Increment", "Expire", "Txn", "ExpireDue", "LeaderStart", "MemberPut", "MemberRemove", "empty", "SetInSession",
		"SessionCreate", "SessionRevoke", "SessionRevokeByOwner", "SessionSetAttributes", "SessionExpire",
		"LockAcquire", "LockRelease", "LockCancel", "LockProclaim",
		"RateLimitCheck", "RateLimitRefund", "PolicyPut", "PolicyDelete",
		"ZsetAdd", "ZsetIncrement", "ZsetRemove", "ZsetRemoveRange", "ZsetPop", "ZsetStore"} {
		c := stats[k]
		if c == nil {
			c = &counts{}
		}
		t.Logf("%-20s ok %4d  failed %4d  retried %4d", k, c.ok, c.failed, c.retried)
		if c.ok == 0 {
			t.Errorf("the log never applied %s successfully: the generator is too weak", k)
		}
	}
	t.Logf("rate-limit Checks: %d allowed, %d denied", admitted, refused)
	if admitted == 0 || refused == 0 {
		t.Errorf("rate-limit Checks: %d allowed, %d denied; want some of each", admitted, refused)
	}
	var failed, retried int
	for _, c := range stats {
		failed += c.failed
		retried += c.retried
	}
	if failed == 0 || retried == 0 {
		t.Errorf("the log has %d failures and %d retries; want some of each", failed, retried)
	}
}

// TestSnapshot_Corrupt flips bytes of and truncates a snapshot: Restore must fail with
// ErrBadSnapshot every time and leave the machine's previous state intact.
func TestSnapshot_Corrupt(t *testing.T) {
	seed := testSeed(t)
	src := fsm.New()
	for _, e := range genLog(seed, 300) {
		e.apply(src)
	}
	good := snapshotBytes(t, src)

	m := fsm.New()
	for _, e := range genLog(seed+1, 20) {
		e.apply(m)
	}
	want := snapshotBytes(t, m)
	wantDump := dump(m, m.Clock())

	try := func(what string, data []byte) {
		t.Helper()
		err := m.Restore(bytes.NewReader(data))
		if !errors.Is(err, fsm.ErrBadSnapshot) {
			t.Fatalf("%s: Restore error = %v, want ErrBadSnapshot", what, err)
		}
		if got := snapshotBytes(t, m); !bytes.Equal(got, want) {
			t.Fatalf("%s: failed Restore changed the machine:\n%s\nwant:\n%s", what, dump(m, m.Clock()), wantDump)
		}
	}

	// Every position in a short snapshot; evenly spread ones (plus both ends) in a long one.
	stride := max(1, len(good)/400)
	var positions []int
	for i := 0; i < len(good); i++ {
		if i < 64 || i >= len(good)-64 || i%stride == 0 {
			positions = append(positions, i)
		}
	}
	t.Logf("snapshot of %d bytes, trying %d positions", len(good), len(positions))
	for _, i := range positions {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(good)
			bad[i] ^= mask
			try(fmt.Sprintf("byte %d ^ %#x", i, mask), bad)
		}
		try(fmt.Sprintf("truncated to %d bytes", i), good[:i])
	}
	wrongVersion := bytes.Clone(good)
	wrongVersion[len("CNCLSNAP")+3] = 2
	try("format version 2", wrongVersion)
	try("empty", nil)
	try("no meta record", []byte("CNCLSNAP\x00\x00\x00\x01\x00"))

	// The good snapshot still restores, replacing everything.
	if err := m.Restore(bytes.NewReader(good)); err != nil {
		t.Fatalf("Restore of the good snapshot: %v", err)
	}
	if !bytes.Equal(snapshotBytes(t, m), good) {
		t.Fatal("after Restore of the good snapshot the machine's snapshot differs from it")
	}
}
