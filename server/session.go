package server

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// sessionService is conclave.v1.SessionService: thin handlers over the node.
type sessionService struct {
	conclavev1grpc.UnimplementedSessionServiceServer
	node Node
}

func (s *sessionService) CreateSession(ctx context.Context, req *conclavev1.CreateSessionRequest) (*conclavev1.CreateSessionResponse, error) {
	if err := validateCreateSession(req); err != nil {
		return nil, toStatus(err)
	}
	ttl := max(time.Duration(req.GetTtlMs())*time.Millisecond, s.node.MinSessionTTL())
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_SessionCreate{SessionCreate: &fsmv1.SessionCreate{
		Owner: req.GetOwner(), TtlMs: ttl.Milliseconds(), MaxLifetimeMs: req.GetMaxLifetimeMs(), Attributes: attributes(req.GetAttributes()),
		LockDelayMs: req.GetLockDelayMs(),
	}}}
	res, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetSession)
	if err != nil {
		return nil, err
	}
	return &conclavev1.CreateSessionResponse{Header: s.node.Header(index), Id: res.GetId(), TtlMs: ttl.Milliseconds()}, nil
}

func (s *sessionService) KeepAlive(ctx context.Context, req *conclavev1.KeepAliveRequest) (*conclavev1.KeepAliveResponse, error) {
	left, err := s.node.KeepAlive(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &conclavev1.KeepAliveResponse{Header: s.node.Header(0), Id: req.GetId(), TtlMs: left.Milliseconds()}, nil
}

// KeepAliveStream answers each keep-alive on the stream in order, until the client
// closes it or a keep-alive fails. A session that does not exist (it ended) is answered
// with ttl_ms 0, as etcd does, so one ended session does not break the stream that
// renews many.
func (s *sessionService) KeepAliveStream(stream conclavev1grpc.SessionService_KeepAliveStreamServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		left, err := s.node.KeepAlive(stream.Context(), req.GetId())
		if errors.Is(err, fsm.ErrNotFound) {
			left, err = 0, nil
		}
		if err != nil {
			return toStatus(err)
		}
		if err := stream.Send(&conclavev1.KeepAliveStreamResponse{Header: s.node.Header(0), Id: req.GetId(), TtlMs: left.Milliseconds()}); err != nil {
			return err
		}
	}
}

func (s *sessionService) RevokeSession(ctx context.Context, req *conclavev1.RevokeSessionRequest) (*conclavev1.RevokeSessionResponse, error) {
	if err := firstErr(checkSessionID("id", req.GetId()), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_SessionRevoke{SessionRevoke: &fsmv1.SessionRevoke{Id: req.GetId()}}}
	res, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetSession)
	if err != nil {
		return nil, err
	}
	return &conclavev1.RevokeSessionResponse{Header: s.node.Header(index), KeysDeleted: res.GetKeysDeleted()}, nil
}

func (s *sessionService) RevokeByOwner(ctx context.Context, req *conclavev1.RevokeByOwnerRequest) (*conclavev1.RevokeByOwnerResponse, error) {
	if err := firstErr(checkOwner(req.GetOwner(), true), checkRequestID("request_id", req.GetRequestId())); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_SessionRevokeByOwner{SessionRevokeByOwner: &fsmv1.SessionRevokeByOwner{Owner: req.GetOwner()}}}
	res, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetSession)
	if err != nil {
		return nil, err
	}
	return &conclavev1.RevokeByOwnerResponse{Header: s.node.Header(index), Revoked: res.GetEnded(), KeysDeleted: res.GetKeysDeleted()}, nil
}

func (s *sessionService) UpdateAttributes(ctx context.Context, req *conclavev1.UpdateAttributesRequest) (*conclavev1.UpdateAttributesResponse, error) {
	if err := validateUpdateAttributes(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_SessionSetAttributes{SessionSetAttributes: &fsmv1.SessionSetAttributes{
		Id: req.GetId(), Set: attributes(req.GetSet()), Delete: req.GetDelete(),
	}}}
	_, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetSession)
	if err != nil {
		return nil, err
	}
	return &conclavev1.UpdateAttributesResponse{Header: s.node.Header(index), AttributesRevision: index}, nil
}

func (s *sessionService) GetSession(ctx context.Context, req *conclavev1.GetSessionRequest) (*conclavev1.GetSessionResponse, error) {
	if err := firstErr(checkSessionID("id", req.GetId()), checkConsistency(req.GetConsistency())); err != nil {
		return nil, toStatus(err)
	}
	var out *conclavev1.Session
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) {
		if rec, keys, ok := v.Session(req.GetId()); ok {
			out = sessionProto(rec)
			for _, k := range keys {
				out.Keys = append(out.Keys, []byte(k))
			}
		}
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if out == nil {
		return nil, toStatus(fsm.NoSession(req.GetId()))
	}
	return &conclavev1.GetSessionResponse{Header: h, Session: out}, nil
}

func (s *sessionService) ListSessions(ctx context.Context, req *conclavev1.ListSessionsRequest) (*conclavev1.ListSessionsResponse, error) {
	after, err := validateListSessions(req)
	if err != nil {
		return nil, toStatus(err)
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultPageSize
	}
	resp := &conclavev1.ListSessionsResponse{}
	var more bool
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) {
		var recs []*fsmv1.SessionRecord
		recs, more = v.SessionsByOwner(req.GetOwner(), after, size)
		for _, r := range recs {
			resp.Sessions = append(resp.Sessions, sessionProto(r))
		}
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if more {
		resp.NextPageToken = strconv.FormatUint(resp.Sessions[len(resp.Sessions)-1].GetId(), 10)
	}
	resp.Header = h
	return resp, nil
}

// attributes turns a request's map into the sorted list the state machine stores.
func attributes(m map[string][]byte) []*fsmv1.Attribute {
	out := make([]*fsmv1.Attribute, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, &fsmv1.Attribute{Name: name, Value: m[name]})
	}
	return out
}

func sessionProto(r *fsmv1.SessionRecord) *conclavev1.Session {
	s := &conclavev1.Session{
		Id: r.GetId(), Owner: r.GetOwner(), TtlMs: r.GetTtlMs(), CreatedAtUnixMs: r.GetCreatedAtUnixNano() / 1e6,
		MaxLifetimeMs: r.GetMaxLifetimeMs(), AttributesRevision: r.GetAttributesRevision(), LockDelayMs: r.GetLockDelayMs(),
		Attributes: make(map[string][]byte, len(r.GetAttributes())),
	}
	for _, a := range r.GetAttributes() {
		s.Attributes[a.GetName()] = a.GetValue()
	}
	return s
}
