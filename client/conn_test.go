package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func TestClient_FailoverToNextEndpoint(t *testing.T) {
	c, nodes := newTestCluster(t, 3)
	nodes[0].setFail(codes.Unavailable)
	ctx := context.Background()

	v, found, err := c.Get(ctx, "k")
	if err != nil || !found || string(v) != "v@ep1" {
		t.Fatalf("Get = %q, %v, %v; want v@ep1, true, nil", v, found, err)
	}
	if c.Endpoint() != "ep1" {
		t.Fatalf("current endpoint = %s, want ep1", c.Endpoint())
	}
	// Sticky: the next call goes straight to ep1.
	if _, _, err := c.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if got := [3]int{nodes[0].callCount(), nodes[1].callCount(), nodes[2].callCount()}; got != [3]int{1, 2, 0} {
		t.Fatalf("calls per node = %v, want [1 2 0]", got)
	}
}

func TestClient_RequestIDFilledAndReusedOnRetry(t *testing.T) {
	c, nodes := newTestCluster(t, 2)
	nodes[0].setFail(codes.Unavailable)

	req := &conclavev1.SetRequest{Key: []byte("k"), Value: []byte("v")}
	if _, err := c.KV().Set(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if req.GetRequestId() != "" {
		t.Fatalf("caller's request was changed: request_id = %q", req.GetRequestId())
	}
	ids0, ids1 := nodes[0].seenRequestIDs(), nodes[1].seenRequestIDs()
	if len(ids0) != 1 || len(ids1) != 1 {
		t.Fatalf("request ids seen = %v and %v, want one on each node", ids0, ids1)
	}
	if ids0[0] != ids1[0] || len(ids0[0]) != 32 {
		t.Fatalf("request ids %q and %q: want the same 32-hex-digit id", ids0[0], ids1[0])
	}

	// A second call gets a fresh id; an id given by the caller is kept.
	if _, err := c.Set(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Set(context.Background(), &conclavev1.SetRequest{Key: []byte("k"), RequestId: "mine"}); err != nil {
		t.Fatal(err)
	}
	ids1 = nodes[1].seenRequestIDs()
	if len(ids1) != 3 || ids1[1] == ids1[0] || ids1[2] != "mine" {
		t.Fatalf("request ids on ep1 = %q, want [id, fresh id, mine]", ids1)
	}
}

func TestClient_RetryPolicy(t *testing.T) {
	tests := []struct {
		name      string
		fail      codes.Code
		call      func(context.Context, *Client) error
		wantCalls [2]int // calls on ep0, ep1
		wantCode  codes.Code
	}{
		{"read retried on unavailable", codes.Unavailable, getCall, [2]int{1, 1}, codes.OK},
		{"read not retried on other errors", codes.FailedPrecondition, getCall, [2]int{1, 0}, codes.FailedPrecondition},
		{"write with request id retried", codes.Unavailable, setCall, [2]int{1, 1}, codes.OK},
		{"write not retried on invalid argument", codes.InvalidArgument, incrCall, [2]int{1, 0}, codes.InvalidArgument},
		{"status retried", codes.Unavailable, statusCall, [2]int{1, 1}, codes.OK},
		{"join never retried", codes.Unavailable, joinCall, [2]int{1, 0}, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, nodes := newTestCluster(t, 2)
			nodes[0].setFail(tt.fail)
			err := tt.call(context.Background(), c)
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("error = %v, want code %s", err, tt.wantCode)
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("error %T is not *Error", err)
				}
			}
			if got := [2]int{nodes[0].callCount(), nodes[1].callCount()}; got != tt.wantCalls {
				t.Fatalf("calls = %v, want %v", got, tt.wantCalls)
			}
		})
	}
}

func TestClient_UnavailableUntilDeadline(t *testing.T) {
	c, nodes := newTestCluster(t, 2)
	for _, n := range nodes {
		n.setFail(codes.Unavailable)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()

	_, _, err := c.Get(ctx, "k")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want ErrUnavailable caused by the deadline", err)
	}
	if nodes[0].callCount() < 1 || nodes[1].callCount() < 1 {
		t.Fatalf("calls = %d, %d: want both endpoints tried", nodes[0].callCount(), nodes[1].callCount())
	}
}

func TestClient_FailoverFromClosedEndpoint(t *testing.T) {
	c, nodes := newTestCluster(t, 2)
	if err := nodes[0].lis.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := c.Increment(context.Background(), "k", 7)
	if err != nil || n != 7 {
		t.Fatalf("Increment = %d, %v; want 7, nil", n, err)
	}
	if c.Endpoint() != "ep1" {
		t.Fatalf("current endpoint = %s, want ep1", c.Endpoint())
	}
}

func getCall(ctx context.Context, c *Client) error {
	_, _, err := c.Get(ctx, "k")
	return err
}

func setCall(ctx context.Context, c *Client) error {
	_, err := c.Set(ctx, "k", []byte("v"))
	return err
}

func incrCall(ctx context.Context, c *Client) error {
	_, err := c.Increment(ctx, "k", 1)
	return err
}

func statusCall(ctx context.Context, c *Client) error {
	_, err := c.Cluster().Status(ctx, &conclavev1.StatusRequest{})
	return err
}

func joinCall(ctx context.Context, c *Client) error {
	_, err := c.Cluster().Join(ctx, &conclavev1.JoinRequest{Id: "n4"})
	return err
}

func codeOf(err error) codes.Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return codes.Unknown
	}
	return codes.OK
}
