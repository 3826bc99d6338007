package fsm

import (
	"bytes"
	"cmp"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// txn evaluates the compares against the current state, then runs the chosen branch on a
// copy-on-write clone of the state and swaps it in only if every operation succeeded, so a
// transaction is all or nothing. Every key it touches gets the same revision, index.
func (m *Machine) txn(index uint64, now int64, req *conclavev1.TxnRequest) (*fsmv1.Result_Txn, *Error) {
	if f := req.GetFence(); f != nil {
		if err := checkFence(m.st, f.GetLock(), f.GetToken()); err != nil {
			return nil, err
		}
	}
	succeeded := true
	for _, c := range req.GetCompares() {
		ok, err := compare(m.st, now, c)
		if err != nil {
			return nil, err
		}
		succeeded = succeeded && ok
	}
	ops := req.GetFailure()
	if succeeded {
		ops = req.GetSuccess()
	}
	next := m.st.clone()
	resp := &conclavev1.TxnResponse{Succeeded: succeeded}
	for _, op := range ops {
		r, err := m.txnOp(next, index, now, op)
		if err != nil {
			return nil, err
		}
		resp.Results = append(resp.Results, r)
	}
	m.st = next
	return &fsmv1.Result_Txn{Txn: resp}, nil
}

func (m *Machine) txnOp(s *state, index uint64, now int64, op *conclavev1.TxnOp) (*conclavev1.TxnOpResult, *Error) {
	switch o := op.GetOp().(type) {
	case *conclavev1.TxnOp_Set:
		r, err := m.set(s, index, now, o.Set)
		if err != nil {
			return nil, err
		}
		return &conclavev1.TxnOpResult{Result: &conclavev1.TxnOpResult_Set{Set: r.Set}}, nil
	case *conclavev1.TxnOp_Delete:
		r, err := m.delete(s, now, o.Delete)
		if err != nil {
			return nil, err
		}
		return &conclavev1.TxnOpResult{Result: &conclavev1.TxnOpResult_Delete{Delete: r.Delete}}, nil
	case *conclavev1.TxnOp_Increment:
		r, err := m.increment(s, index, now, o.Increment)
		if err != nil {
			return nil, err
		}
		return &conclavev1.TxnOpResult{Result: &conclavev1.TxnOpResult_Increment{Increment: r.Increment}}, nil
	default:
		return nil, errInvalid(nil, "txn operation must be set, delete or increment")
	}
}

// compare evaluates one Compare. A missing key has revisions and version 0; a value
// compare against a missing key holds only for NOT_EQUAL.
func compare(s *state, now int64, c *conclavev1.Compare) (bool, *Error) {
	if op := c.GetOperator(); op < conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL || op > conclavev1.CompareOperator_COMPARE_OPERATOR_LESS {
		return false, errInvalid(c.GetKey(), "compare needs an operator")
	}
	e, exists := s.getLive(string(c.GetKey()), now)
	var order int
	switch t := c.GetTarget().(type) {
	case *conclavev1.Compare_Value:
		if !exists {
			return c.GetOperator() == conclavev1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL, nil
		}
		if e.zset != nil {
			return false, errWrongType(c.GetKey(), "a sorted set", "a string value to compare")
		}
		order = bytes.Compare(e.value, t.Value)
	case *conclavev1.Compare_ModRevision:
		order = cmp.Compare(modRevision(e, exists), t.ModRevision)
	case *conclavev1.Compare_CreateRevision:
		var rev uint64
		if exists {
			rev = e.createRev
		}
		order = cmp.Compare(rev, t.CreateRevision)
	case *conclavev1.Compare_Version:
		var v int64
		if exists {
			v = e.version
		}
		order = cmp.Compare(v, t.Version)
	case *conclavev1.Compare_Exists:
		switch c.GetOperator() {
		case conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL:
			return exists == t.Exists, nil
		case conclavev1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL:
			return exists != t.Exists, nil
		}
		return false, errInvalid(c.GetKey(), "exists compares only with EQUAL or NOT_EQUAL")
	default:
		return false, errInvalid(c.GetKey(), "compare needs a target")
	}
	switch c.GetOperator() {
	case conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL:
		return order == 0, nil
	case conclavev1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL:
		return order != 0, nil
	case conclavev1.CompareOperator_COMPARE_OPERATOR_GREATER:
		return order > 0, nil
	case conclavev1.CompareOperator_COMPARE_OPERATOR_LESS:
		return order < 0, nil
	}
	return false, errInvalid(c.GetKey(), "compare needs an operator")
}
