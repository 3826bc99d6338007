package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

func TestSession_Lifecycle(t *testing.T) {
	ts := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc := conclavev1grpc.NewSessionServiceClient(ts.conn)

	// A TTL below the minimum is raised to it, and the response says so.
	created, err := sc.CreateSession(ctx, &conclavev1.CreateSessionRequest{TtlMs: 10, Owner: "alice", Attributes: map[string][]byte{"cart": []byte("3 items")}})
	if err != nil {
		t.Fatal(err)
	}
	if created.GetTtlMs() != 3000 || created.GetId() == 0 {
		t.Fatalf("created %v: want the 3 s minimum TTL and an id", created)
	}
	id := created.GetId()
	if _, err := ts.kv.Set(ctx, &conclavev1.SetRequest{Key: []byte("presence/alice"), Value: []byte("online"), SessionId: id}); err != nil {
		t.Fatal(err)
	}
	ka, err := sc.KeepAlive(ctx, &conclavev1.KeepAliveRequest{Id: id})
	if err != nil || ka.GetTtlMs() != 3000 {
		t.Fatalf("keep-alive: %v, %v", ka, err)
	}
	stream, err := sc.KeepAliveStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ask := range []uint64{id, id + 1000, id} { // an unknown session does not end the stream
		if err := stream.Send(&conclavev1.KeepAliveStreamRequest{Id: ask}); err != nil {
			t.Fatal(err)
		}
		r, err := stream.Recv()
		if err != nil || r.GetId() != ask || (ask == id) != (r.GetTtlMs() > 0) {
			t.Fatalf("stream keep-alive of %d: %v, %v", ask, r, err)
		}
	}
	stream.CloseSend()

	if _, err := sc.UpdateAttributes(ctx, &conclavev1.UpdateAttributesRequest{Id: id, Set: map[string][]byte{"theme": []byte("dark")}, Delete: []string{"cart"}}); err != nil {
		t.Fatal(err)
	}
	got, err := sc.GetSession(ctx, &conclavev1.GetSessionRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if s := got.GetSession(); s.GetOwner() != "alice" || string(s.GetAttributes()["theme"]) != "dark" || len(s.GetAttributes()) != 1 || len(s.GetKeys()) != 1 {
		t.Fatalf("session %v", s)
	}
	second, err := sc.CreateSession(ctx, &conclavev1.CreateSessionRequest{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := sc.ListSessions(ctx, &conclavev1.ListSessionsRequest{Owner: "alice", PageSize: 1})
	if err != nil || len(list.GetSessions()) != 1 || list.GetNextPageToken() == "" {
		t.Fatalf("first page %v, %v", list, err)
	}
	list, err = sc.ListSessions(ctx, &conclavev1.ListSessionsRequest{Owner: "alice", PageSize: 1, PageToken: list.GetNextPageToken()})
	if err != nil || len(list.GetSessions()) != 1 || list.GetSessions()[0].GetId() != second.GetId() {
		t.Fatalf("second page %v, %v", list, err)
	}

	// Log alice out everywhere: both sessions end and the attached key goes with them.
	out, err := sc.RevokeByOwner(ctx, &conclavev1.RevokeByOwnerRequest{Owner: "alice"})
	if err != nil || out.GetRevoked() != 2 || out.GetKeysDeleted() != 1 {
		t.Fatalf("revoke by owner: %v, %v", out, err)
	}
	if r, err := ts.kv.Get(ctx, &conclavev1.GetRequest{Key: []byte("presence/alice")}); err != nil || r.GetFound() {
		t.Fatalf("attached key after revoke: %v, %v", r, err)
	}
	_, err = sc.KeepAlive(ctx, &conclavev1.KeepAliveRequest{Id: id})
	wantCode(t, err, codes.NotFound, "NOT_FOUND")
	_, err = sc.RevokeSession(ctx, &conclavev1.RevokeSessionRequest{Id: id})
	wantCode(t, err, codes.NotFound, "NOT_FOUND")
}

func TestSession_Validation(t *testing.T) {
	ts := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc := conclavev1grpc.NewSessionServiceClient(ts.conn)
	for name, call := range map[string]func() error{
		"negative ttl": func() error { _, err := sc.CreateSession(ctx, &conclavev1.CreateSessionRequest{TtlMs: -1}); return err },
		"long owner": func() error {
			_, err := sc.CreateSession(ctx, &conclavev1.CreateSessionRequest{Owner: string(make([]byte, 257))})
			return err
		},
		"empty attribute": func() error {
			_, err := sc.CreateSession(ctx, &conclavev1.CreateSessionRequest{Attributes: map[string][]byte{"": nil}})
			return err
		},
		"zero id": func() error { _, err := sc.GetSession(ctx, &conclavev1.GetSessionRequest{}); return err },
		"set and delete": func() error {
			_, err := sc.UpdateAttributes(ctx, &conclavev1.UpdateAttributesRequest{Id: 1, Set: map[string][]byte{"a": nil}, Delete: []string{"a"}})
			return err
		},
		"owner required": func() error { _, err := sc.RevokeByOwner(ctx, &conclavev1.RevokeByOwnerRequest{}); return err },
		"bad page token": func() error {
			_, err := sc.ListSessions(ctx, &conclavev1.ListSessionsRequest{PageToken: "x"})
			return err
		},
		"page size too large": func() error {
			_, err := sc.ListSessions(ctx, &conclavev1.ListSessionsRequest{PageSize: 1001})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { wantCode(t, call(), codes.InvalidArgument, "INVALID_ARGUMENT") })
	}
	if ts.node.applies.Load() != 0 {
		t.Fatal("invalid session requests reached node.Apply")
	}
}
