package server

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/conclave-dev/conclave/fsm"
	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// kvService implements conclavev1grpc.KVService: validate, call the node, map the error,
// fill the header.
type kvService struct {
	conclavev1grpc.UnimplementedKVServiceServer
	node Node
}

var _ conclavev1grpc.KVServiceServer = (*kvService)(nil)

func (s *kvService) Get(ctx context.Context, req *conclavev1.GetRequest) (*conclavev1.GetResponse, error) {
	if err := validateGet(req); err != nil {
		return nil, toStatus(err)
	}
	resp := &conclavev1.GetResponse{}
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) {
		resp.Kv, resp.Found = v.Get(req.GetKey())
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if resp.GetKv().GetType() == conclavev1.KeyType_KEY_TYPE_SORTED_SET {
		return nil, toStatus(fsm.WrongType(req.GetKey(), "a sorted set", "a string (use SortedSetService)"))
	}
	resp.Header = h
	return resp, nil
}

func (s *kvService) MultiGet(ctx context.Context, req *conclavev1.MultiGetRequest) (*conclavev1.MultiGetResponse, error) {
	if err := validateMultiGet(req); err != nil {
		return nil, toStatus(err)
	}
	resp := &conclavev1.MultiGetResponse{Results: make([]*conclavev1.KeyValueResult, len(req.GetKeys()))}
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) {
		for i, k := range req.GetKeys() {
			kv, found := v.Get(k)
			resp.Results[i] = &conclavev1.KeyValueResult{Key: k, Found: found, Kv: kv}
		}
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = h
	return resp, nil
}

func (s *kvService) TTL(ctx context.Context, req *conclavev1.TTLRequest) (*conclavev1.TTLResponse, error) {
	if err := validateTTL(req); err != nil {
		return nil, toStatus(err)
	}
	resp := &conclavev1.TTLResponse{}
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) {
		resp.TtlMs, resp.Found = v.TTL(req.GetKey())
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = h
	return resp, nil
}

func (s *kvService) Scan(ctx context.Context, req *conclavev1.ScanRequest) (*conclavev1.ScanResponse, error) {
	after, err := validateScan(req)
	if err != nil {
		return nil, toStatus(err)
	}
	limit := int(req.GetPageSize())
	if limit == 0 {
		limit = DefaultPageSize
	}
	resp := &conclavev1.ScanResponse{}
	var more bool
	h, err := s.node.Read(ctx, req.GetConsistency(), func(v *fsm.View) {
		resp.Kvs, more = v.Scan(req.GetPrefix(), after, limit, req.GetKeysOnly())
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if more && len(resp.Kvs) > 0 {
		resp.NextPageToken = encodePageToken(resp.Kvs[len(resp.Kvs)-1].GetKey())
	}
	resp.Header = h
	return resp, nil
}

func (s *kvService) Set(ctx context.Context, req *conclavev1.SetRequest) (*conclavev1.SetResponse, error) {
	if err := validateSet("", req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_Set{Set: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetSet)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *kvService) MultiSet(ctx context.Context, req *conclavev1.MultiSetRequest) (*conclavev1.MultiSetResponse, error) {
	if err := validateMultiSet(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_MultiSet{MultiSet: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetMultiSet)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *kvService) Delete(ctx context.Context, req *conclavev1.DeleteRequest) (*conclavev1.DeleteResponse, error) {
	if err := validateDelete("", req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_Delete{Delete: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetDelete)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *kvService) Increment(ctx context.Context, req *conclavev1.IncrementRequest) (*conclavev1.IncrementResponse, error) {
	if err := validateIncrement("", req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_Increment{Increment: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetIncrement)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *kvService) Expire(ctx context.Context, req *conclavev1.ExpireRequest) (*conclavev1.ExpireResponse, error) {
	if err := validateExpire(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_Expire{Expire: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetExpire)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

func (s *kvService) Txn(ctx context.Context, req *conclavev1.TxnRequest) (*conclavev1.TxnResponse, error) {
	if err := validateTxn(req); err != nil {
		return nil, toStatus(err)
	}
	cmd := &fsmv1.Command{RequestId: req.GetRequestId(), Op: &fsmv1.Command_Txn{Txn: req}}
	resp, index, err := apply(ctx, s.node, cmd, (*fsmv1.Result).GetTxn)
	if err != nil {
		return nil, err
	}
	resp.Header = s.node.Header(index)
	return resp, nil
}

// apply proposes cmd and returns a private copy of the response that pick takes from the
// result (the result itself may be shared with the state machine's dedup table), with the
// raft index that produced it. Errors come back already mapped to gRPC statuses.
func apply[T interface {
	comparable
	proto.Message
}](ctx context.Context, n Node, cmd *fsmv1.Command, pick func(*fsmv1.Result) T) (T, uint64, error) {
	var zero T
	res, err := n.Apply(ctx, cmd)
	if err != nil {
		return zero, 0, toStatus(err)
	}
	if err := fsm.ErrorFromProto(res.GetError()); err != nil {
		return zero, 0, toStatus(err)
	}
	v := pick(res)
	if v == zero {
		// Only a dedup hit can answer with another kind of result.
		return zero, 0, toStatus(fmt.Errorf("%w: request_id %q was first used for a different request", errRequestIDReused, cmd.GetRequestId()))
	}
	return proto.CloneOf(v), res.GetIndex(), nil
}

// read runs fn on the node's state at consistency c and returns its answer.
func read[T any](ctx context.Context, n Node, c conclavev1.Consistency, fn func(v *fsm.View) (T, error)) (T, *conclavev1.ResponseHeader, error) {
	var (
		out  T
		ferr error
	)
	h, err := n.Read(ctx, c, func(v *fsm.View) { out, ferr = fn(v) })
	if err = firstErr(err, ferr); err != nil {
		var zero T
		return zero, nil, toStatus(err)
	}
	return out, h, nil
}
