package client

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeNode is one in-process endpoint: a KVService and ClusterService that record the
// calls they receive and fail every call with code fail unless it is codes.OK, and a
// SessionService (fakeSessions) and LockService (fakeLocks) of its own.
type fakeNode struct {
	conclavev1grpc.UnimplementedKVServiceServer
	conclavev1grpc.UnimplementedClusterServiceServer

	name     string
	lis      *bufconn.Listener
	sessions fakeSessions
	locks    fakeLocks

	mu         sync.Mutex
	fail       codes.Code
	calls      int
	requestIDs []string
}

func (n *fakeNode) setFail(c codes.Code) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail = c
}

func (n *fakeNode) callCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls
}

func (n *fakeNode) seenRequestIDs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.requestIDs...)
}

// record counts a call and returns the error the node is set to fail with.
func (n *fakeNode) record(requestID string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	if requestID != "" {
		n.requestIDs = append(n.requestIDs, requestID)
	}
	if n.fail != codes.OK {
		return status.Errorf(n.fail, "%s: failing with %s", n.name, n.fail)
	}
	return nil
}

func (n *fakeNode) header() *conclavev1.ResponseHeader {
	return &conclavev1.ResponseHeader{NodeId: n.name}
}

func (n *fakeNode) Get(_ context.Context, r *conclavev1.GetRequest) (*conclavev1.GetResponse, error) {
	if err := n.record(""); err != nil {
		return nil, err
	}
	return &conclavev1.GetResponse{Header: n.header(), Found: true,
		Kv: &conclavev1.KeyValue{Key: r.GetKey(), Value: []byte("v@" + n.name)}}, nil
}

func (n *fakeNode) Set(_ context.Context, r *conclavev1.SetRequest) (*conclavev1.SetResponse, error) {
	if err := n.record(r.GetRequestId()); err != nil {
		return nil, err
	}
	return &conclavev1.SetResponse{Header: n.header(),
		Kv: &conclavev1.KeyValue{Key: r.GetKey(), Value: r.GetValue()}}, nil
}

func (n *fakeNode) Increment(_ context.Context, r *conclavev1.IncrementRequest) (*conclavev1.IncrementResponse, error) {
	if err := n.record(r.GetRequestId()); err != nil {
		return nil, err
	}
	return &conclavev1.IncrementResponse{Header: n.header(), Value: r.GetDelta()}, nil
}

func (n *fakeNode) Status(context.Context, *conclavev1.StatusRequest) (*conclavev1.StatusResponse, error) {
	if err := n.record(""); err != nil {
		return nil, err
	}
	return &conclavev1.StatusResponse{Header: n.header(), NodeId: n.name}, nil
}

func (n *fakeNode) Join(context.Context, *conclavev1.JoinRequest) (*conclavev1.JoinResponse, error) {
	if err := n.record(""); err != nil {
		return nil, err
	}
	return &conclavev1.JoinResponse{Header: n.header()}, nil
}

// newTestCluster starts n fake nodes named ep0…ep(n-1) and returns a Client over them
// whose first endpoint is ep0.
func newTestCluster(t *testing.T, n int) (*Client, []*fakeNode) {
	t.Helper()
	nodes := make([]*fakeNode, n)
	byName := map[string]*fakeNode{}
	cfg := DefaultConfig()
	cfg.Endpoints = nil
	for i := range nodes {
		node := &fakeNode{name: "ep" + string(rune('0'+i)), lis: bufconn.Listen(1 << 16)}
		srv := grpc.NewServer()
		conclavev1grpc.RegisterKVServiceServer(srv, node)
		conclavev1grpc.RegisterClusterServiceServer(srv, node)
		conclavev1grpc.RegisterSessionServiceServer(srv, &node.sessions)
		conclavev1grpc.RegisterLockServiceServer(srv, &node.locks)
		go func() { _ = srv.Serve(node.lis) }()
		t.Cleanup(srv.Stop)
		nodes[i] = node
		byName[node.name] = node
		cfg.Endpoints = append(cfg.Endpoints, node.name)
	}
	cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return byName[addr].lis.DialContext(ctx)
	})}
	cfg.RequestTimeout = 5 * time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.conn.current.Store(0)
	t.Cleanup(func() { _ = c.Close() })
	return c, nodes
}

// fakeLocks is a LockService of exclusive locks: Acquire waits (for wait_timeout_ms)
// until the lock is free and answers LOCK_HELD after; tokens count up from 100. It
// records the Acquire and Release requests it receives.
type fakeLocks struct {
	conclavev1grpc.UnimplementedLockServiceServer

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when a lock is released
	holders  map[string]uint64
	waiting  int
	token    uint64
	acquires []*conclavev1.AcquireRequest
	releases []*conclavev1.ReleaseRequest
}

func lockError(code codes.Code, reason, msg string) error {
	st, _ := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: reason})
	return st.Err()
}

func (f *fakeLocks) Acquire(ctx context.Context, r *conclavev1.AcquireRequest) (*conclavev1.AcquireResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(r.GetWaitTimeoutMs())*time.Millisecond)
	defer cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acquires = append(f.acquires, r)
	if f.holders == nil {
		f.holders = map[string]uint64{}
		f.changed = make(chan struct{})
	}
	for f.holders[r.GetName()] != 0 {
		ch := f.changed
		f.waiting++
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		f.mu.Lock()
		f.waiting--
		if ctx.Err() != nil && f.holders[r.GetName()] != 0 {
			return nil, lockError(codes.FailedPrecondition, ReasonLockHeld, fmt.Sprintf("lock %q is held", r.GetName()))
		}
	}
	if f.token < 100 {
		f.token = 100
	}
	f.token++
	f.holders[r.GetName()] = f.token
	return &conclavev1.AcquireResponse{Token: f.token}, nil
}

func (f *fakeLocks) Release(_ context.Context, r *conclavev1.ReleaseRequest) (*conclavev1.ReleaseResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases = append(f.releases, r)
	if f.holders[r.GetName()] != r.GetToken() || r.GetToken() == 0 {
		return nil, lockError(codes.Aborted, ReasonFenceStale, fmt.Sprintf("lock %q: token %d is not held", r.GetName(), r.GetToken()))
	}
	delete(f.holders, r.GetName())
	close(f.changed)
	f.changed = make(chan struct{})
	return &conclavev1.ReleaseResponse{}, nil
}

func (f *fakeLocks) waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

func (f *fakeLocks) lastAcquire() *conclavev1.AcquireRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acquires[len(f.acquires)-1]
}
