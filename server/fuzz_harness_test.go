package server

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// rpcKind says what an RPC may do to the node.
type rpcKind int

const (
	readRPC   rpcKind = iota // reads state; never applies a command
	writeRPC                 // applies exactly one command once validation passes
	memberRPC                // changes membership only; never applies a command
)

// response is what every fuzzed RPC answers: a message with a header.
type response interface {
	proto.Message
	GetHeader() *conclavev1.ResponseHeader
}

// fuzzServer is one real Server over bufconn for a whole fuzz target. reset returns its
// localNode to the same base state before every input, so a failure reproduces from the
// input alone; inputs run one at a time within a process, so sharing it is safe.
type fuzzServer struct {
	*testServer
	empty []byte // snapshot of an empty machine
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	node := newLocalNode()
	// Warnings only (an Internal answer, a recovered panic with its stack), to stderr:
	// a fuzz target runs millions of RPCs and must not buffer a log line for each.
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.Lock(os.Stderr), zapcore.WarnLevel))
	var empty bytes.Buffer
	if _, err := fsm.New().Snapshot().WriteTo(&empty); err != nil {
		f.Fatal(err)
	}
	return &fuzzServer{testServer: serveTest(f, New(Config{}, node, log), node), empty: empty.Bytes()}
}

// maxKey is the longest valid key; the base state holds it.
var maxKey = strings.Repeat("k", MaxKeyBytes)

// fuzzBaseCommands build the base state: a=1, n=41, big=MaxInt64, b with a one-minute
// TTL, old (expired, not yet deleted), p/1…p/3 for scans, the longest key, ctr=1
// remembered under request id r1, a failed Set remembered under r2, and the rate-limit
// policy "free" (5 a minute), and the sorted set lb (alice 10, bob 20, carol 20, dave +inf).
func fuzzBaseCommands() []*fsmv1.Command {
	set := func(key, value string, ttlMs int64) *fsmv1.Command {
		return &fsmv1.Command{Op: &fsmv1.Command_Set{Set: &conclavev1.SetRequest{Key: []byte(key), Value: []byte(value), TtlMs: ttlMs}}}
	}
	return []*fsmv1.Command{
		set("a", "1", 0),
		set("n", "41", 0),
		set("big", fmt.Sprint(int64(math.MaxInt64)), 0),
		set("b", "hello", 60_000),
		set("old", "x", 1),
		set("p/1", "1", 0),
		set("p/2", "2", 0),
		set("p/3", "3", 0),
		set(maxKey, "max", 0),
		{RequestId: "r1", Op: &fsmv1.Command_Increment{Increment: &conclavev1.IncrementRequest{Key: []byte("ctr"), Delta: 1}}},
		{RequestId: "r2", Op: &fsmv1.Command_Set{Set: &conclavev1.SetRequest{Key: []byte("a"), IfAbsent: true}}},
		{Op: &fsmv1.Command_PolicyPut{PolicyPut: &conclavev1.PutPolicyRequest{Policy: &conclavev1.RateLimitPolicy{Name: "free", Limit: 5, PeriodMs: 60_000}}}},
		{Op: &fsmv1.Command_ZsetAdd{ZsetAdd: &conclavev1.AddRequest{Key: []byte("lb"), Members: []*conclavev1.ScoredMember{
			{Member: "alice", Score: 10}, {Member: "bob", Score: 20}, {Member: "carol", Score: 20}, {Member: "dave", Score: math.Inf(1)}}}}},
	}
}

// reset puts the node back to the base state, stamped a second before now (so "old" has
// expired and r1, r2 are inside the dedup window), with the one local member.
func (fs *fuzzServer) reset(t *testing.T) {
	n := fs.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.m.Restore(bytes.NewReader(fs.empty)); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Second).UnixNano()
	for i, c := range fuzzBaseCommands() {
		c.NowUnixNano = now
		if res := n.m.ApplyCommand(uint64(i+1), c); res.GetError() != nil && c.GetRequestId() != "r2" {
			t.Fatalf("base command %v: %v", c, res.GetError())
		}
	}
	n.index = n.m.AppliedIndex()
	n.membersMu.Lock()
	n.members = newLocalNode().members
	n.membersMu.Unlock()
}

// index is the raft index of the last command the node applied.
func (fs *fuzzServer) index() uint64 {
	fs.node.mu.Lock()
	defer fs.node.mu.Unlock()
	return fs.node.index
}

func snapshotOf(t *testing.T, m *fsm.Machine) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := m.Snapshot().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// keysAt lists every live entry of m, values included, as seen at time now.
func keysAt(m *fsm.Machine, now int64) []*conclavev1.KeyValue {
	var kvs []*conclavev1.KeyValue
	m.Read(now, func(v *fsm.View) { kvs, _ = v.Scan(nil, nil, -1, false) })
	return kvs
}

// checkKeysAsBefore fails unless the node's live keys equal those of the snapshot before.
func (fs *fuzzServer) checkKeysAsBefore(t *testing.T, before []byte) {
	t.Helper()
	old := fsm.New()
	if err := old.Restore(bytes.NewReader(before)); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	got, want := keysAt(fs.node.m, now), keysAt(old, now)
	if len(got) != len(want) {
		t.Fatalf("a failed write changed the keys: %d live, was %d", len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("a failed write changed the keys: %v, was %v", got[i], want[i])
		}
	}
}

// checkWellFormed fails unless every live key is within the request limits, in order, and
// has revisions no later than the node's index.
func (fs *fuzzServer) checkWellFormed(t *testing.T) {
	t.Helper()
	index := fs.index()
	kvs := keysAt(fs.node.m, time.Now().UnixNano())
	for i, e := range kvs {
		k := e.GetKey()
		if len(k) == 0 || len(k) > MaxKeyBytes || len(e.GetValue()) > MaxValueBytes ||
			(i > 0 && bytes.Compare(kvs[i-1].GetKey(), k) >= 0) ||
			e.GetCreateRevision() == 0 || e.GetCreateRevision() > e.GetModRevision() || e.GetModRevision() > index ||
			e.GetVersion() < 1 || e.GetTtlMs() < 0 || e.GetTtlMs() > MaxTTLMs {
			t.Fatalf("malformed entry %d at index %d: key %.40q (%d bytes), %d value bytes, revisions %d/%d, version %d, ttl_ms %d",
				i, index, k, len(k), len(e.GetValue()), e.GetCreateRevision(), e.GetModRevision(), e.GetVersion(), e.GetTtlMs())
		}
	}
}

// fuzzRPC is the body of every request fuzz target. It adds seeds to the corpus; then for
// each input that unmarshals as Req it resets the node, sends the request through the real
// server and checks that:
//   - the code is never Internal, Unknown, DataLoss or Unimplemented, and every error
//     carries a google.rpc.ErrorInfo in ErrorDomain;
//   - the code is InvalidArgument exactly when validate refuses the request;
//   - a refused request, a read and a membership change apply nothing and leave the
//     machine's snapshot byte for byte as it was;
//   - a write that passes validation is applied exactly once; if it then fails, the live
//     keys are as they were; if it succeeds, every key stays well formed and the header
//     carries the write's revision (an earlier one only for a retried request id);
//   - check, when not nil, holds for an OK response.
func fuzzRPC[T any, Req interface {
	*T
	proto.Message
}, Resp response](f *testing.F, kind rpcKind, call func(*testServer, context.Context, Req) (Resp, error),
	validate func(Req) error, check func(*testing.T, Req, Resp), seeds []Req) {
	f.Helper()
	for _, s := range seeds {
		data, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	fs := newFuzzServer(f)

	f.Fuzz(func(t *testing.T, data []byte) {
		req := Req(new(T))
		if proto.Unmarshal(data, req) != nil {
			return // not this request; gRPC would refuse it before any handler
		}
		fs.reset(t)
		before, applies := snapshotOf(t, fs.node.m), fs.node.applies.Load()
		resp, err := call(fs.testServer, testContext(t), req)
		applied := fs.node.applies.Load() - applies

		code := status.Code(err)
		switch code {
		case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
			t.Fatalf("server failed on %v: %v", req, err)
		}
		if info := errorInfo(err); err != nil && (info == nil || info.GetDomain() != ErrorDomain) {
			t.Fatalf("error without ErrorInfo in %s: %v", ErrorDomain, err)
		}
		if verr := validate(req); (verr != nil) != (code == codes.InvalidArgument) {
			t.Fatalf("validation says %v, the server answered %v, for %v", verr, err, req)
		}

		if kind != writeRPC || code == codes.InvalidArgument {
			if applied != 0 {
				t.Fatalf("%d commands applied for %v (answer %v)", applied, req, err)
			}
			if !bytes.Equal(snapshotOf(t, fs.node.m), before) {
				t.Fatalf("state changed by %v (answer %v)", req, err)
			}
		} else if applied != 1 {
			t.Fatalf("%d commands applied for a valid write %v", applied, req)
		}
		if err != nil {
			if kind == writeRPC {
				fs.checkKeysAsBefore(t, before)
			}
			return
		}

		h := resp.GetHeader()
		if h.GetNodeId() != fs.node.ID() {
			t.Fatalf("header %v does not name the node", h)
		}
		switch index := fs.index(); kind {
		case readRPC:
			if h.GetRevision() != index {
				t.Fatalf("read header revision %d, want %d", h.GetRevision(), index)
			}
		case memberRPC:
			if h.GetRevision() != 0 {
				t.Fatalf("membership header revision %d, want 0", h.GetRevision())
			}
		case writeRPC:
			fs.checkWellFormed(t)
			retried := false
			if r, ok := any(req).(interface{ GetRequestId() string }); ok {
				retried = r.GetRequestId() == "r1" || r.GetRequestId() == "r2"
			}
			if rev := h.GetRevision(); rev != index && (!retried || rev == 0 || rev > index) {
				t.Fatalf("write header revision %d at index %d", rev, index)
			}
		}
		if check != nil {
			check(t, req, resp)
		}
	})
}

// fuzzKV fuzzes one KVService method, given as a method expression
// (conclavev1grpc.KVServiceClient.Get).
func fuzzKV[T any, Req interface {
	*T
	proto.Message
}, Resp response](f *testing.F, kind rpcKind, method func(conclavev1grpc.KVServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
	validate func(Req) error, check func(*testing.T, Req, Resp), seeds ...Req) {
	f.Helper()
	call := func(ts *testServer, ctx context.Context, req Req) (Resp, error) { return method(ts.kv, ctx, req) }
	fuzzRPC(f, kind, call, validate, check, seeds)
}

// fuzzCluster fuzzes one ClusterService method, given as a method expression.
func fuzzCluster[T any, Req interface {
	*T
	proto.Message
}, Resp response](f *testing.F, method func(conclavev1grpc.ClusterServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
	validate func(Req) error, check func(*testing.T, Req, Resp), seeds ...Req) {
	f.Helper()
	call := func(ts *testServer, ctx context.Context, req Req) (Resp, error) { return method(ts.cluster, ctx, req) }
	fuzzRPC(f, memberRPC, call, validate, check, seeds)
}
