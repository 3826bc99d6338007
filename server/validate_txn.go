package server

import (
	"fmt"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// validateTxn checks a TxnRequest: at most MaxTxnCompares compares, each with a key, a
// known operator and a target (exists only with EQUAL or NOT_EQUAL); at most MaxTxnOps
// operations per branch, each valid as its standalone RPC and without a request id of
// its own (the Txn's request_id covers them all).
func validateTxn(req *conclavev1.TxnRequest) error {
	if err := firstErr(checkRequestID("request_id", req.GetRequestId()), checkFence("fence", req.GetFence())); err != nil {
		return err
	}
	if n := len(req.GetCompares()); n > MaxTxnCompares {
		return invalid("compares", "must have at most %d compares, got %d", MaxTxnCompares, n)
	}
	for i, c := range req.GetCompares() {
		if err := validateCompare(fmt.Sprintf("compares[%d]", i), c); err != nil {
			return err
		}
	}
	if err := validateTxnOps("success", req.GetSuccess()); err != nil {
		return err
	}
	return validateTxnOps("failure", req.GetFailure())
}

func validateCompare(p string, c *conclavev1.Compare) error {
	if err := checkKey(at(p, "key"), c.GetKey()); err != nil {
		return err
	}
	op := c.GetOperator()
	if _, ok := conclavev1.CompareOperator_name[int32(op)]; !ok || op == conclavev1.CompareOperator_COMPARE_OPERATOR_UNSPECIFIED {
		return invalid(at(p, "operator"), "must be EQUAL, NOT_EQUAL, GREATER or LESS")
	}
	switch t := c.GetTarget().(type) {
	case nil:
		return invalid(at(p, "target"), "must be one of value, mod_revision, create_revision, version or exists")
	case *conclavev1.Compare_Value:
		return checkValue(at(p, "value"), t.Value)
	case *conclavev1.Compare_Exists:
		if op != conclavev1.CompareOperator_COMPARE_OPERATOR_EQUAL && op != conclavev1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL {
			return invalid(at(p, "operator"), "exists compares only with EQUAL or NOT_EQUAL")
		}
	}
	return nil
}

func validateTxnOps(branch string, ops []*conclavev1.TxnOp) error {
	if len(ops) > MaxTxnOps {
		return invalid(branch, "must have at most %d operations, got %d", MaxTxnOps, len(ops))
	}
	for i, op := range ops {
		p := fmt.Sprintf("%s[%d]", branch, i)
		var err error
		var requestID string
		switch o := op.GetOp().(type) {
		case *conclavev1.TxnOp_Set:
			p = at(p, "set")
			err, requestID = validateSet(p, o.Set), o.Set.GetRequestId()
		case *conclavev1.TxnOp_Delete:
			p = at(p, "delete")
			err, requestID = validateDelete(p, o.Delete), o.Delete.GetRequestId()
		case *conclavev1.TxnOp_Increment:
			p = at(p, "increment")
			err, requestID = validateIncrement(p, o.Increment), o.Increment.GetRequestId()
		default:
			return invalid(p, "must be one of set, delete or increment")
		}
		if err != nil {
			return err
		}
		if requestID != "" {
			return invalid(at(p, "request_id"), "must be empty inside a txn (set the txn's request_id)")
		}
	}
	return nil
}
